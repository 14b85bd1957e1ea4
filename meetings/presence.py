"""Presence derived from the attendance log: a fold over entries and exits, free of I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

ENTRY = "entry"
EXIT = "exit"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry or exit of a participant through one channel."""

    participant: Hashable
    kind: str
    channel: str
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch of presence through one channel; end is None while the participant is still inside."""

    participant: Hashable
    channel: str
    start: dt.datetime
    end: dt.datetime | None


def intervals(events: Iterable[Event]) -> list[Interval]:
    """Presence intervals, given events in time order.

    An entry while already inside through that channel, or an exit while outside, changes
    nothing: a repeated check-in is not a second arrival.
    """
    inside: dict[tuple[Hashable, str], dt.datetime] = {}
    done: list[Interval] = []
    for event in events:
        key = (event.participant, event.channel)
        if event.kind == ENTRY:
            inside.setdefault(key, event.at)
        elif event.kind == EXIT and key in inside:
            done.append(Interval(event.participant, event.channel, inside.pop(key), event.at))
    done.extend(Interval(participant, channel, start, None) for (participant, channel), start in inside.items())
    done.sort(
        key=lambda interval: (
            interval.start,
            str(interval.participant),
            interval.channel,
        )
    )
    return done


def present(events: Iterable[Event]) -> dict[Hashable, frozenset[str]]:
    """Participants inside after the events, each with the channels they are present through."""
    channels: dict[Hashable, set[str]] = {}
    for interval in intervals(events):
        if interval.end is None:
            channels.setdefault(interval.participant, set()).add(interval.channel)
    return {participant: frozenset(chs) for participant, chs in channels.items()}
