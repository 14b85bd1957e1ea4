"""Login in two steps, enrolment, codes that work once even under parallel use, and per-address limits."""

import os
import re
import threading
import uuid

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, post_code, post_password

from app import create_app
from auth import services, totp
from auth.limits import LIMITS, limiter
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
    workers = 20
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []

    def attempt():
        db = app.extensions["db_sessionmaker"]()
        try:
            account = db.get(type(user), user.id)
            assert account.authenticator is not None  # loaded now, so that verify_code starts with the race
            # Give the connection back before waiting: 20 workers are more than the pool's 15 connections.
            db.commit()
            # A timeout turns a worker that never arrives into a failure instead of a hang.
            barrier.wait(timeout=60)
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


# Per-address limits (Flask-Limiter) ---------------------------------------------------------------


def limited_app(database_url, clock, **settings):
    """The app with per-address limits on (the test configuration turns them off for the rest of the suite)."""
    limited = create_app("testing", {"DATABASE_URL": database_url, "RATELIMIT_ENABLED": True, **settings})
    limited.extensions["clock"] = clock
    assert limiter in limited.extensions.get("limiter", ()), "create_app must call limiter.init_app(app)"
    return limited


@pytest.fixture
def limited(app, database_url, clock):
    """A second app on the test database (the app fixture empties it afterwards), with limits on."""
    limited = limited_app(database_url, clock)
    yield limited
    limited.extensions["db_engine"].dispose()


def client_at(app, address: str):
    """A test client whose requests come from this client address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def post_login(client, email: str, token: str):
    return client.post("/auth/login", data={"email": email, "password": "wrong password", "csrf_token": token})


def test_the_login_form_takes_its_posts_a_minute_from_one_address_then_says_when_to_try_again(limited, make_user):
    make_user(Role.OFFICER, email="known@example.org")
    client = limited.test_client()
    token = csrf_token(client, "/auth/login")
    per_minute = int(re.match(r"(\d+)/minute", LIMITS["auth.login"]).group(1))
    # Different addresses each time: the throttle per email address stays out of the way.
    for n in range(per_minute):
        assert post_login(client, f"guess{n}@example.org", token).status_code == 401
    answers = [post_login(client, email, token) for email in ("known@example.org", "nobody@example.org")]
    pages = [answer.get_data(as_text=True) for answer in answers]
    assert [answer.status_code for answer in answers] == [429, 429]
    assert "too many attempts from your network address" in pages[0]
    wait = re.search(r"Try again in (\d+) seconds</strong> \(at \d\d:\d\d:\d\d UTC\)", pages[0])
    assert wait and 0 < int(wait.group(1)) <= 60
    assert 0 < int(answers[0].headers["Retry-After"]) <= 60
    # The refusal is the same whether or not the address has an account, and names neither. (The wait
    # is counted in real seconds, so the two pages may straddle a second: compare them without it.)
    same = [re.sub(r"Try again in \d+ seconds</strong> \(at [\d:]+ UTC\)", "Try again", page) for page in pages]
    assert same[0] == same[1] and "known@example.org" not in pages[0]
    # Reading the page is not limited; another client address is not limited either.
    assert client.get("/auth/login").status_code == 200
    other = client_at(limited, "192.0.2.77")
    assert post_login(other, "guess0@example.org", csrf_token(other, "/auth/login")).status_code == 401


@pytest.mark.parametrize("path", ["/auth/confirm", "/manage-registration"])
def test_forms_that_send_email_take_five_posts_a_minute(limited, path):
    client = limited.test_client()
    token = csrf_token(client, path)
    for n in range(5):
        assert client.post(path, data={"email": f"p{n}@example.org", "csrf_token": token}).status_code == 302
    response = client.post(path, data={"email": "p5@example.org", "csrf_token": token})
    assert response.status_code == 429 and "Please wait before trying again" in response.get_data(as_text=True)


def test_limits_can_be_turned_off(app, make_user):
    client = app.test_client()
    token = csrf_token(client, "/auth/login")
    assert [post_login(client, f"g{n}@example.org", token).status_code for n in range(25)] == [401] * 25


def test_every_limited_endpoint_exists_and_takes_posts(limited):
    rules = {rule.endpoint: rule.methods for rule in limited.url_map.iter_rules()}
    for endpoint in LIMITS:
        assert "POST" in rules.get(endpoint, ()), endpoint


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/0")
def test_limits_are_counted_in_redis_when_configured(app, database_url, clock):
    """With RATELIMIT_STORAGE_URI=redis://..., every server process reads and adds to the same counts."""
    import redis

    url = os.environ["TEST_REDIS_URL"]
    limited = limited_app(database_url, clock, RATELIMIT_STORAGE_URI=url)
    # A client address of its own (a documentation prefix): counts from earlier runs cannot interfere.
    address = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    client = client_at(limited, address)
    token = csrf_token(client, "/auth/confirm")
    for n in range(5):
        assert client.post("/auth/confirm", data={"email": f"r{n}@example.org", "csrf_token": token}).status_code == 302
    # Another connection to Redis, as another process would have, sees this address's count.
    keys = redis.Redis.from_url(url).keys(f"*{address}*")
    assert keys and all(b"auth.resend_confirmation" in key for key in keys)
    assert client.post("/auth/confirm", data={"email": "r5@example.org", "csrf_token": token}).status_code == 429
    limited.extensions["db_engine"].dispose()
