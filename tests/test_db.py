"""The database layer: transactions that roll back really roll back, on SQLite as on PostgreSQL."""

import sqlalchemy as sa

from app import create_app
from auth.models import LoginThrottle


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
