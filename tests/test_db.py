"""The database layer: transactions that roll back really roll back, on SQLite as on PostgreSQL."""

import sqlalchemy as sa

from auth.models import LoginThrottle


def test_a_savepoint_as_the_first_write_is_undone_by_a_rollback(db):
    with db.begin_nested():
        db.add(LoginThrottle(key="k" * 64, failures=1))
    db.rollback()
    assert db.scalar(sa.select(sa.func.count(LoginThrottle.id))) == 0
