"""The migrations build exactly the schema the models describe, on every backend."""

import datetime as dt

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

import db as database
from meetings import services
from meetings.models import Channel, EventKind, MeetingSession, Presence, Source


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_migrated_schema_matches_the_models(app):
    engine = app.extensions["db_engine"]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, database.Base.metadata) == []


def test_upgrade_is_idempotent(database_url):
    database.upgrade(database_url)
    database.upgrade(database_url)


def test_secrets_stored_in_plain_text_before_encryption_are_encrypted_by_the_upgrade(tmp_path):
    from app import create_app
    from auth.models import Authenticator

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    command.upgrade(alembic_config(url), "4e04a1c45d50")
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


def test_the_presences_upgrade_rebuilds_who_is_inside_from_the_log(app, db, cop4, make_delegate, clock):
    """Databases from before the presences table get it filled by folding their attendance log."""
    meeting_session = cop4.segments[0].sessions[0]
    services.change_state(db, meeting_session, "open", make_delegate("FRA")[0], clock())
    stays, leaves = make_delegate("CHE")[0], make_delegate("NGA")[0]
    arrived = {}
    for user, kind in ((stays, EventKind.ENTRY), (leaves, EventKind.ENTRY), (leaves, EventKind.EXIT)):
        arrived.setdefault(user.id, clock.advance(60))
        services.record_attendance(
            db,
            meeting_session,
            user,
            kind=kind,
            channel=Channel.ONLINE,
            source=Source.BROWSER,
            nonce=f"n-{user.id}-{kind.value}-nonce",
            now=clock(),
        )
    db.commit()
    session_id = meeting_session.id
    db.close()

    command.downgrade(alembic_config(app.config["DATABASE_URL"]), "462472ed710d")
    upgraded_at = dt.datetime.now(dt.UTC)
    database.upgrade(app.config["DATABASE_URL"])

    assert services.present_users(db, db.get(MeetingSession, session_id)) == {stays.id: frozenset({"online"})}
    presence = db.scalar(sa.select(Presence))
    assert presence.since == arrived[stays.id]
    # Seen at the upgrade: the page has the grace period to reconnect.
    assert presence.last_seen_at >= upgraded_at - dt.timedelta(seconds=1)
