"""The database layer: transactions that roll back really roll back, on SQLite as on PostgreSQL."""

import time

import pytest
import sqlalchemy as sa

from app import create_app
from auth.models import LoginThrottle
from db import make_engine


def test_a_savepoint_as_the_first_write_is_undone_by_a_rollback(db):
    with db.begin_nested():
        db.add(LoginThrottle(key="k" * 64, failures=1))
    db.rollback()
    assert db.scalar(sa.select(sa.func.count(LoginThrottle.id))) == 0


def test_the_connection_pool_is_sized_by_the_settings(database_url):
    app = create_app("testing", {"DATABASE_URL": database_url, "DATABASE_POOL_SIZE": 7, "DATABASE_MAX_OVERFLOW": 3})
    engine = app.extensions["db_engine"]
    try:
        held = [engine.connect() for _ in range(10)]
        assert engine.pool.size() == 7 and engine.pool.overflow() == 3
        for connection in held:
            connection.close()
        assert engine.pool.checkedin() == 7  # the three beyond the pool's size were closed
    finally:
        engine.dispose()


def test_a_postgresql_connection_is_pinged_only_after_waiting_in_the_pool(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to lose the connection")
    engine = make_engine(database_url, pool_size=1, ping_idle_seconds=0.2)
    pings = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda connection: pings.append(connection) or ping(connection)
    backend = sa.text("SELECT pg_backend_pid()")
    try:
        with engine.connect() as connection:
            first = connection.scalar(backend)
        with engine.connect() as connection:
            assert connection.scalar(backend) == first
        assert pings == []  # used a moment ago: no round trip before the statement

        # The server drops the connection while it waits in the pool (a restart, an idle timeout).
        other = make_engine(database_url)
        with other.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        other.dispose()
        time.sleep(0.3)
        with engine.connect() as connection:
            assert connection.scalar(backend) != first  # replaced, without an error
        assert len(pings) == 1
    finally:
        engine.dispose()
