"""Two server processes, as in production: gunicorn's gevent worker on two loopback ports, PostgreSQL, and
Redis as the Socket.IO message queue. Nothing that matters lives in one process's memory: a check-in
received by one process reaches a dashboard connected to the other within a second, and the quorum is
the same whichever process answers. Real Socket.IO clients over WebSockets, real logins over HTTP."""

from __future__ import annotations

import datetime as dt
import os
import queue
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from conftest import TEST_HASH
from test_production import (
    DEPLOY,
    EMAIL,
    PASSWORD,
    Browser,
    free_port,
    needs_server,
    server_environment,
    wait_until_answering,
)

import db as database
from app import create_app
from auth import services as auth_services
from auth import totp
from auth.models import Authenticator, Gender, Role
from meetings import demo, services
from meetings.models import Category, Function, Meeting

PARTIES = ["CHE", "NGA", "BRA", "JPN"]
DELEGATE_PASSWORD = "delegate password for two processes"

pytestmark = [
    pytest.mark.postgres,
    needs_server,
    pytest.mark.skipif(
        not os.environ.get("TEST_REDIS_URL"),
        reason="two server processes need Redis: set TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/0 (.ci/run sets it)",
    ),
]


def prepare(url: str, key: str) -> dict:
    """The COP-4 demo, an officer and a delegate of each of PARTIES, each with a TOTP secret; the online session."""
    app = create_app("testing", {"DATABASE_URL": url, "TOTP_ENCRYPTION_KEY": key})
    db = app.extensions["db_sessionmaker"]()
    try:
        now = database.utcnow()
        demo.seed(db, now, TEST_HASH)
        meeting = db.scalar(sa.select(Meeting).where(Meeting.code == demo.MEETING_CODE))
        accounts = {}
        for email, password, role, party in [(EMAIL, PASSWORD, Role.OFFICER, None)] + [
            (f"{code.lower()}@two-processes.example.org", DELEGATE_PASSWORD, Role.PARTICIPANT, code) for code in PARTIES
        ]:
            user = auth_services.create_user(
                db,
                email=email,
                password=password,
                given_name="Two",
                family_name="Processes",
                gender=Gender.FEMALE,
                role=role,
                hash_method=TEST_HASH,
            )
            user.email_confirmed_at = now
            secret = totp.new_secret()
            db.add(Authenticator(user=user, secret=secret, confirmed_at=now))
            if party is not None:
                registration = services.register(
                    db,
                    meeting=meeting,
                    user=user,
                    category=Category.PARTY,
                    function=Function.HEAD,
                    segment_ids=[segment.id for segment in meeting.segments],
                    party_code=party,
                    now=now,
                )
                services.approve(db, registration, user, now)
            accounts[email] = (password, secret)
        db.commit()
        return {"accounts": accounts, "session_id": meeting.segments[0].sessions[0].id}
    finally:
        db.close()
        app.extensions["db_engine"].dispose()


def start(url: str, key: str, redis_url: str, log_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = server_environment(url, key, port)
    env["SOCKETIO_MESSAGE_QUEUE"] = redis_url
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(DEPLOY / "gunicorn.conf.py")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def two_processes(database_url, tmp_path):
    """Two production server processes sharing the PostgreSQL test database and Redis."""
    if not database_url.startswith("postgresql"):
        pytest.skip("two server processes share PostgreSQL")
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    setup = prepare(database_url, key)
    started = [start(database_url, key, os.environ["TEST_REDIS_URL"], tmp_path / f"gunicorn-{n}.log") for n in (1, 2)]
    try:
        for n, (process, base) in enumerate(started, 1):
            wait_until_answering(process, base + "/readyz", tmp_path / f"gunicorn-{n}.log")
        yield {**setup, "bases": [base for _, base in started], "url": database_url}
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        engine = sa.create_engine(database_url)
        with engine.begin() as connection:
            tables = [table.name for table in reversed(database.Base.metadata.sorted_tables)]
            connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        engine.dispose()


def logged_in(base: str, email: str, password: str, secret: str) -> Browser:
    browser = Browser(base)
    status, location = browser.post("/auth/login", "/auth/login", {"email": email, "password": password})
    assert (status, location) == (302, "/auth/login/code")
    status, _ = browser.post(
        "/auth/login/code", "/auth/login/code", {"code": totp.code_at(secret, dt.datetime.now(dt.UTC))}
    )
    assert status == 302
    return browser


def socket_of(base: str, browser: Browser, on: dict | None = None):
    import socketio

    client = socketio.Client(reconnection=False)
    for event, handler in (on or {}).items():
        client.on(event, handler, namespace="/live")
    client.connect(
        base,
        namespaces=["/live"],
        transports=["websocket"],
        headers={"Cookie": browser.cookie_header()},
        wait_timeout=5,
    )
    return client


def test_a_check_in_on_one_process_reaches_a_dashboard_on_the_other_within_a_second(two_processes):
    a, b = two_processes["bases"]
    session_id = two_processes["session_id"]
    accounts = two_processes["accounts"]
    officer = logged_in(a, EMAIL, *accounts[EMAIL])

    # A dashboard on each process.
    updates = {a: queue.Queue(), b: queue.Queue()}
    boards = {base: socket_of(base, officer, {"quorum_updated": updates[base].put}) for base in (a, b)}
    clients = list(boards.values())
    try:
        for board in boards.values():
            assert board.call("watch_session", {"session_id": session_id}, namespace="/live", timeout=5)["ok"]
        status, _ = officer.post(f"/sessions/{session_id}/open", f"/sessions/{session_id}/dashboard", {})
        assert status == 302

        # Each delegate checks in through one process or the other, in turn; the other process's dashboard
        # must show them within a second of the acknowledgement.
        for n, code in enumerate(PARTIES):
            through, other = (a, b) if n % 2 == 0 else (b, a)
            email = f"{code.lower()}@two-processes.example.org"
            page = socket_of(through, logged_in(through, email, *accounts[email]))
            clients.append(page)
            ack = page.call("check_in", {"session_id": session_id, "nonce": f"two-processes-{n:04d}"}, "/live", 5)
            assert ack["ok"] and ack["recorded"], ack
            acknowledged = time.monotonic()
            while True:
                state = updates[other].get(timeout=max(0.01, acknowledged + 1.0 - time.monotonic()))
                if state["state"] == "open" and state["participants_present"] == n + 1:
                    break
            assert time.monotonic() - acknowledged < 1.0
            assert code in state["present"]

        # The quorum is the same whichever process answers, and it is the database's.
        answers = [
            board.call("watch_session", {"session_id": session_id}, "/live", 5)["state"] for board in boards.values()
        ]
        engine = sa.create_engine(two_processes["url"])
        with sa.orm.Session(engine) as db:
            from meetings.models import MeetingSession

            quorum = services.session_quorum(db, db.get(MeetingSession, session_id))
        engine.dispose()
        for state in answers:
            assert state["parties_present"] == quorum.present == len(PARTIES)
            assert sorted(state["present"]) == sorted(PARTIES)
    finally:
        for client in clients:
            client.disconnect()


def test_leaving_from_a_page_on_one_process_tells_the_delegates_page_on_the_other(two_processes):
    a, b = two_processes["bases"]
    session_id = two_processes["session_id"]
    accounts = two_processes["accounts"]
    officer = logged_in(a, EMAIL, *accounts[EMAIL])
    status, _ = officer.post(f"/sessions/{session_id}/open", f"/sessions/{session_id}/dashboard", {})
    assert status == 302

    # One delegate, one login, a page on each process (a laptop and a phone).
    email = "che@two-processes.example.org"
    browser = logged_in(a, email, *accounts[email])
    told = {a: queue.Queue(), b: queue.Queue()}
    pages = {base: socket_of(base, browser, {"checked_out": told[base].put}) for base in (a, b)}
    try:
        for n, page in enumerate(pages.values()):
            ack = page.call("check_in", {"session_id": session_id, "nonce": f"two-pages-{n:04d}"}, "/live", 5)
            assert ack["ok"], ack
        ack = pages[a].call("check_out", {"session_id": session_id, "nonce": "two-pages-out"}, "/live", 5)
        assert ack["ok"] and ack["recorded"], ack
        assert told[b].get(timeout=1.0) == {"session_id": session_id, "at": ack["at"]}
        time.sleep(0.3)  # the page that left is not told of its own departure
        assert told[a].empty()
    finally:
        for page in pages.values():
            page.disconnect()
