"""The statistics page of a meeting (the secretariat's; a session's for officers) and its exports."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from flask import Response, abort, current_app, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from auth.login import officer_required
from db import get_db, now
from meetings import services, stat_exports, statistics
from meetings.models import CATEGORY_LABELS, Category, Meeting, MeetingSession
from meetings.report import Chart, Column, Report, Table
from meetings.views import bp, meeting_or_404

# Long tables are offered as downloads only: the page would be too long to read and slow to render.
DOWNLOAD_ONLY = frozenset({"attendance"})
NUMERIC_KINDS = frozenset({"int", "float", "percent", "duration"})
# Tables longer than this scroll inside their card (every Party of a convention: about 150 rows).
LONG_TABLE = 25

OFFICER_SCOPE = (
    "Officers see the statistics of one session at a time. Open them from the session's dashboard, "
    "or ask the secretariat for the statistics of a segment or of the whole meeting."
)
EXPORT_REFUSED = (
    "Only the secretariat exports statistics. The figures of a session stay on its statistics page; "
    "ask the secretariat for a CSV, XLSX, PDF or JSON export."
)
# Exports hold figures about named people (the attendance log): neither shared caches nor the browser keep them.
EXPORT_CACHE_CONTROL = "private, no-store"


class StatisticsFilterForm(FlaskForm):
    """The scope (segment, session) and category of the statistics, read from the query string."""

    class Meta:
        # A GET filter that changes nothing: the address must be shareable and bookmarkable.
        csrf = False

    segment = SelectField("Segment", default="", validate_choice=False)
    session = SelectField("Session", default="", validate_choice=False)
    category = SelectField("Category", default="", validate_choice=False)

    def __init__(self, meeting: Meeting, sessions: list[MeetingSession], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.meeting = meeting
        self.segments = {str(s.id): s for s in meeting.segments}
        self.sessions = {str(s.id): s for s in sessions}
        self.segment.choices = [SelectChoice("", "All segments")] + [
            SelectChoice(key, segment.name.capitalize()) for key, segment in self.segments.items()
        ]
        # Grouped by segment, so that the two "Opening plenary" sessions can be told apart.
        self.session.choices = {"": [SelectChoice("", "All sessions")]} | {
            segment.name.capitalize(): [
                SelectChoice(str(s.id), f"{s.title} ({s.scheduled_start_at.astimezone(s.tz):%-d %b})")
                for s in sessions
                if s.segment_id == segment.id
            ]
            for segment in meeting.segments
        }
        self.category.choices = [SelectChoice("", "All categories")] + [
            SelectChoice(c.value, label) for c, label in CATEGORY_LABELS.items()
        ]

    def validate_segment(self, field) -> None:
        if field.data and field.data not in self.segments:
            raise ValidationError(f"The segment asked for is not one of {self.meeting.code}'s.")

    def validate_session(self, field) -> None:
        if not field.data:
            return
        meeting_session = self.sessions.get(field.data)
        if meeting_session is None:
            raise ValidationError(f"The session asked for is not one of {self.meeting.code}'s.")
        segment = self.segments.get(self.segment.data or "")
        if segment is not None and meeting_session.segment_id != segment.id:
            raise ValidationError(f"“{meeting_session.title}” is not a session of the {segment.name}.")

    def validate_category(self, field) -> None:
        if field.data and field.data not in {c.value for c in Category}:
            raise ValidationError("The category asked for is not a category of participants.")

    def messages(self) -> list[str]:
        return [message for errors in self.errors.values() for message in errors]


@dataclass(frozen=True, slots=True)
class Filters:
    """Validated filters: what report() takes, and the query arguments that repeat them."""

    segment_id: int | None = None
    session_id: int | None = None
    category: Category | None = None
    problems: list[str] = field(default_factory=list)

    @classmethod
    def from_request(cls, meeting: Meeting) -> tuple[Filters, StatisticsFilterForm]:
        form = StatisticsFilterForm(meeting, services.sessions_of(get_db(), meeting), formdata=request.args)
        if not form.validate():
            return cls(problems=form.messages()), form
        return (
            cls(
                segment_id=int(form.segment.data) if form.segment.data else None,
                session_id=int(form.session.data) if form.session.data else None,
                category=Category(form.category.data) if form.category.data else None,
            ),
            form,
        )

    def args(self) -> dict[str, str]:
        """The query arguments of these filters, for links that keep them."""
        args = {"segment": self.segment_id, "session": self.session_id, "category": self.category}
        return {key: str(value) for key, value in args.items() if value is not None}


def _refused(code: int, title: str, message: str):
    return render_template("errors/error.html", code=code, title=title, message=message), code


def _report(meeting: Meeting, filters: Filters) -> Report:
    return statistics.report(
        get_db(),
        meeting,
        segment_id=filters.segment_id,
        session_id=filters.session_id,
        category=filters.category,
        now=now(),
    )


def format_cell(value: object, kind: str, tz: ZoneInfo) -> str:
    """A cell as people read it: thousands separators, percentages, h:mm:ss durations, local times.

    Durations are hours:minutes:seconds, as the overview, its note and the PDF write them: a lone
    "1:05" would read as a minute or as an hour.
    """
    if value is None or value == "":
        return "—"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    if kind == "float" and isinstance(value, int | float):
        return f"{value:,.1f}"
    if kind == "percent" and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if kind == "duration" and isinstance(value, int | float | dt.timedelta):
        seconds = round(value.total_seconds() if isinstance(value, dt.timedelta) else value)
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    if kind == "datetime" and isinstance(value, dt.datetime):
        # Naive datetimes are UTC, as the database keeps them (astimezone would take them as the server's time).
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(tz).strftime("%-d %b %Y, %H:%M")
    return str(value)


@dataclass(frozen=True, slots=True)
class ShownTable:
    """A table of the report, its cells formatted for the page."""

    key: str
    title: str
    note: str
    columns: tuple[Column, ...]
    rows: list[list[str]]


def shown(table: Table, tz: ZoneInfo) -> ShownTable:
    rows = [[format_cell(v, c.kind, tz) for v, c in zip(row, table.columns, strict=False)] for row in table.rows]
    return ShownTable(table.key, table.title, table.note, table.columns, rows)


def chart_data(report: Report) -> dict:
    """The charts as the page's script draws them (a JSON data block: the CSP forbids inline scripts)."""
    return {
        "timezone": report.timezone,
        "charts": [
            {
                "key": chart.key,
                "title": chart.title,
                "kind": chart.kind,
                "labels": list(chart.labels),
                "series": [{"name": s.name, "values": list(s.values)} for s in chart.series],
            }
            for chart in report.charts
        ],
    }


@dataclass(frozen=True, slots=True)
class ShownChart:
    """A chart of the report as the page shows it: why it is empty, or its figures as a table.

    The table is the chart's text alternative (a canvas says nothing to a screen reader) and what
    a reader gets when the chart script cannot run.
    """

    key: str
    title: str
    kind: str
    empty: str  # why there is nothing to draw; "" if the chart is drawn
    label_heading: str
    series: tuple[str, ...]
    rows: list[tuple[str, list[str]]]


def _label_heading(chart: Chart) -> str:
    """What a bar chart's labels are ("Participants by regional group": regional group); times for a step chart."""
    if chart.kind == "step":
        return "Time"
    match = re.search(r"\b(?:by|per) (.+)$", chart.title)
    return match.group(1).capitalize() if match else "Item"


def _empty_message(chart: Chart, category: Category | None) -> str:
    """Why a chart has nothing to draw, in words that say what would fill it; "" if it has something."""
    counts = chart.series[:1] if chart.kind == "step" else chart.series  # a step chart's other series are thresholds
    if chart.labels and any(value for series in counts for value in series.values):
        return ""
    if chart.kind == "step":
        if not chart.labels:
            return "The count of Parties starts when the session is opened: nothing to chart yet."
        return "No Party has had a delegate inside this session: nothing to chart."
    if not chart.labels:
        return "Nothing to chart in this scope."
    who = f"No participant of the category {CATEGORY_LABELS[category]}" if category else "No participant"
    return f"{who} has been present in this scope: nothing to chart."


def shown_chart(chart: Chart, tz: ZoneInfo, category: Category | None) -> ShownChart:
    if chart.kind == "step":
        labels = [
            dt.datetime.fromisoformat(label).astimezone(tz).strftime("%-d %b %Y, %H:%M:%S") for label in chart.labels
        ]
    else:
        labels = list(chart.labels)
    rows = [
        (label, [format_cell(series.values[i], "int", tz) for series in chart.series]) for i, label in enumerate(labels)
    ]
    return ShownChart(
        chart.key,
        chart.title,
        chart.kind,
        _empty_message(chart, category),
        _label_heading(chart),
        tuple(series.name for series in chart.series),
        rows,
    )


def filter_labels(report: Report, filters: Filters) -> list[tuple[str, str]]:
    """The filters of the report as people read them."""
    if filters.category is not None:
        return [("Category", CATEGORY_LABELS[filters.category])]
    return [(key.replace("_", " ").capitalize(), value) for key, value in report.filters.items()]


@bp.get("/meetings/<code>/statistics", endpoint="statistics")
@officer_required
def statistics_page(code: str):
    """Attendance, quorum and registrations of a meeting, a segment or a session: charts, tables, exports."""
    meeting = meeting_or_404(code)
    filters, form = Filters.from_request(meeting)
    if not current_user.is_secretariat:
        if filters.problems:
            return _refused(400, "Statistics not shown", " ".join(filters.problems))
        if filters.session_id is None:
            return _refused(403, "Choose a session", OFFICER_SCOPE)
    # A refused filter still shows the page (the message and a form to choose again) with the whole
    # meeting, but not as a success: a bookmark or a script that asked for a scope did not get it.
    status = 400 if filters.problems else 200
    try:
        report = _report(meeting, filters)
    except services.MeetingError as exc:
        # The scope was deleted after the filter was read: show the meeting rather than fail.
        if not current_user.is_secretariat:
            abort(404)
        filters, status = Filters(problems=[exc.message]), 404
        report = _report(meeting, filters)
    if filters.problems:
        # Shown unfiltered, and the form says so rather than keep the values that were refused.
        form = StatisticsFilterForm(meeting, services.sessions_of(get_db(), meeting), formdata=None)
    tz = ZoneInfo(report.timezone)
    # Two segments may each have an "Opening plenary": say which one.
    scope_session = form.sessions.get(str(filters.session_id))
    scope_context = (
        f"{scope_session.segment.name}, {scope_session.local_date:%-d %B %Y}" if scope_session is not None else ""
    )
    tables = [shown(table, tz) for table in report.tables if table.key not in DOWNLOAD_ONLY]
    downloads = [table for table in report.tables if table.key in DOWNLOAD_ONLY]
    page = render_template(
        "meetings/statistics.html",
        meeting=meeting,
        report=report,
        # A segment's scope is its name, which starts in lower case ("in-person segment").
        scope_title=report.scope[:1].upper() + report.scope[1:],
        form=form,
        filters=filters,
        scope_session=scope_session,
        scope_context=scope_context,
        filter_labels=filter_labels(report, filters),
        tables=tables,
        downloads=downloads,
        charts=chart_data(report),
        shown_charts=[shown_chart(chart, tz, filters.category) for chart in report.charts],
        numeric=NUMERIC_KINDS,
        long_table=LONG_TABLE,
        may_export=current_user.is_secretariat,
        formats=export_formats(),
        export_url=lambda fmt, **extra: url_for(
            "meetings.statistics_export", code=meeting.code, fmt=fmt, **filters.args(), **extra
        ),
        produced_at=report.produced_at.astimezone(tz).strftime("%-d %B %Y, %H:%M:%S"),
    )
    return page, status


def _closing_when_sent(body: Iterator[bytes], db: Session) -> Iterator[bytes]:
    """The export's bytes; then (or when the client goes away) the database session it reads is closed.

    The request's own teardown has closed that session before the first byte is sent; the long
    tables read it again as they stream, and this returns the connection to the pool after.
    """
    try:
        yield from body
    finally:
        db.close()


# Rows of a long table read between two turns given to the server's other work (see _taking_turns).
ROWS_PER_TURN = 500


def _taking_turns(report: Report) -> Report:
    """The report with its long tables' rows read a few hundred at a time, the server's other work let run between.

    Exporting a whole meeting's attendance is seconds of CPU. On gevent, the production server, that
    would hold the event loop, and with it every socket of the process, for as long: the sockets'
    turn comes every ROWS_PER_TURN rows instead. Short tables (lists, read whole) are left as they are.
    """
    pause = current_app.extensions["socketio"].sleep

    def in_turns(rows):
        try:
            for n, row in enumerate(rows, 1):
                if not n % ROWS_PER_TURN:
                    pause(0)
                yield row
        finally:
            # An export stopped early closes this; the table's own generator then closes its database reads.
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    tables = [
        table if isinstance(table.rows, list | tuple) else replace(table, rows=in_turns(table.rows))
        for table in report.tables
    ]
    return replace(report, tables=tables)


def export_formats() -> list[tuple[str, str]]:
    """The whole-report downloads offered on the page: (format, label)."""
    labels = {"zip": "CSV (zip)", "xlsx": "XLSX", "pdf": "PDF report", "json": "JSON"}
    return [(fmt, label) for fmt, label in labels.items() if fmt in stat_exports.FORMATS]


@bp.get("/meetings/<code>/statistics.<fmt>")
@officer_required
def statistics_export(code: str, fmt: str):
    """The report of the page with the same filters, streamed as CSV, a zip of CSVs, XLSX, PDF or JSON."""
    meeting = meeting_or_404(code)
    if not current_user.is_secretariat:
        return _refused(403, "Exports are for the secretariat", EXPORT_REFUSED)
    if fmt not in stat_exports.FORMATS:
        # Said before the report is computed; the address is echoed short, and escaped by the template.
        known = ", ".join(stat_exports.FORMATS)
        return _refused(404, "Nothing exported", f"There is no “{fmt[:20]}” export. The formats are: {known}.")
    filters, _ = Filters.from_request(meeting)
    if filters.problems:
        return _refused(400, "Nothing exported", " ".join(filters.problems) + " Nothing was exported.")
    try:
        report = _report(meeting, filters)
    except services.MeetingError as exc:
        return _refused(404, "Nothing exported", exc.message)
    table_key = request.args.get("table") or None
    try:
        # Checks the format and the table before the first byte, so that a refusal is still a page.
        body = stat_exports.export(_taking_turns(report), fmt, table_key)
    except stat_exports.ExportError as exc:
        return _refused(400, "Nothing exported", str(exc))
    name = stat_exports.filename(report, fmt, table_key if fmt == "csv" else None)
    return Response(
        _closing_when_sent(body, get_db()),
        mimetype=stat_exports.FORMATS[fmt].mimetype,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": EXPORT_CACHE_CONTROL},
    )
