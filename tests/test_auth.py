"""Login in two steps, enrolment, and codes that work once even under parallel use."""

import threading

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, post_code, post_password

from auth import services, totp
from auth.models import Authenticator, Role


def test_wrong_password_and_unknown_email_get_the_same_answer(client, make_user):
    make_user(Role.OFFICER, email="known@example.org", password="right password here")
    wrong = post_password(client, "known@example.org", "wrong password here")
    unknown = post_password(client, "nobody@example.org", "wrong password here")
    assert wrong.status_code == unknown.status_code == 401
    message = "That email and password do not match an account."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)


def test_password_alone_does_not_log_in(client, make_user):
    make_user(Role.OFFICER, email="o@example.org", password="right password here")
    post_password(client, "o@example.org", "right password here")
    response = client.get("/sessions/1/dashboard")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("code", "message"),
    [("12345", "The code is 6 digits"), ("abcdef", "The code is 6 digits"), ("١٢٣٤٥٦", "The code is 6 digits")],
)
def test_malformed_codes_are_refused_with_a_message(client, make_user, code, message):
    make_user(Role.OFFICER, email="o@example.org", password="right password here")
    post_password(client, "o@example.org", "right password here")
    response = post_code(client, code)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_wrong_code_is_refused(client, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="right password here")
    post_password(client, "o@example.org", "right password here")
    wrong = totp.code_at(secret, clock.now.replace(year=2020))
    response = post_code(client, wrong)
    assert response.status_code == 401
    assert "That code is not right" in response.get_data(as_text=True)


def test_code_step_expires(client, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="right password here")
    post_password(client, "o@example.org", "right password here")
    token = csrf_token(client, "/auth/login/code")
    clock.advance(301)
    response = client.post("/auth/login/code", data={"code": totp.code_at(secret, clock()), "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/auth/login")
    assert "took too long" in client.get("/auth/login").get_data(as_text=True)


def test_next_goes_back_to_a_local_page_only(app, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="right password here")
    for next_url, expected in (("/sessions/1/dashboard", "/sessions/1/dashboard"), ("//evil.example/x", "/")):
        client = app.test_client()
        post_password(client, "o@example.org", "right password here", next_url)
        clock.advance(30)
        response = post_code(client, totp.code_at(secret, clock()))
        assert response.headers["Location"] == expected


def test_csrf_is_required(client, make_user):
    make_user(Role.OFFICER, email="o@example.org", password="right password here")
    response = client.post("/auth/login", data={"email": "o@example.org", "password": "right password here"})
    assert response.status_code == 400
    assert "The form expired" in response.get_data(as_text=True)


def test_logout_needs_a_post_with_csrf(app, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="right password here")
    client = app.test_client()
    login(client, "o@example.org", "right password here", secret, clock)
    assert client.post("/auth/logout").status_code == 400
    assert client.get("/auth/logout").status_code == 405
    assert client.post("/auth/logout", data={"csrf_token": csrf_token(client)}).status_code == 302
    assert client.get("/sessions/1/dashboard").status_code == 302


def test_enrolment_keeps_its_secret_until_confirmed_and_burns_the_confirming_code(app, db, make_user, clock):
    user, _ = make_user(Role.OFFICER, email="o@example.org", password="right password here", enrolled=False)
    client = app.test_client()
    response = post_password(client, "o@example.org", "right password here")
    assert response.headers["Location"].endswith("/auth/enrol")
    first = client.get("/auth/enrol").get_data(as_text=True)
    assert client.get("/auth/enrol").get_data(as_text=True).count("totp-key") == 1
    secret = db.scalar(sa.select(Authenticator.secret).where(Authenticator.user_id == user.id))
    assert secret.upper()[:4] in first
    code = totp.code_at(secret, clock())
    response = client.post("/auth/enrol", data={"code": code, "csrf_token": csrf_token(client, "/auth/enrol")})
    assert response.status_code == 302
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    # The code that confirmed the enrolment cannot log in again.
    post_password(client, "o@example.org", "right password here")
    assert post_code(client, code).status_code == 401


def test_parallel_logins_with_one_code_give_exactly_one_success(app, make_user, clock):
    """The last used step is claimed with a compare-and-set, so a code cannot pass twice."""
    user, secret = make_user(Role.OFFICER, email="o@example.org")
    code = totp.code_at(secret, clock())
    workers = 12
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []

    def attempt():
        db = app.extensions["db_sessionmaker"]()
        try:
            account = db.get(type(user), user.id)
            barrier.wait()
            services.verify_code(db, account, code, clock())
            db.commit()
            outcomes.append("ok")
        except services.AuthError as exc:
            db.rollback()
            outcomes.append(exc.code)
        finally:
            db.close()

    threads = [threading.Thread(target=attempt) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] + ["replayed_code"] * (workers - 1)
