"""Statistics exports (CSV, a ZIP of CSVs, XLSX, PDF, JSON) of a report, streamed in chunks for views and the CLI.

Pure: takes a meetings.report.Report and yields text or bytes; no Flask, no database. A table's rows may be a
one-pass generator (the attendance list of a whole meeting): every export reads each table once, row by row, and
never holds a long table in memory. Small tables are read whole where a layout needs them (PDF column widths).

What each format says, and how:

- Every export names the meeting, the scope, the filters, the time zone and when it was produced: in the CSV
  ZIP's README.txt and about.csv, the XLSX's first sheet "About", the PDF's title block (its page footers repeat
  the meeting code, the scope and the time), the JSON document's top level. The file name (`filename`) always
  gives the meeting code, the scope, the filters and the time of production in UTC.
- A single-table CSV begins with its header line of column keys (stable names for scripts: `csv.DictReader`
  reads it as is), so it carries its provenance only in its file name; the ZIP carries it inside as well.
- CSV and JSON give times in ISO 8601 with the UTC offset, in the report's time zone, durations in whole seconds
  and percentages as fractions from 0 to 1. XLSX gives local times in the report's time zone (Excel has no time
  zones: the header says which), durations as [h]:mm:ss and percentages formatted as such.
- An XLSX sheet holds at most 1,048,576 rows (Excel's limit). A longer table goes on, after a last row that says
  where, on sheets of the same name with (2), (3)...; the "About" sheet lists every sheet with its rows.
- CSV and XLSX cells that start with = + - @ (or a tab or carriage return) get a leading apostrophe, so that a
  spreadsheet does not run them as formulas. JSON and PDF show the text as it is.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
import json
import math
import re
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import xlsxwriter
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing
from reportlab.lib.colors import HexColor
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    KeepTogether,
    LongTable,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    TableStyle,
)
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from meetings.badge_pdf import printable
from meetings.exports import csv_lines, neutralise
from meetings.report import Chart, Column, Report, Table

CHUNK_BYTES = 64 * 1024


class ExportError(ValueError):
    """An export that cannot be made as asked (an unknown format or table), with a message for people."""


def table(report: Report, key: str) -> Table:
    """The report's table with this key, or an ExportError naming the tables there are."""
    for candidate in report.tables:
        if candidate.key == key:
            return candidate
    known = ", ".join(t.key for t in report.tables) or "none"
    raise ExportError(f"There is no table “{key}” in this report. Its tables are: {known}.")


# Values --------------------------------------------------------------------------------------


def _zone(report: Report) -> ZoneInfo:
    return ZoneInfo(report.timezone)


def _local(value: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    # Naive datetimes are UTC, as the database keeps them.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zone)


def _iso(value: dt.datetime, zone: ZoneInfo) -> str:
    return _local(value, zone).isoformat(timespec="seconds")


def _seconds(value: object) -> int:
    if isinstance(value, dt.timedelta):
        return round(value.total_seconds())
    return round(value)  # type: ignore[call-overload]


def _plain(value: object, kind: str, zone: ZoneInfo) -> object:
    """A cell as a JSON/CSV value: datetimes as ISO strings with offset, durations as seconds, the rest as is."""
    if value is None or value.__class__ is str:  # the common case first: long tables are mostly text
        return value
    if isinstance(value, dt.datetime):
        return _iso(value, zone)
    if isinstance(value, dt.timedelta) or (kind == "duration" and isinstance(value, int | float)):
        return _seconds(value)
    if kind == "percent" and isinstance(value, float):
        return round(value, 6)
    return value


def _hms(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _filters_text(report: Report, joiner: str = ": ") -> str:
    return "; ".join(f"{name}{joiner}{value}" for name, value in report.filters.items())


def _chunks(parts: Iterable[str], size: int = CHUNK_BYTES) -> Iterator[str]:
    """Join small strings into chunks of about size characters: one write per chunk, not per row."""
    batch: list[str] = []
    length = 0
    for part in parts:
        batch.append(part)
        length += len(part)
        if length >= size:
            yield "".join(batch)
            batch.clear()
            length = 0
    if batch:
        yield "".join(batch)


def _close(rows: Iterable) -> None:
    """Let a generator that was not read to the end release what it holds (a database cursor)."""
    close = getattr(rows, "close", None)
    if callable(close):
        close()


# File names ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()


def filename(report: Report, fmt: str, table: str | None = None) -> str:
    """A safe file name: meeting code, scope, filters, table (CSV), and the production time in UTC.

    e.g. COP-4_opening-plenary_category-party_by-category_20261102T1200Z.csv
    """
    extension = FORMATS[fmt].extension if fmt in FORMATS else _slug(fmt) or "txt"
    # Accents are dropped, not turned into hyphens: "Genève" gives "Geneve".
    ascii_code = unicodedata.normalize("NFKD", report.meeting_code).encode("ascii", "ignore").decode()
    code = re.sub(r"[^A-Za-z0-9-]+", "-", ascii_code).strip("-")
    parts = [code or "meeting", _slug(report.scope)[:60].rstrip("-") or "scope"]
    parts += [_slug(f"{name}-{value}") for name, value in report.filters.items()]
    if table:
        parts.append(_slug(table))
    produced = report.produced_at
    if produced.tzinfo is None:
        produced = produced.replace(tzinfo=dt.UTC)
    parts.append(produced.astimezone(dt.UTC).strftime("%Y%m%dT%H%MZ"))
    return "_".join(part for part in parts if part) + "." + extension


# CSV -----------------------------------------------------------------------------------------


def _csv_table_lines(report: Report, source: Table) -> Iterator[str]:
    """One table as CSV lines: the header of column keys, then each row, cells neutralised."""
    zone = _zone(report)
    keys = [column.key for column in source.columns]
    kinds = [column.kind for column in source.columns]
    rows = (
        {key: _plain(value, kind, zone) for key, kind, value in zip(keys, kinds, row, strict=True)}
        for row in source.rows
    )
    return csv_lines(keys, rows)


def csv_table(report: Report, key: str) -> Iterator[str]:
    """One table of the report as CSV text, streamed in chunks (UTF-8, CRLF lines, header of column keys)."""
    source = table(report, key)  # raised here, before the first chunk, so a view can still answer 404
    return _chunks(_csv_table_lines(report, source))


def _about_lines(report: Report) -> list[tuple[str, str]]:
    produced = _iso(report.produced_at, _zone(report))
    return [
        ("meeting_code", report.meeting_code),
        ("meeting_title", report.meeting_title),
        ("scope", report.scope),
        ("filters", _filters_text(report, "=")),
        ("timezone", report.timezone),
        ("produced_at", produced),
    ]


UNITS = {
    "text": "",
    "int": "",
    "float": "",
    "percent": "fraction from 0 to 1",
    "duration": "seconds",
    "datetime": "ISO 8601 with UTC offset",
}


def _readme(report: Report, names: dict[str, str]) -> str:
    produced = _iso(report.produced_at, _zone(report))
    lines = [
        f"{report.meeting_code} – {report.meeting_title}",
        "Attendance and quorum statistics",
        "",
        f"Scope: {report.scope}",
        f"Filters: {_filters_text(report) or 'none'}",
        f"Time zone: {report.timezone}",
        f"Produced at: {produced}",
        "",
        "One CSV file per table: UTF-8, comma-separated, the first line holds the column keys.",
        f"Times are ISO 8601 with their UTC offset, in {report.timezone}; durations are in seconds;",
        "percentages are fractions from 0 to 1. Cells starting with = + - @ begin with an apostrophe,",
        "so that spreadsheets do not run them as formulas. about.csv holds the lines above as field,value.",
        "",
    ]
    for source in report.tables:
        lines.append(f"{names[source.key]}: {source.title}")
        if source.note:
            lines.append(f"  {source.note}")
        for column in source.columns:
            unit = UNITS.get(column.kind, "")
            lines.append(f"  {column.key}: {column.label}" + (f" ({unit})" if unit else ""))
        lines.append("")
    return "\r\n".join(lines)


class _Sink:
    """An unseekable writer that keeps what it is given until it is drained (zipfile then streams)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = bytes(self.data)
        self.data.clear()
        return data


def _entry_names(report: Report) -> dict[str, str]:
    names: dict[str, str] = {}
    used = {"readme.txt", "about.csv"}
    for source in report.tables:
        base = _slug(source.key).replace("-", "_") or "table"
        name = f"{base}.csv"
        counter = 2
        while name.lower() in used:
            name = f"{base}_{counter}.csv"
            counter += 1
        used.add(name.lower())
        names[source.key] = name
    return names


def csv_zip(report: Report) -> Iterator[bytes]:
    """A ZIP of README.txt, about.csv and one CSV per table, written as it is read: nothing waits for the end."""
    sink = _Sink()
    names = _entry_names(report)
    stamp = _local(report.produced_at, _zone(report)).timetuple()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def entry(name: str) -> zipfile.ZipInfo:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            return info

        archive.writestr(entry("README.txt"), _readme(report, names).encode())
        about = csv_lines(["field", "value"], ({"field": f, "value": v} for f, v in _about_lines(report)))
        archive.writestr(entry("about.csv"), "".join(about).encode())
        yield sink.drain()
        for source in report.tables:
            # Streamed entries carry their sizes after the data; without ZIP64 one entry holds up to 2 GiB
            # (about 20 million attendance rows), which keeps the archive readable by every unzip tool.
            with archive.open(entry(names[source.key]), "w") as raw:
                for part in _chunks(_csv_table_lines(report, source)):
                    raw.write(part.encode())
                    if len(sink.data) >= CHUNK_BYTES:
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()


# XLSX ----------------------------------------------------------------------------------------

XLSX_SHEET_ROWS = 1_048_576  # Excel's rows per sheet, the header included; a longer table continues on another sheet
XLSX_WIDTH_SAMPLE = 200  # rows read ahead to size the text columns
SHEET_TITLE_MAX = 31
XLSX_FORMATS = {
    "percent": "0.0%",
    "duration": "[h]:mm:ss",
    "datetime": "yyyy-mm-dd hh:mm:ss",
    "int": "#,##0",
}
XLSX_WIDTHS = {"percent": 9, "duration": 11, "datetime": 20, "int": 10, "float": 12}
# Characters that XML 1.0 does not allow (and that XlsxWriter writes as they are in constant_memory mode).
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
XLSX_OPTIONS = {
    # Each row goes to a temporary file once the next one starts, so memory stays flat however long the table;
    # rows must then be written in order, sheet by sheet.
    "constant_memory": True,
    # Every text is written with write_string; these make sure that nothing else ever turns text into a formula,
    # a link or a number.
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}
SECONDS_PER_DAY = 86_400
_SHEET_TITLE_DROPPED = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")  # control characters too


def _sheet_title(text: str, suffix: str = "") -> str:
    """text as an Excel sheet name ending in suffix: at most 31 characters, none of []:*?/\\ and no apostrophe at
    either end (Excel refuses those)."""
    base = _SHEET_TITLE_DROPPED.sub("", re.sub(r"[\[\]:*?/\\]", "-", text)).strip(" '")
    return base[: SHEET_TITLE_MAX - len(suffix)].rstrip(" '") + suffix


def _unique_title(base: str, used: set[str]) -> str:
    """base, or base with (2), (3)... if a sheet has that name already, whatever the case; marked as used."""
    title, counter = base, 2
    while title.lower() in used:
        title = _sheet_title(base, f" ({counter})")
        counter += 1
    used.add(title.lower())
    return title


def _sheet_titles(report: Report, used: set[str]) -> list[str]:
    """The tables' sheet names, unique whatever the case and unlike those in used (which gets them)."""
    titles = []
    for source in report.tables:
        base = _sheet_title(source.title) or _sheet_title(source.key) or "Table"
        if base.lower() == "history":  # reserved by Excel
            base = "History table"
        titles.append(_unique_title(base, used))
    return titles


def _xlsx_text(value: object) -> str:
    # Characters XML does not allow are dropped before neutralising, so that what they hid is neutralised too.
    text = neutralise(_ILLEGAL_XML.sub("", "" if value is None else str(value)))
    return text[:32767]  # the most a cell holds


def _xlsx_header(column: Column, timezone: str) -> str:
    if column.kind == "datetime":
        return f"{column.label} ({timezone})"
    if column.kind == "duration":
        return f"{column.label} (h:mm:ss)"
    return column.label


def _display_length(value: object) -> int:
    return max((len(line) for line in str(value).splitlines()), default=0)


def _xlsx_widths(columns: tuple[Column, ...], headers: list[str], sample: list[tuple]) -> list[float]:
    widths = []
    for index, column in enumerate(columns):
        # Headers wrap, so a long label need not widen a column of short values beyond a point.
        longest = min(len(headers[index]), 24)
        if column.kind in XLSX_WIDTHS:
            longest = max(longest, XLSX_WIDTHS[column.kind])
        else:
            for row in sample:
                if row[index] is not None:
                    longest = max(longest, _display_length(row[index]))
        widths.append(min(longest + 2, 60))
    return widths


def _xlsx_formats(workbook: xlsxwriter.Workbook) -> dict[str, Format]:
    formats = {kind: workbook.add_format({"num_format": fmt}) for kind, fmt in XLSX_FORMATS.items()}
    formats["head"] = workbook.add_format({"bold": True, "text_wrap": True, "valign": "top"})
    formats["label"] = workbook.add_format({"bold": True})
    formats["title"] = workbook.add_format({"bold": True, "font_size": 14})
    return formats


def _row_writer(sheet: Worksheet, kinds: list[str], formats: dict[str, Format], zone: ZoneInfo):
    """A function that writes one row of the table at a row of the sheet: numbers, local datetimes, durations as
    day fractions, and neutralised text, always through write_string so that no text becomes a formula."""
    write_string, write_number, write_datetime = sheet.write_string, sheet.write_number, sheet.write_datetime
    number_formats = [formats.get(kind) for kind in kinds]
    when, duration = formats["datetime"], formats["duration"]

    def write(index: int, row: tuple) -> None:
        for column, (value, kind, number_format) in enumerate(zip(row, kinds, number_formats, strict=True)):
            if value is None:
                continue
            if value.__class__ is str:  # the common case first: long tables are mostly text
                write_string(index, column, _xlsx_text(value))
            elif isinstance(value, dt.datetime):
                write_datetime(index, column, _local(value, zone).replace(tzinfo=None), when)
            elif kind == "duration" and isinstance(value, int | float | dt.timedelta):
                write_number(index, column, _seconds(value) / SECONDS_PER_DAY, duration)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if not (isinstance(value, float) and not math.isfinite(value)):  # Excel has no NaN nor infinity
                    write_number(index, column, value, number_format)
            else:
                write_string(index, column, _xlsx_text(value))

    return write


class _SheetPart(NamedTuple):
    """Where a table's rows went: a sheet, the table's first row on it (from 1), how many, and the next sheet."""

    title: str
    first: int
    count: int
    continued_on: str | None


_END = object()


def _write_table(
    workbook: xlsxwriter.Workbook,
    formats: dict[str, Format],
    title: str,
    source: Table,
    zone: ZoneInfo,
    timezone: str,
    used: set[str],
) -> list[_SheetPart]:
    """A table on its sheet, written as its rows are read; past Excel's row limit, on further sheets."""
    sample, rows = _peek(source.rows, XLSX_WIDTH_SAMPLE)
    columns = source.columns
    kinds = [column.kind for column in columns]
    headers = [_xlsx_header(column, timezone) for column in columns]
    widths = _xlsx_widths(columns, headers, sample)
    last = XLSX_SHEET_ROWS - 1  # the index of a sheet's last row

    def new_sheet(sheet_title: str):
        sheet = workbook.add_worksheet(sheet_title)
        for index, width in enumerate(widths):
            sheet.set_column(index, index, width)
        sheet.freeze_panes(1, 0)
        for index, text in enumerate(headers):
            sheet.write_string(0, index, _xlsx_text(text), formats["head"])
        return sheet, _row_writer(sheet, kinds, formats, zone)

    parts: list[_SheetPart] = []
    table_title, part = title, 1
    sheet, write = new_sheet(title)
    first, index = 1, 1
    iterator = iter(rows)
    row = next(iterator, _END)
    while row is not _END:
        following = next(iterator, _END)  # one row ahead: a full sheet says where the table goes on, if it does
        if index >= last and following is not _END:
            part += 1
            while (continued_on := _sheet_title(table_title, f" ({part})")).lower() in used:
                part += 1
            used.add(continued_on.lower())
            sheet.write_string(
                index,
                0,
                _xlsx_text(
                    f"This table continues on the sheet “{continued_on}”: "
                    f"a sheet holds at most {XLSX_SHEET_ROWS:,} rows."
                ),
                formats["label"],
            )
            parts.append(_SheetPart(title, first, index - 1, continued_on))
            first += index - 1
            title = continued_on
            sheet, write = new_sheet(title)
            index = 1
        write(index, row)
        index += 1
        row = following
    parts.append(_SheetPart(title, first, index - 1, None))
    return parts


def _about_head(sheet: Worksheet, formats: dict[str, Format], report: Report) -> int:
    """The About sheet's title block; the index of the next free row."""
    sheet.set_column(0, 0, 16)
    sheet.set_column(1, 1, 40)
    sheet.set_column(2, 2, 70)
    sheet.set_column(3, 3, 12)
    sheet.write_string(0, 0, _xlsx_text("Attendance and quorum statistics"), formats["title"])
    produced = _local(report.produced_at, _zone(report))
    lines = [
        ("Meeting", f"{report.meeting_code} – {report.meeting_title}"),
        ("Scope", report.scope),
        ("Filters", _filters_text(report) or "none"),
        ("Time zone", report.timezone),
        ("Produced at", f"{produced:%Y-%m-%d %H:%M:%S} {report.timezone} ({produced.isoformat(timespec='seconds')})"),
    ]
    for index, (name, value) in enumerate(lines, start=1):
        sheet.write_string(index, 0, _xlsx_text(name), formats["label"])
        sheet.write_string(index, 1, _xlsx_text(value))
    explanation = (
        f"Times are local times in {report.timezone}. Durations are hours:minutes:seconds. "
        "Cells starting with = + - @ begin with an apostrophe, so that they are not run as formulas. "
        f"A sheet holds at most {XLSX_SHEET_ROWS:,} rows: a longer table continues on a sheet of the same name "
        "with (2), (3)..., and the last row of a full sheet names the next."
    )
    sheet.write_string(len(lines) + 2, 0, _xlsx_text(explanation))
    return len(lines) + 4


def _about_sheets(
    sheet: Worksheet, formats: dict[str, Format], index: int, tables: list[tuple[Table, list[_SheetPart]]]
) -> None:
    """The About sheet's list of sheets: the table on each, its note, and its rows (which, for a long table)."""
    for column, text in enumerate(("Sheet", "Table", "Note", "Rows")):
        sheet.write_string(index, column, _xlsx_text(text), formats["label"])
    for source, parts in tables:
        total = sum(part.count for part in parts)
        for part in parts:
            index += 1
            note = source.note
            if len(parts) > 1:
                where = f"Rows {part.first:,} to {part.first + part.count - 1:,} of {total:,}"
                where += f"; continued on the sheet “{part.continued_on}”." if part.continued_on else "."
                note = f"{note} {where}" if note else where
            sheet.write_string(index, 0, _xlsx_text(part.title))
            sheet.write_string(index, 1, _xlsx_text(source.title))
            sheet.write_string(index, 2, _xlsx_text(note))
            sheet.write_number(index, 3, part.count, formats["int"])


def _peek(rows: Iterable[tuple], count: int) -> tuple[list[tuple], Iterator[tuple]]:
    """The first count rows, and an iterator over all the rows, reading the source once."""
    iterator = iter(rows)
    head = list(itertools.islice(iterator, count))
    return head, itertools.chain(head, iterator)


def _file_chunks(file) -> Iterator[bytes]:
    try:
        file.seek(0)
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
    finally:
        file.close()


def _discard(workbook: xlsxwriter.Workbook) -> None:
    """Close the row files of a workbook that will not be finished (constant_memory keeps one open per sheet)."""
    for sheet in workbook.worksheets():
        handle = getattr(sheet, "row_data_fh", None)
        if handle is not None and not handle.closed:
            handle.close()


def xlsx(report: Report) -> Iterator[bytes]:
    """The report as an XLSX workbook: "About", then one sheet per table; chunks of the finished file.

    XlsxWriter, in constant_memory mode, writes each row to a temporary file as it comes, in a folder of this
    export's own, and assembles the workbook from them in an unnamed temporary file: disk, not memory. The
    workbook is complete when this returns, so a failure shows before the first byte is sent, and the folder is
    gone either way. The chunks are then read from the file, which is closed (and so removed) after the last
    chunk, when the reader is closed early, or when it is dropped.
    """
    zone = _zone(report)
    produced = report.produced_at if report.produced_at.tzinfo else report.produced_at.replace(tzinfo=dt.UTC)
    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the chunk reader, after the last chunk)
    try:
        with tempfile.TemporaryDirectory(prefix="stat-xlsx-") as work:
            workbook = xlsxwriter.Workbook(out, {**XLSX_OPTIONS, "tmpdir": work})
            try:
                workbook.set_properties(
                    {
                        "title": f"{report.meeting_code} statistics – {report.scope}",
                        "created": produced.astimezone(dt.UTC),
                    }
                )
                formats = _xlsx_formats(workbook)
                used = {"about"}
                titles = _sheet_titles(report, used)
                about = workbook.add_worksheet("About")
                next_row = _about_head(about, formats, report)
                written = []
                for title, source in zip(titles, report.tables, strict=True):
                    parts = _write_table(workbook, formats, title, source, zone, report.timezone, used)
                    written.append((source, parts))
                _about_sheets(about, formats, next_row, written)
                workbook.close()
            except BaseException:
                _discard(workbook)
                raise
    except BaseException:
        out.close()
        raise
    return _file_chunks(out)


# JSON ----------------------------------------------------------------------------------------


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_parts(report: Report) -> Iterator[str]:
    zone = _zone(report)
    head = {
        "meeting": {"code": report.meeting_code, "title": report.meeting_title},
        "scope": report.scope,
        "filters": dict(report.filters),
        "timezone": report.timezone,
        "produced_at": _iso(report.produced_at, zone),
    }
    yield _json(head)[:-1] + ', "tables": ['
    for index, source in enumerate(report.tables):
        columns = [{"key": c.key, "label": c.label, "kind": c.kind} for c in source.columns]
        meta = {"key": source.key, "title": source.title, "note": source.note, "columns": columns}
        yield ("," if index else "") + "\n" + _json(meta)[:-1] + ', "rows": ['
        kinds = [column.kind for column in source.columns]
        separator = "\n"
        for row in source.rows:
            values = [_plain(value, kind, zone) for value, kind in zip(row, kinds, strict=True)]
            yield separator + _json(values)
            separator = ",\n"
        yield "]}"
    charts = [_chart_json(chart) for chart in report.charts]
    yield '\n], "charts": ' + _json(charts) + "}\n"


def _chart_json(chart: Chart) -> dict:
    return {
        "key": chart.key,
        "title": chart.title,
        "kind": chart.kind,
        "labels": list(chart.labels),
        "series": [{"name": s.name, "values": list(s.values)} for s in chart.series],
    }


def json_document(report: Report) -> Iterator[str]:
    """The report as one JSON document, written as it is read: one row at a time, in chunks."""
    return _chunks(_json_parts(report))


# PDF -----------------------------------------------------------------------------------------

PDF_MAX_ROWS = 500  # longer tables are left to the CSV and XLSX exports: the PDF is an annex, not a data dump
PDF_WIDE_COLUMNS = 7  # tables with more columns are set on landscape pages
# DejaVu Sans covers Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew and Arabic letters. Where it is not
# installed, the standard Helvetica fonts cover Windows-1252 only (as on badges). Either way, a character the
# font lacks is printed as "?" rather than drawn as a wrong glyph or an empty box.
UNICODE_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    Path("/usr/local/share/fonts/DejaVuSans.ttf"),
)


class PdfFonts(NamedTuple):
    regular: str
    bold: str
    text: Callable[[str], str]  # the text as the font can print it


@functools.cache
def pdf_fonts(candidates: tuple[Path, ...] = UNICODE_FONTS) -> PdfFonts:
    """DejaVu Sans if installed (registered once), else Helvetica; with the matching text filter."""
    for regular in candidates:
        bold = regular.with_name(regular.stem + "-Bold.ttf")
        if regular.is_file() and bold.is_file():
            try:
                pdfmetrics.registerFont(TTFont("StatSans", str(regular)))
                pdfmetrics.registerFont(TTFont("StatSans-Bold", str(bold)))
            except Exception:  # an unreadable or broken font file: fall back to the standard fonts
                continue
            covered = frozenset(pdfmetrics.getFont("StatSans").face.charToGlyph)

            def text(value: str, covered: frozenset[int] = covered) -> str:
                value = unicodedata.normalize("NFC", value or "")
                kept = "".join(ch if ord(ch) in covered or ch.isspace() else "?" for ch in value)
                return " ".join(kept.split())

            return PdfFonts("StatSans", "StatSans-Bold", text)
    return PdfFonts("Helvetica", "Helvetica-Bold", printable)


def _pdf_cell(value: object, kind: str, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return f"{_local(value, zone):%Y-%m-%d %H:%M}"
    if kind == "duration" and isinstance(value, int | float | dt.timedelta):
        return _hms(_seconds(value))
    if kind == "percent" and isinstance(value, int | float):
        return f"{value * 100:.1f} %"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


NUMERIC_KINDS = {"int", "float", "percent", "duration"}
PALETTE = ("#0066b3", "#f39200", "#1b7a34", "#6f2c91", "#d4001a", "#8c8c8c")


def _bar_chart(chart: Chart, fonts: PdfFonts, width: float) -> Drawing:
    labels = [fonts.text(label) for label in chart.labels]
    many = len(labels) > 12
    longest = max((len(label) for label in labels), default=0)
    angle = 90 if many else (30 if longest > 12 or len(labels) > 6 else 0)
    label_room = 10 if angle == 0 else min(24, max(longest, 4)) * (4.2 if angle == 90 else 3.2) + 8
    legend_room = 16 if len(chart.series) > 1 else 0
    height = 150 + label_room + legend_room
    drawing = Drawing(width, height)
    bars = VerticalBarChart()
    bars.x, bars.y = 40, label_room + legend_room
    bars.width, bars.height = width - 50, 140
    bars.data = [tuple(series.values) for series in chart.series]  # None: no bar
    bars.categoryAxis.categoryNames = [label if len(label) <= 24 else label[:23] + "…" for label in labels]
    bars.categoryAxis.labels.fontName = fonts.regular
    bars.categoryAxis.labels.fontSize = 6.5 if many else 7
    bars.categoryAxis.labels.angle = angle
    if angle:
        bars.categoryAxis.labels.boxAnchor = "e" if angle == 90 else "ne"
        bars.categoryAxis.labels.dx = 0
        bars.categoryAxis.labels.dy = -2
    _value_axis(bars.valueAxis, max((v for s in chart.series for v in s.values if v is not None), default=0), fonts)
    if not many:
        bars.barLabelFormat = lambda v: "" if v is None else (f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}")
        bars.barLabels.fontName = fonts.regular
        bars.barLabels.fontSize = 6.5
        bars.barLabels.nudge = 6
    for index in range(len(chart.series)):
        bars.bars[index].fillColor = HexColor(PALETTE[index % len(PALETTE)])
        bars.bars[index].strokeColor = None
    drawing.add(bars)
    if legend_room:
        drawing.add(_legend(chart, fonts))
    return drawing


def _legend(chart: Chart, fonts: PdfFonts) -> Legend:
    legend = Legend()
    legend.x, legend.y = 40, 6
    legend.fontName = fonts.regular
    legend.fontSize = 7
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.deltax = 90
    legend.colorNamePairs = [
        (HexColor(PALETTE[i % len(PALETTE)]), fonts.text(series.name)[:30]) for i, series in enumerate(chart.series)
    ]
    return legend


def _value_axis(axis, peak: float, fonts: PdfFonts) -> None:
    """A value axis from 0 with at most six round steps (1, 2 or 5 times a power of ten; whole for counts)."""
    step = 1.0
    while peak / step > 6:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50, ...
            step *= factor
            if peak / step <= 6:
                break
    axis.valueMin = 0
    axis.valueStep = step
    axis.valueMax = max(step, math.ceil(peak / step) * step)
    axis.labels.fontName = fonts.regular
    axis.labels.fontSize = 7
    axis.labelTextFormat = lambda v: f"{v:,.0f}"


TICK_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def _step_chart(chart: Chart, fonts: PdfFonts, width: float, zone: ZoneInfo) -> Drawing:
    times = [_local(dt.datetime.fromisoformat(label), zone) for label in chart.labels]
    xs = [moment.timestamp() for moment in times]
    start, end = xs[0], xs[-1]
    if end <= start:
        end = start + 60
    lines = []
    for series in chart.series:
        points: list[tuple[float, float]] = []
        previous = None
        for x, value in zip(xs, series.values, strict=True):
            if previous is not None:
                points.append((x, previous))
            if value is not None:
                points.append((x, value))
            previous = value
        lines.append(points or [(start, 0)])
    span = end - start
    step = next((s for s in TICK_STEPS if span / s <= 8), TICK_STEPS[-1])
    offset = times[0].utcoffset().total_seconds() if times[0].utcoffset() else 0
    first_tick = start - ((start + offset) % step)
    ticks = [t for t in (first_tick + i * step for i in range(int(span // step) + 2)) if start <= t <= end]
    several_days = times[-1].date() != times[0].date()

    def tick_label(x: float) -> str:
        moment = dt.datetime.fromtimestamp(x, zone)
        return f"{moment:%d %b %H:%M}" if several_days else f"{moment:%H:%M}"

    legend_room = 16 if len(chart.series) > 1 else 0
    drawing = Drawing(width, 190 + legend_room)
    plot = LinePlot()
    plot.x, plot.y = 40, 30 + legend_room
    plot.width, plot.height = width - 60, 150
    plot.data = lines
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = start, end
    plot.xValueAxis.valueSteps = ticks or [start, end]
    plot.xValueAxis.labelTextFormat = tick_label
    plot.xValueAxis.labels.fontName = fonts.regular
    plot.xValueAxis.labels.fontSize = 7
    _value_axis(plot.yValueAxis, max((v for s in chart.series for v in s.values if v is not None), default=0), fonts)
    for index in range(len(chart.series)):
        plot.lines[index].strokeColor = HexColor(PALETTE[index % len(PALETTE)])
        plot.lines[index].strokeWidth = 1.5
    drawing.add(plot)
    if legend_room:
        drawing.add(_legend(chart, fonts))
    return drawing


def _chart_flowables(chart: Chart, fonts: PdfFonts, width: float, zone: ZoneInfo, styles: dict) -> list:
    heading = Paragraph(escape(fonts.text(chart.title)), styles["h3"])
    has_values = chart.labels and any(v is not None for s in chart.series for v in s.values)
    if not has_values:
        return [KeepTogether([heading, Paragraph("No data in this scope.", styles["note"])]), Spacer(0, 8)]
    drawing = _step_chart(chart, fonts, width, zone) if chart.kind == "step" else _bar_chart(chart, fonts, width)
    return [KeepTogether([heading, drawing]), Spacer(0, 10)]


PDF_TABLE_SIZES = (8, 7.5, 7, 6.5, 6)  # a wide table is set smaller before its words are broken
CELL_PADDING = 6  # left and right, together


def _column_widths(
    headers: list[str], texts: list[list[str]], kinds: list[str], fonts: PdfFonts, width: float
) -> tuple[float, list[float]]:
    """A font size and column widths that fit the width: numbers, dates and whole words are never broken when the
    smallest size allows it; text columns take what room is left, in proportion to their content."""
    for size in PDF_TABLE_SIZES:
        least, most = [], []
        for index, (header, kind) in enumerate(zip(headers, kinds, strict=True)):
            cells = [row[index] for row in texts]
            head_word = max((stringWidth(w, fonts.bold, size) for w in header.split()), default=0)
            head_whole = stringWidth(header, fonts.bold, size)
            whole = max((stringWidth(c, fonts.regular, size) for c in cells), default=0)
            if kind == "text":
                word = max((stringWidth(w, fonts.regular, size) for c in cells for w in c.split()), default=0)
                low = max(head_word, min(word, width * 0.25))
                high = max(low, min(max(whole, head_whole), width * 0.4))
            else:  # one line per value; the header may take two or three
                low = max(head_word, whole)
                high = max(low, min(head_whole / 2, width * 0.2))
            least.append(low + CELL_PADDING)
            most.append(high + CELL_PADDING)
        if sum(most) <= width:
            return size, most
        if sum(least) <= width:
            spare = width - sum(least)
            wants = sum(m - lo for m, lo in zip(most, least, strict=True))
            return size, [lo + spare * (m - lo) / wants for m, lo in zip(most, least, strict=True)]
    return size, [lo * width / sum(least) for lo in least]


def _table_flowable(source: Table, rows: list[tuple], fonts: PdfFonts, width: float, zone: ZoneInfo) -> LongTable:
    kinds = [column.kind for column in source.columns]
    texts = [[fonts.text(_pdf_cell(v, k, zone)) for v, k in zip(row, kinds, strict=True)] for row in rows]
    headers = [fonts.text(column.label) for column in source.columns]
    size, widths = _column_widths(headers, texts, kinds, fonts, width)
    styles = _cell_styles(fonts, size)

    def cell(text: str, kind: str, head: bool) -> Paragraph:
        style = ("head" if head else "cell") + ("_right" if kind in NUMERIC_KINDS else "")
        return Paragraph(escape(text), styles[style])

    data = [[cell(h, k, True) for h, k in zip(headers, kinds, strict=True)]]
    data += [[cell(t, k, False) for t, k in zip(row, kinds, strict=True)] for row in texts]
    grid = LongTable(data, colWidths=widths, repeatRows=1, hAlign="LEFT", splitInRow=1)
    grid.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), HexColor("#e6e6e6")),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, HexColor("#333333")),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, HexColor("#cccccc")),
                ("VALIGN", (0, 0), (-1, 0), "BOTTOM"),
                ("VALIGN", (0, 1), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
                ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
            ]
        )
    )
    return grid


def _cell_styles(fonts: PdfFonts, size: float) -> dict:
    cell = ParagraphStyle("cell", fontName=fonts.regular, fontSize=size, leading=size * 1.2)
    head = ParagraphStyle("head", cell, fontName=fonts.bold)
    return {
        "cell": cell,
        "cell_right": ParagraphStyle("cell_right", cell, alignment=TA_RIGHT),
        "head": head,
        "head_right": ParagraphStyle("head_right", head, alignment=TA_RIGHT),
    }


def _pdf_styles(fonts: PdfFonts) -> dict:
    base = ParagraphStyle("base", fontName=fonts.regular, fontSize=9, leading=12)
    return {
        "title": ParagraphStyle("title", base, fontName=fonts.bold, fontSize=16, leading=20, spaceAfter=4),
        "subtitle": ParagraphStyle("subtitle", base, fontSize=11, leading=14, spaceAfter=8),
        "meta": ParagraphStyle("meta", base, spaceAfter=1),
        # Headings and notes stay on the page of the table they introduce.
        "h2": ParagraphStyle(
            "h2", base, fontName=fonts.bold, fontSize=13, leading=16, spaceBefore=10, spaceAfter=6, keepWithNext=1
        ),
        "h3": ParagraphStyle(
            "h3", base, fontName=fonts.bold, fontSize=10.5, leading=13, spaceBefore=8, spaceAfter=4, keepWithNext=1
        ),
        "note": ParagraphStyle(
            "note", base, fontSize=8.5, leading=11, textColor="#444444", spaceAfter=4, keepWithNext=1
        ),
    }


def _utc_offset(moment: dt.datetime) -> str:
    offset = moment.utcoffset() or dt.timedelta()
    sign = "-" if offset < dt.timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _fit_width(text: str, font: str, size: float, width: float) -> str:
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def pdf(report: Report) -> Iterator[bytes]:
    """The report as an A4 PDF to annex to a meeting report: title block, charts, then the tables.

    Tables longer than PDF_MAX_ROWS are not printed (a note points to the CSV and XLSX exports), so the PDF stays
    an annex and its size bounded. The document is complete when this returns, so a failure shows before the first
    byte is sent; it is then yielded in chunks.
    """
    fonts = pdf_fonts()
    styles = _pdf_styles(fonts)
    zone = _zone(report)
    produced = _local(report.produced_at, zone)
    stamp = f"{produced:%Y-%m-%d %H:%M} {report.timezone} ({_utc_offset(produced)})"
    margin = 15 * mm
    footer = fonts.text(f"{report.meeting_code} · {report.scope} · produced {stamp}")

    class NumberedCanvas(Canvas):
        """Draws the footer with "Page n of N" once the number of pages is known."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages: list[dict] = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            count = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                page_width = self._pagesize[0]
                number = f"Page {self._pageNumber} of {count}"
                self.setFont(fonts.regular, 7.5)
                self.setFillColorRGB(0.3, 0.3, 0.3)
                room = page_width - 2 * margin - 60
                self.drawString(margin, 9 * mm, _fit_width(footer, fonts.regular, 7.5, room))
                self.drawRightString(page_width - margin, 9 * mm, number)
                super().showPage()
            super().save()

    portrait_size, landscape_size = A4, landscape(A4)

    def frame(size: tuple[float, float]) -> Frame:
        return Frame(margin, margin + 5 * mm, size[0] - 2 * margin, size[1] - 2 * margin - 5 * mm, id="body")

    out = io.BytesIO()
    document = BaseDocTemplate(
        out,
        pagesize=A4,
        title=fonts.text(f"{report.meeting_code} statistics – {report.scope}"),
        author="COP Registration",
        creator="COP Registration",
    )
    document.addPageTemplates(
        [
            PageTemplate("portrait", [frame(portrait_size)], pagesize=portrait_size),
            PageTemplate("landscape", [frame(landscape_size)], pagesize=landscape_size),
        ]
    )
    width = {"portrait": portrait_size[0] - 2 * margin, "landscape": landscape_size[0] - 2 * margin}

    def p(text: str, style: str) -> Paragraph:
        return Paragraph(escape(fonts.text(text)), styles[style])

    story: list = [
        p("Attendance and quorum statistics", "title"),
        p(f"{report.meeting_code} – {report.meeting_title}", "subtitle"),
        p(f"Scope: {report.scope}", "meta"),
        p(f"Filters: {_filters_text(report) or 'none'}", "meta"),
        p(f"Time zone: times are local times in {report.timezone}", "meta"),
        p(f"Produced at: {stamp}", "meta"),
    ]
    if report.charts:
        story.append(p("Charts", "h2"))
        for chart in report.charts:
            story += _chart_flowables(chart, fonts, width["portrait"], zone, styles)
    orientation = "portrait"
    for index, source in enumerate(report.tables):
        rows = list(itertools.islice(iter(source.rows), PDF_MAX_ROWS + 1))
        _close(source.rows)
        too_long = len(rows) > PDF_MAX_ROWS
        wide = len(source.columns) > PDF_WIDE_COLUMNS and rows and not too_long
        wanted = "landscape" if wide else "portrait"
        if wanted != orientation:
            story += [NextPageTemplate(wanted), PageBreak()]
            orientation = wanted
        if index == 0:
            story.append(p("Tables", "h2"))
        story.append(p(source.title, "h3"))
        if source.note:
            story.append(p(source.note, "note"))
        if too_long:
            message = (
                f"This table has more than {PDF_MAX_ROWS:,} rows and is not printed in this report: "
                "see the CSV or XLSX export."
            )
            story.append(p(message, "note"))
        elif not rows:
            story.append(p("No rows in this scope.", "note"))
        else:
            story.append(_table_flowable(source, rows, fonts, width[orientation], zone))
    document.build(story, canvasmaker=NumberedCanvas)
    data = out.getvalue()
    return iter([data[start : start + CHUNK_BYTES] for start in range(0, len(data), CHUNK_BYTES)])


# Formats -------------------------------------------------------------------------------------


class ExportFormat(NamedTuple):
    """A format: its media type, its file extension, and the function that streams a report in it.

    The CSV function takes the table's key as well (`csv_table(report, key)`); the others take the report.
    """

    mimetype: str
    extension: str
    function: Callable[..., Iterator[str] | Iterator[bytes]]


FORMATS: dict[str, ExportFormat] = {
    "csv": ExportFormat("text/csv; charset=utf-8", "csv", csv_table),
    "zip": ExportFormat("application/zip", "zip", csv_zip),
    "xlsx": ExportFormat("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx", xlsx),
    "pdf": ExportFormat("application/pdf", "pdf", pdf),
    "json": ExportFormat("application/json", "json", json_document),
}


def export(report: Report, fmt: str, table_key: str | None = None) -> Iterator[bytes]:
    """The report in a format, as bytes chunks; checks the format and (CSV) the table before the first chunk."""
    if fmt not in FORMATS:
        raise ExportError(f"There is no export format “{fmt}”. The formats are: {', '.join(FORMATS)}.")
    if fmt == "csv":
        if not table_key:
            known = ", ".join(t.key for t in report.tables)
            raise ExportError(f"A CSV export holds one table: choose one of {known}; or the zip format for all.")
        chunks = csv_table(report, table_key)
    else:
        if table_key:
            raise ExportError(f"Only the CSV export is of one table; the {fmt} export holds them all.")
        chunks = FORMATS[fmt].function(report)
    return _bytes(chunks)


def _bytes(chunks: Iterator[str] | Iterator[bytes]) -> Iterator[bytes]:
    """The chunks as bytes; closing this closes them, so that an export stopped early lets go of its files at once."""
    try:
        for chunk in chunks:
            yield chunk.encode() if isinstance(chunk, str) else chunk
    finally:
        _close(chunks)
