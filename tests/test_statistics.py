"""Attendance and quorum statistics: the fold with plain values, then whole reports on small fixed logs
whose figures are worked out by hand in the comments, and the benchmark's quick mode."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from auth.models import Gender, Role
from meetings import presence, services, statistics
from meetings.models import (
    AttendanceEvent,
    Category,
    Channel,
    Convention,
    EventKind,
    Function,
    Meeting,
    MeetingSession,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
    Segment,
    SegmentKind,
    SessionKind,
    SessionState,
    Source,
)

ROOT = Path(__file__).resolve().parent.parent
MIN = 60 * statistics.US


# The fold, with plain values ----------------------------------------------------------------------


def row(
    minute: float, user: int, kind: str, channel: str = "online", party: int | None = None, by: str | None = None
) -> tuple:
    code = user * 4 + (2 if channel == "in_person" else 0) + (1 if kind == "entry" else 0)
    by = by or ("kiosk" if channel == "in_person" else "browser")
    return (round(minute * MIN), code, party, by)


@pytest.mark.parametrize(
    ("rows", "end", "present", "time", "peak"),
    [
        pytest.param([], 60, {}, {}, (0, None), id="nobody came"),
        pytest.param(
            [row(0, 1, "entry"), row(10, 1, "exit"), row(20, 1, "entry")],
            60,
            {1: 1},
            {1: 10 + 40},
            (1, 0),
            id="re-entry: the second stretch is still open and ends at the end",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(5, 1, "entry"), row(10, 1, "exit"), row(15, 1, "exit")],
            60,
            {1: 1},
            {1: 10},
            (1, 0),
            id="an entry while inside and an exit while outside change nothing",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(10, 1, "entry", "in_person"), row(20, 1, "exit"), row(30, 1, "exit", "in_person")],
            60,
            {1: 3},
            {1: 30},
            (1, 0),
            id="hybrid: inside through both channels at once is one person, present from 0 to 30",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(10, 1, "exit"), row(10, 2, "entry"), row(20, 2, "exit")],
            60,
            {1: 1, 2: 1},
            {1: 10, 2: 10},
            (1, 0),
            id="an exit and an entry at the same instant: no spike to two",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(0, 2, "entry"), row(10, 1, "exit"), row(10, 3, "entry"), row(30, 3, "exit")],
            60,
            {1: 1, 2: 1, 3: 1},
            {1: 10, 2: 60, 3: 20},
            (2, 0),
            id="several events at one moment count together",
        ),
        pytest.param(
            [row(0, 1, "entry", by="officer"), row(0, 1, "exit", by="lapse"), row(30, 1, "exit", by="officer")],
            60,
            {1: 1},
            {1: 30},
            (1, 0),
            id="an officer's check-in online is held: a lapse does not end it, the officer's exit does",
        ),
        pytest.param(
            [
                row(0, 1, "entry"),
                row(5, 1, "entry", by="officer"),
                row(6, 1, "exit", by="lapse"),
                row(50, 1, "exit", by="close"),
            ],
            60,
            {1: 1},
            {1: 50},
            (1, 0),
            id="a browser's presence confirmed by an officer is held from then on, until the close",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(4, 1, "exit", by="lapse"), row(9, 1, "entry")],
            10,
            {1: 1},
            {1: 4 + 1},
            (1, 0),
            id="a lapse ends a presence resting on the browser alone",
        ),
    ],
)
def test_fold(rows, end, present, time, peak):
    folded = statistics.fold(rows, end * MIN, counted=set())
    assert folded.present == present
    assert {user: spent / MIN for user, spent in folded.time.items()} == time
    assert (folded.peak, folded.peak_at / MIN if folded.peak_at is not None else None) == peak
    assert folded.events == len(rows)


def test_fold_counts_a_party_while_any_counted_delegate_is_inside():
    rows = [
        row(0, 1, "entry", party=7),
        row(5, 2, "entry", party=7),
        row(10, 1, "exit", party=7),
        row(20, 2, "exit", party=7),
        row(30, 3, "entry", party=8),  # not counted: not an approved Party delegate
        row(40, 3, "exit", party=8),
    ]
    folded = statistics.fold(rows, 60 * MIN, counted={1, 2})
    assert folded.parties == [(7, 0, 20 * MIN)]


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param([(1, 0, 10), (2, 5, 15)], [(0, 1), (5, 2), (10, 1), (15, 0)], id="overlap"),
        pytest.param([(1, 0, 10), (1, 5, 15)], [(0, 1), (15, 0)], id="one key in two places at once counts once"),
        pytest.param([(1, 0, 10), (2, 10, 20)], [(0, 1), (20, 0)], id="a handover at one instant leaves no dip"),
        pytest.param([(1, 5, 5), (2, 0, 10)], [(0, 1), (10, 0)], id="a zero-length stretch counts for nothing"),
    ],
)
def test_steps(spans, expected):
    assert statistics.span_steps(spans) == expected
    keys = [key for key, _, _ in spans]
    assert statistics.sweep_peak(keys, [s for _, s, _ in spans], [e for _, _, e in spans]) == statistics.peak_of(
        expected
    )


def test_threshold_first_reached_and_time_held():
    points = [(0, 1), (20, 2), (45, 3), (50, 2), (90, 1), (120, 0)]
    assert statistics.threshold(points, 2, 120) == (20, 70)
    assert statistics.threshold(points, 3, 120) == (45, 5)
    assert statistics.threshold(points, 4, 120) == (None, 0)
    # Held up to the end, not beyond.
    assert statistics.threshold(points, 1, 100) == (0, 100)


def test_median_and_durations():
    assert statistics.median([]) is None
    assert statistics.median([40, 45, 50, 90, 110, 120]) == 70
    assert statistics.median([3, 1, 2]) == 2
    assert statistics.hms(3 * 3600 + 5 * 60 + 7) == "3:05:07"
    assert statistics.hms(100 * 3600) == "100:00:00"


def minutes_of(folded) -> dict:
    return {user: spent / MIN for user, spent in folded.time.items()}


@pytest.mark.parametrize(
    ("rows", "time", "peak"),
    [
        pytest.param(
            [row(0, 1, "entry"), row(10, 1, "exit"), row(10, 1, "entry")],
            {1: 60},
            (1, 0),
            id="inside, exit then entry at one instant: still inside, no dip (0-10 and 10-60)",
        ),
        pytest.param(
            [row(0, 1, "entry"), row(10, 1, "entry"), row(10, 1, "exit")],
            {1: 10},
            (1, 0),
            id="inside, entry then exit at one instant: the entry changes nothing, the exit ends at 10",
        ),
        pytest.param(
            [row(10, 1, "exit"), row(10, 1, "entry")],
            {1: 50},
            (1, 10),
            id="outside, exit then entry at one instant: the exit changes nothing, inside from 10 to 60",
        ),
        pytest.param(
            [row(10, 1, "entry"), row(10, 1, "exit")],
            {1: 0},
            (0, None),
            id="outside, entry then exit at one instant: present for no time, never counted inside",
        ),
    ],
)
def test_fold_takes_events_of_one_instant_in_the_order_they_were_logged(rows, time, peak):
    # End 60. Events at one instant are applied in log (id) order; the count is read after all of them.
    folded = statistics.fold(rows, 60 * MIN, counted=set())
    assert folded.present == {1: 1}
    assert minutes_of(folded) == time
    assert (folded.peak, folded.peak_at / MIN if folded.peak_at is not None else None) == peak


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(
            [row(0, 1, "entry", party=7), row(30, 1, "exit", party=7), row(30, 1, "entry", "in_person", party=7)],
            id="the online exit logged first",
        ),
        pytest.param(
            [row(0, 1, "entry", party=7), row(30, 1, "entry", "in_person", party=7), row(30, 1, "exit", party=7)],
            id="the entry in the room logged first",
        ),
    ],
)
def test_fold_a_delegate_switching_channel_at_one_instant_leaves_no_gap(rows):
    # Online 0-30, then in the room from 30 to the end (60): one person present 0-60 through both
    # channels, the Party present 0-60 without a dip, whichever event of the switch was logged first.
    folded = statistics.fold(rows, 60 * MIN, counted={1})
    assert folded.present == {1: statistics.ONLINE_BIT | statistics.IN_PERSON_BIT}
    assert minutes_of(folded) == {1: 60}
    assert (folded.peak, folded.peak_at) == (1, 0)
    assert (folded.first, folded.last) == (0, 60 * MIN)
    assert statistics.span_steps(folded.parties) == [(0, 1), (60 * MIN, 0)]


def test_fold_ends_presence_still_open_at_the_end_once_per_person():
    # End 50. 1: online from 0 and in the room from 10, both still open: one stretch 0-50, not 50 + 40.
    # 2: in the room from 20, open: 20-50. 3: online 5-15 only. Inside at once: 1 and 3 at 5 (2), then
    # 1 and 2 from 20 (2): the peak is 2, first at 5. Party 8 (delegate 2, counted) present 20-50.
    rows = [
        row(0, 1, "entry"),
        row(5, 3, "entry"),
        row(10, 1, "entry", "in_person"),
        row(15, 3, "exit"),
        row(20, 2, "entry", "in_person", party=8),
    ]
    folded = statistics.fold(rows, 50 * MIN, counted={2})
    assert folded.present == {1: 3, 2: 2, 3: 1}
    assert minutes_of(folded) == {1: 50, 2: 30, 3: 10}
    assert (folded.peak, folded.peak_at) == (2, 5 * MIN)
    assert sorted(zip(folded.spans[0::3], folded.spans[1::3], folded.spans[2::3], strict=True)) == [
        (1, 0, 50 * MIN),
        (2, 20 * MIN, 50 * MIN),
        (3, 5 * MIN, 15 * MIN),
    ]
    assert folded.parties == [(8, 20 * MIN, 50 * MIN)]
    assert (folded.first, folded.last, folded.events) == (0, 50 * MIN, 5)


def test_fold_a_counted_delegate_through_both_channels_keeps_the_party_until_the_last_exit():
    # Delegate 1 (Party 7): online 0-30, in the room 10-40 (overlap); delegate 2 (Party 7) 35-50.
    # Party 7 is present from 0 to 50 without a dip; an uncounted delegate 3 of Party 9 adds nothing.
    rows = [
        row(0, 1, "entry", party=7),
        row(10, 1, "entry", "in_person", party=7),
        row(12, 3, "entry", party=9),
        row(30, 1, "exit", party=7),
        row(35, 2, "entry", party=7),
        row(40, 1, "exit", "in_person", party=7),
        row(50, 2, "exit", party=7),
    ]
    folded = statistics.fold(rows, 60 * MIN, counted={1, 2})
    assert statistics.span_steps(folded.parties) == [(0, 1), (50 * MIN, 0)]
    assert {party for party, _, _ in folded.parties} == {7}
    assert minutes_of(folded) == {1: 40, 2: 15, 3: 48}


def test_fold_a_missing_closing_exit_counts_like_the_closing_exit():
    # A session closed at 60: 1 inside from 0; 2 entered at 60, the instant of the close. Closing writes an
    # exit for both at 60; "if one is missing, the presence ends at the close anyway" (docs/statistics.md).
    # With the exits, 2 was never inside for any time: the peak is 1, at 0. Without them it must be the same.
    with_exits = [row(0, 1, "entry"), row(60, 2, "entry"), row(60, 1, "exit"), row(60, 2, "exit")]
    without = [row(0, 1, "entry"), row(60, 2, "entry")]
    for rows in (with_exits, without):
        folded = statistics.fold(rows, 60 * MIN, counted=set())
        assert (folded.peak, folded.peak_at) == (1, 0)
        # The category views take the peak from the stretches: they must agree with the fold.
        spans = folded.spans
        assert statistics.sweep_peak(spans[0::3], spans[1::3], spans[2::3]) == (folded.peak, folded.peak_at)


def test_median_of_an_even_count_is_rounded_once_to_the_second():
    # The mean of 0 and 999,999 microseconds is 0.4999995 s: rounded to the second, 0 (docs/statistics.md).
    assert statistics.seconds(statistics.median([0, 999_999])) == 0
    # The mean of 1 s and 2 s is 1.5 s: half a second is rounded up, as every duration (seconds()).
    assert statistics.seconds(statistics.median([1_000_000, 2_000_000])) == 2


# A small meeting, its log written event by event ------------------------------------------------

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)  # sessions A and B, hybrid segment
C0 = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)  # session C, online segment
NOW = T0 + dt.timedelta(minutes=150)


def at(minutes: float, base: dt.datetime = T0) -> dt.datetime:
    return base + dt.timedelta(minutes=minutes)


@dataclass
class Small:
    meeting: Meeting
    online: Segment  # S2, 1 November: session C
    hybrid: Segment  # S1, 2 November: sessions A and B
    a: MeetingSession
    b: MeetingSession
    c: MeetingSession
    people: dict
    registrations: dict


def _log(db, small: Small, meeting_session: MeetingSession, base: dt.datetime, entries) -> None:
    """Append events in the order given (that is the order of their ids), at the minutes given."""
    for minutes, who, kind, channel in entries:
        registration = small.registrations[who]
        db.add(
            AttendanceEvent(
                session_id=meeting_session.id,
                user_id=registration.user_id,
                registration_id=registration.id,
                party_id=registration.party_id if registration.category == Category.PARTY else None,
                kind=EventKind(kind),
                channel=Channel(channel),
                source=Source.SYSTEM,
                at=at(minutes, base),
                nonce=f"n-{meeting_session.id}-{who}-{kind}-{minutes}-{channel}",
            )
        )
        db.flush()
    db.commit()


@pytest.fixture
def small(db, make_user) -> Small:
    """Parties AAA, BBB, CCC in force, DDD not yet; seven approved participants and three others.

    Session A (hybrid segment, closed 0-120), B (hybrid segment, open since 100, still open at 150)
    and C (online segment, the day before, closed 0-60). The log of each is in the comments below.
    """
    parties = {
        code: Party(
            convention=Convention.BASEL,
            code=code,
            name=f"Party {code}",
            regional_group=group,
            entry_into_force_on=dt.date(2030, 1, 1) if code == "DDD" else dt.date(2004, 5, 5),
        )
        for code, group in (
            ("AAA", RegionalGroup.AFRICAN),
            ("BBB", RegionalGroup.WEOG),
            ("CCC", RegionalGroup.GRULAC),
            ("DDD", RegionalGroup.ASIA_PACIFIC),
        )
    }
    meeting = Meeting(code="TEST-1", title="Test meeting", convention=Convention.BASEL, timezone="Europe/Zurich")
    online = Segment(
        name="online segment",
        kind=SegmentKind.ONLINE,
        starts_on=C0.date(),
        ends_on=C0.date(),
        venue="Online",
        timezone="Europe/Zurich",
    )
    hybrid = Segment(
        name="hybrid segment",
        kind=SegmentKind.HYBRID,
        starts_on=T0.date(),
        ends_on=T0.date(),
        venue="Geneva",
        timezone="Europe/Zurich",
    )
    a = MeetingSession(
        title="Session A",
        kind=SessionKind.PLENARY,
        scheduled_start_at=T0,
        scheduled_end_at=at(120),
        state=SessionState.CLOSED,
        opened_at=T0,
        closed_at=at(120),
    )
    b = MeetingSession(
        title="Session B",
        kind=SessionKind.CONTACT_GROUP,
        scheduled_start_at=at(100),
        scheduled_end_at=at(200),
        state=SessionState.OPEN,
        opened_at=at(100),
    )
    c = MeetingSession(
        title="Session C",
        kind=SessionKind.PLENARY,
        scheduled_start_at=C0,
        scheduled_end_at=at(60, C0),
        state=SessionState.CLOSED,
        opened_at=C0,
        closed_at=at(60, C0),
    )
    hybrid.sessions = [a, b]
    online.sessions = [c]
    meeting.segments = [online, hybrid]
    db.add_all([*parties.values(), meeting])
    db.flush()

    # name: gender, category, Party, status, segments
    plan = {
        "ana": (Gender.FEMALE, Category.PARTY, "AAA", RegistrationStatus.APPROVED, [hybrid]),
        "ben": (Gender.MALE, Category.PARTY, "AAA", RegistrationStatus.APPROVED, [hybrid]),
        "cai": (Gender.MALE, Category.PARTY, "BBB", RegistrationStatus.APPROVED, [hybrid]),
        "dee": (Gender.FEMALE, Category.PARTY, "CCC", RegistrationStatus.APPROVED, [hybrid, online]),
        "eve": (Gender.UNDISCLOSED, Category.PARTY, "DDD", RegistrationStatus.APPROVED, [hybrid]),
        "obs": (Gender.OTHER, Category.NGO, None, RegistrationStatus.APPROVED, [hybrid]),
        "fay": (Gender.FEMALE, Category.PARTY, "CCC", RegistrationStatus.APPROVED, [online]),
        "pen": (Gender.MALE, Category.PARTY, "BBB", RegistrationStatus.PENDING, [hybrid]),
        "rej": (Gender.FEMALE, Category.IGO, None, RegistrationStatus.REJECTED, [online]),
        "wit": (Gender.MALE, Category.PARTY, "AAA", RegistrationStatus.WITHDRAWN, [hybrid, online]),
    }
    people, registrations = {}, {}
    for name, (gender, category, party, status, segments) in plan.items():
        user, _ = make_user(email=f"{name}@example.org")
        user.given_name, user.family_name, user.gender = name.capitalize(), "Example", gender
        registration = Registration(
            meeting=meeting,
            user=user,
            category=category,
            party=parties[party] if party else None,
            organization=None if party else "An organization",
            function=Function.HEAD,
            status=status,
            segments=segments,
        )
        db.add(registration)
        db.flush()
        people[name], registrations[name] = user, registration
    db.commit()
    setup = Small(meeting, online, hybrid, a, b, c, people, registrations)

    _log(
        db,
        setup,
        a,
        T0,
        [
            (0, "eve", "entry", "in_person"),
            (0, "ana", "entry", "online"),
            (5, "obs", "entry", "online"),
            (10, "ben", "entry", "in_person"),
            (20, "cai", "entry", "online"),
            (30, "ana", "exit", "online"),
            (35, "cai", "entry", "in_person"),  # hybrid: online and in the room from 35 to 40
            (45, "dee", "entry", "online"),
            (50, "ben", "exit", "in_person"),
            (50, "dee", "entry", "online"),  # a second tab: already inside
            (60, "ana", "entry", "online"),  # re-entry
            (70, "cai", "exit", "in_person"),
            (90, "dee", "exit", "online"),
            (95, "dee", "exit", "online"),  # already outside
            (115, "obs", "exit", "online"),
            (120, "ana", "exit", "online"),  # the close checks out everyone inside
            (120, "eve", "exit", "in_person"),
            (40, "cai", "exit", "online"),  # lapsed at 40, logged last
        ],
    )
    _log(
        db,
        setup,
        b,
        T0,
        [
            (100, "ana", "entry", "online"),  # also inside A until 120: one person
            (100, "ben", "entry", "in_person"),
            (100, "cai", "entry", "online"),
            (110, "cai", "exit", "online"),
            (130, "ben", "exit", "in_person"),
        ],
    )
    _log(
        db,
        setup,
        c,
        C0,
        [
            (0, "dee", "entry", "online"),
            (10, "fay", "entry", "online"),
            (20, "fay", "exit", "online"),
            (60, "dee", "exit", "online"),
        ],
    )
    return setup


def overview(report) -> dict[str, str]:
    return dict(table(report, "overview").rows)


def table(report, key: str):
    return next(t for t in report.tables if t.key == key)


def rows_by(report, key: str) -> dict:
    """A table's rows by their first cell, as dicts of column key -> value."""
    t = table(report, key)
    return {r[0]: dict(zip((c.key for c in t.columns), r, strict=True)) for r in t.rows}


def minutes(seconds: int | None) -> float | None:
    return None if seconds is None else seconds / 60


def test_a_closed_session_with_overlaps_re_entries_hybrid_presence_and_a_late_lapse(db, small):
    report = statistics.report(db, small.meeting, session_id=small.a.id, now=NOW)
    assert (report.meeting_code, report.scope, report.filters, report.timezone) == (
        "TEST-1",
        "Session A",
        {},
        "Europe/Zurich",
    )
    assert report.produced_at == NOW
    figures = overview(report)
    # ana 0-30 and 60-120, ben 10-50, cai 20-70 (online 20-40, in the room 35-70), dee 45-90, obs 5-115, eve 0-120.
    assert figures["Participants present"] == "6"
    # Everyone approved and registered for the hybrid segment except pen (pending) and wit (withdrawn).
    assert figures["Participants registered (approved)"] == "6"
    # Inside at 20: eve, ana, obs, ben, cai. Never more than five at once.
    assert figures["Peak concurrent participants"] == "5"
    assert figures["Peak concurrent participants reached at"] == "2026-11-02 10:20:00 CET"
    # AAA, BBB, CCC and DDD (in force or not) each had a delegate inside; all four at 45.
    assert figures["Parties present at some time"] == "4"
    assert figures["Peak concurrent Parties"] == "4"
    assert figures["Peak concurrent Parties reached at"] == "2026-11-02 10:45:00 CET"
    # 90 + 40 + 50 + 45 + 110 + 120 minutes; median of 40, 45, 50, 90, 110, 120.
    assert figures["Total time attended"] == statistics.hms(455 * 60)
    assert figures["Median time attended per participant present"] == "1:10:00"
    # Quorum: three Parties in force (DDD is not): one to open, two to decide.
    assert figures["Parties in force on the session's date"] == "3"
    assert figures["Parties needed to open / to decide"] == "1 / 2"

    (session,) = rows_by(report, "sessions").values()
    assert session["participants"] == 6 and session["parties"] == 4
    assert (session["peak_participants"], session["peak_participants_at"]) == (5, at(20))
    assert (session["peak_parties"], session["peak_parties_at"]) == (4, at(45))
    # In force present: 1 from 0, 2 from 20, 3 from 45, 2 from 50, 3 from 60, 2 from 70, 1 from 90, 0 at 120.
    assert (session["open_first_reached"], minutes(session["open_held"])) == (at(0), 120)
    assert (session["decide_first_reached"], minutes(session["decide_held"])) == (at(20), 70)
    assert session["state"] == "closed"

    channels = rows_by(report, "by_channel")
    assert {label: r["present"] for label, r in channels.items()} == {
        "Online only": 3,  # ana, dee, obs
        "In the room only": 2,  # ben, eve
        "Both": 1,  # cai
    }
    assert channels["Both"]["share"] == pytest.approx(1 / 6)

    step = next(c for c in report.charts if c.key == "parties_over_time")
    counts = dict(zip(step.labels, step.series[0].values, strict=True))
    assert counts == {
        at(m).astimezone(dt.timezone(dt.timedelta(hours=1))).isoformat(timespec="seconds"): n
        for m, n in ((0, 1), (20, 2), (45, 3), (50, 2), (60, 3), (70, 2), (90, 1), (120, 0))
    }
    assert set(step.series[1].values) == {1} and set(step.series[2].values) == {2}


def test_attendance_rows_follow_the_log_sorted_even_when_an_exit_was_logged_late(db, small):
    report = statistics.report(db, small.meeting, session_id=small.a.id, now=NOW)
    attendance = table(report, "attendance")
    keys = [c.key for c in attendance.columns]
    rows = [dict(zip(keys, r, strict=True)) for r in attendance.rows]
    stretches = sorted(
        (r["participant"].split()[0], r["channel"], (r["in"] - T0) / dt.timedelta(minutes=1), r["out"]) for r in rows
    )
    assert stretches == sorted(
        [
            ("Ana", "Online", 0, at(30)),
            ("Ana", "Online", 60, at(120)),
            ("Ben", "In the room", 10, at(50)),
            ("Cai", "Online", 20, at(40)),
            ("Cai", "In the room", 35, at(70)),
            ("Dee", "Online", 45, at(90)),
            ("Obs", "Online", 5, at(115)),
            ("Eve", "In the room", 0, at(120)),
        ]
    )
    obs = next(r for r in rows if r["participant"].startswith("Obs"))
    assert (obs["category"], obs["party"], obs["represents"]) == (
        "Non-governmental organization",
        "",
        "An organization",
    )
    assert [r["in"] for r in rows] == sorted(r["in"] for r in rows)


def test_an_open_session_counts_up_to_now_and_shows_who_is_still_inside(db, small):
    report = statistics.report(db, small.meeting, session_id=small.b.id, now=NOW)
    (session,) = rows_by(report, "sessions").values()
    # ana 100-now (150), ben 100-130, cai 100-110.
    assert session["time_attended"] == (50 + 30 + 10) * 60
    assert (session["peak_participants"], session["peak_participants_at"]) == (3, at(100))
    # AAA and BBB from 100, AAA alone from 110 until now.
    assert (session["open_first_reached"], minutes(session["open_held"])) == (at(100), 50)
    assert (session["decide_first_reached"], minutes(session["decide_held"])) == (at(100), 10)
    still_inside = [r for r in table(report, "attendance").rows if r[7] is None]
    assert [(r[1].split()[0], r[8]) for r in still_inside] == [("Ana", 50 * 60)]
    # Later, the same open session has been attended for longer.
    later = statistics.report(db, small.meeting, session_id=small.b.id, now=NOW + dt.timedelta(minutes=10))
    assert rows_by(later, "sessions")["Session B"]["time_attended"] == (60 + 30 + 10) * 60


def test_a_segment_counts_a_person_in_two_sessions_at_once_once(db, small):
    report = statistics.report(db, small.meeting, segment_id=small.hybrid.id, now=NOW)
    assert report.scope == "hybrid segment"
    figures = overview(report)
    assert figures["Participants present"] == "6"
    # At 100 A has ana, obs, eve and B has ana, ben, cai: five people, not six. The peak stays 5, first at 20.
    assert figures["Peak concurrent participants"] == "5"
    assert figures["Peak concurrent participants reached at"] == "2026-11-02 10:20:00 CET"
    assert figures["Parties represented at some time"] == "4"
    # Per person: ana 90+50, ben 40+30, cai 50+10, dee 45, obs 110, eve 120.
    assert figures["Total time attended"] == statistics.hms(545 * 60)
    assert figures["Median time attended per participant present"] == "1:30:00"
    assert list(rows_by(report, "sessions")) == ["Session A", "Session B"]
    assert "segments_compared" not in [t.key for t in report.tables]
    chart = next(c for c in report.charts if c.key == "participants_per_session")
    assert chart.series[0].values == (6, 3)


def test_the_whole_meeting(db, small):
    report = statistics.report(db, small.meeting, now=NOW)
    assert report.scope == "Whole meeting"
    assert [t.key for t in report.tables] == [
        "overview",
        "sessions",
        "by_category",
        "by_channel",
        "by_gender",
        "by_regional_group",
        "by_party",
        "registrations",
        "segments_compared",
        "attendance",
    ]
    assert [c.key for c in report.charts] == [
        "participants_by_category",
        "participants_by_regional_group",
        "participants_by_channel",
        "participants_per_session",
    ]
    figures = overview(report)
    assert figures["Participants present"] == "7"  # fay came only to C
    assert figures["Sessions"] == "3"
    # ana 140, ben 70, cai 60, dee 45+60, obs 110, eve 120, fay 10: total 615, median 105.
    assert figures["Total time attended"] == statistics.hms(615 * 60)
    assert figures["Median time attended per participant present"] == "1:45:00"
    assert figures["Peak concurrent participants"] == "5"
    assert figures["Sessions that reached the quorum to open"] == "3"
    assert figures["Sessions that reached the quorum to decide"] == "2"  # C had CCC only

    sessions = rows_by(report, "sessions")
    assert list(sessions) == ["Session C", "Session A", "Session B"]  # by start
    c = sessions["Session C"]
    assert (c["participants"], c["peak_participants"], c["peak_participants_at"]) == (2, 2, at(10, C0))
    assert (c["open_first_reached"], minutes(c["open_held"])) == (C0, 60)
    assert (c["decide_first_reached"], c["decide_held"]) == (None, 0)

    by_category = rows_by(report, "by_category")
    assert (by_category["Party"]["registered"], by_category["Party"]["present"]) == (6, 6)
    assert by_category["Party"]["time_attended"] == 505 * 60
    assert (by_category["Non-governmental organization"]["present"], by_category["Media"]["present"]) == (1, 0)

    by_channel = {label: r["present"] for label, r in rows_by(report, "by_channel").items()}
    assert by_channel == {"Online only": 4, "In the room only": 2, "Both": 1}

    by_gender = {label: r["present"] for label, r in rows_by(report, "by_gender").items()}
    assert by_gender == {"Female": 3, "Male": 2, "Other": 1, "Prefer not to say": 1}

    groups = rows_by(report, "by_regional_group")
    assert {label: (r["present"], r["parties"]) for label, r in groups.items()} == {
        "African": (2, 1),
        "Asia-Pacific": (1, 1),
        "Eastern European": (0, 0),
        "GRULAC": (2, 1),
        "WEOG": (1, 1),
        "No regional group": (1, 0),
    }

    parties = rows_by(report, "by_party")
    assert {
        name: (r["registered"], r["present"], r["sessions"], minutes(r["time_attended"])) for name, r in parties.items()
    } == {
        "Party AAA": (2, 2, 2, 210),
        "Party BBB": (1, 1, 2, 60),  # pen is pending
        "Party CCC": (2, 2, 2, 115),
        "Party DDD": (1, 1, 1, 120),
    }

    compared = rows_by(report, "segments_compared")
    assert [c.label for c in table(report, "segments_compared").columns] == [
        "Figure",
        "online segment",
        "hybrid segment",
    ]
    online, hybrid = f"segment_{small.online.id}", f"segment_{small.hybrid.id}"
    assert (compared["Participants present"][online], compared["Participants present"][hybrid]) == ("2", "6")
    assert (compared["Both"][online], compared["Both"][hybrid]) == ("0", "1")
    assert compared["Sessions that reached the quorum to decide"][online] == "0"

    rows = list(table(report, "attendance").rows)
    assert len(rows) == 8 + 3 + 2  # stretches in A, B and C
    assert {r[0] for r in rows} == {"Session A", "Session B", "Session C"}


def test_registrations_by_status_category_and_segment(db, small):
    report = statistics.report(db, small.meeting, now=NOW)
    t = table(report, "registrations")
    assert [c.key for c in t.columns] == [
        "dimension",
        "value",
        "pending",
        "approved",
        "rejected",
        "withdrawn",
        "total",
    ]
    rows = {(r[0], r[1]): r[2:] for r in t.rows}
    assert rows[("All", "All registrations")] == (1, 7, 1, 1, 10)
    assert rows[("Category", "Party")] == (1, 6, 0, 1, 8)
    assert rows[("Category", "Intergovernmental organization")] == (0, 0, 1, 0, 1)
    assert rows[("Regional group", "No regional group")] == (0, 1, 1, 0, 2)  # obs and rej
    assert rows[("Gender", "Male")] == (1, 2, 0, 1, 4)
    assert rows[("Segment", "online segment")] == (0, 2, 1, 1, 4)
    assert rows[("Segment", "hybrid segment")] == (1, 6, 0, 1, 8)

    segment = statistics.report(db, small.meeting, segment_id=small.online.id, now=NOW)
    rows = {(r[0], r[1]): r[2:] for r in table(segment, "registrations").rows}
    assert rows[("All", "All registrations")] == (0, 2, 1, 1, 4)
    assert ("Segment", "hybrid segment") not in rows


def test_a_category_filter_narrows_participants_but_not_parties_or_the_quorum(db, small):
    report = statistics.report(db, small.meeting, category=Category.NGO, now=NOW)
    assert report.filters == {"category": "ngo"}
    figures = overview(report)
    assert figures["Participants present"] == "1"  # obs, 5-115 in A
    assert figures["Participants registered (approved)"] == "1"
    assert figures["Peak concurrent participants"] == "1"
    assert figures["Peak concurrent participants reached at"] == "2026-11-02 10:05:00 CET"
    assert figures["Total time attended"] == statistics.hms(110 * 60)
    assert figures["Parties represented at some time"] == "4"
    assert figures["Peak concurrent Parties"] == "4"
    a = rows_by(report, "sessions")["Session A"]
    assert (a["participants"], a["parties"]) == (1, 4)
    assert (a["decide_first_reached"], minutes(a["decide_held"])) == (at(20), 70)
    assert list(rows_by(report, "by_category")) == ["Non-governmental organization"]
    assert [r[1] for r in table(report, "attendance").rows] == ["Obs Example"]

    party = statistics.report(db, small.meeting, category=Category.PARTY, now=NOW)
    assert overview(party)["Participants present"] == "6"
    assert overview(party)["Peak concurrent participants"] == "4"  # A at 20 without obs; B adds no one new at once


def test_scopes_that_are_not_the_meetings_are_refused(db, small):
    with pytest.raises(services.MeetingError) as refused:
        statistics.report(db, small.meeting, segment_id=small.hybrid.id + 1000, now=NOW)
    assert refused.value.code == "not_found"
    with pytest.raises(services.MeetingError) as refused:
        statistics.report(db, small.meeting, segment_id=small.hybrid.id, session_id=small.c.id, now=NOW)
    assert refused.value.code == "not_found"


def test_closed_sessions_are_folded_once_and_folded_again_if_their_log_changes(db, small, monkeypatch):
    folded = []
    original = statistics.fold

    def counting(rows, end, counted):
        folded.append(len(rows))
        return original(rows, end, counted)

    monkeypatch.setattr(statistics, "fold", counting)
    first = statistics.report(db, small.meeting, now=NOW)
    assert sorted(folded) == [4, 5, 18]  # C, B, A
    folded.clear()
    second = statistics.report(db, small.meeting, now=NOW)
    assert folded == [5]  # only B, still open
    assert list(table(second, "overview").rows) == list(table(first, "overview").rows)

    # An event appended to a closed session (its count and highest id change) is not missed.
    _log(db, small, small.c, C0, [(30, "fay", "entry", "online"), (40, "fay", "exit", "online")])
    folded.clear()
    third = statistics.report(db, small.meeting, now=NOW)
    assert sorted(folded) == [5, 6]
    assert rows_by(third, "sessions")["Session C"]["time_attended"] == (60 + 20) * 60


def test_only_approved_party_delegates_make_their_party_present(db, small):
    # pen (BBB, pending) is in the log of C (as if checked in by hand): present, but BBB is not.
    _log(db, small, small.c, C0, [(30, "pen", "entry", "online"), (40, "pen", "exit", "online")])
    c = rows_by(statistics.report(db, small.meeting, session_id=small.c.id, now=NOW), "sessions")["Session C"]
    assert (c["participants"], c["parties"], c["decide_first_reached"]) == (3, 1, None)
    # Once approved, BBB counts from 30 to 40 along with CCC: the cached fold of C is not reused.
    small.registrations["pen"].status = RegistrationStatus.APPROVED
    db.commit()
    c = rows_by(statistics.report(db, small.meeting, session_id=small.c.id, now=NOW), "sessions")["Session C"]
    assert (c["participants"], c["parties"]) == (3, 2)
    assert (c["decide_first_reached"], minutes(c["decide_held"])) == (at(30, C0), 10)


def test_times_are_exact_to_the_microsecond(db, small):
    moments = [T0 + dt.timedelta(seconds=1, microseconds=999_999), T0 + dt.timedelta(seconds=3, microseconds=1)]
    for n, (kind, moment) in enumerate(zip((EventKind.ENTRY, EventKind.EXIT), moments, strict=True)):
        db.add(
            AttendanceEvent(
                session_id=small.b.id,
                user_id=small.people["dee"].id,
                registration_id=small.registrations["dee"].id,
                party_id=small.registrations["dee"].party_id,
                kind=kind,
                channel=Channel.ONLINE,
                source=Source.BROWSER,
                at=moment,
                nonce=f"exact-{n}",
            )
        )
    db.commit()
    report = statistics.report(db, small.meeting, session_id=small.b.id, now=NOW)
    (dee,) = [r for r in table(report, "attendance").rows if r[1].startswith("Dee")]
    assert (dee[6], dee[7]) == tuple(moments)


def test_every_row_fits_its_columns_in_every_scope(db, small):
    for kwargs in ({}, {"segment_id": small.online.id}, {"session_id": small.b.id}, {"category": Category.IGO}):
        report = statistics.report(db, small.meeting, now=NOW, **kwargs)
        for t in report.tables:
            for r in t.rows:
                assert len(r) == len(t.columns), (kwargs, t.key)
        for chart in report.charts:
            assert all(len(s.values) == len(chart.labels) for s in chart.series), (kwargs, chart.key)


def test_the_segments_compared_side_by_side(db, small):
    report = statistics.report(db, small.meeting, now=NOW)
    compared = rows_by(report, "segments_compared")
    online, hybrid = f"segment_{small.online.id}", f"segment_{small.hybrid.id}"
    side_by_side = {figure: (r[online], r[hybrid]) for figure, r in compared.items()}
    assert list(side_by_side) == list(statistics.SEGMENT_FIGURES)
    assert side_by_side == {
        "Kind": ("online", "hybrid"),
        "Sessions": ("1", "2"),
        # Approved and registered for the segment: dee and fay; ana, ben, cai, dee, eve and obs.
        "Participants registered (approved)": ("2", "6"),
        "Participants present": ("2", "6"),
        # C: dee and fay online. A and B: ana, dee, obs online only; ben, eve in the room only; cai both.
        "Online only": ("2", "3"),
        "In the room only": ("0", "2"),
        "Both": ("0", "1"),
        # C: CCC. A and B: AAA, BBB, CCC and DDD.
        "Parties represented at some time": ("1", "4"),
        # C: dee and fay from 10. A and B: five at 20 in A (B adds no one new at once).
        "Peak concurrent participants": ("2", "5"),
        "Peak concurrent participants reached at": ("2026-11-01 10:10:00 CET", "2026-11-02 10:20:00 CET"),
        # C: CCC from 0. A: all four at 45; at 100 A and B together have AAA, BBB and DDD only.
        "Peak concurrent Parties": ("1", "4"),
        "Peak concurrent Parties reached at": ("2026-11-01 10:00:00 CET", "2026-11-02 10:45:00 CET"),
        # C: dee 60 + fay 10 = 70, median (10 + 60) / 2 = 35. A and B: 545, median 90 (see the segment test).
        "Total time attended": ("1:10:00", "9:05:00"),
        "Median time attended per participant present": ("0:35:00", "1:30:00"),
        # C had CCC only (1 of 3 in force: enough to open, not to decide); A and B reached both.
        "Sessions that reached the quorum to open": ("1", "2"),
        "Sessions that reached the quorum to decide": ("0", "2"),
    }

    # Filtered to NGOs: obs alone, in A (5-115), registered for the hybrid segment only; the Parties stay.
    ngo = rows_by(statistics.report(db, small.meeting, category=Category.NGO, now=NOW), "segments_compared")
    side_by_side = {figure: (r[online], r[hybrid]) for figure, r in ngo.items()}
    assert side_by_side["Participants registered (approved)"] == ("0", "1")
    assert side_by_side["Participants present"] == ("0", "1")
    assert side_by_side["Peak concurrent participants reached at"] == ("—", "2026-11-02 10:05:00 CET")
    assert side_by_side["Median time attended per participant present"] == ("—", "1:50:00")
    assert side_by_side["Parties represented at some time"] == ("1", "4")
    assert side_by_side["Sessions that reached the quorum to decide"] == ("0", "2")


def test_parties_with_an_approved_delegate_registered(db, small):
    # Approved Party delegates: ana, ben (AAA), cai (BBB), dee (CCC, both segments), eve (DDD), fay (CCC, online).
    # pen (BBB) is pending and wit (AAA) withdrawn: they make no Party registered.
    figure = "Parties with an approved delegate registered"
    assert overview(statistics.report(db, small.meeting, now=NOW))[figure] == "4"
    assert overview(statistics.report(db, small.meeting, segment_id=small.online.id, now=NOW))[figure] == "1"
    assert overview(statistics.report(db, small.meeting, session_id=small.b.id, now=NOW))[figure] == "4"
    # A Party figure: the category filter does not change it.
    assert overview(statistics.report(db, small.meeting, category=Category.NGO, now=NOW))[figure] == "4"


def test_registrations_of_a_category_and_of_a_session(db, small):
    # Party registrations: ana, ben, cai, dee, eve, fay approved; pen pending; wit withdrawn (8).
    report = statistics.report(db, small.meeting, category=Category.PARTY, now=NOW)
    rows = {(r[0], r[1]): r[2:] for r in table(report, "registrations").rows}
    assert [key for key in rows if key[0] == "Category"] == [("Category", "Party")]
    assert rows[("All", "All registrations")] == (1, 6, 0, 1, 8)
    # AAA (African): ana, ben approved, wit withdrawn. BBB (WEOG): cai approved, pen pending.
    assert rows[("Regional group", "African")] == (0, 2, 0, 1, 3)
    assert rows[("Regional group", "WEOG")] == (1, 1, 0, 0, 2)
    assert rows[("Regional group", "No regional group")] == (0, 0, 0, 0, 0)
    # Online segment: dee, fay, wit. Hybrid: ana, ben, cai, dee, eve, pen, wit.
    assert rows[("Segment", "online segment")] == (0, 2, 0, 1, 3)
    assert rows[("Segment", "hybrid segment")] == (1, 5, 0, 1, 7)

    # A session counts the registrations of its segment: C, in the online segment: dee, fay, rej, wit.
    session = statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    rows = {(r[0], r[1]): r[2:] for r in table(session, "registrations").rows}
    assert rows[("All", "All registrations")] == (0, 2, 1, 1, 4)
    assert [key for key in rows if key[0] == "Segment"] == [("Segment", "online segment")]
    assert rows[("Gender", "Female")] == (0, 2, 1, 0, 3)  # dee, fay, rej


def test_the_parties_chart_of_an_open_session_ends_with_the_parties_still_inside(db, small):
    # B, open, report at 150. In force present: AAA (ana, ben) and BBB (cai) from 100, AAA alone from 110
    # (cai left); ana is still inside at 150, so the point at the end is 1, not 0.
    report = statistics.report(db, small.meeting, session_id=small.b.id, now=NOW)
    step = next(c for c in report.charts if c.key == "parties_over_time")
    assert list(zip(step.labels, step.series[0].values, strict=True)) == [
        ("2026-11-02T11:40:00+01:00", 2),
        ("2026-11-02T11:50:00+01:00", 1),
        ("2026-11-02T12:30:00+01:00", 1),
    ]


def test_events_after_the_close_or_after_now_are_left_out(db, small):
    # C closed at 60: fay's entry at 70 and exit at 80 are after the close. B is open and the report is
    # made at 150: dee's entry at 160 has not happened yet.
    _log(db, small, small.c, C0, [(70, "fay", "entry", "online"), (80, "fay", "exit", "online")])
    _log(db, small, small.b, T0, [(160, "dee", "entry", "online")])
    report = statistics.report(db, small.meeting, now=NOW)
    sessions = rows_by(report, "sessions")
    # C as before: dee 0-60, fay 10-20; B as before: ana 100-150, ben 100-130, cai 100-110.
    assert (sessions["Session C"]["participants"], minutes(sessions["Session C"]["time_attended"])) == (2, 70)
    assert (sessions["Session B"]["participants"], minutes(sessions["Session B"]["time_attended"])) == (3, 90)
    assert overview(report)["Attendance events logged (all participants)"] == str(18 + 5 + 4)
    rows = list(table(report, "attendance").rows)
    assert len(rows) == 8 + 3 + 2
    assert max(r[6] for r in rows if r[0] == "Session C") == at(10, C0)

    # At 170, dee has been in B for 10 minutes and is still inside.
    later = statistics.report(db, small.meeting, session_id=small.b.id, now=NOW + dt.timedelta(minutes=20))
    (b,) = rows_by(later, "sessions").values()
    # ana 100-170, ben 100-130, cai 100-110, dee 160-170.
    assert (b["participants"], minutes(b["time_attended"])) == (4, 70 + 30 + 10 + 10)
    dee = [r for r in table(later, "attendance").rows if r[1].startswith("Dee")]
    assert [(r[6], r[7], r[8]) for r in dee] == [(at(160), None, 10 * 60)]


def _fold_of(db, meeting_session: MeetingSession, end: dt.datetime, users) -> statistics.SessionFold:
    """The session's log up to end, of only these users, folded: what a category view must equal."""
    events = db.scalars(
        sa.select(AttendanceEvent)
        .where(AttendanceEvent.session_id == meeting_session.id, AttendanceEvent.at <= end)
        .order_by(AttendanceEvent.at, AttendanceEvent.id)
    )
    rows = [
        (
            statistics.to_us(e.at),
            e.user_id * 4 + (2 if e.channel == Channel.IN_PERSON else 0) + (1 if e.kind == EventKind.ENTRY else 0),
            e.party_id,
            presence.actor(e.source.value, e.nonce),
        )
        for e in events
        if e.user_id in users
    ]
    return statistics.fold(rows, statistics.to_us(end), counted=set())


def test_a_category_view_equals_the_fold_of_only_that_categorys_people(db, small):
    # For every category (and for everyone), every session's participants, time and peak, and the hybrid
    # segment's peak across A and B, must be what folding the log of only those people gives.
    ends = {small.a.id: at(120), small.b.id: NOW, small.c.id: at(60, C0)}
    zone = ZoneInfo("Europe/Zurich")
    for category in [None, *Category]:
        users = {r.user_id for r in small.registrations.values() if category is None or r.category == category}
        report = statistics.report(db, small.meeting, category=category, now=NOW)
        sessions = rows_by(report, "sessions")
        folds = {}
        for s in (small.a, small.b, small.c):
            f = folds[s.id] = _fold_of(db, s, ends[s.id], users)
            line = sessions[s.title]
            assert line["participants"] == len(f.present), (category, s.title)
            assert line["time_attended"] == statistics.seconds(sum(f.time.values())), (category, s.title)
            expected_at = statistics.from_us(f.peak_at) if f.peak_at is not None else None
            assert (line["peak_participants"], line["peak_participants_at"]) == (f.peak, expected_at), (category, s)
        segment = overview(statistics.report(db, small.meeting, segment_id=small.hybrid.id, category=category, now=NOW))
        spans = [
            span for s in (small.a, small.b) for span in zip(*(folds[s.id].spans[i::3] for i in range(3)), strict=True)
        ]
        peak, peak_at = statistics.peak_of(statistics.span_steps(spans))
        assert segment["Peak concurrent participants"] == str(peak), category
        expected = (
            "—" if peak_at is None else statistics.from_us(peak_at).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        )
        assert segment["Peak concurrent participants reached at"] == expected, category


# Meetings put together by each test -----------------------------------------------------------------


class Built:
    """A meeting put together piece by piece by a test: Parties, segments, sessions, people and their log."""

    def __init__(self, db, make_user, timezone: str = "Europe/Zurich") -> None:
        self.db, self.make_user = db, make_user
        self.meeting = Meeting(
            code="BUILT-1", title="Built meeting", convention=Convention.ROTTERDAM, timezone=timezone
        )
        db.add(self.meeting)
        self.parties: dict[str, Party] = {}
        self.registrations: dict[str, Registration] = {}
        self.nonces = iter(range(1, 1_000_000))

    def party(self, code: str, group: RegionalGroup | None = RegionalGroup.AFRICAN, in_force=dt.date(2004, 5, 5)):
        party = Party(
            convention=Convention.ROTTERDAM,
            code=code,
            name=f"Party {code}",
            regional_group=group,
            entry_into_force_on=in_force,
        )
        self.db.add(party)
        self.db.flush()
        self.parties[code] = party
        return party

    def segment(self, name: str, day: dt.date, kind=SegmentKind.HYBRID, timezone: str = "Europe/Zurich") -> Segment:
        segment = Segment(
            meeting=self.meeting, name=name, kind=kind, starts_on=day, ends_on=day, venue="Venue", timezone=timezone
        )
        self.db.add(segment)
        self.db.flush()
        return segment

    def session(
        self,
        segment: Segment,
        title: str,
        start: dt.datetime,
        state: SessionState = SessionState.CLOSED,
        *,
        length: int = 60,
        opened_at: dt.datetime | None = None,
    ) -> MeetingSession:
        """A session scheduled for length minutes from start; opened at start (or opened_at) unless scheduled,
        and closed at its scheduled end if closed."""
        end = start + dt.timedelta(minutes=length)
        meeting_session = MeetingSession(
            segment=segment,
            title=title,
            kind=SessionKind.PLENARY,
            scheduled_start_at=start,
            scheduled_end_at=end,
            state=state,
            opened_at=None if state == SessionState.SCHEDULED else opened_at or start,
            closed_at=end if state == SessionState.CLOSED else None,
        )
        self.db.add(meeting_session)
        self.db.flush()
        return meeting_session

    def person(
        self,
        name: str,
        party: str | None = None,
        *,
        category: Category | None = None,
        status: RegistrationStatus = RegistrationStatus.APPROVED,
        segments: Sequence[Segment] = (),
        gender: Gender = Gender.FEMALE,
    ) -> Registration:
        user, _ = self.make_user(email=f"{name}@example.org")
        user.given_name, user.family_name, user.gender = name.capitalize(), "Built", gender
        registration = Registration(
            meeting=self.meeting,
            user=user,
            category=category or (Category.PARTY if party else Category.NGO),
            party=self.parties[party] if party else None,
            organization=None if party else "An organization",
            function=Function.HEAD,
            status=status,
            segments=list(segments),
        )
        self.db.add(registration)
        self.db.flush()
        self.registrations[name] = registration
        return registration

    def log(self, meeting_session: MeetingSession, base: dt.datetime, entries) -> None:
        """Append (minutes after base, who, kind, channel) events in the order given (the order of their ids)."""
        for minutes_after, who, kind, channel in entries:
            registration = self.registrations[who]
            self.db.add(
                AttendanceEvent(
                    session_id=meeting_session.id,
                    user_id=registration.user_id,
                    registration_id=registration.id,
                    party_id=registration.party_id,
                    kind=EventKind(kind),
                    channel=Channel(channel),
                    source=Source.OFFICER,
                    at=at(minutes_after, base),
                    nonce=f"built-{next(self.nonces)}",
                )
            )
            self.db.flush()
        self.db.commit()


@pytest.fixture
def built(db, make_user) -> Built:
    return Built(db, make_user)


def test_parties_in_force_on_the_sessions_local_date_and_times_in_the_scopes_zone(db, built):
    # OLD in force since 2004, NEW from 3 November 2026. Both sessions start at 23:30 UTC on 2 November:
    # 2 November in London (GMT), already 3 November in Geneva (00:30 CET). London's segment comes first.
    built.party("OLD", RegionalGroup.AFRICAN)
    built.party("NEW", RegionalGroup.WEOG, in_force=dt.date(2026, 11, 3))
    london = built.segment("London", dt.date(2026, 11, 1), SegmentKind.ONLINE, "Europe/London")
    geneva = built.segment("Geneva", dt.date(2026, 11, 2), SegmentKind.HYBRID, "Europe/Zurich")
    start = dt.datetime(2026, 11, 2, 23, 30, tzinfo=dt.UTC)
    ls = built.session(london, "London session", start)
    gs = built.session(geneva, "Geneva session", start)
    for name, party in (("o1", "OLD"), ("n1", "NEW"), ("o2", "OLD"), ("n2", "NEW")):
        built.person(name, party, segments=[london, geneva])
    built.log(ls, start, [(0, "o1", "entry", "online"), (0, "n1", "entry", "online"), (20, "o1", "exit", "online")])
    built.log(ls, start, [(40, "n1", "exit", "online")])
    built.log(
        gs,
        start,
        [
            (10, "o2", "entry", "in_person"),
            (10, "n2", "entry", "in_person"),
            (30, "o2", "exit", "in_person"),
            (50, "n2", "exit", "in_person"),
            (50, "n1", "entry", "in_person"),
            (60, "n1", "exit", "in_person"),
        ],
    )
    now = start + dt.timedelta(hours=3)

    # London: only OLD in force (1): 1 needed to open and to decide; OLD present 0-20. NEW counts as present
    # at some time, not for the quorum.
    london_report = statistics.report(db, built.meeting, session_id=ls.id, now=now)
    assert london_report.timezone == "Europe/London"
    figures = overview(london_report)
    assert figures["Scheduled start"] == "2026-11-02 23:30:00 GMT"
    assert (figures["Parties in force on the session's date"], figures["Parties needed to open / to decide"]) == (
        "1",
        "1 / 1",
    )
    assert figures["Parties present at some time"] == "2"
    assert (figures["Quorum to decide first reached"], figures["Quorum to decide held"]) == (
        "2026-11-02 23:30:00 GMT",
        "0:20:00",
    )

    # Geneva: OLD and NEW in force (2): 1 to open, 2 to decide. In force present: 2 from 10 (o2, n2), 1 from 30
    # (n2, then n1 takes over at 50 with no gap), 0 at 60. Open held 10-60, decide held 10-30.
    geneva_report = statistics.report(db, built.meeting, session_id=gs.id, now=now)
    assert geneva_report.timezone == "Europe/Zurich"
    figures = overview(geneva_report)
    assert figures["Scheduled start"] == "2026-11-03 00:30:00 CET"
    assert (figures["Parties in force on the session's date"], figures["Parties needed to open / to decide"]) == (
        "2",
        "1 / 2",
    )
    assert (figures["Quorum to open first reached"], figures["Quorum to open held"]) == (
        "2026-11-03 00:40:00 CET",
        "0:50:00",
    )
    assert (figures["Quorum to decide first reached"], figures["Quorum to decide held"]) == (
        "2026-11-03 00:40:00 CET",
        "0:20:00",
    )
    step = next(c for c in geneva_report.charts if c.key == "parties_over_time")
    assert list(zip(step.labels, step.series[0].values, strict=True)) == [
        ("2026-11-03T00:30:00+01:00", 0),
        ("2026-11-03T00:40:00+01:00", 2),
        ("2026-11-03T01:00:00+01:00", 1),
        ("2026-11-03T01:30:00+01:00", 0),
    ]

    # The whole meeting shows times in the first segment's zone (London). Inside at once: o1, n1 in London
    # and o2, n2 in Geneva from 10 to 20: four. Parties: OLD and NEW from 0.
    whole = statistics.report(db, built.meeting, now=now)
    assert whole.timezone == "Europe/London"
    figures = overview(whole)
    assert (figures["Peak concurrent participants"], figures["Peak concurrent participants reached at"]) == (
        "4",
        "2026-11-02 23:40:00 GMT",
    )
    assert (figures["Peak concurrent Parties"], figures["Peak concurrent Parties reached at"]) == (
        "2",
        "2026-11-02 23:30:00 GMT",
    )
    # o1 20, n1 40 + 10, o2 20, n2 40: total 130, median (20 + 40) / 2 = 30.
    assert (figures["Total time attended"], figures["Median time attended per participant present"]) == (
        "2:10:00",
        "0:30:00",
    )
    # n1 was online in London and in the room in Geneva: both, over the meeting; one channel in each segment.
    channels = {label: r["present"] for label, r in rows_by(whole, "by_channel").items()}
    assert channels == {"Online only": 1, "In the room only": 2, "Both": 1}
    compared = rows_by(whole, "segments_compared")
    assert [compared[figure][f"segment_{london.id}"] for figure in ("Online only", "In the room only", "Both")] == [
        "2",
        "0",
        "0",
    ]
    assert [compared[figure][f"segment_{geneva.id}"] for figure in ("Online only", "In the room only", "Both")] == [
        "0",
        "3",
        "0",
    ]
    assert compared["Peak concurrent participants reached at"][f"segment_{geneva.id}"] == "2026-11-02 23:40:00 GMT"
    chart = next(c for c in whole.charts if c.key == "participants_per_session")
    assert chart.labels == ("02 Nov London session", "03 Nov Geneva session")


def test_the_quorum_timeline_starts_at_the_opening_or_the_first_presence_and_runs_to_now(db, built):
    # AAA, BBB and CCC in force (3): 1 needed to open, 2 to decide. DDD has not ratified: never counted.
    for code in ("AAA", "BBB", "CCC"):
        built.party(code)
    built.party("DDD", in_force=None)
    segment = built.segment("segment", T0.date())
    suspended = built.session(segment, "Suspended", T0, SessionState.SUSPENDED)
    early = built.session(segment, "Early", T0 + dt.timedelta(hours=2), opened_at=at(130))
    ancient = built.session(segment, "Before any entry into force", dt.datetime(2003, 1, 1, 9, tzinfo=dt.UTC))
    for name, party in (("a", "AAA"), ("b", "BBB"), ("d", "DDD")):
        built.person(name, party, segments=[segment])
    built.person("obs", category=Category.NGO, segments=[segment])
    # Suspended, opened at 0, report at 60: obs 5-15, a 10-40, b from 20 and d from 0 (still inside: a
    # suspension checks no one out). In force present: 0 from 0, 1 from 10, 2 from 20, 1 from 40, to 60.
    built.log(
        suspended,
        T0,
        [
            (0, "d", "entry", "online"),
            (5, "obs", "entry", "online"),
            (10, "a", "entry", "online"),
            (15, "obs", "exit", "online"),
            (20, "b", "entry", "in_person"),
            (40, "a", "exit", "online"),
        ],
    )
    report = statistics.report(db, built.meeting, session_id=suspended.id, now=at(60))
    (line,) = rows_by(report, "sessions").values()
    assert line["state"] == "suspended"
    assert (line["parties_in_force"], line["needed_to_open"], line["needed_to_decide"]) == (3, 1, 2)
    assert (line["open_first_reached"], minutes(line["open_held"])) == (at(10), 50)
    assert (line["decide_first_reached"], minutes(line["decide_held"])) == (at(20), 20)
    assert line["parties"] == 3  # AAA, BBB and DDD, in force or not
    step = next(c for c in report.charts if c.key == "parties_over_time")
    # At 0, 10, 20 and 40 (the point at now is checked in test_the_parties_chart_of_an_open_session_ends_...).
    assert step.series[0].values[:4] == (0, 1, 2, 1)
    assert step.labels[0] == "2026-11-02T10:00:00+01:00" and step.labels[-1] == "2026-11-02T11:00:00+01:00"
    # Later, the same suspended session has held both thresholds for longer (b is still inside).
    later = rows_by(statistics.report(db, built.meeting, session_id=suspended.id, now=at(90)), "sessions")
    assert (minutes(later["Suspended"]["open_held"]), minutes(later["Suspended"]["decide_held"])) == (80, 20)

    # Early: opened at 130, closed at 180; a was checked in by hand at 120, before the opening, until 150.
    # The timeline starts at 120 (the first presence): the quorum to open was first reached at 120, held 30.
    built.log(early, T0, [(120, "a", "entry", "in_person"), (150, "a", "exit", "in_person")])
    (line,) = rows_by(statistics.report(db, built.meeting, session_id=early.id, now=at(300)), "sessions").values()
    assert (line["open_first_reached"], minutes(line["open_held"])) == (at(120), 30)
    assert (line["decide_first_reached"], line["decide_held"]) == (None, 0)

    # On 1 January 2003 no Party was in force: nothing is needed, yet no quorum is reached.
    built.log(ancient, ancient.scheduled_start_at, [(0, "a", "entry", "online"), (30, "a", "exit", "online")])
    (line,) = rows_by(statistics.report(db, built.meeting, session_id=ancient.id, now=at(300)), "sessions").values()
    assert (line["parties_in_force"], line["needed_to_open"], line["needed_to_decide"], line["parties"]) == (0, 0, 0, 1)
    assert (line["open_first_reached"], line["open_held"], line["decide_first_reached"], line["decide_held"]) == (
        None,
        0,
        None,
        0,
    )


def test_a_party_in_two_sessions_at_once_counts_once(db, built):
    # X and Y both meet from 0 to 60, Z from 60 to 90. a1 (AAA) is in the room in X 0-60 and also online in
    # Y 30-40; a2 (AAA) online in Y 0-60 then in Z 60-90; b1 (BBB) online in Y 10-20 and in Z 60-90.
    built.party("AAA", RegionalGroup.AFRICAN)
    built.party("BBB", RegionalGroup.WEOG)
    segment = built.segment("segment", T0.date())
    x = built.session(segment, "X", T0)
    y = built.session(segment, "Y", T0)
    z = built.session(segment, "Z", at(60), length=30)
    for name, party in (("a1", "AAA"), ("a2", "AAA"), ("b1", "BBB")):
        built.person(name, party, segments=[segment])
    built.log(x, T0, [(0, "a1", "entry", "in_person"), (60, "a1", "exit", "in_person")])
    built.log(
        y,
        T0,
        [
            (0, "a2", "entry", "online"),
            (10, "b1", "entry", "online"),
            (20, "b1", "exit", "online"),
            (30, "a1", "entry", "online"),
            (40, "a1", "exit", "online"),
            (60, "a2", "exit", "online"),
        ],
    )
    built.log(z, T0, [(60, "a2", "entry", "online"), (60, "b1", "entry", "online")])  # closed at 90 without exits
    report = statistics.report(db, built.meeting, segment_id=segment.id, now=at(300))
    sessions = rows_by(report, "sessions")
    # Y alone: a2 and b1 at 10, a2 and a1 at 30: 2 people first at 10; AAA and BBB at 10.
    assert (sessions["Y"]["peak_participants"], sessions["Y"]["peak_participants_at"]) == (2, at(10))
    assert (sessions["Y"]["peak_parties"], sessions["Y"]["peak_parties_at"]) == (2, at(10))
    figures = overview(report)
    # Together: a1, a2, b1 at 10 (3); at 30 a1 is in X and Y, a2 in Y: 2, not 3. At 60 a1 leaves X and a2
    # moves from Y to Z at the same instant, b1 arrives in Z: 2, no spike.
    assert (figures["Peak concurrent participants"], figures["Peak concurrent participants reached at"]) == (
        "3",
        "2026-11-02 10:10:00 CET",
    )
    # AAA (in X and in Y) and BBB at 10: 2 Parties, not 3.
    assert (figures["Peak concurrent Parties"], figures["Peak concurrent Parties reached at"]) == (
        "2",
        "2026-11-02 10:10:00 CET",
    )
    # Time is per session: a1 60 + 10, a2 60 + 30, b1 10 + 30: 200 in all; median of 40, 70, 90 is 70.
    assert (figures["Total time attended"], figures["Median time attended per participant present"]) == (
        "3:20:00",
        "1:10:00",
    )
    channels = {label: r["present"] for label, r in rows_by(report, "by_channel").items()}
    assert channels == {"Online only": 2, "In the room only": 0, "Both": 1}  # a1: room in X, online in Y
    parties = rows_by(report, "by_party")
    assert {name: (r["present"], r["sessions"], minutes(r["time_attended"])) for name, r in parties.items()} == {
        "Party AAA": (2, 3, 160),
        "Party BBB": (1, 2, 40),
    }


def test_an_empty_meeting_and_a_session_never_opened(db, built):
    # No segment, no session, no one: every count is zero, every moment empty, times in the meeting's zone.
    built.meeting.timezone = "America/New_York"
    db.commit()
    report = statistics.report(db, built.meeting, now=NOW)
    assert report.timezone == "America/New_York"
    figures = overview(report)
    assert {key: figures[key] for key in ("Sessions", "Participants present", "Peak concurrent participants")} == {
        "Sessions": "0",
        "Participants present": "0",
        "Peak concurrent participants": "0",
    }
    assert figures["Peak concurrent participants reached at"] == "—"
    assert (figures["Total time attended"], figures["Median time attended per participant present"]) == (
        "0:00:00",
        "—",
    )
    assert figures["Sessions that reached the quorum to open"] == "0"
    compared = table(report, "segments_compared")
    assert [c.key for c in compared.columns] == ["figure"] and len(list(compared.rows)) == len(
        statistics.SEGMENT_FIGURES
    )
    assert list(table(report, "attendance").rows) == []
    assert next(c for c in report.charts if c.key == "participants_per_session").labels == ()
    assert {r["present"] for r in rows_by(report, "by_channel").values()} == {0}
    assert {r["share"] for r in rows_by(report, "by_category").values()} == {0.0}

    # A segment whose only session was scheduled for 1 July and never opened; three Parties in force.
    for code in ("AAA", "BBB", "CCC"):
        built.party(code)
    segment = built.segment("summer segment", dt.date(2026, 7, 1))
    never = built.session(segment, "Never opened", dt.datetime(2026, 7, 1, 8, tzinfo=dt.UTC), SessionState.SCHEDULED)
    built.person("a", "AAA", segments=[segment])
    db.commit()
    report = statistics.report(db, built.meeting, session_id=never.id, now=NOW)
    figures = overview(report)
    assert figures["State"] == "scheduled"
    assert figures["Scheduled start"] == "2026-07-01 10:00:00 CEST"  # summer time in Zurich
    assert (figures["Participants registered (approved)"], figures["Participants present"]) == ("1", "0")
    assert figures["Parties needed to open / to decide"] == "1 / 2"
    assert (figures["Quorum to open first reached"], figures["Quorum to open held"]) == ("—", "0:00:00")
    (line,) = rows_by(report, "sessions").values()
    assert (line["participants"], line["peak_participants"], line["peak_participants_at"]) == (0, 0, None)
    assert (line["open_first_reached"], line["open_held"], line["time_attended"]) == (None, 0, 0)
    step = next(c for c in report.charts if c.key == "parties_over_time")
    assert step.labels == () and all(s.values == () for s in step.series)
    whole = overview(statistics.report(db, built.meeting, now=NOW))
    assert (whole["Sessions"], whole["Sessions that reached the quorum to open"]) == ("1", "0")


def test_withdrawn_rejected_and_pending_registrations_that_still_have_attendance_events(db, built):
    # One closed session 0-60. wit (AAA, withdrawn) online 0-30, rej (IGO, rejected) in the room 10-20, pen
    # (BBB, pending) online 0-60, zed (NGO, approved) in and out at 45, app (AAA, approved) never came.
    built.party("AAA", RegionalGroup.AFRICAN)
    built.party("BBB", RegionalGroup.WEOG)
    segment = built.segment("segment", T0.date())
    s = built.session(segment, "Session", T0)
    built.person("wit", "AAA", status=RegistrationStatus.WITHDRAWN, segments=[segment])
    built.person("rej", category=Category.IGO, status=RegistrationStatus.REJECTED, segments=[segment])
    built.person("pen", "BBB", status=RegistrationStatus.PENDING, segments=[segment])
    built.person("zed", category=Category.NGO, segments=[segment])
    built.person("app", "AAA", segments=[segment])
    built.log(
        s,
        T0,
        [
            (0, "wit", "entry", "online"),
            (0, "pen", "entry", "online"),
            (10, "rej", "entry", "in_person"),
            (20, "rej", "exit", "in_person"),
            (30, "wit", "exit", "online"),
            (45, "zed", "entry", "online"),
            (45, "zed", "exit", "online"),
            (60, "pen", "exit", "online"),
        ],
    )
    report = statistics.report(db, built.meeting, session_id=s.id, now=at(300))
    figures = overview(report)
    # Present whatever the status: wit, rej, pen, and zed for no time at all.
    assert (figures["Participants present"], figures["Participants registered (approved)"]) == ("4", "2")
    # wit, pen from 0; rej joins at 10: 3. zed in and out at one instant is never counted inside.
    assert (figures["Peak concurrent participants"], figures["Peak concurrent participants reached at"]) == (
        "3",
        "2026-11-02 10:10:00 CET",
    )
    # 30 + 10 + 60 + 0 = 100 minutes; median of 0, 10, 30, 60 is (10 + 30) / 2 = 20.
    assert (figures["Total time attended"], figures["Median time attended per participant present"]) == (
        "1:40:00",
        "0:20:00",
    )
    # No approved delegate came: no Party present, no quorum (2 in force: 1 to open, 2 to decide).
    assert figures["Parties with an approved delegate registered"] == "1"  # AAA, through app
    assert (figures["Parties present at some time"], figures["Peak concurrent Parties"]) == ("0", "0")
    assert figures["Peak concurrent Parties reached at"] == "—"
    assert (figures["Parties needed to open / to decide"], figures["Quorum to open first reached"]) == ("1 / 2", "—")
    by_category = rows_by(report, "by_category")
    assert (by_category["Party"]["registered"], by_category["Party"]["present"]) == (1, 2)
    assert minutes(by_category["Party"]["time_attended"]) == 90
    assert (
        by_category["Intergovernmental organization"]["registered"],
        by_category["Intergovernmental organization"]["present"],
    ) == (0, 1)
    assert (
        by_category["Non-governmental organization"]["present"],
        by_category["Non-governmental organization"]["time_attended"],
    ) == (1, 0)
    parties = rows_by(report, "by_party")
    assert {
        name: (r["registered"], r["present"], r["sessions"], minutes(r["time_attended"])) for name, r in parties.items()
    } == {
        "Party AAA": (1, 1, 0, 30),
        "Party BBB": (0, 1, 0, 60),
    }
    groups = rows_by(report, "by_regional_group")
    assert {label: (r["present"], r["parties"]) for label, r in groups.items() if r["present"]} == {
        "African": (1, 0),
        "WEOG": (1, 0),
        "No regional group": (2, 0),
    }
    channels = {label: r["present"] for label, r in rows_by(report, "by_channel").items()}
    assert channels == {"Online only": 3, "In the room only": 1, "Both": 0}
    registrations = {(r[0], r[1]): r[2:] for r in table(report, "registrations").rows}
    assert registrations[("All", "All registrations")] == (1, 2, 1, 1, 5)
    attendance = sorted((r[1].split()[0], r[8]) for r in table(report, "attendance").rows)
    assert attendance == [("Pen", 3600), ("Rej", 600), ("Wit", 1800), ("Zed", 0)]


def test_a_stretch_of_no_length_then_a_re_entry_at_the_same_instant_in_an_open_session(db, built):
    # Open session, report at 60. a: entry, exit and entry again at 10, all online: a stretch 10-10 (0 s),
    # then inside from 10, still inside at 60 (50 minutes, out empty).
    built.party("AAA")
    segment = built.segment("segment", T0.date())
    s = built.session(segment, "Open", T0, SessionState.OPEN)
    built.person("a", "AAA", segments=[segment])
    built.log(s, T0, [(10, "a", "entry", "online"), (10, "a", "exit", "online"), (10, "a", "entry", "online")])
    report = statistics.report(db, built.meeting, session_id=s.id, now=at(60))
    assert rows_by(report, "sessions")["Open"]["time_attended"] == 50 * 60
    rows = [(r[6], r[7], r[8]) for r in table(report, "attendance").rows]
    assert rows == [(at(10), at(10), 0), (at(10), None, 50 * 60)]


def test_a_closed_session_without_its_closing_exits_has_the_same_peak_in_every_view(db, built):
    # Closed at 60; a (Party) inside from 0, b (Party) checked in at 60, the instant of the close, and the
    # close's exits missing. The presence ends at the close anyway: b was never inside for any time, so the
    # peak is 1, first at 0, with or without the category filter (both are Party delegates).
    built.party("AAA")
    segment = built.segment("segment", T0.date())
    s = built.session(segment, "Closed", T0)
    built.person("a", "AAA", segments=[segment])
    built.person("b", "AAA", segments=[segment])
    built.log(s, T0, [(0, "a", "entry", "online"), (60, "b", "entry", "online")])
    for category in (None, Category.PARTY):
        (line,) = rows_by(
            statistics.report(db, built.meeting, session_id=s.id, category=category, now=at(300)), "sessions"
        ).values()
        assert (line["participants"], line["peak_participants"], line["peak_participants_at"]) == (2, 1, T0), category


# Through the services: check-ins, a lapse, and a close with people inside --------------------------


def test_a_session_logged_by_the_services_and_closed_with_people_inside(db, cop4, make_delegate, make_user, clock):
    officer, _ = make_user(Role.OFFICER)
    first, _ = make_delegate("CHE")
    second, _ = make_delegate("FRA")
    meeting_session = cop4.segments[0].sessions[0]  # online
    t0 = clock()

    def check(user, kind):
        services.record_attendance(
            db,
            meeting_session,
            user,
            kind=kind,
            channel=Channel.ONLINE,
            source=Source.BROWSER,
            nonce=f"n-{user.id}-{kind.value}-{int(clock().timestamp())}",
            now=clock(),
        )
        db.commit()

    services.change_state(db, meeting_session, "open", officer, t0)
    check(first, EventKind.ENTRY)
    services.online_seen(db, meeting_session.id, first.id, clock.advance(120))  # last seen at 2 minutes
    db.commit()
    clock.advance(180)
    check(second, EventKind.ENTRY)  # at 5
    clock.advance(300)
    services.online_seen(db, meeting_session.id, second.id, clock())
    # At 10 the first delegate's presence has lapsed: it ends at 2, logged now, after the second's entry.
    services.end_lapsed_presences(db, clock() - dt.timedelta(seconds=60), session_id=meeting_session.id)
    db.commit()
    clock.advance(600)
    check(first, EventKind.ENTRY)  # back at 20
    clock.advance(1200)
    services.change_state(db, meeting_session, "close", officer, clock())  # at 40, both inside
    db.commit()

    report = statistics.report(db, cop4, session_id=meeting_session.id, now=clock.advance(3600))
    (session,) = rows_by(report, "sessions").values()
    assert session["state"] == "closed"
    # first 0-2 and 20-40, second 5-40: never both at once until 20.
    assert (session["peak_participants"], session["peak_participants_at"]) == (2, t0 + dt.timedelta(minutes=20))
    assert session["time_attended"] == (2 + 20 + 35) * 60
    assert session["parties"] == 2
    outs = sorted(r[7] for r in table(report, "attendance").rows)
    closed_at = t0 + dt.timedelta(minutes=40)
    assert outs == [t0 + dt.timedelta(minutes=2), closed_at, closed_at]


# The benchmark ---------------------------------------------------------------------------------------


def test_the_benchmark_runs_in_quick_mode(tmp_path):
    output = tmp_path / "results.txt"
    done = subprocess.run(
        [sys.executable, "bench/statistics.py", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for expected in ("nproc:", "CPU:", "Python:", "SQLite:", "baseline: fetch all"):
        assert expected in done.stdout
    timing = r"\d+\.\d{3} s \( *\d+\.\d\dx\)"
    for scope in ("whole meeting", "segment", "closed session", "open session", "category ngo"):
        # "restart" (folds kept in the database, none in memory) is shown where the database keeps folds.
        columns = rf"cold +{timing} +(?:restart +{timing} +)?next +{timing} +warm +{timing}"
        assert re.search(rf"{scope}.* {columns}", done.stdout), scope
    for table_key in ("overview", "sessions", "by_party", "registrations", "segments_compared", "attendance"):
        assert re.search(rf"^  {table_key} +\d+ rows +{timing}", done.stdout, re.MULTILINE), table_key
    assert re.search(r"Peak concurrent participants: [1-9]\d*", done.stdout)
    assert output.read_text().splitlines()[1:4] == done.stdout.splitlines()[1:4]
