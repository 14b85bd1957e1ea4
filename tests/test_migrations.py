"""The migrations build exactly the schema the models describe, on every backend."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import db as database


def test_migrated_schema_matches_the_models(app):
    engine = app.extensions["db_engine"]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, database.Base.metadata) == []


def test_upgrade_is_idempotent(database_url):
    database.upgrade(database_url)
    database.upgrade(database_url)
