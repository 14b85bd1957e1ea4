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


def test_secrets_stored_in_plain_text_before_encryption_are_encrypted_by_the_upgrade(tmp_path):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from app import create_app
    from auth.models import Authenticator

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    alembic = Config()
    alembic.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    alembic.set_main_option("sqlalchemy.url", url)
    command.upgrade(alembic, "4e04a1c45d50")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO users (email, given_name, family_name, gender, role, is_enabled, created_at) "
                "VALUES ('old@example.org', 'Old', 'Account', 'female', 'officer', 1, '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO authenticators (user_id, secret, created_at) "
                "VALUES (1, 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', '2026-01-01 00:00:00')"
            )
        )
    database.upgrade(url)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT secret FROM authenticators")).scalar_one()
    engine.dispose()
    assert stored.startswith("gAAAAA") and "JBSWY3DP" not in stored
    app = create_app("testing", {"DATABASE_URL": url})
    session = app.extensions["db_sessionmaker"]()
    assert session.scalar(sa.select(Authenticator.secret)) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    session.close()
    app.extensions["db_engine"].dispose()
