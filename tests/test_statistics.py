"""Attendance and quorum statistics: the fold with plain values, then whole reports on small fixed logs
whose figures are worked out by hand in the comments, and the benchmark's quick mode."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from auth.models import Gender, Role
from meetings import services, statistics
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


def row(minute: float, user: int, kind: str, channel: str = "online", party: int | None = None) -> tuple:
    code = user * 4 + (2 if channel == "in_person" else 0) + (1 if kind == "entry" else 0)
    return (round(minute * MIN), code, party)


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
        assert re.search(rf"{scope}.* cold +{timing} +next +{timing} +warm +{timing}", done.stdout), scope
    for table_key in ("overview", "sessions", "by_party", "registrations", "segments_compared", "attendance"):
        assert re.search(rf"^  {table_key} +\d+ rows +{timing}", done.stdout, re.MULTILINE), table_key
    assert re.search(r"Peak concurrent participants: [1-9]\d*", done.stdout)
    assert output.read_text().splitlines()[1:4] == done.stdout.splitlines()[1:4]
