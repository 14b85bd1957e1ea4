"""Fixtures: the app on SQLite and on PostgreSQL, a controllable clock, account and meeting factories."""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import db as database
from app import create_app, socketio
from auth import services as auth_services
from auth import totp
from auth.models import Authenticator, Gender, Role
from meetings import demo
from meetings import services as meeting_services
from meetings.models import Category, Function, Meeting, MeetingSession, Registration

POSTGRES_HINT = (
    "PostgreSQL tests need TEST_POSTGRES_URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test (.ci/run sets it)"
)
TEST_HASH = "scrypt:1024:8:1"
CSRF_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path_factory) -> str:
    """A migrated database of each backend: SQLite always, PostgreSQL when TEST_POSTGRES_URL names one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
    else:
        url = os.environ.get("TEST_POSTGRES_URL")
        if not url:
            pytest.skip(POSTGRES_HINT)
        # Set but unreachable is a failure, never a skip: CI must not pass without PostgreSQL.
        _reset_postgres(url)
    database.upgrade(url)
    return url


def pytest_terminal_summary(terminalreporter) -> None:
    """Say once, visibly, why the PostgreSQL half of the suite did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if POSTGRES_HINT in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("-", f"{len(skipped)} PostgreSQL tests skipped", yellow=True)
        terminalreporter.write_line(POSTGRES_HINT)


class Clock:
    """The app's clock, moved by tests."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2026, 11, 2, 12, 0, 0, tzinfo=dt.UTC))


@pytest.fixture
def app(database_url, clock):
    app = create_app("testing", {"DATABASE_URL": database_url})
    app.extensions["clock"] = clock
    yield app
    engine = app.extensions["db_engine"]
    tables = [table.name for table in reversed(database.Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture
def db(app):
    """A database session of its own, outside any app context."""
    session = app.extensions["db_sessionmaker"]()
    yield session
    session.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cop4(app, db, clock) -> Meeting:
    """The COP-4 demonstration meeting with its Parties, sessions and demo accounts."""
    demo.seed(db, clock(), TEST_HASH)
    db.commit()
    return db.scalar(sa.select(Meeting).where(Meeting.code == demo.MEETING_CODE))


@pytest.fixture
def online_session(db, cop4) -> MeetingSession:
    return cop4.segments[0].sessions[0]


@pytest.fixture
def make_user(db, clock):
    """Factory: an account, with an enrolled authenticator unless enrolled=False; returns (user, secret)."""
    counter = iter(range(1, 10_000))

    def make(
        role: Role = Role.PARTICIPANT,
        *,
        email: str | None = None,
        password: str = "correct horse battery",
        enrolled=True,
    ):
        user = auth_services.create_user(
            db,
            email=email or f"person{next(counter)}@example.org",
            password=password,
            given_name="Test",
            family_name="Person",
            gender=Gender.FEMALE,
            role=role,
            hash_method=TEST_HASH,
        )
        user.email_confirmed_at = clock()
        secret = None
        if enrolled:
            secret = totp.new_secret()
            db.add(Authenticator(user=user, secret=secret, confirmed_at=clock()))
        db.commit()
        return user, secret

    return make


@pytest.fixture
def make_delegate(db, cop4, make_user, clock):
    """Factory: an approved Party delegate of COP-4 registered for both segments; returns (user, secret)."""

    def make(party_code: str = "CHE", *, approve: bool = True, **kwargs):
        user, secret = make_user(**kwargs)
        registration = meeting_services.register(
            db,
            meeting=cop4,
            user=user,
            category=Category.PARTY,
            function=Function.HEAD,
            segment_ids=[segment.id for segment in cop4.segments],
            party_code=party_code,
            now=clock(),
        )
        if approve:
            meeting_services.approve(db, registration, user, clock())
        db.commit()
        return user, secret

    return make


def csrf_token(client, path: str = "/") -> str:
    """The CSRF token a page carries, as a browser would read it."""
    match = CSRF_RE.search(client.get(path).get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_password(client, email: str, password: str, next_url: str | None = None):
    """Step 1 of the login, through the real form."""
    path = "/auth/login" + (f"?next={next_url}" if next_url else "")
    data = {"email": email, "password": password, "csrf_token": csrf_token(client, "/auth/login")}
    return client.post(path, data=data)


def post_code(client, code: str):
    """Step 2 of the login, through the real form."""
    return client.post("/auth/login/code", data={"code": code, "csrf_token": csrf_token(client, "/auth/login/code")})


def login(client, email: str, password: str, secret: str, clock: Clock) -> None:
    """Log in through the real views: password, then the current code."""
    response = post_password(client, email, password)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/auth/login/code")
    clock.advance(30)
    response = post_code(client, totp.code_at(secret, clock()))
    assert response.status_code == 302, response.get_data(as_text=True)


def mailed_link(db, to: str) -> str:
    """The last link mailed to an address, as the recipient would click it (path only)."""
    from auth.models import OutboxMessage

    body = db.scalar(
        sa.select(OutboxMessage.body).where(OutboxMessage.to_address == to).order_by(OutboxMessage.id.desc()).limit(1)
    )
    assert body, f"no mail to {to}"
    match = re.search(r"http://localhost(/\S+)", body)
    assert match, f"no link in the mail to {to}"
    return match.group(1)


def socket_client(app, client):
    return socketio.test_client(app, namespace="/live", flask_test_client=client)


def registration_of(db, user) -> Registration:
    return db.scalar(sa.select(Registration).where(Registration.user_id == user.id))
