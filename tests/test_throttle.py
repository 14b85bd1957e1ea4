"""Throttling of failed logins: waits that grow, a lock after 100 failures, the same answers for unknown addresses."""

import datetime as dt

import pytest
import sqlalchemy as sa
from conftest import csrf_token, post_code, post_password

from auth import throttle, totp
from auth.models import Authenticator, Role


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, None), (4, None), (5, 30), (6, 60), (7, 120), (10, 960), (11, 1920), (12, 3600), (99, 3600)],
)
def test_waits_grow_from_the_fifth_failure(failures, seconds):
    wait = throttle.wait_after(failures)
    assert (wait.total_seconds() if wait else None) == seconds


def test_five_wrong_passwords_make_the_account_wait_and_an_unknown_address_is_answered_alike(client, make_user, clock):
    make_user(Role.OFFICER, email="o@example.org", password="right password here")
    answers = {}
    for email in ("o@example.org", "nobody@example.org"):
        for _ in range(5):
            assert post_password(client, email, "wrong password").status_code == 401
        response = post_password(client, email, "right password here")
        answers[email] = (response.status_code, response.get_data(as_text=True).count("Try again in 30 seconds"))
    assert answers["o@example.org"] == answers["nobody@example.org"] == (429, 1)
    clock.advance(31)
    assert post_password(client, "o@example.org", "right password here").status_code == 302


def test_wrong_codes_count_and_a_success_starts_the_count_again(client, db, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="right password here")
    post_password(client, "o@example.org", "right password here")
    wrong = totp.code_at(secret, clock.now - dt.timedelta(days=1))
    for _ in range(4):
        assert post_code(client, wrong).status_code == 401
    assert throttle.refusal(db, "o@example.org", clock()) is None
    assert post_code(client, totp.code_at(secret, clock())).status_code == 302
    db.expire_all()
    assert db.scalar(sa.text("SELECT count(*) FROM login_throttles")) == 0


def test_a_hundred_failures_lock_the_address_until_unlocked(db, clock):
    for _ in range(100):
        throttle.failed(db, "target@example.org", clock())
        clock.advance(3600)
    db.commit()
    code, message = throttle.refusal(db, "target@example.org", clock.advance(10 * 24 * 3600))
    assert code == "locked" and "Contact the secretariat" in message
    assert throttle.unlock(db, "Target@Example.org")
    assert throttle.refusal(db, "target@example.org", clock()) is None


def test_secrets_are_encrypted_in_the_database(db, make_user):
    user, secret = make_user(Role.OFFICER)
    stored = db.execute(sa.text("SELECT secret FROM authenticators WHERE user_id = :id"), {"id": user.id}).scalar_one()
    assert secret not in stored and stored.startswith("gAAAAA")
    assert db.scalar(sa.select(Authenticator.secret).where(Authenticator.user_id == user.id)) == secret


def test_the_throttle_message_shows_on_the_form(client, make_user):
    for _ in range(5):
        post_password(client, "x@example.org", "wrong password")
    response = client.post(
        "/auth/login",
        data={"email": "x@example.org", "password": "whatever", "csrf_token": csrf_token(client, "/auth/login")},
    )
    assert response.status_code == 429 and "Too many failed attempts" in response.get_data(as_text=True)
