"""The presence rule (meetings.presence): how the attendance log becomes stretches of presence."""

import datetime as dt

from meetings.presence import (
    BROWSER,
    CLOSE,
    ENTRY,
    EXIT,
    KIOSK,
    LAPSE,
    OFFICER,
    Event,
    Stretch,
    actor,
    count_at,
    open_stretches,
    present,
    stretches,
)

T0 = dt.datetime(2021, 11, 1, 12, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_entry_then_exit_is_one_stretch_with_who_opened_and_ended_it():
    events = [Event(1, ENTRY, "online", at(0)), Event(1, EXIT, "online", at(30))]
    assert stretches(events) == [Stretch(1, "online", None, at(0), at(30), BROWSER, BROWSER, False)]
    assert present(events) == {}


def test_still_inside_has_an_open_stretch():
    events = [Event(1, ENTRY, "online", at(0)), Event(2, ENTRY, "online", at(5)), Event(2, EXIT, "online", at(9))]
    assert present(events) == {1: frozenset({"online"})}
    assert stretches(events)[0] == Stretch(1, "online", None, at(0), None, BROWSER, None, False)
    assert set(open_stretches(events)) == {(1, "online")}


def test_repeated_entry_does_not_restart_presence_and_stray_exit_is_ignored():
    events = [
        Event(1, EXIT, "online", at(0)),
        Event(1, ENTRY, "online", at(1)),
        Event(1, ENTRY, "online", at(2)),
        Event(1, EXIT, "online", at(3)),
        Event(1, EXIT, "online", at(4)),
    ]
    assert [(s.start, s.end) for s in stretches(events)] == [(at(1), at(3))]


def test_re_entry_gives_a_second_stretch():
    events = [
        Event(1, ENTRY, "in_person", at(0), KIOSK),
        Event(1, EXIT, "in_person", at(10), KIOSK),
        Event(1, ENTRY, "in_person", at(20), KIOSK),
    ]
    assert [(s.start, s.end) for s in stretches(events)] == [(at(0), at(10)), (at(20), None)]


def test_hybrid_presence_is_one_person_with_two_channels():
    events = [
        Event(1, ENTRY, "online", at(0)),
        Event(1, ENTRY, "in_person", at(5), KIOSK),
        Event(1, EXIT, "online", at(6)),
    ]
    assert present(events) == {1: frozenset({"in_person"})}
    events.append(Event(1, ENTRY, "online", at(7)))
    assert present(events) == {1: frozenset({"in_person", "online"})}


def test_the_log_is_read_by_time_then_by_id_so_an_exit_dated_back_takes_its_place():
    # The lapse is written after the delegate's later entry through the gate, dated at the last contact.
    events = [
        Event(1, ENTRY, "online", at(0), BROWSER, seq=1),
        Event(1, ENTRY, "in_person", at(5), KIOSK, seq=2),
        Event(1, EXIT, "online", at(3), LAPSE, seq=3),
    ]
    assert [(s.channel, s.start, s.end, s.ended_by) for s in stretches(events)] == [
        ("online", at(0), at(3), LAPSE),
        ("in_person", at(5), None, None),
    ]


def test_an_officers_check_in_online_is_held_and_no_lapse_ends_it():
    events = [
        Event(1, ENTRY, "online", at(0), OFFICER, seq=1),
        Event(1, EXIT, "online", at(0), LAPSE, seq=2),  # a sweep that took it for a browser's presence
        Event(1, EXIT, "online", at(2), OFFICER, seq=3),
    ]
    assert stretches(events) == [Stretch(1, "online", None, at(0), at(2), OFFICER, OFFICER, True)]


def test_a_person_confirming_a_browser_presence_holds_it_from_then_on():
    events = [
        Event(1, ENTRY, "online", at(0), BROWSER, seq=1),
        Event(1, ENTRY, "online", at(1), OFFICER, seq=2),
        Event(1, EXIT, "online", at(1.5), LAPSE, seq=3),
    ]
    (stretch,) = stretches(events)
    assert (stretch.start, stretch.started_by, stretch.held, stretch.end) == (at(0), BROWSER, True, None)
    # The session's close still ends it, as does the delegate leaving.
    closed = stretches([*events, Event(1, EXIT, "online", at(9), CLOSE, seq=4)])
    assert (closed[0].end, closed[0].ended_by) == (at(9), CLOSE)


def test_a_lapse_ends_a_presence_resting_on_the_browser_at_its_date():
    events = [Event(1, ENTRY, "online", at(0), seq=1), Event(1, EXIT, "online", at(4), LAPSE, seq=2)]
    assert [(s.end, s.ended_by, s.held) for s in stretches(events)] == [(at(4), LAPSE, False)]


def test_an_exit_and_an_entry_at_the_same_instant_leave_no_dip():
    events = [
        Event(1, ENTRY, "in_person", at(0), KIOSK, seq=1, party="CHE"),
        Event(1, EXIT, "in_person", at(5), KIOSK, seq=2, party="CHE"),
        Event(1, ENTRY, "in_person", at(5), KIOSK, seq=3, party="CHE"),
    ]
    spans = [(s.party, s.start, s.end) for s in stretches(events)]
    assert [count_at(spans, at(minute)) for minute in (0, 4.99, 5, 6)] == [1, 1, 1, 1]
    # Half-open: a stretch counts from its start, not at its end.
    assert count_at([("CHE", at(0), at(5))], at(5)) == 0
    assert count_at([("CHE", at(5), at(5))], at(5)) == 0


def test_events_after_the_end_are_left_out_and_what_is_open_stays_open():
    events = [Event(1, ENTRY, "online", at(0)), Event(1, EXIT, "online", at(10))]
    assert [(s.start, s.end) for s in stretches(events, end=at(5))] == [(at(0), None)]


def test_the_stretch_keeps_the_party_it_was_opened_for():
    events = [Event(1, ENTRY, "online", at(0), party="CHE"), Event(1, EXIT, "online", at(1), party="CHE")]
    assert stretches(events)[0].party == "CHE"


def test_the_server_s_exits_are_told_apart_by_their_nonce():
    assert actor("browser", "abc") == BROWSER
    assert actor("kiosk", "abc") == KIOSK
    assert actor("system", "lapsed:1:2") == LAPSE
    assert actor("system", "closed:1:2") == CLOSE
