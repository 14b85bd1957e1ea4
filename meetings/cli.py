"""Command line: schema migrations, demonstration data and exports (`flask --app app ...`)."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

import db as database
from db import get_db, utcnow
from meetings import demo, services
from meetings.exports import ATTENDANCE_COLUMNS, csv_lines
from meetings.models import MeetingSession

db_cli = AppGroup("db", help="Database schema.")
demo_cli = AppGroup("demo", help="Demonstration data.")
meetings_cli = AppGroup("meetings", help="Meetings: exports.")


@db_cli.command("upgrade")
def upgrade() -> None:
    """Create or upgrade the schema to the latest migration."""
    database.upgrade(current_app.config["DATABASE_URL"])
    click.echo("Schema is up to date.")


@demo_cli.command("seed")
def seed() -> None:
    """Load COP-4 demonstration data (once) and print the demo accounts."""
    db = get_db()
    if demo.seed(db, utcnow(), current_app.config["PASSWORD_HASH_METHOD"]):
        db.commit()
    click.echo(demo.describe_accounts(db, current_app.config["TOTP_ISSUER"]))


@meetings_cli.command("export-attendance")
@click.argument("session_id", type=int)
def export_attendance(session_id: int) -> None:
    """Write a session's attendance intervals as CSV to standard output."""
    meeting_session = get_db().get(MeetingSession, session_id)
    if meeting_session is None:
        raise click.ClickException(f"There is no session {session_id}.")
    for line in csv_lines(ATTENDANCE_COLUMNS, services.attendance_rows(get_db(), meeting_session)):
        sys.stdout.write(line)
