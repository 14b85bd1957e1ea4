"""The database layer: transactions that roll back really roll back, on SQLite as on PostgreSQL."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from auth.models import LoginThrottle
from db import checkpoints_of, make_engine


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


# A server process on gevent, as under gunicorn's gevent worker: 200 commits of 200 kB each.
CHECKPOINT_PROBE = """
from gevent import monkey

monkey.patch_all()
import json, os, sys
import gevent
from db import checkpoints_of, make_engine

path = sys.argv[1]
engine = make_engine(f"sqlite:///{path}")
with engine.begin() as connection:
    connection.exec_driver_sql("CREATE TABLE blobs (data BLOB)")
    autocheckpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
largest = 0
for _ in range(200):
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(200000))")
    gevent.sleep(0.02)
    largest = max(largest, os.path.getsize(path + "-wal"))
with engine.connect() as connection:
    rows = connection.exec_driver_sql("SELECT count(*) FROM blobs").scalar()
print(json.dumps([autocheckpoint, checkpoints_of(engine).runs, largest, rows]))
"""


def test_on_gevent_sqlite_checkpoints_in_a_thread_and_the_log_stays_small(tmp_path):
    """A checkpoint (milliseconds of writing and an fsync) would stall every socket of a gevent process."""
    probe = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_PROBE, str(tmp_path / "cop.sqlite3")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    autocheckpoint, runs, largest_log, rows = json.loads(probe.stdout.strip().splitlines()[-1])
    assert autocheckpoint == 0  # a commit never checkpoints on the event loop
    assert runs >= 2  # the thread did, while commits went on
    assert largest_log < 20_000_000  # of 40 MB written: the log was reused, not grown without end
    assert rows == 200


def test_elsewhere_sqlite_checkpoints_as_it_does_by_default(tmp_path):
    """A command, a test or the threaded development server: no gevent loop to keep free, no thread."""
    engine = make_engine(f"sqlite:///{tmp_path / 'cop.sqlite3'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        assert checkpoints_of(engine) is None
    finally:
        engine.dispose()
