"""Presence as a fold over the attendance log."""

import datetime as dt

from meetings.presence import ENTRY, EXIT, Event, Interval, intervals, present

T0 = dt.datetime(2021, 11, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_entry_then_exit_is_one_interval():
    events = [Event(1, ENTRY, "online", at(0)), Event(1, EXIT, "online", at(30))]
    assert intervals(events) == [Interval(1, "online", at(0), at(30))]
    assert present(events) == {}


def test_still_inside_has_an_open_interval():
    events = [Event(1, ENTRY, "online", at(0)), Event(2, ENTRY, "online", at(5)), Event(2, EXIT, "online", at(9))]
    assert present(events) == {1: frozenset({"online"})}
    assert intervals(events)[0] == Interval(1, "online", at(0), None)


def test_repeated_entry_does_not_restart_presence_and_stray_exit_is_ignored():
    events = [
        Event(1, EXIT, "online", at(0)),
        Event(1, ENTRY, "online", at(1)),
        Event(1, ENTRY, "online", at(2)),
        Event(1, EXIT, "online", at(3)),
        Event(1, EXIT, "online", at(4)),
    ]
    assert intervals(events) == [Interval(1, "online", at(1), at(3))]


def test_re_entry_gives_a_second_interval():
    events = [
        Event(1, ENTRY, "in_person", at(0)),
        Event(1, EXIT, "in_person", at(10)),
        Event(1, ENTRY, "in_person", at(20)),
    ]
    assert intervals(events) == [
        Interval(1, "in_person", at(0), at(10)),
        Interval(1, "in_person", at(20), None),
    ]


def test_hybrid_presence_is_one_person_with_two_channels():
    events = [
        Event(1, ENTRY, "online", at(0)),
        Event(1, ENTRY, "in_person", at(5)),
        Event(1, EXIT, "online", at(6)),
    ]
    assert present(events) == {1: frozenset({"in_person"})}
    events.append(Event(1, ENTRY, "online", at(7)))
    assert present(events) == {1: frozenset({"in_person", "online"})}
