"""Logs: one JSON object a line with who did what, a line per request and per socket event, and no secrets."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from conftest import csrf_token, login, post_code, post_password, socket_client

import config
from app import create_app
from auth import totp
from auth.models import Role
from meetings import logs, services

PASSWORD = "Quartz-Heron-Lantern-1947"


@pytest.fixture
def captured():
    """Every log line of the test, as the app's own handler writes it in JSON: a function returning the lines."""
    loggers = [logging.getLogger(name) for name in ("", "werkzeug", "alembic.runtime.plugins")]
    levels = [logger.level for logger in loggers]
    stream = io.StringIO()
    handler = logs.configure("json", "DEBUG", stream)
    yield stream.getvalue
    loggers[0].removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def parsed(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def request_lines(text: str) -> list[dict]:
    return [line for line in parsed(text) if line["logger"] == "meetings.logs"]


def test_a_login_leaves_no_password_code_cookie_or_token_in_the_log(app, client, make_user, clock, captured):
    user, secret = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    # A wrong password and a wrong code first: refusals are logged too, and must not repeat what was typed.
    post_password(client, "o@example.org", PASSWORD + "-wrong")
    assert post_password(client, "o@example.org", PASSWORD).status_code == 302
    clock.advance(30)
    wrong = f"{(int(totp.code_at(secret, clock())) + 1) % 1_000_000:06d}"
    post_code(client, wrong)
    code = totp.code_at(secret, clock())
    assert post_code(client, code).status_code == 302
    token = csrf_token(client, "/")

    text = captured()
    lines = parsed(text)  # every line is one JSON object
    assert lines
    for secret_value in (PASSWORD, code, wrong, secret, token, client.get_cookie("session").value):
        assert secret_value not in text
    posts = [line for line in request_lines(text) if line["method"] == "POST"]
    assert [(line["path"], line["status"]) for line in posts] == [
        ("/auth/login", 401),
        ("/auth/login", 302),
        ("/auth/login/code", 401),
        ("/auth/login/code", 302),
    ]
    # The successful code step is the first request that knows who it is.
    assert [line["user_id"] for line in posts] == [None, None, None, user.id]


def test_request_lines_carry_the_account_and_the_request_id(app, client, make_user, clock, captured):
    user, secret = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    login(client, "o@example.org", PASSWORD, secret, clock)
    response = client.get("/", headers={"X-Request-ID": "req-42.a:b"})
    assert response.headers["X-Request-ID"] == "req-42.a:b"
    forged = client.get("/", headers={"X-Request-ID": 'x" injected\tline'})
    generated = forged.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)

    first, second = [line for line in request_lines(captured()) if line["path"] == "/"]
    assert first["time"].endswith("Z") and first["level"] == "INFO" and first["message"].startswith("GET / 200 ")
    assert {key: first[key] for key in ("method", "status", "user_id", "remote_addr", "request_id")} == {
        "method": "GET",
        "status": 200,
        "user_id": user.id,
        "remote_addr": "127.0.0.1",
        "request_id": "req-42.a:b",
    }
    assert isinstance(first["duration_ms"], float)
    assert second["request_id"] == generated


def test_paths_lose_their_link_tokens_and_query_strings(client, captured):
    client.get("/manage-registration/eyJhbGciOi.secret-part/letter")
    client.get("/auth/set-password/abc.def%0Aforged")
    client.get("/auth/login?next=/secret-place")
    text = captured()
    paths = [line["path"] for line in request_lines(text)]
    assert paths == ["/manage-registration/[token]/letter", "/auth/set-password/[token]", "/auth/login"]
    assert "secret" not in text and "forged" not in text


def test_the_app_logger_writes_through_the_same_formatter_with_the_request_context(app, captured):
    with app.test_request_context("/manage-registration/eyJ.link-token/letter", headers={"X-Request-ID": "req-7"}):
        app.preprocess_request()
        try:
            raise ValueError("kaput")
        except ValueError:
            app.logger.error("could not %s", "serve")
            # What Flask logs of an exception no error handler took.
            app.log_exception(sys.exc_info())
    text = captured()
    first, second = [line for line in parsed(text) if line["logger"] == app.logger.name]
    assert first["level"] == "ERROR" and first["message"] == "could not serve" and first["request_id"] == "req-7"
    assert second["message"] == "Exception on /manage-registration/[token]/letter [GET]"
    assert "ValueError: kaput" in second["exception"] and second["request_id"] == "req-7"
    assert "link-token" not in text


def test_socket_events_log_their_name_account_session_and_outcome(
    app, db, online_session, make_delegate, make_user, clock, captured
):
    officer, _ = make_user(Role.OFFICER)
    delegate, secret = make_delegate("CHE", email="d@example.org", password=PASSWORD)
    meeting_session = online_session
    services.change_state(db, meeting_session, "open", officer, clock())
    db.commit()
    client = app.test_client()
    login(client, "d@example.org", PASSWORD, secret, clock)
    page = socket_client(app, client)

    nonce = "nonce-that-stays-private"
    ack = page.emit("check_in", {"session_id": meeting_session.id, "nonce": nonce}, namespace="/live", callback=True)
    assert ack["ok"]
    ack = page.emit("check_in", {"session_id": meeting_session.id}, namespace="/live", callback=True)
    assert ack["error"]["code"] == "bad_nonce"
    page.emit("check_in", {"session_id": "1; DROP"}, namespace="/live", callback=True)
    page.emit("heartbeat", {"session_id": meeting_session.id}, namespace="/live", callback=True)
    page.emit("heartbeat", {"session_id": "two"}, namespace="/live", callback=True)

    text = captured()
    events = [line for line in parsed(text) if line["logger"] == "meetings.events"]
    assert [(line["event"], line["outcome"], line["user_id"], line["session_id"]) for line in events] == [
        ("check_in", "ok", delegate.id, meeting_session.id),
        ("check_in", "bad_nonce", delegate.id, meeting_session.id),
        ("check_in", "bad_request", delegate.id, None),
        ("heartbeat", "ok", delegate.id, meeting_session.id),
        ("heartbeat", "bad_request", delegate.id, None),
    ]
    assert events[0]["message"] == "check_in: ok" and events[0]["level"] == "INFO"
    # A page still open is no news: its heartbeat at DEBUG, unless refused.
    assert [line["level"] for line in events[3:]] == ["DEBUG", "INFO"]
    assert all(isinstance(line["duration_ms"], float) for line in events)
    assert nonce not in text and "DROP" not in text


def test_text_lines_end_with_their_context():
    record = logging.LogRecord("meetings.events", logging.INFO, __file__, 1, "%s: %s", ("check_in", "ok"), None)
    record.user_id, record.session_id = 7, None
    line = logs.TextFormatter().format(record)
    assert line.endswith(" INFO meetings.events: check_in: ok user_id=7")


def test_configure_refuses_unknown_settings_and_silences_werkzeugs_own_request_line(captured):
    assert not logging.getLogger("werkzeug").isEnabledFor(logging.INFO)
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        logs.configure("xml", "INFO")
    with pytest.raises(RuntimeError, match="LOG_LEVEL"):
        logs.configure("json", "LOUD")


def test_production_logs_json_and_development_text():
    production = {"SECRET_KEY": "k" * 32, "DATABASE_URL": "sqlite://", "TOTP_ENCRYPTION_KEY": "key"}
    assert config.load("production", production)["LOG_FORMAT"] == "json"
    assert config.load("development", {})["LOG_FORMAT"] == "text"
    assert config.load("development", {"LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"})["LOG_LEVEL"] == "WARNING"


def test_behind_one_proxy_the_client_address_is_the_forwarded_one(database_url, captured):
    """Rate limits and logs key on the client's address: behind nginx, the one it forwards, not nginx's."""
    proxied = create_app("testing", {"DATABASE_URL": database_url, "PROXY_FIX_X_FOR": 1})
    direct = create_app("testing", {"DATABASE_URL": database_url})
    for app in (proxied, direct):
        app.test_client().get(
            "/auth/login", headers={"X-Forwarded-For": "198.51.100.7"}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        app.extensions["db_engine"].dispose()
    seen = [line["remote_addr"] for line in request_lines(captured()) if line["path"] == "/auth/login"]
    # Without a proxy in front, the header is the client's to choose and is ignored.
    assert seen == ["198.51.100.7", "127.0.0.1"]
