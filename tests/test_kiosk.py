"""Gate kiosks: badge scans with codes at the entry, exits without, refusals in words, offline scans sent later."""

import datetime as dt

import pytest
import sqlalchemy as sa
from conftest import login, registration_of, socket_client

from auth import throttle, totp
from auth.badges import BadgeRef, badge_token
from auth.models import LoginThrottle, Role
from meetings import badges, services
from meetings.models import (
    AttendanceEvent,
    Badge,
    Category,
    Channel,
    Function,
    Meeting,
    RegistrationStatus,
    Segment,
    SegmentKind,
    Source,
)


@pytest.fixture
def officer(make_user):
    return make_user(Role.OFFICER, email="gate@example.org", password="officer password")


@pytest.fixture
def officer_client(app, officer, clock):
    client = app.test_client()
    login(client, "gate@example.org", "officer password", officer[1], clock)
    return client


@pytest.fixture
def kiosk(app, officer_client):
    return socket_client(app, officer_client)


@pytest.fixture
def plenary(db, cop4, officer, clock):
    """The in-person segment's opening plenary, open."""
    meeting_session = cop4.segments[1].sessions[0]
    services.change_state(db, meeting_session, "open", officer[0], clock())
    db.commit()
    return meeting_session


@pytest.fixture
def holder(app, db, make_delegate):
    """An approved Swiss delegate: (user, TOTP secret, badge token)."""
    user, secret = make_delegate("CHE", email="holder@example.org", password="delegate password")
    badge = registration_of(db, user).badges[0]
    return user, secret, badges.token_for(app.secret_key, badge)


def scan(sio, meeting_session, token, *, gate="entry", code=None, nonce="scan-0001", at=None, **extra):
    payload = {
        "session_id": meeting_session.id,
        "gate": gate,
        "token": token,
        "nonce": nonce,
        "scanned_at": at.isoformat(),
        **extra,
    }
    if code is not None:
        payload["code"] = code
    return sio.emit("kiosk_scan", payload, namespace="/live", callback=True)


def events(db, meeting_session):
    db.expire_all()
    return list(
        db.scalars(
            sa.select(AttendanceEvent)
            .where(AttendanceEvent.session_id == meeting_session.id)
            .order_by(AttendanceEvent.at, AttendanceEvent.id)
        )
    )


def failures(db, email):
    db.expire_all()
    return db.scalar(sa.select(LoginThrottle.failures).where(LoginThrottle.key == throttle.key_of(email))) or 0


def refused(ack, code):
    assert ack["ok"] is False, ack
    assert ack["error"]["code"] == code and ack["error"]["message"], ack
    return ack["error"]["message"]


def enter(kiosk, plenary, holder, clock, nonce="scan-0001"):
    _, secret, token = holder
    return scan(kiosk, plenary, token, code=totp.code_at(secret, clock()), nonce=nonce, at=clock())


# Entry and exit ----------------------------------------------------------------------------


def test_an_entry_with_a_good_code_is_recorded_and_counted_on_the_dashboard(
    app, db, officer, officer_client, kiosk, plenary, holder, clock
):
    dashboard = socket_client(app, officer_client)
    assert dashboard.emit("watch_session", {"session_id": plenary.id}, namespace="/live", callback=True)["ok"]

    ack = enter(kiosk, plenary, holder, clock)

    assert ack == {
        "ok": True,
        "name": "Test Person",
        "delegation": "Switzerland",
        "category": "party",
        "kind": "entry",
        "recorded": True,
        "at": clock().isoformat(),
    }
    update = [p["args"][0] for p in dashboard.get_received("/live") if p["name"] == "quorum_updated"][-1]
    assert update["parties_present"] == 1 and update["present"] == {"CHE": "in_person"}
    [event] = events(db, plenary)
    assert (event.channel, event.source, event.recorded_by_id) == (Channel.IN_PERSON, Source.KIOSK, officer[0].id)


def test_a_code_works_once(db, kiosk, plenary, holder, clock):
    _, secret, token = holder
    code = totp.code_at(secret, clock())
    assert scan(kiosk, plenary, token, code=code, nonce="first-scan", at=clock())["ok"]
    assert scan(kiosk, plenary, token, gate="exit", nonce="leaving-now", at=clock())["ok"]
    message = refused(scan(kiosk, plenary, token, code=code, nonce="second-scan", at=clock()), "replayed_code")
    assert "already used" in message
    assert [e.kind.value for e in events(db, plenary)] == ["entry", "exit"]
    assert failures(db, "holder@example.org") == 1


def test_a_wrong_code_is_refused_and_counted(db, kiosk, plenary, holder, clock):
    _, secret, token = holder
    wrong = totp.code_at(secret, clock() - dt.timedelta(days=1))
    message = refused(scan(kiosk, plenary, token, code=wrong, at=clock()), "bad_code")
    assert "not right" in message
    assert failures(db, "holder@example.org") == 1
    assert events(db, plenary) == []


def test_a_mistyped_code_is_refused_without_counting(db, kiosk, plenary, holder, clock):
    refused(scan(kiosk, plenary, holder[2], code="12a456", at=clock()), "malformed_code")
    assert failures(db, "holder@example.org") == 0


def test_five_wrong_codes_make_the_badge_wait(db, kiosk, plenary, holder, clock):
    _, secret, token = holder
    wrong = totp.code_at(secret, clock() - dt.timedelta(days=1))
    for n in range(5):
        refused(scan(kiosk, plenary, token, code=wrong, nonce=f"wrong-{n:04d}", at=clock()), "bad_code")
    # Even the right code waits: more guesses must not be checked at all.
    message = refused(enter(kiosk, plenary, holder, clock, nonce="right-0001"), "throttled")
    assert message == "Too many wrong codes for this badge. Wait 30 seconds, then scan it again."
    assert failures(db, "holder@example.org") == 5

    clock.advance(31)
    assert enter(kiosk, plenary, holder, clock, nonce="right-0002")["recorded"] is True
    assert failures(db, "holder@example.org") == 0


def test_an_exit_needs_no_code(db, kiosk, plenary, holder, clock):
    assert enter(kiosk, plenary, holder, clock)["ok"]
    clock.advance(600)
    ack = scan(kiosk, plenary, holder[2], gate="exit", nonce="exit-0001", at=clock())
    assert ack["ok"] and ack["kind"] == "exit" and ack["recorded"] is True and ack["name"] == "Test Person"
    assert services.present_users(db, plenary) == {}
    # Leaving again changes nothing, and says so.
    again = scan(kiosk, plenary, holder[2], gate="exit", nonce="exit-0002", at=clock())
    assert again["ok"] and again["recorded"] is False


def test_a_person_already_inside_is_welcomed_without_a_second_event(db, kiosk, plenary, holder, clock):
    assert enter(kiosk, plenary, holder, clock)["recorded"] is True
    clock.advance(30)
    assert enter(kiosk, plenary, holder, clock, nonce="scan-0002") | {"at": None} == {
        "ok": True,
        "name": "Test Person",
        "delegation": "Switzerland",
        "category": "party",
        "kind": "entry",
        "recorded": False,
        "at": None,
    }
    assert len(events(db, plenary)) == 1


# Badges and registrations ------------------------------------------------------------------


def test_forged_and_altered_badges_are_refused(app, db, kiosk, plenary, holder, clock):
    user, secret, token = holder
    badge = registration_of(db, user).badges[0]
    foreign = badge_token("someone else's key", BadgeRef(badge.id, badge.version))
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for n, bad in enumerate((foreign, altered, "https://example.org/not-a-badge", "")):
        ack = scan(kiosk, plenary, bad, code=totp.code_at(secret, clock()), nonce=f"forged-{n:03d}", at=clock())
        refused(ack, "forged_badge")
    assert events(db, plenary) == []
    assert failures(db, "holder@example.org") == 0


def test_revoked_and_replaced_badges_are_refused(app, db, kiosk, plenary, holder, clock):
    user, secret, _ = holder
    badge = registration_of(db, user).badges[0]
    replacement = Badge(registration=badge.registration, number=badge.number + "-2", version=2, issued_at=clock())
    db.add(replacement)
    db.commit()
    message = refused(enter(kiosk, plenary, holder, clock, nonce="old-badge"), "revoked_badge")
    assert "secretariat" in message

    replacement.revoked_at = clock()
    db.commit()
    new_token = badges.token_for(app.secret_key, replacement)
    ack = scan(kiosk, plenary, new_token, code=totp.code_at(secret, clock()), nonce="new-badge", at=clock())
    refused(ack, "revoked_badge")
    # Refused before the code: the code was not used up, and not counted.
    assert failures(db, "holder@example.org") == 0
    replacement.revoked_at = None
    db.commit()
    assert scan(kiosk, plenary, new_token, code=totp.code_at(secret, clock()), nonce="new-badge-2", at=clock())["ok"]


def test_a_registration_no_longer_approved_is_refused(db, kiosk, plenary, holder, clock):
    registration = registration_of(db, holder[0])
    registration.status = RegistrationStatus.PENDING
    db.commit()
    message = refused(enter(kiosk, plenary, holder, clock), "not_approved")
    assert "pending" in message


def test_a_person_without_an_authenticator_is_sent_to_the_desk(app, db, kiosk, plenary, make_delegate, clock):
    user, _ = make_delegate("FRA", enrolled=False)
    token = badges.token_for(app.secret_key, registration_of(db, user).badges[0])
    message = refused(scan(kiosk, plenary, token, code="123456", at=clock()), "not_enrolled")
    assert "registration desk" in message


def test_a_badge_of_another_meeting_is_refused(app, db, kiosk, plenary, holder, cop4, clock):
    user, secret, _ = holder
    cop5 = Meeting(code="COP-5", title="Fifth meeting", convention=cop4.convention, timezone="Europe/Zurich")
    cop5.segments = [
        Segment(
            name="in-person segment",
            kind=SegmentKind.IN_PERSON,
            starts_on=dt.date(2023, 10, 30),
            ends_on=dt.date(2023, 11, 3),
            venue="Geneva",
            timezone="Europe/Zurich",
        )
    ]
    db.add(cop5)
    db.flush()
    registration = services.register(
        db,
        meeting=cop5,
        user=user,
        category=Category.PARTY,
        function=Function.HEAD,
        segment_ids=[cop5.segments[0].id],
        party_code="CHE",
        now=clock(),
    )
    badge = services.approve(db, registration, user, clock())
    db.commit()
    token = badges.token_for(app.secret_key, badge)
    ack = scan(kiosk, plenary, token, code=totp.code_at(secret, clock()), at=clock())
    assert refused(ack, "wrong_meeting") == "This badge is for COP-5, not this meeting."


# Sessions ----------------------------------------------------------------------------------


def test_a_closed_session_refuses_entries(db, officer, kiosk, plenary, holder, clock):
    services.change_state(db, plenary, "close", officer[0], clock())
    db.commit()
    message = refused(enter(kiosk, plenary, holder, clock), "session_closed")
    assert message == "This session is closed."
    # A refused entry does not use up the code.
    db.expire_all()
    assert holder[0].authenticator.last_used_step is None
    assert events(db, plenary) == []


def test_a_scheduled_session_refuses_entries(cop4, kiosk, holder, clock):
    refused(enter(kiosk, cop4.segments[1].sessions[1], holder, clock), "session_closed")


def test_an_online_session_has_no_gate(db, officer, kiosk, online_session, holder, clock):
    services.change_state(db, online_session, "open", officer[0], clock())
    db.commit()
    message = refused(enter(kiosk, online_session, holder, clock), "wrong_channel")
    assert "meets online" in message


# Retries and offline scans -----------------------------------------------------------------


def test_the_same_scan_sent_twice_records_one_event(db, kiosk, plenary, holder, clock):
    _, secret, token = holder
    scanned_at = clock()
    code = totp.code_at(secret, scanned_at)
    first = scan(kiosk, plenary, token, code=code, nonce="retry-after-reconnect", at=scanned_at)
    clock.advance(45)
    # As after a reconnect: the same scan again, whose code the first delivery used up.
    second = scan(kiosk, plenary, token, code=code, nonce="retry-after-reconnect", at=scanned_at)
    assert first["recorded"] is True and second["recorded"] is False
    assert second["at"] == first["at"] and second["name"] == "Test Person"
    assert len(events(db, plenary)) == 1
    assert failures(db, "holder@example.org") == 0


def test_a_nonce_of_another_scan_is_refused(app, db, kiosk, plenary, holder, make_delegate, clock):
    assert enter(kiosk, plenary, holder, clock, nonce="shared-nonce")["ok"]
    other, secret = make_delegate("FRA")
    token = badges.token_for(app.secret_key, registration_of(db, other).badges[0])
    ack = scan(kiosk, plenary, token, code=totp.code_at(secret, clock()), nonce="shared-nonce", at=clock())
    refused(ack, "nonce_reused")


def test_an_offline_scan_is_checked_and_recorded_at_the_time_it_was_made(
    app, db, officer_client, plenary, holder, clock
):
    _, secret, token = holder
    scanned_at = clock()
    code = totp.code_at(secret, scanned_at)
    clock.advance(10 * 60)
    # The code is long expired now: only its time of scan makes it valid.
    assert totp.matching_step(secret, code, clock()) is None
    kiosk = socket_client(app, officer_client)
    ack = scan(kiosk, plenary, token, code=code, nonce="offline-0001", at=scanned_at)
    assert ack["ok"] and ack["recorded"] is True and ack["at"] == scanned_at.isoformat()
    [event] = events(db, plenary)
    assert event.at == scanned_at


def test_the_time_of_a_scan_is_bounded(db, kiosk, plenary, holder, clock):
    _, secret, token = holder
    old = clock() - dt.timedelta(minutes=16)
    message = refused(scan(kiosk, plenary, token, code=totp.code_at(secret, old), at=old), "stale_scan")
    assert "more than 15 minutes ago" in message
    ahead = clock() + dt.timedelta(minutes=2)
    message = refused(
        scan(kiosk, plenary, token, code=totp.code_at(secret, ahead), nonce="ahead-0001", at=ahead), "future_scan"
    )
    assert "clock" in message
    assert events(db, plenary) == []
    # Just inside the bounds is accepted.
    inside = clock() - dt.timedelta(minutes=14, seconds=50)
    assert scan(kiosk, plenary, token, code=totp.code_at(secret, inside), nonce="inside-0001", at=inside)["ok"]


# Permissions and payloads ------------------------------------------------------------------


def test_only_officers_may_send_scans(app, db, make_delegate, plenary, holder, clock):
    _, secret = make_delegate("FRA", email="d@example.org", password="delegate password")
    client = app.test_client()
    login(client, "d@example.org", "delegate password", secret, clock)
    ack = enter(socket_client(app, client), plenary, holder, clock)
    assert refused(ack, "forbidden") == "Only meeting officers and the secretariat can run a gate kiosk."
    assert events(db, plenary) == []


GOOD = {"gate": "entry", "token": "x" * 40, "code": "123456", "nonce": "payload-0001", "scanned_at": None}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"gate": None}, "bad_request"),
        ({"gate": "side"}, "bad_request"),
        ({"gate": ["entry"]}, "bad_request"),
        ({"token": None}, "bad_request"),
        ({"token": 12345}, "bad_request"),
        ({"token": "x" * 5000}, "bad_request"),
        ({"code": None}, "bad_request"),
        ({"code": 123456}, "bad_request"),
        ({"code": "1" * 100}, "bad_request"),
        ({"gate": "exit"}, "bad_request"),
        ({"scanned_at": "yesterday"}, "bad_request"),
        ({"scanned_at": "2026-11-02T12:00:00"}, "bad_request"),
        ({"scanned_at": 1793620800}, "bad_request"),
        ({"scanned_at": "2026-11-02T12:00:00+00:00" + " " * 50}, "bad_request"),
        ({"nonce": "short"}, "bad_nonce"),
        ({"nonce": None}, "bad_nonce"),
        ({"session_id": "1"}, "bad_request"),
        ({"session_id": 999999}, "not_found"),
    ],
)
def test_malformed_scans_are_refused(db, kiosk, plenary, clock, changes, code):
    payload = {**GOOD, "session_id": plenary.id, "scanned_at": clock().isoformat(), **changes}
    ack = kiosk.emit("kiosk_scan", payload, namespace="/live", callback=True)
    refused(ack, code)
    assert events(db, plenary) == []


@pytest.mark.parametrize("payload", [None, "scan", [1, 2], {}])
def test_payloads_that_are_not_scans_are_refused(kiosk, payload):
    refused(kiosk.emit("kiosk_scan", payload, namespace="/live", callback=True), "bad_request")


# The page ----------------------------------------------------------------------------------


def test_the_kiosk_page_is_wired_into_the_app(app):
    assert "meetings.kiosk" in app.view_functions, "app.py must import meetings.kiosk_views"


def test_officers_open_the_kiosk_of_a_gate(officer_client, plenary):
    page = officer_client.get(f"/sessions/{plenary.id}/kiosk/entry")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Entry gate" in html and 'data-gate="entry"' in html and 'id="code"' in html
    assert "vendor/jsqr/jsQR.js" in html and "js/kiosk.js" in html and "<script>" not in html
    exit_page = officer_client.get(f"/sessions/{plenary.id}/kiosk/exit").get_data(as_text=True)
    assert "Exit gate" in exit_page and 'id="code"' not in exit_page
    assert officer_client.get(f"/sessions/{plenary.id}/kiosk/side").status_code == 404
    assert officer_client.get("/sessions/999999/kiosk/entry").status_code == 404


def test_the_dashboard_links_to_the_kiosks_of_in_person_sessions(officer_client, plenary, online_session):
    html = officer_client.get(f"/sessions/{plenary.id}/dashboard").get_data(as_text=True)
    assert f"/sessions/{plenary.id}/kiosk/entry" in html and f"/sessions/{plenary.id}/kiosk/exit" in html
    assert "/kiosk/" not in officer_client.get(f"/sessions/{online_session.id}/dashboard").get_data(as_text=True)


def test_delegates_and_visitors_cannot_open_a_kiosk(app, make_delegate, plenary, clock):
    visitor = app.test_client()
    response = visitor.get(f"/sessions/{plenary.id}/kiosk/entry")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    _, secret = make_delegate("FRA", email="d@example.org", password="delegate password")
    login(visitor, "d@example.org", "delegate password", secret, clock)
    assert visitor.get(f"/sessions/{plenary.id}/kiosk/entry").status_code == 403
    assert visitor.get(f"/sessions/{plenary.id}/kiosk/exit").status_code == 403
