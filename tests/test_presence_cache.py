"""The presences table is a cache of the log folded by the presence rule: verified and rebuilt by a command."""

import datetime as dt

import pytest
import sqlalchemy as sa

from auth.models import Role
from meetings import presence_cache, services
from meetings.models import Channel, EventKind, Presence, SegmentKind, Source


@pytest.fixture
def hybrid(db, cop4, make_user, clock):
    """The online segment's first session, made hybrid and open; returns (session, officer)."""
    officer, _ = make_user(Role.OFFICER)
    meeting_session = cop4.segments[0].sessions[0]
    meeting_session.segment.kind = SegmentKind.HYBRID
    services.change_state(db, meeting_session, "open", officer, clock())
    db.commit()
    return meeting_session, officer


@pytest.fixture
def attended(db, hybrid, make_delegate, clock):
    """Three delegates inside: by their page, by an officer's hand online, by the gate; returns them."""
    meeting_session, officer = hybrid
    page, _ = make_delegate("CHE")
    by_hand, _ = make_delegate("FRA")
    at_gate, _ = make_delegate("NGA")
    services.online_check_in(
        db, meeting_session, page, nonce="page-0001", now=clock(), lapsed_before=clock() - dt.timedelta(seconds=60)
    )
    clock.advance(3)
    for user, channel, source in (
        (by_hand, Channel.ONLINE, Source.OFFICER),
        (at_gate, Channel.IN_PERSON, Source.KIOSK),
    ):
        services.record_attendance(
            db,
            meeting_session,
            user,
            kind=EventKind.ENTRY,
            channel=channel,
            source=source,
            nonce=f"entry-{user.id:04d}",
            now=clock(),
            recorded_by=officer,
        )
    db.commit()
    return page, by_hand, at_gate


def verify(app, *args):
    return app.test_cli_runner().invoke(args=["meetings", "verify-attendance", *args])


def presences(db, meeting_session) -> dict:
    db.expire_all()
    return {
        (p.user_id, p.channel.value): (p.since, p.last_seen_at)
        for p in db.scalars(sa.select(Presence).where(Presence.session_id == meeting_session.id))
    }


def test_the_table_kept_by_the_check_in_paths_agrees_with_the_log(app, db, hybrid, attended):
    meeting_session, _ = hybrid
    assert presence_cache.differences(db, meeting_session) == []

    result = verify(app, "COP-4")

    assert result.exit_code == 0, result.output
    assert f"Session {meeting_session.id} ({meeting_session.title}): the presences agree with the log." in result.output


def test_every_kind_of_difference_is_reported_and_the_rebuild_mends_it(app, db, hybrid, attended, clock):
    meeting_session, _ = hybrid
    page, by_hand, at_gate = attended
    before = presences(db, meeting_session)
    sid = meeting_session.id
    # The table loses one row, gains one, moves a start, and forgets that an officer holds a presence.
    db.execute(sa.delete(Presence).where(Presence.session_id == sid, Presence.user_id == at_gate.id))
    db.add(Presence(session_id=sid, user_id=page.id, channel=Channel.IN_PERSON, since=clock()))
    db.execute(
        sa.update(Presence)
        .where(Presence.session_id == sid, Presence.user_id == page.id, Presence.channel == Channel.ONLINE)
        .values(since=clock() - dt.timedelta(minutes=5))
    )
    db.execute(
        sa.update(Presence)
        .where(Presence.session_id == sid, Presence.user_id == by_hand.id)
        .values(last_seen_at=clock())
    )
    db.commit()

    result = verify(app, "--session", str(sid))

    assert result.exit_code == 1
    problems = {(d.user_id, d.channel, d.problem) for d in presence_cache.differences(db, meeting_session)}
    assert problems == {
        (at_gate.id, "in_person", "missing"),
        (page.id, "in_person", "extra"),
        (page.id, "online", "since"),
        (by_hand.id, "online", "held"),
    }
    assert "4 difference(s) from the log" in result.output
    assert f"participant {at_gate.id}, in_person: missing" in result.output
    assert "Run again with --rebuild" in result.output
    assert presences(db, meeting_session) != before  # a check is read-only

    rebuilt = verify(app, "--session", str(sid), "--rebuild")

    assert rebuilt.exit_code == 0, rebuilt.output
    assert f"Session {sid}: rebuilt from the log (3 inside)." in rebuilt.output
    assert presences(db, meeting_session) == before  # the page's last contact kept, the held rows held
    assert verify(app).exit_code == 0


def test_a_closed_session_has_nobody_inside(app, db, hybrid, attended, clock):
    meeting_session, officer = hybrid
    services.change_state(db, meeting_session, "close", officer, clock(), lapsed_before=clock())
    db.commit()
    assert presences(db, meeting_session) == {}
    db.add(Presence(session_id=meeting_session.id, user_id=officer.id, channel=Channel.ONLINE, since=clock()))
    db.commit()

    result = verify(app, "COP-4")

    assert result.exit_code == 1
    assert f"participant {officer.id}, online: extra" in result.output


def test_an_unknown_meeting_is_named(app, cop4):
    result = verify(app, "COP-9")
    assert result.exit_code == 1
    assert "There is no meeting COP-9." in result.output
