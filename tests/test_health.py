"""/healthz and /readyz: what each checks, what a failure says (and never says), and what is remembered."""

from __future__ import annotations

import logging
import time

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import db as database
from app import create_app
from meetings import health

PASSWORD = "pr0be-s3cret"


@pytest.fixture
def make_app(tmp_path):
    """Factory: an app of the testing configuration with these settings; its engines are closed afterwards."""
    apps = []

    def make(**overrides):
        app = create_app("testing", overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["db_engine"].dispose()
        app.extensions["readiness"].engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def previous_revision() -> str:
    """The revision just before the newest, as a database not yet upgraded by the last deployment would be."""
    (head,) = health.migration_heads()
    return ScriptDirectory(str(database.MIGRATIONS_DIR)).get_revision(head).down_revision


@pytest.fixture
def migrated_url(tmp_path) -> str:
    """A migrated SQLite database of this test alone, free to be stamped back."""
    url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    database.upgrade(url)
    return url


def test_liveness_asks_nothing_of_the_database(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'cop.sqlite3'}")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_a_migrated_database_is_ready_without_login_and_without_a_cookie(app, client):
    response = client.get("/readyz")
    # On PostgreSQL the probe has a pool of its own.
    app.extensions["readiness"].engine.dispose()
    assert response.status_code == 200
    # No message queue is configured, so Redis is not checked.
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers


def test_an_unreachable_sqlite_database_is_not_ready(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'cop.sqlite3'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "failed (OperationalError)", "schema": "not checked"},
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_an_unreachable_postgresql_server_is_not_ready_and_its_url_is_not_told(make_app):
    app = make_app(DATABASE_URL=f"postgresql+psycopg://cop:{PASSWORD}@127.0.0.1:1/cop")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert response.get_json()["checks"]["database"].startswith("failed (")
    assert PASSWORD not in body and "127.0.0.1" not in body and "cop:" not in body


def test_a_schema_behind_the_code_is_not_ready(make_app, migrated_url):
    older = previous_revision()
    command.stamp(alembic_config(migrated_url), older)
    response = make_app(DATABASE_URL=migrated_url).test_client().get("/readyz")
    assert response.status_code == 503
    (head,) = health.migration_heads()
    assert response.get_json()["checks"] == {"database": "ok", "schema": f"at {older}, expected {head}"}


def test_an_empty_database_is_not_ready(make_app, tmp_path):
    response = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}").test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "schema": "not migrated"}


def test_the_schema_answer_is_kept_a_few_seconds_and_the_database_check_never(
    make_app, migrated_url, tmp_path, monkeypatch
):
    app = make_app(DATABASE_URL=migrated_url)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    command.stamp(alembic_config(migrated_url), previous_revision())
    # Within SCHEMA_CACHE_SECONDS the last schema answer stands...
    assert client.get("/readyz").status_code == 200
    # ...and once they have passed, the database is asked again.
    monkeypatch.setattr(health, "SCHEMA_CACHE_SECONDS", 0.0)
    assert client.get("/readyz").get_json()["checks"]["schema"].startswith("at ")

    command.stamp(alembic_config(migrated_url), "head")
    assert client.get("/readyz").status_code == 200

    # The database itself is asked at every poll, whatever the schema answer kept.
    monkeypatch.setattr(health, "SCHEMA_CACHE_SECONDS", 3600.0)
    readiness = app.extensions["readiness"]
    monkeypatch.setattr(readiness, "engine", database.make_engine(f"sqlite:///{tmp_path / 'gone' / 'cop.sqlite3'}"))
    assert client.get("/readyz").get_json()["checks"]["database"] == "failed (OperationalError)"


def test_an_unreachable_redis_queue_is_not_ready_and_its_url_is_not_told(make_app, migrated_url):
    app = make_app(DATABASE_URL=migrated_url, SOCKETIO_MESSAGE_QUEUE=f"redis://:{PASSWORD}@127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok" and checks["schema"] == "ok"
    assert checks["redis"].startswith("failed (")
    assert PASSWORD not in response.get_data(as_text=True)


def test_readiness_is_logged_when_it_changes_not_at_every_poll(make_app, tmp_path, caplog):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'cop.sqlite3'}")
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="meetings.health"):
        for _ in range(3):
            assert client.get("/readyz").status_code == 503
    lines = [record.getMessage() for record in caplog.records if record.name == "meetings.health"]
    assert lines == ["not ready: database failed (OperationalError), schema not checked"]


@pytest.mark.parametrize(
    ("current", "heads", "state"),
    [
        ({"b"}, {"b"}, "ok"),
        (set(), {"b"}, "not migrated"),
        ({"a"}, {"b"}, "at a, expected b"),
        ({"c"}, {"b"}, "at c, expected b"),
    ],
)
def test_schema_state(current, heads, state):
    assert health.schema_state(frozenset(current), frozenset(heads)) == state
