"""The number of Parties present over a session, folded from the attendance log, free of I/O."""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from itertools import groupby

from meetings.presence import BROWSER, ENTRY, EXIT, Inside

__all__ = ["ENTRY", "EXIT", "LATE_WINDOW", "SETTLE", "Event", "Running", "parties_present"]


@dataclass(frozen=True, slots=True)
class Event:
    """One entry or exit of a participant representing a Party (or None) through one channel.

    `seq` breaks ties between events logged at the same moment: the log's id, so that the fold
    follows the order in which they were written. `by` is who logged it (meetings.presence.actor).
    """

    participant: Hashable
    party: Hashable | None
    kind: str
    channel: str
    at: dt.datetime
    seq: int = 0
    by: str = BROWSER


Point = tuple[dt.datetime, int]


def parties_present(events: Iterable[Event], start: dt.datetime, end: dt.datetime) -> list[Point]:
    """Step points (time, Parties present from then on) from start to end.

    The log is folded in (at, seq) order by the presence rule (meetings.presence): an online
    presence that lapsed is ended by an exit dated back to its last moment seen, written after later
    events; a repeated entry or an exit while outside changes nothing; a lapse does not end a
    presence a person holds. A Party is present while any of its delegates is inside through any
    channel. Events with no Party (observers, Parties not counted) do not count.

    The first point is at start, with the count after every event up to and including start;
    then one point per moment the count changed (several events at one moment make one point,
    so an exit and an entry at the same instant leave no dip); the last point is at end.
    Events after end are left out.
    """
    fold = _Fold()
    points: list[Point] = [(start, 0)]
    for at, moment in groupby(sorted(events, key=_order), key=lambda e: e.at):
        if at > end:
            break
        fold.apply(moment)
        count = len(fold.ways_in)
        if at <= start:
            points[0] = (start, count)
        elif count != points[-1][1]:
            points.append((at, count))
    if end > points[-1][0]:
        points.append((end, points[-1][1]))
    return points


def _second(at: dt.datetime) -> dt.datetime:
    return at.replace(microsecond=0)


def _order(event: Event) -> tuple[dt.datetime, int]:
    return (event.at, event.seq)


class _Fold:
    """Who is inside and which Parties are present after some events; the count at each second it changed."""

    __slots__ = ("changes", "inside", "ways_in")

    def __init__(self, inside: Inside | None = None, ways_in: dict | None = None, changes: list | None = None) -> None:
        self.inside = inside or Inside()
        self.ways_in: dict[Hashable, int] = ways_in or {}
        self.changes: list[Point] = changes or []

    def copy(self) -> _Fold:
        return _Fold(self.inside.copy(), dict(self.ways_in), list(self.changes))

    def apply(self, events: Iterable[Event]) -> None:
        """Fold events by the presence rule, counting the Parties present (without points)."""
        inside, ways_in = self.inside, self.ways_in
        for event in events:
            party = event.party
            if party is None:
                continue
            key = (event.participant, event.channel)
            if event.kind == ENTRY:
                if inside.enter(key, event.at, event.by, party):
                    ways_in[party] = ways_in.get(party, 0) + 1
            else:
                ended = inside.leave(key, event.by)
                if ended is not None:
                    party = ended[3]
                    ways_in[party] -= 1
                    if not ways_in[party]:
                        del ways_in[party]

    def fold(self, events: Iterable[Event]) -> None:
        """Fold events, in (at, seq) order and none before the last second folded."""
        for second, moment in groupby(events, key=lambda e: _second(e.at)):
            self.apply(moment)
            count = len(self.ways_in)
            changes = self.changes
            if changes and changes[-1][0] == second:  # more of a second already folded
                before = changes[-2][1] if len(changes) > 1 else 0
                if count == before:
                    changes.pop()
                else:
                    changes[-1] = (second, count)
            elif count != (changes[-1][1] if changes else 0):
                changes.append((second, count))


LATE_WINDOW = dt.timedelta(minutes=3)  # Running's default: how late an event may come and be folded in place
# Running's default: how long the newest events wait before they are folded for good. Server processes
# commit side by side, so the log, read in the order it was written, is a little out of time order.
SETTLE = dt.timedelta(seconds=2)


class Running:
    """parties_present to the second, kept up to date as the log grows: each event folded about once.

    A dashboard that opens or resyncs wants the timeline so far, and a session's log grows by
    thousands of events an hour: folding it whole each time would cost more each time. This keeps
    the fold. Events may come late (the exit of a lapsed online presence is dated back to when it
    was last seen): those less than `window` older than the newest are folded again with the recent
    events after them; add() refuses older ones, and the caller starts over from the whole log.
    The events of the last `settle` before the newest are not folded yet but kept in time order, so
    that one a little late (written by another server process a moment after later ones) takes its
    place among them without folding the recent events again; points() folds them on a copy.

    points(start, end) equals parties_present() of the same events, in the order they happened but
    each at its whole second (tests/test_timeline.py): several events within a second make at most
    one point, the count after the last of them.
    """

    def __init__(self, window: dt.timedelta = LATE_WINDOW, settle: dt.timedelta = SETTLE) -> None:
        self.window = window
        self.settle = min(settle, window)
        self.events = 0  # how many were folded
        self.first: dt.datetime | None = None  # the earliest event's time
        self._horizon: dt.datetime | None = None  # a whole second: every event before it is in _base
        self._base = _Fold()
        self._recent: list[Event] = []  # the events from the horizon on, in (at, seq) order
        self._folded = 0  # how many of _recent are in _head; the others are settling
        self._head = _Fold()  # _base, then the first _folded of _recent

    def add(self, events: Iterable[Event]) -> bool:
        """Fold more events of the log; False (and nothing folded) if one is older than the window kept."""
        new = sorted(events, key=_order)
        if not new:
            return True
        if self._horizon is not None and new[0].at < self._horizon:
            return False
        self.events += len(new)
        self.first = min(self.first, new[0].at) if self.first else new[0].at
        if self._folded and _order(new[0]) < _order(self._recent[self._folded - 1]):
            # Late for what is folded: the recent events again, from the base.
            self._recent = list(heapq.merge(self._recent, new, key=_order))
            self._head, self._folded = self._base.copy(), 0
        elif not self._recent or _order(new[0]) >= _order(self._recent[-1]):
            self._recent.extend(new)
        else:  # among the settling events: in their place
            self._recent[self._folded :] = heapq.merge(self._recent[self._folded :], new, key=_order)
        newest = self._recent[-1].at
        settled = bisect.bisect_left(self._recent, newest - self.settle, lo=self._folded, key=lambda event: event.at)
        self._head.fold(self._recent[self._folded : settled])
        self._folded = settled
        horizon = _second(newest - self.window)
        if self._horizon is None or horizon > self._horizon:
            # Every event before the horizon is folded: settle is no longer than window.
            based = bisect.bisect_left(self._recent, horizon, hi=self._folded, key=lambda event: event.at)
            self._base.fold(self._recent[:based])
            del self._recent[:based]
            self._folded -= based
            self._horizon = horizon
        return True

    def points(self, start: dt.datetime, end: dt.datetime) -> list[Point]:
        """As parties_present(): the count at start, then each second it changed up to end, then end."""
        head = self._head
        if self._folded < len(self._recent):
            head = head.copy()
            head.fold(self._recent[self._folded :])
        changes = head.changes
        before = bisect.bisect_right(changes, start, key=lambda point: point[0])
        points: list[Point] = [(start, changes[before - 1][1] if before else 0)]
        for at, count in changes[before:]:
            if at > end:
                break
            points.append((at, count))
        if end > points[-1][0]:
            points.append((end, points[-1][1]))
        return points
