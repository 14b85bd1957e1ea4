"""Command line: schema migrations, demonstration data and exports (`flask --app app ...`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

import db as database
from db import get_db, utcnow
from meetings import demo, presence_cache, services, stat_exports, statistics
from meetings.exports import ATTENDANCE_COLUMNS, csv_lines
from meetings.models import Category, Meeting, MeetingSession

db_cli = AppGroup("db", help="Database schema.")
demo_cli = AppGroup("demo", help="Demonstration data.")
meetings_cli = AppGroup("meetings", help="Meetings: exports and checks.")


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


@meetings_cli.command("verify-attendance")
@click.argument("meeting_code", required=False)
@click.option("--session", "session_id", type=int, help="Only this session (its id).")
@click.option("--rebuild", is_flag=True, help="Rewrite the presences of the sessions that differ from the log.")
def verify_attendance(meeting_code: str | None, session_id: int | None, rebuild: bool) -> None:
    """Compare who is inside (the presences table) with the attendance log, session by session.

    The log is the record; the presences table is a cache of it, folded by the presence rule. Any
    difference is listed, and the command fails; with --rebuild, the differing sessions' presences
    are rewritten from the log. Rebuild when the sessions' check-ins are quiet: a check-in during
    the rebuild of its session may be undone.
    """
    db = get_db()
    if db.get_bind().dialect.name == "postgresql":
        # One snapshot for the table and the log: a check-in committed between two reads is no difference.
        db.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    query = sa.select(MeetingSession).order_by(MeetingSession.id)
    if meeting_code is not None:
        meeting = db.scalar(sa.select(Meeting).where(Meeting.code == meeting_code))
        if meeting is None:
            raise click.ClickException(f"There is no meeting {meeting_code}.")
        query = query.where(MeetingSession.id.in_([s.id for s in services.sessions_of(db, meeting)]))
    if session_id is not None:
        query = query.where(MeetingSession.id == session_id)
    sessions = list(db.scalars(query))
    if not sessions:
        raise click.ClickException("There is no such session.")
    differing: list[MeetingSession] = []
    for meeting_session in sessions:
        found = presence_cache.differences(db, meeting_session)
        name = f"Session {meeting_session.id} ({meeting_session.title})"
        if not found:
            click.echo(f"{name}: the presences agree with the log.")
            continue
        differing.append(meeting_session)
        click.echo(f"{name}: {len(found)} difference(s) from the log:")
        for difference in found:
            click.echo(f"  {difference}")
    db.rollback()
    if not differing:
        return
    if not rebuild:
        raise click.ClickException(
            f"{len(differing)} session(s) differ from the log. Run again with --rebuild to rewrite them from the log."
        )
    for meeting_session in differing:
        written = presence_cache.rebuild(db, meeting_session, utcnow())
        db.commit()
        click.echo(f"Session {meeting_session.id}: rebuilt from the log ({written} inside).")
    for meeting_session in differing:
        if presence_cache.differences(db, meeting_session):
            raise click.ClickException(f"Session {meeting_session.id} still differs from the log after the rebuild.")
    db.rollback()


BINARY_FORMATS = ("zip", "xlsx", "pdf")


@meetings_cli.command("statistics")
@click.argument("meeting_code")
@click.option("--segment", "segment_id", type=int, help="Only this segment (its id).")
@click.option("--session", "session_id", type=int, help="Only this session (its id).")
@click.option(
    "--category",
    type=click.Choice([category.value for category in Category], case_sensitive=False),
    help="Only participants of this category.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(stat_exports.FORMATS), case_sensitive=False),
    help="csv (one table: see --table), zip (a CSV per table), xlsx, pdf or json. Default: csv with --table, else zip.",
)
@click.option("--table", "table_key", help="The table of a CSV export, by key (overview, by_category, attendance...).")
@click.option(
    "-o",
    "--output",
    help="The file or folder to write to, or - for standard output. Default: a file named after the meeting, scope "
    "and time, in the current folder.",
)
def statistics_export(
    meeting_code: str,
    segment_id: int | None,
    session_id: int | None,
    category: str | None,
    fmt: str | None,
    table_key: str | None,
    output: str | None,
) -> None:
    """Export a meeting's attendance and quorum statistics (the whole meeting, a segment or a session)."""
    fmt = (fmt or ("csv" if table_key else "zip")).lower()
    db = get_db()
    meeting = db.scalar(sa.select(Meeting).where(Meeting.code == meeting_code))
    if meeting is None:
        known = ", ".join(db.scalars(sa.select(Meeting.code).order_by(Meeting.code))) or "none"
        raise click.ClickException(f"There is no meeting {meeting_code}. The meetings are: {known}.")
    try:
        report = statistics.report(
            db,
            meeting,
            segment_id=segment_id,
            session_id=session_id,
            category=Category(category.lower()) if category else None,
            now=database.now(),
        )
        chunks = stat_exports.export(report, fmt, table_key)
    except services.MeetingError as exc:
        raise click.ClickException(exc.message) from None
    except stat_exports.ExportError as exc:
        raise click.ClickException(str(exc)) from None

    if output == "-":
        stdout = click.open_file("-", "wb")
        if fmt in BINARY_FORMATS and stdout.isatty():
            raise click.ClickException(f"A {fmt} file would garble the terminal: redirect it or use -o FILE.")
        for chunk in chunks:
            stdout.write(chunk)
        stdout.flush()
        return
    name = stat_exports.filename(report, fmt, table_key if fmt == "csv" else None)
    path = Path(output) if output else Path(name)
    if path.is_dir():
        path = path / name
    # Written beside the target and renamed once whole: a reader never sees half an export, and a
    # failure leaves an earlier file of that name as it was.
    partial = path.with_name(f".{path.name}.partial")
    try:
        out = partial.open("wb")
    except OSError as exc:
        raise click.ClickException(f"Cannot write {path}: {exc.strerror}.") from None
    try:
        with out:
            for chunk in chunks:
                out.write(chunk)
        partial.replace(path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise click.ClickException(f"Cannot write {path}: {exc.strerror}.") from None
        raise
    click.echo(f"Wrote {path}.")
