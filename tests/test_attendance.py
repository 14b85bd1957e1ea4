"""Check-in and check-out through the services: refusals, nonces, session states, quorum from the log."""

import pytest
import sqlalchemy as sa

from auth.models import Role
from meetings import dashboard, services
from meetings.models import AttendanceEvent, Channel, EventKind, SessionState, Source


@pytest.fixture
def officer(make_user):
    return make_user(Role.OFFICER)[0]


def check(db, meeting_session, user, clock, *, kind=EventKind.ENTRY, channel=Channel.ONLINE, nonce=None):
    result = services.record_attendance(
        db,
        meeting_session,
        user,
        kind=kind,
        channel=channel,
        source=Source.BROWSER,
        nonce=nonce or f"nonce-{user.id}-{kind.value}-{clock().timestamp():.0f}",
        now=clock(),
    )
    db.commit()
    return result


def opened(db, meeting_session, officer, clock):
    services.change_state(db, meeting_session, "open", officer, clock())
    db.commit()
    return meeting_session


def test_check_in_is_refused_until_the_session_is_open(db, online_session, make_delegate, officer, clock):
    delegate, _ = make_delegate()
    with pytest.raises(services.CheckInError) as refused:
        check(db, online_session, delegate, clock)
    assert refused.value.code == "session_closed" and "not been opened" in refused.value.message
    opened(db, online_session, officer, clock)
    assert check(db, online_session, delegate, clock).recorded


@pytest.mark.parametrize("approve", [False])
def test_unapproved_delegates_cannot_check_in(db, online_session, make_delegate, officer, clock, approve):
    delegate, _ = make_delegate(approve=approve)
    opened(db, online_session, officer, clock)
    with pytest.raises(services.CheckInError) as refused:
        check(db, online_session, delegate, clock)
    assert refused.value.code == "not_approved"


def test_unregistered_accounts_cannot_check_in(db, online_session, make_user, officer, clock):
    stranger, _ = make_user()
    opened(db, online_session, officer, clock)
    with pytest.raises(services.CheckInError) as refused:
        check(db, online_session, stranger, clock)
    assert refused.value.code == "not_registered"


def test_online_check_in_to_an_in_person_session_is_refused(db, cop4, make_delegate, officer, clock):
    delegate, _ = make_delegate()
    plenary = opened(db, cop4.segments[1].sessions[0], officer, clock)
    with pytest.raises(services.CheckInError) as refused:
        check(db, plenary, delegate, clock)
    assert refused.value.code == "wrong_channel"


@pytest.mark.parametrize("nonce", ["", "short", "x" * 65, "has space in it", None, 12345678])
def test_malformed_nonces_are_refused(db, online_session, make_delegate, officer, clock, nonce):
    delegate, _ = make_delegate()
    opened(db, online_session, officer, clock)
    with pytest.raises(services.CheckInError) as refused:
        services.record_attendance(
            db,
            online_session,
            delegate,
            kind=EventKind.ENTRY,
            channel=Channel.ONLINE,
            source=Source.BROWSER,
            nonce=nonce,
            now=clock(),
        )
    assert refused.value.code == "bad_nonce"


def test_the_same_nonce_twice_records_one_event(db, online_session, make_delegate, officer, clock):
    delegate, _ = make_delegate()
    opened(db, online_session, officer, clock)
    first = check(db, online_session, delegate, clock, nonce="retry-after-lost-ack")
    clock.advance(5)
    again = check(db, online_session, delegate, clock, nonce="retry-after-lost-ack")
    assert first.recorded and not again.recorded and again.event_id == first.event_id
    count = db.scalar(
        sa.select(sa.func.count(AttendanceEvent.id)).where(AttendanceEvent.session_id == online_session.id)
    )
    assert count == 1


def test_a_nonce_cannot_be_reused_by_someone_else(db, online_session, make_delegate, officer, clock):
    first, _ = make_delegate("CHE")
    second, _ = make_delegate("NGA")
    opened(db, online_session, officer, clock)
    check(db, online_session, first, clock, nonce="shared-nonce-value")
    with pytest.raises(services.CheckInError) as refused:
        check(db, online_session, second, clock, nonce="shared-nonce-value")
    assert refused.value.code == "nonce_reused"


def test_quorum_counts_parties_not_people(db, online_session, make_delegate, officer, clock):
    swiss_a, _ = make_delegate("CHE")
    swiss_b, _ = make_delegate("CHE")
    nigerian, _ = make_delegate("NGA")
    opened(db, online_session, officer, clock)
    for user in (swiss_a, swiss_b, nigerian):
        check(db, online_session, user, clock)
    q = services.session_quorum(db, online_session)
    assert q.present == 2 and q.present_codes == ("CHE", "NGA")
    clock.advance(60)
    check(db, online_session, swiss_a, clock, kind=EventKind.EXIT)
    assert services.session_quorum(db, online_session).present_codes == ("CHE", "NGA")
    check(db, online_session, swiss_b, clock, kind=EventKind.EXIT)
    assert services.session_quorum(db, online_session).present_codes == ("NGA",)


def test_observers_are_never_counted_in_the_quorum(db, cop4, online_session, make_user, officer, clock):
    from meetings.models import Category, Function

    observer, _ = make_user()
    registration = services.register(
        db,
        meeting=cop4,
        user=observer,
        category=Category.NGO,
        function=Function.ADVISER,
        segment_ids=[cop4.segments[0].id],
        organization="Zero Mercury Working Group",
        now=clock(),
    )
    services.approve(db, registration, officer, clock())
    db.commit()
    opened(db, online_session, officer, clock)
    check(db, online_session, observer, clock)
    state = dashboard.state(db, online_session, clock())
    assert state["participants_present"] == 1 and state["parties_present"] == 0


def test_closing_a_session_ends_every_presence_at_the_closing_time(db, online_session, make_delegate, officer, clock):
    delegate, _ = make_delegate()
    opened(db, online_session, officer, clock)
    check(db, online_session, delegate, clock)
    closing = clock.advance(3600)
    services.change_state(db, online_session, "close", officer, closing)
    db.commit()
    assert online_session.state == SessionState.CLOSED
    assert services.present_users(db, online_session) == {}
    [row] = services.attendance_rows(db, online_session)
    assert row["out_utc"] == closing.isoformat(timespec="seconds")
    with pytest.raises(services.CheckInError) as refused:
        check(db, online_session, delegate, clock)
    assert refused.value.code == "session_closed"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (["open", "suspend", "open", "close"], True),
        (["suspend"], False),
        (["close"], False),
        (["open", "close", "open"], False),
        (["open", "open"], False),
    ],
)
def test_session_state_machine(db, online_session, officer, clock, path, allowed):
    def walk():
        for action in path:
            services.change_state(db, online_session, action, officer, clock())

    if allowed:
        walk()
        assert online_session.state == SessionState.CLOSED
    else:
        with pytest.raises(services.MeetingError) as refused:
            walk()
        assert refused.value.code == "bad_transition"
