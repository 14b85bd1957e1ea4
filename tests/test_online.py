"""Online check-ins, heartbeats and check-outs run together (meetings.online.many) answer and record exactly
what they would one at a time (meetings.online.one).

Each group of events is run both ways from the same database state: first one at a time, in order,
each in its own savepoint (as the group commit runs a unit), then rolled back; then as the group
commit runs it: many() in a savepoint, then one() for the events it left out, in order. The answers
and the rows left behind (the presences; the attendance events but for their ids) must be the same.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from functools import partial
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from auth.models import Role, User
from meetings import online, services
from meetings.commits import Stale, _Unit
from meetings.models import AttendanceEvent, Category, Function, MeetingSession, Presence
from meetings.online import CHECK_IN, CHECK_OUT, HEARTBEAT, Online
from meetings.services import CheckInResult

GRACE = dt.timedelta(seconds=60)
MISSING_SESSION = 999_999


class Refused(NamedTuple):
    """A MeetingError's code (or a database error's class name): what the delegate's page is told."""

    code: str


class World(NamedTuple):
    """The meeting as the tests find it: session ids by name, user ids by name."""

    sessions: dict[str, int]
    people: dict[str, int]
    officer: User


@pytest.fixture
def world(db, cop4, make_delegate, make_user, clock) -> World:
    """Two open online sessions, one scheduled, one open in person; delegates who may and may not check in."""
    officer, _ = make_user(Role.OFFICER)
    online_segment, in_person_segment = cop4.segments
    sessions = {
        "open": online_segment.sessions[0],
        "other": online_segment.sessions[1],
        "scheduled": online_segment.sessions[2],
        "in_person": in_person_segment.sessions[0],
    }
    for name in ("open", "other", "in_person"):
        services.change_state(db, sessions[name], "open", officer, clock())
    people = {code.lower(): make_delegate(code)[0] for code in ("CHE", "FRA", "NGA", "BRA")}
    people["pending"] = make_delegate("MEX", approve=False)[0]
    people["ended"] = make_delegate("SEN")[0]
    people["disabled"] = make_delegate("NOR")[0]
    people["unregistered"] = make_user()[0]
    for name, category, segment, party in (
        ("ngo", Category.NGO, online_segment, None),
        ("in_person_only", Category.PARTY, in_person_segment, "JPN"),
    ):
        people[name] = make_user()[0]
        registration = services.register(
            db,
            meeting=cop4,
            user=people[name],
            category=category,
            function=Function.ADVISER,
            segment_ids=[segment.id],
            party_code=party,
            organization="Zero Mercury Working Group" if party is None else None,
            now=clock(),
        )
        services.approve(db, registration, officer, clock())
    # Events carry the epoch of the login that sent them (0): this one logged out everywhere since.
    people["ended"].session_epoch += 1
    people["disabled"].is_enabled = False
    db.commit()
    ids = {name: meeting_session.id for name, meeting_session in sessions.items()} | {"missing": MISSING_SESSION}
    return World(ids, {name: user.id for name, user in people.items()}, officer)


def event(kind: str, session_id: int, user_id: int, at: dt.datetime, nonce: object = None, *, epoch=0) -> Online:
    """An event as the socket handler makes it: the grace period counts back from its own moment."""
    return Online(kind, session_id, user_id, epoch, nonce, at, at - GRACE)


# Running a group both ways -------------------------------------------------------------------


def one_at_a_time(db, items: list[Online]) -> list:
    """Each event alone, in order, in a savepoint of its own (as the group commit runs a unit)."""
    answers = []
    for item in items:
        try:
            with db.begin_nested():
                answers.append(online.one(db, item))
        except services.MeetingError as refused:
            answers.append(Refused(refused.code))
        except SQLAlchemyError as failed:
            answers.append(Refused(type(failed).__name__))
    return answers


def together(db, items: list[Online]) -> tuple[list, set[int], Exception | None]:
    """As the group commit runs the group: many() in a savepoint, then one() for the events it left out.

    Returns the answers, the indices many() answered and what it raised (then every event ran alone).
    """
    try:
        with db.begin_nested():
            handled = online.many(db, items)
        failure = None
    except (Stale, SQLAlchemyError) as exc:
        handled, failure = {}, exc
    answers = [handled[n] if n in handled else one_at_a_time(db, [item])[0] for n, item in enumerate(items)]
    return answers, set(handled), failure


_EVENT_COLUMNS = (
    AttendanceEvent.session_id,
    AttendanceEvent.user_id,
    AttendanceEvent.kind,
    AttendanceEvent.channel,
    AttendanceEvent.source,
    AttendanceEvent.at,
    AttendanceEvent.nonce,
    AttendanceEvent.registration_id,
    AttendanceEvent.party_id,
    AttendanceEvent.recorded_by_id,
    AttendanceEvent.reason,
)


def logged_event(db, event_id: int | None) -> tuple | None:
    """The attendance event an answer names, without its id (which differs between runs)."""
    if event_id is None:
        return None
    row = db.execute(sa.select(*_EVENT_COLUMNS).where(AttendanceEvent.id == event_id)).first()
    return tuple(row) if row is not None else ("no such event", event_id)


def described(db, answers: list) -> list:
    """Answers comparable between runs: an outcome's event as the row it names rather than by id."""
    comparable = []
    for answer in answers:
        if isinstance(answer, Refused):
            comparable.append(answer)
            continue
        outcome, changed, since = answer
        if isinstance(outcome, CheckInResult):
            assert not outcome.recorded or outcome.event_id is not None, "a recorded event without its id"
            outcome = (outcome.kind, outcome.at, outcome.recorded, logged_event(db, outcome.event_id))
        comparable.append((outcome, changed, since))
    return comparable


def table_rows(db) -> tuple[list, list]:
    """The presences, and the attendance events but for their ids, each delegate's in the order they fold."""
    presences = db.execute(
        sa.select(Presence.session_id, Presence.user_id, Presence.channel, Presence.since, Presence.last_seen_at)
    ).all()
    events = db.execute(sa.select(AttendanceEvent.id, *_EVENT_COLUMNS)).all()
    events.sort(key=lambda row: (row.session_id, row.user_id, row.at, row.id))
    return sorted(tuple(row) for row in presences), [tuple(row)[1:] for row in events]


class Run(NamedTuple):
    answers: list  # as together() gave them
    handled: set[int]  # the indices many() answered itself
    failure: Exception | None  # what many() raised, if it gave up


def both_ways(db, items: list[Online]) -> Run:
    """Run the group one at a time and roll it back, then together; assert the same answers and rows.

    The database is left as the run together left it, for the next group.
    """
    reference = db.begin_nested()
    try:
        expected = described(db, one_at_a_time(db, items))
        expected_rows = table_rows(db)
    finally:
        reference.rollback()
    answers, handled, failure = together(db, items)
    assert described(db, answers) == expected, f"answers of {items}"
    assert table_rows(db) == expected_rows, f"rows after {items}"
    return Run(answers, handled, failure)


def run_alone(db, items: list[Online]) -> None:
    """Set the scene: events run one at a time, kept."""
    answers = one_at_a_time(db, items)
    assert not any(isinstance(answer, Refused) for answer in answers), answers


def presence_of(db, session_id: int, user_id: int):
    return db.execute(
        sa.select(Presence.since, Presence.last_seen_at).where(
            Presence.session_id == session_id, Presence.user_id == user_id
        )
    ).first()


def log_of(db, session_id: int, user_id: int) -> list[tuple]:
    return db.execute(
        sa.select(AttendanceEvent.kind, AttendanceEvent.source, AttendanceEvent.at)
        .where(AttendanceEvent.session_id == session_id, AttendanceEvent.user_id == user_id)
        .order_by(AttendanceEvent.at, AttendanceEvent.id)
    ).all()


# The plain cases, answered by many() itself ---------------------------------------------------


def test_fresh_check_ins_of_several_delegates_are_recorded_together(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    items = [
        event(CHECK_IN, s["open"], p["che"], at, "fresh-che-0001"),
        event(CHECK_IN, s["open"], p["fra"], at, "fresh-fra-0001"),
        event(CHECK_IN, s["open"], p["ngo"], at, "fresh-ngo-0001"),  # an observer: no Party on the event
        event(CHECK_IN, s["other"], p["nga"], at, "fresh-nga-0001"),
    ]

    run = both_ways(db, items)

    assert run.handled == {0, 1, 2, 3} and run.failure is None
    for result, changed, since in run.answers:
        assert result.recorded and result.event_id is not None and result.at == at
        assert changed and since == at
    assert presence_of(db, s["open"], p["che"]) == (at, at)


def test_a_second_tab_joins_the_presence_and_says_when_it_began(db, world, clock):
    s, p, arrived = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["open"], p["che"], arrived, "first-tab-0001")])
    later = arrived + dt.timedelta(seconds=30)

    run = both_ways(db, [event(CHECK_IN, s["open"], p["che"], later, "second-tab-001")])

    assert run.handled == {0}
    result, changed, since = run.answers[0]
    assert (result.event_id, result.kind, result.at, result.recorded) == (None, "entry", later, False)
    assert not changed and since == arrived
    assert presence_of(db, s["open"], p["che"]) == (arrived, later)


def test_heartbeats_say_whether_the_delegate_is_present_and_never_move_last_seen_back(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(
        db,
        [
            event(CHECK_IN, s["open"], p["che"], at, "beating-che-01"),
            event(CHECK_IN, s["open"], p["nga"], at + dt.timedelta(seconds=40), "beating-nga-01"),
        ],
    )
    beat = at + dt.timedelta(seconds=20)
    items = [
        event(HEARTBEAT, s["open"], p["che"], beat),
        event(HEARTBEAT, s["open"], p["fra"], beat),  # never checked in
        event(HEARTBEAT, s["open"], p["nga"], beat),  # a clock behind its own check-in
    ]

    run = both_ways(db, items)

    assert run.handled == {0, 1, 2}
    assert run.answers == [(True, False, None), (False, False, None), (True, False, None)]
    assert presence_of(db, s["open"], p["che"]).last_seen_at == beat
    assert presence_of(db, s["open"], p["nga"]).last_seen_at == at + dt.timedelta(seconds=40)


def test_a_check_out_from_inside_is_recorded_and_one_from_outside_is_not(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["open"], p["che"], at, "leaving-in-001")])
    out = at + dt.timedelta(seconds=45)
    items = [
        event(CHECK_OUT, s["open"], p["che"], out, "leaving-out-01"),
        event(CHECK_OUT, s["open"], p["fra"], out, "never-in-0001"),
        event(CHECK_OUT, s["in_person"], p["nga"], out, "in-person-out1"),  # no online presence there
    ]

    run = both_ways(db, items)

    assert run.handled == {0, 1, 2}
    left, changed, since = run.answers[0]
    assert (left.kind, left.at, left.recorded, changed, since) == ("exit", out, True, True, None)
    for outside, changed, _ in run.answers[1:]:
        assert (outside.event_id, outside.recorded, changed) == (None, False, False)
    assert presence_of(db, s["open"], p["che"]) is None


def test_an_entry_dated_before_the_delegates_last_event_is_dated_at_that_event(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    left = at + dt.timedelta(seconds=50)
    run_alone(
        db,
        [
            event(CHECK_IN, s["open"], p["che"], at, "behind-in-0001"),
            event(CHECK_OUT, s["open"], p["che"], left, "behind-out-001"),
        ],
    )

    # Another server process whose clock is behind: its check-in is older than the exit logged.
    run = both_ways(db, [event(CHECK_IN, s["open"], p["che"], at + dt.timedelta(seconds=20), "behind-in-0002")])

    assert run.handled == {0}
    result, changed, since = run.answers[0]
    assert result.recorded and result.at == left and since == left and changed
    assert presence_of(db, s["open"], p["che"]) == (left, left)


def test_reading_a_delegates_last_event_costs_the_same_however_long_their_log(db, world, clock):
    # A busy session logs hundreds of events per delegate: the group's read of each one's last event
    # (for the rule above) must take it from the end of an index, not read them all. SQLite counts
    # the work: its virtual machine calls a progress handler every 10 instructions it runs.
    if db.get_bind().dialect.name != "sqlite":
        pytest.skip("counts SQLite's virtual machine instructions")
    s, p, at = world.sessions, world.people, clock()
    run_alone(
        db,
        [
            event(CHECK_IN, s["open"], p["che"], at, "long-log-0000"),
            event(CHECK_OUT, s["open"], p["che"], at, "long-log-out"),
        ],
    )
    read = online._group_read(False)
    params = online._group_keys(
        False,
        [event(CHECK_IN, s["open"], p["che"], at, "long-log-next"), event(CHECK_IN, s["open"], p["fra"], at, "f")],
    )

    def work() -> tuple[int, list]:
        steps = [0]
        raw = db.connection().connection.dbapi_connection
        raw.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1), 10)
        try:
            rows = db.connection().execute(read, params).all()
        finally:
            raw.set_progress_handler(None, 10)
        return steps[0], rows

    short, _ = work()
    first = db.execute(sa.select(AttendanceEvent.__table__).where(AttendanceEvent.nonce == "long-log-0000")).one()
    copies = [
        {**first._asdict(), "id": None, "at": at + dt.timedelta(seconds=n), "nonce": f"long-log-{n:04}"}
        for n in range(1, 2001)
    ]
    db.execute(sa.insert(AttendanceEvent.__table__), copies)
    long, rows = work()

    assert {(row.user_id, row.last_at) for row in rows} == {
        (p["che"], at + dt.timedelta(seconds=2000)),
        (p["fra"], None),
    }
    assert long <= short + 5, f"{short * 10} instructions for a log of 2 events, {long * 10} for 2,002"


def test_a_check_out_dated_before_its_presence_began_is_dated_when_it_began(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    began = at + dt.timedelta(seconds=50)
    run_alone(db, [event(CHECK_IN, s["open"], p["che"], began, "ahead-in-00001")])

    run = both_ways(db, [event(CHECK_OUT, s["open"], p["che"], at + dt.timedelta(seconds=10), "ahead-out-0001")])

    assert run.handled == {0}
    result, changed, _ = run.answers[0]
    assert result.recorded and result.at == began and changed
    assert [(kind.value, when) for kind, _, when in log_of(db, s["open"], p["che"])] == [
        ("entry", began),
        ("exit", began),
    ]


def test_a_heartbeat_in_a_suspended_session_is_answered_and_a_check_in_refused(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["other"], p["che"], at, "suspended-che1")])
    services.change_state(db, db.get(MeetingSession, s["other"]), "suspend", world.officer, at)
    later = at + dt.timedelta(seconds=20)
    items = [
        event(HEARTBEAT, s["other"], p["che"], later),
        event(CHECK_IN, s["other"], p["fra"], later, "suspended-fra1"),
        event(CHECK_OUT, s["other"], p["nga"], later, "suspended-nga1"),
    ]

    run = both_ways(db, items)

    assert run.handled == {0, 2}
    assert run.answers[0] == (True, False, None)
    assert run.answers[1] == Refused("session_closed")
    assert not run.answers[2][0].recorded


# Left to one(): retries, refusals, lapses, several events of one delegate ---------------------


def test_a_retried_nonce_answers_with_the_event_it_recorded(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(
        db,
        [
            event(CHECK_IN, s["open"], p["che"], at, "retried-in-001"),
            event(CHECK_IN, s["open"], p["fra"], at, "retried-in-002"),
            event(CHECK_OUT, s["open"], p["fra"], at + dt.timedelta(seconds=5), "retried-out-01"),
        ],
    )
    later = at + dt.timedelta(seconds=10)
    items = [
        event(CHECK_IN, s["open"], p["che"], later, "retried-in-001"),
        event(CHECK_OUT, s["open"], p["fra"], later, "retried-out-01"),
        event(CHECK_IN, s["open"], p["nga"], later, "not-retried-01"),
    ]

    run = both_ways(db, items)

    assert run.handled == {2}
    entry, changed, since = run.answers[0]
    assert (entry.kind, entry.at, entry.recorded, changed, since) == ("entry", at, False, False, at)
    assert entry.event_id is not None
    exit_, changed, _ = run.answers[1]
    assert (exit_.kind, exit_.at, exit_.recorded, changed) == ("exit", at + dt.timedelta(seconds=5), False, False)
    assert run.answers[2][0].recorded


def test_a_nonce_reused_for_another_kind_or_delegate_is_refused(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(
        db,
        [
            event(CHECK_IN, s["open"], p["che"], at, "reused-che-001"),
            event(CHECK_IN, s["open"], p["fra"], at, "reused-fra-001"),
        ],
    )
    later = at + dt.timedelta(seconds=10)
    items = [
        event(CHECK_OUT, s["open"], p["che"], later, "reused-che-001"),  # their own check-in's, to leave
        event(CHECK_IN, s["open"], p["nga"], later, "reused-fra-001"),  # someone else's
        event(CHECK_IN, s["other"], p["bra"], later, "reused-che-001"),  # another session's: free there
    ]

    run = both_ways(db, items)

    assert run.handled == {2}
    assert run.answers[:2] == [Refused("nonce_reused"), Refused("nonce_reused")]
    assert run.answers[2][0].recorded
    assert presence_of(db, s["open"], p["che"]) is not None


@pytest.mark.parametrize("nonce", [None, 12345678, "short", "has spaces!", "x" * 65, ["a-list-nonce"]])
def test_a_malformed_nonce_is_refused(db, world, clock, nonce):
    s, p, at = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["open"], p["fra"], at, "malformed-fra1")])

    arriving = both_ways(
        db,
        [event(CHECK_IN, s["open"], p["che"], at, nonce), event(CHECK_IN, s["open"], p["nga"], at, "well-formed-01")],
    )
    leaving = both_ways(
        db,
        [event(CHECK_OUT, s["open"], p["fra"], at, nonce), event(CHECK_IN, s["open"], p["bra"], at, "well-formed-02")],
    )

    assert arriving.handled == leaving.handled == {1}
    assert arriving.answers[0] == leaving.answers[0] == Refused("bad_nonce")
    assert presence_of(db, s["open"], p["fra"]) is not None


def test_one_nonce_twice_in_a_group_counts_for_the_first_delegate_only(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    items = [
        event(CHECK_IN, s["open"], p["che"], at, "shared-nonce-1"),
        event(CHECK_IN, s["open"], p["fra"], at, "shared-nonce-1"),
        event(CHECK_IN, s["open"], p["nga"], at, "own-nonce-0001"),
    ]

    run = both_ways(db, items)

    assert run.handled == {2}
    assert run.answers[0][0].recorded and run.answers[1] == Refused("nonce_reused")


def test_several_events_of_one_delegate_in_a_group_run_one_at_a_time_in_their_order(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    second = dt.timedelta(seconds=1)
    items = [
        event(CHECK_IN, s["open"], p["che"], at, "in-order-in-01"),
        event(HEARTBEAT, s["open"], p["che"], at + second),
        event(CHECK_OUT, s["open"], p["che"], at + 5 * second, "in-order-out-1"),
        event(CHECK_IN, s["open"], p["che"], at + 3 * second, "in-order-in-02"),  # sent before the exit was
        event(CHECK_IN, s["open"], p["fra"], at, "in-order-fra-1"),
    ]

    run = both_ways(db, items)

    assert run.handled == {4}
    entry, beat, exit_, again = run.answers[:4]
    assert entry[0].recorded and beat == (True, False, None) and exit_[0].recorded
    # The second entry, sent before the exit was, is dated at the exit, as the log must fold.
    assert again[0].recorded and again[0].at == at + 5 * second
    assert [(kind.value, when) for kind, _, when in log_of(db, s["open"], p["che"])] == [
        ("entry", at),
        ("exit", at + 5 * second),
        ("entry", at + 5 * second),
    ]


def test_a_lapsed_presence_ends_when_last_seen_before_the_delegate_is_answered(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    run_alone(
        db,
        [event(CHECK_IN, s["open"], p[name], at, f"lapsing-{name}-01") for name in ("che", "fra", "nga")],
    )
    back = at + dt.timedelta(seconds=200)
    items = [
        event(CHECK_IN, s["open"], p["che"], back, "lapsed-back-01"),
        event(HEARTBEAT, s["open"], p["fra"], back),
        event(CHECK_OUT, s["open"], p["nga"], back, "lapsed-out-001"),
        event(CHECK_IN, s["open"], p["bra"], back, "not-lapsed-001"),
    ]

    run = both_ways(db, items)

    assert run.handled == {3}
    entry, changed, since = run.answers[0]
    assert entry.recorded and entry.at == back and changed and since == back
    assert run.answers[1] == (False, True, None)
    exit_, changed, _ = run.answers[2]
    assert not exit_.recorded and changed
    assert [(kind.value, source.value, when) for kind, source, when in log_of(db, s["open"], p["che"])] == [
        ("entry", "browser", at),
        ("exit", "system", at),
        ("entry", "browser", back),
    ]


def test_an_ended_login_is_refused(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    items = [
        event(CHECK_IN, s["open"], p["ended"], at, "ended-login-01"),
        event(HEARTBEAT, s["open"], p["disabled"], at),
        event(CHECK_IN, s["open"], p["che"], at, "old-epoch-0001", epoch=7),
        event(CHECK_IN, s["open"], p["fra"], at, "login-holds-01"),
    ]

    run = both_ways(db, items)

    assert run.handled == {3}
    assert run.answers[:3] == [Refused("login_required")] * 3


def test_sessions_that_take_no_online_check_in_refuse_it(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    items = [
        event(CHECK_IN, s["scheduled"], p["che"], at, "not-open-00001"),
        event(CHECK_IN, s["missing"], p["che"], at, "not-found-0001"),
        event(HEARTBEAT, s["missing"], p["fra"], at),
        event(CHECK_IN, s["in_person"], p["che"], at, "in-person-0001"),
        event(CHECK_IN, s["open"], p["che"], at, "is-open-000001"),
    ]

    run = both_ways(db, items)

    assert run.handled == {4}
    assert run.answers[:4] == [
        Refused("session_closed"),
        Refused("not_found"),
        Refused("not_found"),
        Refused("wrong_channel"),
    ]


def test_registrations_that_do_not_admit_the_delegate_refuse_the_check_in(db, world, clock):
    s, p, at = world.sessions, world.people, clock()
    items = [
        event(CHECK_IN, s["open"], p["pending"], at, "pending-00001"),
        event(CHECK_IN, s["open"], p["in_person_only"], at, "other-segment1"),
        event(CHECK_IN, s["open"], p["unregistered"], at, "unregistered1"),
        event(CHECK_OUT, s["other"], p["unregistered"], at, "unregistered2"),  # never inside: nothing to end
        event(CHECK_IN, s["open"], p["che"], at, "registered-001"),
    ]

    run = both_ways(db, items)

    assert run.handled == {3, 4}
    assert run.answers[:3] == [
        Refused("not_approved"),
        Refused("not_registered_for_segment"),
        Refused("not_registered"),
    ]
    assert not run.answers[3][0].recorded and run.answers[4][0].recorded


@pytest.mark.parametrize("own", [True, False], ids=["the server's own", "their former shape"])
def test_a_check_in_carrying_the_nonce_of_another_delegates_lapse_leaves_that_lapse_logged(db, world, clock, own):
    """A check-in that many() answers is written before the events it leaves to one(), whatever their order.

    The exit of a lapsed presence, left to one(), carries a nonce of the server's: a page that sent
    it first would have taken it, the exit could not be logged and the presence would go on. The
    server's nonces are out of reach of a page's (services.system_nonce); the form they had before
    is an ordinary nonce.
    """
    s, p, at = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["open"], p["che"], at, "lapse-victim-1")])
    since = int(at.timestamp() * 1_000_000)
    taken = services.system_nonce("lapsed", p["che"], since) if own else f"lapsed-{p['che']}-{since}"
    back = at + dt.timedelta(seconds=200)
    items = [
        event(CHECK_IN, s["open"], p["che"], back, "lapse-victim-2"),
        event(CHECK_IN, s["open"], p["fra"], back, taken),
    ]

    run = both_ways(db, items)

    if own:
        assert run.handled == set() and run.answers[1] == Refused("bad_nonce")
    else:
        assert run.handled == {1} and run.answers[1][0].recorded
    assert run.answers[0][0].recorded and run.answers[0][0].at == back
    assert [(kind.value, source.value, when) for kind, source, when in log_of(db, s["open"], p["che"])] == [
        ("entry", "browser", at),
        ("exit", "system", at),
        ("entry", "browser", back),
    ]


# Random groups -------------------------------------------------------------------------------

# Mostly delegates who may check in (one an observer), now and then one not approved, one not
# registered for the segment or one whose login ended.
CROWD = ["che"] * 3 + ["fra"] * 3 + ["ngo"] * 2 + ["pending", "in_person_only", "ended"]
# Mostly the open session, now and then another or one that refuses online check-ins.
PLACES = ["open"] * 6 + ["other"] * 2 + ["scheduled", "in_person"]
KINDS = [CHECK_IN, CHECK_IN, HEARTBEAT, CHECK_OUT]
# Mostly a nonce not used before; else one used before (by anyone, for anything) or a malformed one.
ODD_NONCES = [None, 42, "short", "has spaces!", "x" * 65, "trailing-newline\n", "y" * 64 + "\n"]
NONCES = st.tuples(
    st.sampled_from(["fresh"] * 6 + ["again"] * 3 + ["odd"]), st.integers(0, 30), st.sampled_from(ODD_NONCES)
)
ITEMS = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(CROWD),
    st.sampled_from(PLACES),
    NONCES,
    st.integers(-20, 20),  # seconds off the group's moment: clocks of different processes
)
# Seconds between groups: mostly a heartbeat's interval or less, about the grace period or more, and
# now and then back in time.
WAITS = st.sampled_from([0, 5, 20, 20, 59, 60, 61, 90, 200, -15, -30, -60])
GROUPS = st.lists(st.tuples(WAITS, st.lists(ITEMS, min_size=1, max_size=6)), min_size=2, max_size=10)
RANDOM_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_random_groups_are_answered_and_recorded_as_one_at_a_time(db, world, clock):
    start = clock()
    fast = {"groups": 0, "answered": 0}

    @RANDOM_SETTINGS
    @given(groups=GROUPS)
    def random_groups(groups):
        db.rollback()  # every example starts from the world as committed: no events, no presences
        fresh = (f"nonce-{n:06d}" for n in itertools.count(1))
        used: list[object] = []
        now = start
        try:
            for wait, specs in groups:
                now += dt.timedelta(seconds=wait)
                items = []
                for kind, who, where, nonce, off in specs:
                    if kind == HEARTBEAT:
                        chosen = None
                    elif nonce[0] == "fresh" or (nonce[0] == "again" and not used):
                        chosen = next(fresh)
                    elif nonce[0] == "again":
                        chosen = used[nonce[1] % len(used)]
                    else:
                        chosen = nonce[2]
                    if isinstance(chosen, str):
                        used.append(chosen)
                    at = now + dt.timedelta(seconds=off)
                    items.append(event(kind, world.sessions[where], world.people[who], at, chosen))
                run = both_ways(db, items)
                # Alone on the database, many() never finds it changed.
                assert run.failure is None, run.failure
                fast["groups"] += 1
                fast["answered"] += len(run.handled)
        finally:
            db.rollback()

    random_groups()

    # Many groups had plain events: the fast path must have answered a good share of them itself.
    assert fast["answered"] > fast["groups"] / 2, fast


# The group commit falls back to one at a time ------------------------------------------------


def committed(app, items: list[Online], batcher) -> list:
    """Run the items as one group through the process's committer, with this batcher; the answers."""
    units = [_Unit(partial(online.one, item=item), (batcher, item), threading.Event()) for item in items]
    app.extensions["commits"]._commit(units)
    answers = []
    for unit in units:
        assert unit.done.is_set()
        if isinstance(unit.error, services.MeetingError):
            answers.append(Refused(unit.error.code))
        else:
            assert unit.error is None, unit.error
            answers.append(unit.result)
    return answers


def fallback_scene(db, world, clock) -> tuple[list[Online], dict[str, int]]:
    """che and nga inside; a group in which che leaves, fra arrives and nga's page beats."""
    s, p, at = world.sessions, world.people, clock()
    run_alone(db, [event(CHECK_IN, s["open"], p[name], at, f"fallback-{name}-1") for name in ("che", "nga")])
    db.commit()
    later = at + dt.timedelta(seconds=20)
    items = [
        event(CHECK_OUT, s["open"], p["che"], later, "fallback-out-01"),
        event(CHECK_IN, s["open"], p["fra"], later, "fallback-in-001"),
        event(HEARTBEAT, s["open"], p["nga"], later),
        event(CHECK_IN, s["open"], p["pending"], later, "fallback-refuse"),
    ]
    return items, {"leaving": p["che"], "arriving": p["fra"], "staying": p["nga"], "session": s["open"]}


def expected_one_at_a_time(db, items: list[Online]) -> tuple[list, tuple]:
    """What the items answer and leave one at a time, rolled back (the committer then runs them for good)."""
    try:
        return described(db, one_at_a_time(db, items)), table_rows(db)
    finally:
        db.rollback()


def test_a_batch_that_fails_after_its_writes_leaves_none_of_them_and_every_event_runs_alone(app, db, world, clock):
    items, _ = fallback_scene(db, world, clock)
    expected, expected_rows = expected_one_at_a_time(db, items)
    batched = []

    def failing_batch(db, items):
        batched.append(online.many(db, items))
        raise Stale("another process got there first")

    answers = committed(app, items, failing_batch)

    assert batched and set(batched[0]) == {0, 1, 2}, "the batch ran and wrote before it failed"
    assert described(db, answers) == expected
    assert table_rows(db) == expected_rows


def test_work_run_alone_after_a_failed_batch_is_committed_with_the_group(app, db, world, clock):
    """The first batch has no savepoint: its failure rolls the transaction back, and the group goes on in a new one."""
    items, _ = fallback_scene(db, world, clock)
    bra = event(CHECK_IN, world.sessions["open"], world.people["bra"], items[0].at, "fallback-bra-01")
    expected, expected_rows = expected_one_at_a_time(db, [*items, bra])
    batched = []

    def failing_batch(db, items):
        batched.append(online.many(db, items))
        raise Stale("another process got there first")

    units = [_Unit(partial(online.one, item=item), (failing_batch, item), threading.Event()) for item in items]
    alone = _Unit(partial(online.one, item=bra), None, threading.Event())
    app.extensions["commits"]._commit([*units, alone])

    assert batched and set(batched[0]) == {0, 1, 2}, "the batch ran and wrote before it failed"
    answers = [Refused(unit.error.code) if unit.error else unit.result for unit in [*units, alone]]
    assert described(db, answers) == expected
    assert table_rows(db) == expected_rows


def test_a_batch_that_fails_after_another_batch_undoes_its_own_writes_only(app, db, world, clock):
    """A second batch writes after the first: it has a savepoint of its own, and the first one's writes stay."""
    items, _ = fallback_scene(db, world, clock)
    expected, expected_rows = expected_one_at_a_time(db, items)
    failed = []

    def first_batch(db, items):
        return online.many(db, items)

    def failing_batch(db, items):
        failed.append(online.many(db, items))
        raise Stale("another process got there first")

    batcher = [first_batch, failing_batch, failing_batch, failing_batch]
    units = [
        _Unit(partial(online.one, item=item), (batch, item), threading.Event())
        for item, batch in zip(items, batcher, strict=True)
    ]
    app.extensions["commits"]._commit(units)

    assert failed and failed[0], "the second batch wrote before it failed"
    answers = [Refused(unit.error.code) if unit.error else unit.result for unit in units]
    assert described(db, answers) == expected
    assert table_rows(db) == expected_rows


# Another process's write, made on the batch's own connection just before the batch's statement: the
# batch must notice, and its savepoint (the other write with it) is rolled back.
INTERFERENCE = {
    "a presence to end gone": (
        "DELETE FROM presences",
        "DELETE FROM presences WHERE session_id = {session} AND user_id = {leaving}",
        Stale,
    ),
    "a presence to open there": (
        "INSERT INTO presences",
        "INSERT INTO presences (session_id, user_id, channel, since, last_seen_at)"
        " SELECT session_id, {arriving}, channel, since, last_seen_at FROM presences"
        " WHERE session_id = {session} AND user_id = {staying}",
        IntegrityError,
    ),
    "a presence to stamp gone": (
        "UPDATE presences",
        "DELETE FROM presences WHERE session_id = {session} AND user_id = {staying}",
        Stale,
    ),
}


@pytest.mark.parametrize("case", sorted(INTERFERENCE))
def test_a_batch_that_finds_the_database_changed_falls_back_to_one_at_a_time(app, db, world, clock, case):
    items, who = fallback_scene(db, world, clock)
    expected, expected_rows = expected_one_at_a_time(db, items)
    before, interfering, raised = INTERFERENCE[case]
    interfered, failures = [], []

    def other_process(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(before) and not interfered:
            interfered.append(statement)
            cursor.execute(interfering.format(**who))

    def watched_batch(db, items):
        try:
            return online.many(db, items)
        except Exception as exc:
            failures.append(exc)
            raise

    engine = app.extensions["db_engine"]
    sa.event.listen(engine, "before_cursor_execute", other_process)
    try:
        answers = committed(app, items, watched_batch)
    finally:
        sa.event.remove(engine, "before_cursor_execute", other_process)

    assert interfered, "the batch never ran the statement"
    assert len(failures) == 1 and isinstance(failures[0], raised), failures
    assert described(db, answers) == expected
    assert table_rows(db) == expected_rows
