"""Presence: the one rule that turns the attendance log into stretches of presence, free of I/O.

Everything that shows or counts presence (the dashboard, its timeline, quorum records, statistics,
every export, and the presences table, which is a cache of this rule) follows these rules:

1. The log is read in the order (time, id): an exit dated back (the lapse of an online presence is
   written when the grace period has passed, dated at the last contact) takes its place by time.
2. Per participant and channel, an entry opens a stretch unless one is open: a repeated entry
   (a second tab, a second scan, a form sent twice) is not a second arrival.
3. An exit ends the open stretch at its time; an exit while outside changes nothing.
4. Who may end a stretch: a stretch opened or confirmed by a person (an officer by hand, a kiosk
   at the gate) is *held*: it lasts until a person (the delegate leaving, an officer, an exit
   gate) or the session's close ends it. A lapse, the server noticing that a delegate's pages
   went quiet, ends only a stretch that rests on the browser alone.
5. Stretches are half-open, [start, end): an exit and an entry at the same instant leave no dip,
   and a stretch of no length counts at no instant.
6. A stretch still open when a session closes ends at the close (its closing exits say so); one
   still open in an open session is open now.

A person is present while any of their stretches is open; a Party is present while any of its
counted delegates (approved, of the Party's delegation) is. The channels and sources are the
attendance log's values (meetings.models.Channel and Source), with the server's own exits told
apart by why it wrote them: `close` or `lapse` (actor()).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

ENTRY = "entry"
EXIT = "exit"

ONLINE = "online"
IN_PERSON = "in_person"

# Who logged an event (the actor): the delegate's browser, a gate kiosk, an officer by hand, or the
# server itself at the session's close or at the lapse of an online presence.
BROWSER = "browser"
KIOSK = "kiosk"
OFFICER = "officer"
CLOSE = "close"
LAPSE = "lapse"
ACTORS = (BROWSER, KIOSK, OFFICER, CLOSE, LAPSE)
# The people whose entry holds a presence until a person ends it (rule 4).
PERSONS = frozenset({KIOSK, OFFICER})

# The nonces of the server's own exits begin with these (meetings.services.system_nonce).
CLOSE_NONCE = "closed:"
LAPSE_NONCE = "lapsed:"


def actor(source: str, nonce: str) -> str:
    """Who logged an event, from its source and nonce: the server's exits are `close` or `lapse` by their nonce."""
    if source != "system":
        return source
    return LAPSE if nonce.startswith(LAPSE_NONCE) else CLOSE


@dataclass(frozen=True, slots=True)
class Event:
    """One entry or exit of a participant through one channel, as logged.

    `at` is any ordered time (an aware datetime, or integer microseconds); `seq` (the log's id)
    orders events of one instant as they were written; `party` is the Party the event was logged
    for, if it counts for one.
    """

    participant: Hashable
    kind: str
    channel: str
    at: Any
    by: str = BROWSER
    seq: int = 0
    party: Hashable | None = None


@dataclass(frozen=True, slots=True)
class Stretch:
    """A stretch of presence through one channel: end and ended_by are None while it is open."""

    participant: Hashable
    channel: str
    party: Hashable | None
    start: Any
    end: Any | None
    started_by: str
    ended_by: str | None
    held: bool


class Inside:
    """Who is inside, event by event: the rule's one implementation (rules 2 to 4).

    Keys are whatever identifies a participant's channel ((participant, channel), or an integer the
    caller packs); `open` maps each key inside to (start, started_by, held, party). enter() and
    leave() are the rule; apply() takes an event's kind and says what changed.
    """

    __slots__ = ("open",)

    def __init__(self, open_: dict | None = None) -> None:
        self.open: dict[Hashable, tuple[Any, str, bool, Hashable | None]] = open_ or {}

    def copy(self) -> Inside:
        return Inside(dict(self.open))

    def enter(self, key: Hashable, at: Any, by: str, party: Hashable | None = None) -> bool:
        """An entry: whether it opened a stretch. A person's entry while inside holds the stretch (rule 4)."""
        current = self.open.get(key)
        if current is None:
            self.open[key] = (at, by, by in PERSONS, party)
            return True
        if by in PERSONS and not current[2]:
            self.open[key] = (current[0], current[1], True, current[3])
        return False

    def leave(self, key: Hashable, by: str) -> tuple[Any, str, bool, Hashable | None] | None:
        """An exit: the stretch it ended, or None (outside already, or a lapse on a held stretch)."""
        current = self.open.get(key)
        if current is None or (by == LAPSE and current[2]):
            return None
        del self.open[key]
        return current

    def apply(self, key: Hashable, kind: str, at: Any, by: str, party: Hashable | None = None) -> object:
        """OPENED when the event opens a stretch, the stretch it ends, or None when it changes nothing."""
        if kind == ENTRY:
            return OPENED if self.enter(key, at, by, party) else None
        return self.leave(key, by)


OPENED = object()


def _order(event: Event) -> tuple:
    return (event.at, event.seq)


def stretches(events: Iterable[Event], end: Any | None = None) -> list[Stretch]:
    """The stretches of presence the events make, in (start, participant, channel) order.

    Events are folded in (at, seq) order whatever order they come in; with `end`, events after it
    are left out and stretches still open stay open (end None): the caller decides what an open
    stretch means (the session's close, or now).
    """
    inside = Inside()
    done: list[Stretch] = []
    for event in sorted(events, key=_order):
        if end is not None and event.at > end:
            break
        key = (event.participant, event.channel)
        changed = inside.apply(key, event.kind, event.at, event.by, event.party)
        if changed is None or changed is OPENED:
            continue
        start, started_by, held, party = changed
        done.append(Stretch(event.participant, event.channel, party, start, event.at, started_by, event.by, held))
    for (participant, channel), (start, started_by, held, party) in inside.open.items():
        done.append(Stretch(participant, channel, party, start, None, started_by, None, held))
    done.sort(key=lambda s: (s.start, str(s.participant), s.channel))
    return done


def present(events: Iterable[Event]) -> dict[Hashable, frozenset[str]]:
    """Participants inside after the events, each with the channels they are present through."""
    channels: dict[Hashable, set[str]] = {}
    for stretch in stretches(events):
        if stretch.end is None:
            channels.setdefault(stretch.participant, set()).add(stretch.channel)
    return {participant: frozenset(chs) for participant, chs in channels.items()}


def open_stretches(events: Iterable[Event]) -> dict[tuple[Hashable, str], Stretch]:
    """The stretches open after the events, by (participant, channel): what the presences table caches."""
    return {(s.participant, s.channel): s for s in stretches(events) if s.end is None}


def count_at(spans: Iterable[tuple[Hashable, Any, Any | None]], moment: Any) -> int:
    """How many distinct keys are inside at the moment, given (key, start, end) with end None for open.

    Half-open stretches (rule 5): inside at `moment` when start <= moment < end.
    """
    return len({key for key, start, end in spans if start <= moment and (end is None or moment < end)})
