"""The number of Parties present over a session, folded from the attendance log, free of I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from itertools import groupby

ENTRY = "entry"
EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry or exit of a participant representing a Party (or None) through one channel.

    `seq` breaks ties between events logged at the same moment: the log's id, so that the fold
    follows the order in which they were written.
    """

    participant: Hashable
    party: Hashable | None
    kind: str
    channel: str
    at: dt.datetime
    seq: int = 0


Point = tuple[dt.datetime, int]


def parties_present(events: Iterable[Event], start: dt.datetime, end: dt.datetime) -> list[Point]:
    """Step points (time, Parties present from then on) from start to end.

    The log is folded in (at, seq) order whatever order the events come in: an online presence
    that lapsed is ended by an exit dated back to its last moment seen, written after later
    events. A participant is inside through each channel between an entry and an exit (a second
    entry through the same channel, or an exit while outside, changes nothing, as in
    presence.intervals); a Party is present while any of its delegates is inside through any
    channel. Events with no Party (observers) do not count.

    The first point is at start, with the count after every event up to and including start;
    then one point per moment the count changed (several events at one moment make one point,
    so an exit and an entry at the same instant leave no dip); the last point is at end.
    Events after end are left out.
    """
    inside: dict[tuple[Hashable, str], Hashable] = {}
    ways_in: dict[Hashable, int] = {}
    points: list[Point] = [(start, 0)]
    for at, moment in groupby(sorted(events, key=lambda e: (e.at, e.seq)), key=lambda e: e.at):
        if at > end:
            break
        for event in moment:
            if event.party is None:
                continue
            key = (event.participant, event.channel)
            if event.kind == ENTRY and key not in inside:
                inside[key] = event.party
                ways_in[event.party] = ways_in.get(event.party, 0) + 1
            elif event.kind == EXIT and key in inside:
                party = inside.pop(key)
                ways_in[party] -= 1
                if not ways_in[party]:
                    del ways_in[party]
        count = len(ways_in)
        if at <= start:
            points[0] = (start, count)
        elif count != points[-1][1]:
            points.append((at, count))
    if end > points[-1][0]:
        points.append((end, points[-1][1]))
    return points
