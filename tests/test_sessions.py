"""The secretariat's help with logging in (resetting a lost authenticator, unlocking an address); role changes."""

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, post_password, socket_client

from auth import recovery, throttle, totp
from auth.models import AuditEntry, Authenticator, OutboxMessage, RecoveryCode, Role, User

ACCOUNTS = "/secretariat/accounts"
PASSWORD = "officer pass phrase"


@pytest.fixture
def desk(app, make_user, clock):
    """A secretariat member (s@example.org) logged in through the real views."""
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    client = app.test_client()
    login(client, "s@example.org", "secretariat pass", secret, clock)
    return client


@pytest.fixture
def officer(app, db, make_user, clock):
    """An officer with recovery codes, logged in on a laptop and on a phone whose page has a live connection."""
    user, secret = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    recovery.issue(db, user, clock(), "scrypt:1024:8:1", reason="enrolment")
    db.commit()
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "o@example.org", PASSWORD, secret, clock)
    login(phone, "o@example.org", PASSWORD, secret, clock)
    live = socket_client(app, phone)
    assert live.is_connected("/live")
    return user, secret, laptop, live


def followed(client, response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


def reset(client, user_id: int, reason: str):
    token = csrf_token(client, ACCOUNTS)
    return client.post(f"{ACCOUNTS}/{user_id}/reset-authenticator", data={"reason": reason, "csrf_token": token})


def unlock(client, user_id: int):
    return client.post(f"{ACCOUNTS}/{user_id}/unlock", data={"csrf_token": csrf_token(client, ACCOUNTS)})


def logged_out(client) -> bool:
    response = client.get("/auth/account")
    return response.status_code == 302 and "/auth/login" in response.headers["Location"]


def audit_entries(db, action: str) -> list[AuditEntry]:
    db.expire_all()
    return db.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)).all()


# Resetting a lost authenticator ---------------------------------------------------------------------


def test_the_accounts_page_offers_a_reset_for_others_only(desk, db, officer):
    user, *_ = officer
    me = db.scalar(sa.select(User).where(User.email == "s@example.org"))
    page = desk.get(ACCOUNTS).get_data(as_text=True)
    assert f'action="/secretariat/accounts/{user.id}/reset-authenticator"' in page
    assert f'action="/secretariat/accounts/{me.id}/reset-authenticator"' not in page
    assert 'name="reason" required' in page


def test_a_reset_ends_sessions_and_sockets_mails_the_person_and_they_enrol_again(app, desk, db, officer, clock):
    user, secret, laptop, live = officer
    page = followed(desk, reset(desk, user.id, "Phone lost; identity checked at the desk"))
    assert "The authenticator of Test Person (o@example.org) is reset" in page

    # Every session and live connection of the account ended.
    assert logged_out(laptop)
    assert not live.is_connected("/live")

    db.expire_all()
    assert db.scalar(sa.select(Authenticator).where(Authenticator.user_id == user.id)) is None
    assert db.scalar(sa.select(sa.func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user.id)) == 0

    [entry] = audit_entries(db, "authenticator.reset")
    assert entry.actor.email == "s@example.org" and entry.target_type == "users" and entry.target_id == str(user.id)
    assert entry.detail == {
        "reason": "Phone lost; identity checked at the desk",
        "was_confirmed": True,
        "recovery_codes_cancelled": 10,
    }

    mail = db.scalar(sa.select(OutboxMessage).where(OutboxMessage.to_address == "o@example.org"))
    assert mail.subject == "Your authenticator was reset"
    assert "http://localhost/auth/login" in mail.body and "set up an authenticator app again" in mail.body
    assert "identity checked" not in mail.body  # the reason stays with the secretariat

    # The next login enrols a new authenticator; the old app's codes lead nowhere.
    client = app.test_client()
    response = post_password(client, "o@example.org", PASSWORD)
    assert response.headers["Location"].endswith("/auth/enrol")
    assert client.get("/auth/login/code").headers["Location"].endswith("/auth/login")
    assert client.get("/auth/login/recovery").headers["Location"].endswith("/auth/login")
    post_password(client, "o@example.org", PASSWORD)
    token = csrf_token(client, "/auth/enrol")  # the enrolment page makes the new secret
    new_secret = db.scalar(sa.select(Authenticator.secret).where(Authenticator.user_id == user.id))
    assert new_secret != secret
    response = client.post("/auth/enrol", data={"code": totp.code_at(new_secret, clock()), "csrf_token": token})
    assert response.headers["Location"].endswith("/auth/recovery-codes")


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_reset_needs_a_reason(desk, db, officer, reason):
    user, _, laptop, live = officer
    page = followed(desk, reset(desk, user.id, reason))
    assert "Authenticator not reset: Give the reason for the reset." in page
    db.expire_all()
    assert db.scalar(sa.select(Authenticator).where(Authenticator.user_id == user.id)) is not None
    assert not logged_out(laptop) and live.is_connected("/live")
    assert audit_entries(db, "authenticator.reset") == []
    assert db.scalar(sa.select(OutboxMessage).where(OutboxMessage.to_address == "o@example.org")) is None


def test_a_secretariat_member_cannot_reset_their_own_authenticator(desk, db):
    me = db.scalar(sa.select(User).where(User.email == "s@example.org"))
    page = followed(desk, reset(desk, me.id, "testing"))
    assert "You cannot reset your own authenticator" in page
    assert not logged_out(desk)
    assert audit_entries(db, "authenticator.reset") == []


def test_an_account_without_an_authenticator_has_nothing_to_reset(desk, make_user):
    user, _ = make_user(email="new@example.org", enrolled=False)
    assert "has no authenticator to reset" in followed(desk, reset(desk, user.id, "phone lost"))
    assert reset(desk, 99_999, "phone lost").status_code == 404


# Unlocking an address ------------------------------------------------------------------------------


def test_the_secretariat_unlocks_a_waiting_address_and_the_person_logs_in_at_once(app, desk, db, make_user, clock):
    user, secret = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    for _ in range(6):
        throttle.failed(db, "o@example.org", clock())
    db.commit()
    page = desk.get(ACCOUNTS).get_data(as_text=True)
    assert "login waits until 12:01 UTC (6 failed attempts)" in page
    assert f'action="/secretariat/accounts/{user.id}/unlock"' in page

    page = followed(desk, unlock(desk, user.id))
    assert "Test Person (o@example.org) can log in again" in page
    [entry] = audit_entries(db, "user.login_unlocked")
    assert entry.actor.email == "s@example.org" and entry.target_id == str(user.id)
    assert entry.detail == {"failures": 6, "was_locked": False}
    assert throttle.refusal(db, "o@example.org", clock()) is None
    login(app.test_client(), "o@example.org", PASSWORD, secret, clock)


def test_a_locked_address_shows_as_locked_and_is_unlocked(desk, db, make_user, clock):
    user, _ = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    for _ in range(100):
        throttle.failed(db, "o@example.org", clock())
    db.commit()
    assert "login locked after 100 failed attempts" in desk.get(ACCOUNTS).get_data(as_text=True)
    followed(desk, unlock(desk, user.id))
    assert audit_entries(db, "user.login_unlocked")[0].detail == {"failures": 100, "was_locked": True}
    assert throttle.refusal(db, "o@example.org", clock()) is None


def test_unlocking_an_address_that_is_not_blocked_changes_nothing(desk, db, make_user):
    user, _ = make_user(email="free@example.org")
    assert "was neither locked nor waiting; nothing changed" in followed(desk, unlock(desk, user.id))
    assert audit_entries(db, "user.login_unlocked") == []


# Role changes -------------------------------------------------------------------------------------


def test_a_role_change_ends_the_persons_sessions_and_sockets(desk, db, officer):
    user, _, laptop, live = officer
    token = csrf_token(desk, ACCOUNTS)
    page = followed(desk, desk.post(f"{ACCOUNTS}/{user.id}/role", data={"role": "participant", "csrf_token": token}))
    assert "They were logged out and log in again with the new role." in page
    assert logged_out(laptop)
    assert not live.is_connected("/live")
    db.expire_all()
    assert db.get(User, user.id).role == Role.PARTICIPANT
    assert not logged_out(desk)


def test_choosing_the_same_role_again_ends_nothing(desk, officer):
    user, _, laptop, live = officer
    token = csrf_token(desk, ACCOUNTS)
    desk.post(f"{ACCOUNTS}/{user.id}/role", data={"role": "officer", "csrf_token": token})
    assert not logged_out(laptop) and live.is_connected("/live")


# Who may do it ------------------------------------------------------------------------------------

ACTIONS = ["reset-authenticator", "unlock"]


def test_anonymous_visitors_are_sent_to_the_login(client, db, make_user):
    user, _ = make_user(email="p@example.org")
    token = csrf_token(client, "/")
    for action in ACTIONS:
        response = client.post(f"{ACCOUNTS}/{user.id}/{action}", data={"csrf_token": token, "reason": "x"})
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], action
    db.expire_all()
    assert db.scalar(sa.select(Authenticator).where(Authenticator.user_id == user.id)) is not None


@pytest.mark.parametrize("who", ["delegate", "officer"])
def test_delegates_and_officers_are_refused(app, db, make_user, make_delegate, clock, who):
    target, _ = make_user(email="p@example.org")
    throttle.failed(db, "p@example.org", clock())
    db.commit()
    if who == "delegate":
        _, secret = make_delegate("CHE", email="d@example.org", password=PASSWORD)
    else:
        _, secret = make_user(Role.OFFICER, email="d@example.org", password=PASSWORD)
    client = app.test_client()
    login(client, "d@example.org", PASSWORD, secret, clock)
    token = csrf_token(client, "/")
    for action in ACTIONS:
        response = client.post(f"{ACCOUNTS}/{target.id}/{action}", data={"csrf_token": token, "reason": "x"})
        assert response.status_code == 403, action
    db.expire_all()
    assert db.scalar(sa.select(Authenticator).where(Authenticator.user_id == target.id)) is not None
    assert db.scalar(sa.text("SELECT count(*) FROM login_throttles")) == 1
    assert audit_entries(db, "authenticator.reset") == audit_entries(db, "user.login_unlocked") == []


def test_actions_need_the_form_token(desk, officer):
    user, *_ = officer
    assert desk.post(f"{ACCOUNTS}/{user.id}/reset-authenticator", data={"reason": "lost"}).status_code == 400
    assert desk.post(f"{ACCOUNTS}/{user.id}/unlock").status_code == 400
