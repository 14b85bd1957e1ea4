"""Statistics exports read back as a person or a script would: CSV, ZIP, XLSX, PDF, JSON and the command line."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import tracemalloc
import zipfile
from zoneinfo import ZoneInfo

import openpyxl
import pymupdf
import pytest
import sqlalchemy as sa

from meetings import services, stat_exports
from meetings.models import Channel, EventKind, Meeting, MeetingSession, Segment, SessionState, Source
from meetings.report import Chart, Column, Report, Series, Table

ZURICH = ZoneInfo("Europe/Zurich")
PRODUCED = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)  # 13:00 in Geneva
OPENED = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
NAMES = ("Zoë Núñez", "Иван Петров", "李娜", "Ségolène Dupré-Łukasik")
ATTENDANCE = (
    Column("participant", "Participant"),
    Column("party", "Party"),
    Column("channel", "Channel"),
    Column("in", "In", "datetime"),
    Column("out", "Out", "datetime"),
    Column("duration", "Duration", "duration"),
)


class OnePass:
    """Rows that can be read once, like a database cursor; counts what was read and whether it was closed."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0
        self.started = False
        self.closed = False

    def __iter__(self):
        assert not self.started, "the rows were read twice"
        self.started = True
        return self._rows()

    def _rows(self):
        try:
            for i in range(self.count):
                start = OPENED + dt.timedelta(minutes=i)
                self.read += 1
                yield (
                    NAMES[i % len(NAMES)],
                    "CHE" if i % 2 else "IDN",
                    "online",
                    start,
                    start + dt.timedelta(hours=1),
                    3600,
                )
        finally:
            self.closed = self.read < self.count


def make_report(attendance=None, *, tables: list[Table] | None = None, charts: list[Chart] | None = None) -> Report:
    rows = OnePass(3) if attendance is None else attendance
    default_tables = [
        Table(
            "overview",
            "Overview",
            (Column("figure", "Figure"), Column("value", "Value")),
            [
                ("Participants present", "12"),
                ("A formula", '=HYPERLINK("http://x")'),
                ("Signed", "+41 22"),
                ("At", "@SUM(A1)"),
            ],
        ),
        Table(
            "sessions",
            "Sessions",
            (
                Column("session", "Session"),
                Column("starts", "Starts", "datetime"),
                Column("participants", "Participants", "int"),
                Column("open_held", "Open quorum held", "duration"),
                Column("share", "Share of Parties", "percent"),
                Column("decide_reached", "Decide quorum first reached", "datetime"),
            ),
            [("Opening plenary", OPENED, 1234, 5400, 0.4667, None)],
            note="Open sessions are counted up to the time the report was produced.",
        ),
        Table(
            "by_category",
            "Participants by category",
            (Column("category", "Category"), Column("present", "Present", "int"), Column("share", "Share", "percent")),
            [("Party", 90, 0.75), ("Non-governmental organization", 30, 0.25)],
        ),
        Table("attendance", "Attendance", ATTENDANCE, rows, note="One row per presence interval."),
    ]
    default_charts = [
        Chart("by_category", "Participants by category", "bar", ("Party", "NGO"), (Series("Present", (90, 30)),)),
        Chart(
            "parties_over_time",
            "Parties present over time",
            "step",
            tuple((OPENED + dt.timedelta(minutes=m)).isoformat() for m in (0, 10, 45, 90)),
            (Series("Parties present", (0, 38, 70, 12)),),
        ),
    ]
    return Report(
        meeting_code="COP-4",
        meeting_title="Fourth meeting of the Conference of the Parties to the Minamata Convention on Mercury",
        scope="Opening plenary",
        filters={"category": "party"},
        timezone="Europe/Zurich",
        produced_at=PRODUCED,
        tables=default_tables if tables is None else tables,
        charts=default_charts if charts is None else charts,
    )


def text(chunks) -> str:
    return "".join(chunks)


def data(chunks) -> bytes:
    return b"".join(chunks)


# CSV -----------------------------------------------------------------------------------------


def test_a_table_as_csv_has_a_header_of_column_keys_and_values_in_the_report_time_zone():
    rows = OnePass(4)
    report = make_report(rows)
    parsed = list(csv.DictReader(io.StringIO(text(stat_exports.csv_table(report, "attendance")))))
    assert rows.read == 4
    assert [row["participant"] for row in parsed] == list(NAMES)
    first = parsed[0]
    assert list(first) == ["participant", "party", "channel", "in", "out", "duration"]
    assert first["in"] == "2026-11-02T09:00:00+01:00"  # ISO 8601 with the offset, in Geneva time
    assert dt.datetime.fromisoformat(first["in"]) == OPENED
    assert first["duration"] == "3600"

    sessions = list(csv.DictReader(io.StringIO(text(stat_exports.csv_table(report, "sessions")))))
    assert sessions == [
        {
            "session": "Opening plenary",
            "starts": "2026-11-02T09:00:00+01:00",
            "participants": "1234",
            "open_held": "5400",
            "share": "0.4667",
            "decide_reached": "",
        }
    ]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_neutralised():
    overview = list(csv.reader(io.StringIO(text(stat_exports.csv_table(make_report(), "overview")))))
    values = [row[1] for row in overview[1:]]
    assert values == ["12", '\'=HYPERLINK("http://x")', "'+41 22", "'@SUM(A1)"]


def test_an_unknown_table_is_refused_with_the_tables_there_are():
    with pytest.raises(stat_exports.ExportError, match=r"no table “nope”.*overview, sessions, by_category, attendance"):
        stat_exports.csv_table(make_report(), "nope")


def test_the_zip_holds_a_readme_an_about_file_and_one_csv_per_table():
    rows = OnePass(5)
    archive = zipfile.ZipFile(io.BytesIO(data(stat_exports.csv_zip(make_report(rows)))))
    assert archive.testzip() is None
    assert archive.namelist() == [
        "README.txt",
        "about.csv",
        "overview.csv",
        "sessions.csv",
        "by_category.csv",
        "attendance.csv",
    ]
    about = dict(csv.reader(io.StringIO(archive.read("about.csv").decode())))
    assert about == {
        "field": "value",
        "meeting_code": "COP-4",
        "meeting_title": "Fourth meeting of the Conference of the Parties to the Minamata Convention on Mercury",
        "scope": "Opening plenary",
        "filters": "category=party",
        "timezone": "Europe/Zurich",
        "produced_at": "2026-11-02T13:00:00+01:00",
    }
    readme = archive.read("README.txt").decode()
    for expected in ("COP-4", "Scope: Opening plenary", "Filters: category: party", "Produced at: 2026-11-02T13:00:00"):
        assert expected in readme
    assert "attendance.csv: Attendance" in readme and "duration: Duration (seconds)" in readme
    attendance = list(csv.DictReader(io.StringIO(archive.read("attendance.csv").decode())))
    assert [row["participant"] for row in attendance] == [NAMES[i % 4] for i in range(5)]
    assert rows.read == 5
    # Every entry carries the time the report was produced, in the report's time zone.
    assert {info.date_time for info in archive.infolist()} == {(2026, 11, 2, 13, 0, 0)}
    overview = list(csv.reader(io.StringIO(archive.read("overview.csv").decode())))
    assert overview[2][1] == '\'=HYPERLINK("http://x")'


def test_the_zip_is_sent_while_the_rows_are_still_being_read():
    rows = OnePass(30_000)
    read_when_sent = []
    for _chunk in stat_exports.csv_zip(make_report(rows)):
        read_when_sent.append(rows.read)
    assert read_when_sent[-1] == 30_000
    assert any(0 < read < 30_000 for read in read_when_sent), "the archive waited for the last row"


# XLSX ----------------------------------------------------------------------------------------


def workbook(report: Report) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data(stat_exports.xlsx(report))))


def test_the_workbook_opens_with_an_about_sheet_then_one_sheet_per_table():
    rows = OnePass(4)
    book = workbook(make_report(rows))
    assert book.sheetnames == ["About", "Overview", "Sessions", "Participants by category", "Attendance"]
    about = {row[0]: row[1] for row in book["About"].iter_rows(values_only=True) if row and row[0]}
    assert about["Meeting"].startswith("COP-4 – Fourth meeting")
    assert about["Scope"] == "Opening plenary"
    assert about["Filters"] == "category: party"
    assert about["Time zone"] == "Europe/Zurich"
    assert about["Produced at"].startswith("2026-11-02 13:00:00 Europe/Zurich")
    listed = [row for row in book["About"].iter_rows(values_only=True) if row and row[0] == "Attendance"]
    assert listed == [("Attendance", "Attendance", "One row per presence interval.", 4)]
    assert rows.read == 4


def test_sheets_have_a_bold_frozen_header_set_widths_and_typed_cells():
    book = workbook(make_report(OnePass(4)))
    sessions = book["Sessions"]
    header = [cell for cell in sessions[1]]
    assert [cell.value for cell in header] == [
        "Session",
        "Starts (Europe/Zurich)",
        "Participants",
        "Open quorum held (h:mm:ss)",
        "Share of Parties",
        "Decide quorum first reached (Europe/Zurich)",
    ]
    assert all(cell.font.b for cell in header)
    assert sessions.freeze_panes == "A2"
    starts, participants, held, share = (sessions.cell(2, column) for column in (2, 3, 4, 5))
    assert starts.value == dt.datetime(2026, 11, 2, 9, 0)  # local time in Geneva, as the header says
    assert starts.is_date and "yyyy" in starts.number_format
    assert participants.value == 1234 and participants.number_format == "#,##0"
    assert held.value == dt.timedelta(hours=1, minutes=30) and held.number_format == "[h]:mm:ss"
    assert share.value == pytest.approx(0.4667) and share.number_format == "0.0%"
    assert sessions.cell(2, 6).value is None

    attendance = book["Attendance"]
    assert [row[0] for row in attendance.iter_rows(min_row=2, values_only=True)] == list(NAMES)
    widths = {letter: dimension.width for letter, dimension in attendance.column_dimensions.items()}
    assert widths["A"] >= max(len(name) for name in NAMES)  # the names fit
    assert widths["D"] >= len("2026-11-02 09:00:00")  # so do the times


def test_workbook_text_cells_that_look_like_formulas_stay_text():
    overview = workbook(make_report())["Overview"]
    cells = [row[1] for row in overview.iter_rows(min_row=2)]
    assert [cell.value for cell in cells] == ["12", '\'=HYPERLINK("http://x")', "'+41 22", "'@SUM(A1)"]
    assert {cell.data_type for cell in cells} == {"s"}


def test_sheet_names_are_short_unique_and_valid():
    one = (Column("a", "A"),)
    tables = [
        Table("a", "Participants by regional group and by gender of the delegates", one, [("x",)]),
        Table("b", "Participants by regional group and by gender of the delegates", one, [("y",)]),
        Table("c", "Q1/Q2: [draft]?", one, [("z",)]),
        Table("d", "about", one, [("w",)]),
    ]
    names = workbook(make_report(tables=tables)).sheetnames
    assert names[0] == "About"
    assert len({name.lower() for name in names}) == len(names) == 5
    assert all(len(name) <= 31 and not re.search(r"[\[\]:*?/\\]", name) for name in names)
    assert names[1].startswith("Participants by regional group")


def test_a_table_longer_than_a_sheet_continues_on_the_next_and_the_full_sheets_say_where(monkeypatch):
    monkeypatch.setattr(stat_exports, "XLSX_SHEET_ROWS", 4)  # four rows a sheet, the header included
    book = workbook(make_report(OnePass(7)))
    assert book.sheetnames[-3:] == ["Attendance", "Attendance (2)", "Attendance (3)"]
    sheets = [list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets[-3:]]
    assert all(len(rows) <= 4 and rows[0][0] == "Participant" for rows in sheets)
    # The last row of a full sheet, in bold, names the sheet where the table continues.
    assert sheets[0][-1][0] == "This table continues on the sheet “Attendance (2)”: a sheet holds at most 4 rows."
    assert sheets[1][-1][0].startswith("This table continues on the sheet “Attendance (3)”")
    assert book["Attendance"].cell(4, 1).font.b
    names = [row[0] for row in sheets[0][1:-1] + sheets[1][1:-1] + sheets[2][1:]]
    assert names == [NAMES[i % 4] for i in range(7)]
    listed = [row for row in book["About"].iter_rows(values_only=True) if row and row[1] == "Attendance"]
    assert listed == [
        (
            "Attendance",
            "Attendance",
            "One row per presence interval. Rows 1 to 2 of 7; continued on the sheet “Attendance (2)”.",
            2,
        ),
        (
            "Attendance (2)",
            "Attendance",
            "One row per presence interval. Rows 3 to 4 of 7; continued on the sheet “Attendance (3)”.",
            2,
        ),
        ("Attendance (3)", "Attendance", "One row per presence interval. Rows 5 to 7 of 7.", 3),
    ]


def test_a_table_that_just_fills_a_sheet_stays_on_it(monkeypatch):
    monkeypatch.setattr(stat_exports, "XLSX_SHEET_ROWS", 4)
    book = workbook(make_report(OnePass(3)))
    assert book.sheetnames[-1] == "Attendance"
    assert [row[0] for row in book["Attendance"].iter_rows(min_row=2, values_only=True)] == list(NAMES[:3])


def test_a_continuation_sheet_takes_a_name_no_other_sheet_has(monkeypatch):
    monkeypatch.setattr(stat_exports, "XLSX_SHEET_ROWS", 4)
    one = (Column("a", "A"),)
    tables = [
        Table("log", "Log", one, [(str(i),) for i in range(5)]),
        Table("log2", "Log (2)", one, [("other",)]),
    ]
    book = workbook(make_report(tables=tables))
    assert book.sheetnames == ["About", "Log", "Log (3)", "Log (2)"]  # a continuation follows its table
    assert book["Log"].cell(4, 1).value == "This table continues on the sheet “Log (3)”: a sheet holds at most 4 rows."
    assert [row[0] for row in book["Log (3)"].iter_rows(min_row=2, values_only=True)] == ["2", "3", "4"]
    assert [row[0] for row in book["Log (2)"].iter_rows(min_row=2, values_only=True)] == ["other"]


def test_sheet_names_excel_would_refuse_are_mended():
    one = (Column("a", "A"),)
    tables = [
        Table("a", "'Quoted'", one, [("x",)]),
        Table("b", "Delegates of the regional group' and more", one, [("y",)]),  # an apostrophe at 31 characters
        Table("c", "Tab\tand\x07bell", one, [("z",)]),
        Table("d/e", "", one, [("w",)]),
    ]
    names = workbook(make_report(tables=tables)).sheetnames
    assert names == ["About", "Quoted", "Delegates of the regional group", "Tabandbell", "d-e"]


def test_workbook_text_is_never_a_formula_a_link_or_a_number():
    cells = [
        ('\x08=HYPERLINK("http://x")',),  # a character XML cannot hold hid the formula
        ("http://example.org/",),
        ("0041",),
        ("\tTab",),
    ]
    book = workbook(make_report(tables=[Table("t", "Texts", (Column("text", "Text"),), cells)]))
    sheet = book["Texts"]
    values = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert [cell.value for cell in values] == [
        '\'=HYPERLINK("http://x")',
        "http://example.org/",
        "0041",
        "'\tTab",
    ]
    assert {cell.data_type for cell in values} == {"s"}
    assert all(cell.hyperlink is None for cell in values)


def test_numbers_excel_cannot_hold_are_left_empty():
    columns = (Column("name", "Name"), Column("share", "Share", "percent"), Column("value", "Value", "float"))
    rows = [("a", float("nan"), float("inf")), ("b", 0.5, -1.25)]
    sheet = workbook(make_report(tables=[Table("t", "Numbers", columns, rows)]))["Numbers"]
    assert list(sheet.iter_rows(min_row=2, values_only=True)) == [("a", None, None), ("b", 0.5, -1.25)]


class Recorded:
    """Records the temporary files the export opens, in a folder of the test's own."""

    def __init__(self, monkeypatch, folder) -> None:
        self.files: list = []
        self.folder = folder
        monkeypatch.setattr(stat_exports.tempfile, "tempdir", str(folder))
        make = stat_exports.tempfile.TemporaryFile

        def recording(*args, **kwargs):
            handle = make(*args, **kwargs)
            self.files.append(handle)
            return handle

        monkeypatch.setattr(stat_exports.tempfile, "TemporaryFile", recording)

    def all_gone(self) -> bool:
        return all(handle.closed for handle in self.files) and list(self.folder.iterdir()) == []


def test_the_workbook_file_is_removed_after_the_last_chunk(monkeypatch, tmp_path):
    files = Recorded(monkeypatch, tmp_path)
    chunks = stat_exports.xlsx(make_report(OnePass(50)))
    assert len(files.files) == 1 and list(tmp_path.iterdir()) == []  # the row files went with the workbook
    assert openpyxl.load_workbook(io.BytesIO(data(chunks))).sheetnames[-1] == "Attendance"
    assert files.all_gone()


def test_the_workbook_file_is_removed_when_the_reader_stops_early(monkeypatch, tmp_path):
    monkeypatch.setattr(stat_exports, "CHUNK_BYTES", 1024)
    files = Recorded(monkeypatch, tmp_path)
    chunks = stat_exports.export(make_report(OnePass(2_000)), "xlsx")
    next(chunks)
    assert not files.files[0].closed
    chunks.close()  # as a web server does when the browser goes away
    assert files.all_gone()


def test_the_workbook_files_are_removed_when_the_rows_fail(monkeypatch, tmp_path):
    def failing():
        yield ("Zoë Núñez", "CHE", "online", OPENED, OPENED, 60)
        raise RuntimeError("the database went away")

    files = Recorded(monkeypatch, tmp_path)
    with pytest.raises(RuntimeError, match="went away"):
        stat_exports.xlsx(make_report(failing()))
    assert files.files and files.all_gone()


# PDF -----------------------------------------------------------------------------------------


def pdf_pages(report: Report) -> list[str]:
    document = pymupdf.open(stream=data(stat_exports.pdf(report)), filetype="pdf")
    return [" ".join(page.get_text().split()) for page in document]


def test_the_pdf_states_what_it_covers_and_holds_the_charts_and_tables():
    rows = OnePass(4)
    document = pymupdf.open(stream=data(stat_exports.pdf(make_report(rows))), filetype="pdf")
    assert (round(document[0].rect.width), round(document[0].rect.height)) == (595, 842)  # A4
    pages = [" ".join(page.get_text().split()) for page in document]
    first = pages[0]
    assert "Attendance and quorum statistics" in first
    assert "COP-4 – Fourth meeting of the Conference of the Parties" in first
    assert "Scope: Opening plenary" in first
    assert "Filters: category: party" in first
    assert "Produced at: 2026-11-02 13:00 Europe/Zurich (UTC+01:00)" in first
    everything = " ".join(pages)
    assert "Participants by category" in everything and "Parties present over time" in everything
    assert "Open quorum held" in everything and "1:30:00" in everything and "46.7 %" in everything
    assert "1,234" in everything and "2026-11-02 09:00" in everything
    assert "Zoë Núñez" in everything
    assert '=HYPERLINK("http://x")' in everything  # a PDF runs nothing: shown as written
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page
        assert "COP-4 · Opening plenary · produced 2026-11-02 13:00" in page
    assert rows.read == 4


def test_long_pdf_tables_repeat_their_header_on_every_page():
    pages = pdf_pages(make_report(OnePass(200)))
    with_rows = [page for page in pages if "Ségolène" in page]
    assert len(with_rows) >= 3
    assert all("Participant Party Channel In Out Duration" in page for page in with_rows)


def test_tables_too_long_for_an_annex_are_left_to_the_spreadsheet_exports(monkeypatch):
    monkeypatch.setattr(stat_exports, "PDF_MAX_ROWS", 10)
    rows = OnePass(1000)
    everything = " ".join(pdf_pages(make_report(rows)))
    assert "more than 10 rows and is not printed in this report: see the CSV or XLSX export" in everything
    assert "Zoë Núñez" not in everything
    assert rows.read == 11 and rows.closed  # read just far enough to know, then let go


def test_a_pdf_row_taller_than_a_page_is_split_across_pages():
    words = " ".join(f"word{i}" for i in range(3_000))
    columns = (Column("who", "Who"), Column("text", "Text"))
    tables = [Table("notes", "Notes", columns, [("Zoë Núñez", words), ("Иван Петров", "short")])]
    pages = pdf_pages(make_report(tables=tables, charts=[]))
    everything = " ".join(pages)
    assert "word0 word1" in everything and "word2999" in everything and "short" in everything
    assert len(pages) >= 3
    assert all("Who Text" in page for page in pages[1:])  # the header is repeated


def test_pdf_names_outside_the_font_print_as_question_marks(monkeypatch):
    find = stat_exports.pdf_fonts
    monkeypatch.setattr(stat_exports, "pdf_fonts", lambda: find(()))  # no Unicode font installed
    everything = " ".join(pdf_pages(make_report(OnePass(4))))
    assert "Zoë Núñez" in everything  # Helvetica covers Western European names
    assert "???? ??????" in everything and "Иван" not in everything


def test_pdf_uses_a_unicode_font_when_one_is_installed():
    fonts = stat_exports.pdf_fonts()
    everything = " ".join(pdf_pages(make_report(OnePass(4))))
    if fonts.regular == "Helvetica":
        assert not any(path.is_file() for path in stat_exports.UNICODE_FONTS)
        assert "???? ??????" in everything
    else:
        assert "Иван Петров" in everything and "Ségolène Dupré-Łukasik" in everything
        assert "李娜" not in everything and "??" in everything  # DejaVu Sans has no CJK glyphs


def test_charts_without_data_say_so():
    charts = [Chart("empty", "Participants by channel", "bar", (), ())]
    everything = " ".join(pdf_pages(make_report(charts=charts)))
    assert "Participants by channel No data in this scope." in everything


# JSON ----------------------------------------------------------------------------------------


def test_the_json_document_holds_the_whole_report_with_typed_values():
    rows = OnePass(3)
    document = json.loads(text(stat_exports.json_document(make_report(rows))))
    assert document["meeting"] == {
        "code": "COP-4",
        "title": "Fourth meeting of the Conference of the Parties to the Minamata Convention on Mercury",
    }
    assert document["scope"] == "Opening plenary"
    assert document["filters"] == {"category": "party"}
    assert document["timezone"] == "Europe/Zurich"
    assert document["produced_at"] == "2026-11-02T13:00:00+01:00"
    assert [t["key"] for t in document["tables"]] == ["overview", "sessions", "by_category", "attendance"]
    sessions = document["tables"][1]
    assert sessions["columns"][3] == {"key": "open_held", "label": "Open quorum held", "kind": "duration"}
    assert sessions["rows"] == [["Opening plenary", "2026-11-02T09:00:00+01:00", 1234, 5400, 0.4667, None]]
    assert document["tables"][0]["rows"][1] == ["A formula", '=HYPERLINK("http://x")']  # data, not a spreadsheet
    assert [row[0] for row in document["tables"][3]["rows"]] == list(NAMES[:3])
    assert document["charts"][1] == {
        "key": "parties_over_time",
        "title": "Parties present over time",
        "kind": "step",
        "labels": [(OPENED + dt.timedelta(minutes=m)).isoformat() for m in (0, 10, 45, 90)],
        "series": [{"name": "Parties present", "values": [0, 38, 70, 12]}],
    }
    assert rows.read == 3


def test_an_empty_report_is_still_a_valid_document_in_every_format():
    report = make_report(tables=[], charts=[])
    assert json.loads(text(stat_exports.json_document(report)))["tables"] == []
    assert zipfile.ZipFile(io.BytesIO(data(stat_exports.csv_zip(report)))).namelist() == ["README.txt", "about.csv"]
    assert workbook(report).sheetnames == ["About"]
    assert "Scope: Opening plenary" in pdf_pages(report)[0]


# Streaming -----------------------------------------------------------------------------------


def peak_memory(chunks) -> tuple[int, int]:
    """The most memory allocated at once while reading every chunk, and the size of the output."""
    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in chunks)
        return tracemalloc.get_traced_memory()[1], size
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("export", ["csv_zip", "json_document"])
def test_long_tables_stream_through_in_little_memory(export):
    """Four times the rows need no more memory: the rows pass through, they are not gathered."""
    short_rows, long_rows = OnePass(10_000), OnePass(40_000)
    short_peak, short_size = peak_memory(getattr(stat_exports, export)(make_report(short_rows)))
    long_peak, long_size = peak_memory(getattr(stat_exports, export)(make_report(long_rows)))
    assert long_rows.read == 40_000
    if export == "csv_zip":  # the archive is compressed: compare with the CSV it holds
        extra = sum(len(chunk.encode()) for chunk in stat_exports.csv_table(make_report(OnePass(30_000)), "attendance"))
    else:
        extra = long_size - short_size
    assert long_peak - short_peak < extra / 20, f"{long_peak - short_peak:,} more bytes held for {extra:,} more"


def test_the_workbook_needs_no_more_memory_for_more_rows():
    short_peak, _ = peak_memory(stat_exports.xlsx(make_report(OnePass(1_000))))
    long_peak, _ = peak_memory(stat_exports.xlsx(make_report(OnePass(16_000))))
    tracemalloc.start()
    try:
        held = list(OnePass(15_000))
        holding_the_rows = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    assert long_peak - short_peak < holding_the_rows / 10


# Formats and names ---------------------------------------------------------------------------


def test_file_names_say_meeting_scope_filters_table_and_time_in_safe_characters():
    report = make_report()
    assert stat_exports.filename(report, "xlsx") == "COP-4_opening-plenary_category-party_20261102T1200Z.xlsx"
    assert (
        stat_exports.filename(report, "csv", "by_category")
        == "COP-4_opening-plenary_category-party_by-category_20261102T1200Z.csv"
    )
    foreign = Report("COP/4 é", "x", "Séance d'ouverture: 开幕 «plénière»", {}, "Asia/Makassar", PRODUCED)
    name = stat_exports.filename(foreign, "pdf")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
    assert name == "COP-4-e_seance-d-ouverture-pleniere_20261102T1200Z.pdf"


def test_file_names_drop_the_accents_of_a_meeting_code_and_cut_a_long_scope_between_words():
    scope = "Opening plenary of the fourth meeting of the Conferences of the Parties"
    report = Report("COP-4 Genève", "x", scope, {}, "Europe/Zurich", PRODUCED)
    assert (
        stat_exports.filename(report, "pdf")
        == "COP-4-Geneve_opening-plenary-of-the-fourth-meeting-of-the-conferences-of_20261102T1200Z.pdf"
    )


@pytest.mark.parametrize(
    ("fmt", "table", "message"),
    [
        ("docx", None, "no export format “docx”"),
        ("csv", None, "one table: choose one of overview, sessions"),
        ("csv", "nope", "no table “nope”"),
        ("xlsx", "overview", "Only the CSV export is of one table"),
    ],
)
def test_export_refuses_what_it_cannot_make_before_the_first_byte(fmt, table, message):
    rows = OnePass(3)
    with pytest.raises(stat_exports.ExportError, match=message):
        stat_exports.export(make_report(rows), fmt, table)
    assert not rows.started


def test_every_format_streams_bytes_with_its_media_type():
    for fmt, (mimetype, extension, _function) in stat_exports.FORMATS.items():
        chunks = list(stat_exports.export(make_report(), fmt, "overview" if fmt == "csv" else None))
        assert chunks and all(isinstance(chunk, bytes) for chunk in chunks)
        assert stat_exports.filename(make_report(), fmt).endswith("." + extension)
        assert "/" in mimetype


# Command line --------------------------------------------------------------------------------


@pytest.fixture
def attended(db, cop4, make_delegate, make_user, clock):
    """Two delegates attend COP-4's opening plenary online, one of them with a name a spreadsheet would run."""
    from auth.models import Role

    officer, _ = make_user(Role.OFFICER)
    first, _ = make_delegate("CHE")
    first.given_name, first.family_name = "Zoë", "Núñez"
    second, _ = make_delegate("IDN")
    second.given_name, second.family_name = '=HYPERLINK("http://x")', "Budi"
    db.commit()
    opening = cop4.segments[0].sessions[0]
    services.change_state(db, opening, "open", officer, clock())
    for user in (first, second):
        services.record_attendance(
            db,
            opening,
            user,
            kind=EventKind.ENTRY,
            channel=Channel.ONLINE,
            source=Source.BROWSER,
            nonce=f"nonce-in-{user.id}",
            now=clock(),
        )
        db.commit()
        clock.advance(600)
    services.record_attendance(
        db,
        opening,
        first,
        kind=EventKind.EXIT,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce=f"nonce-out-{first.id}",
        now=clock(),
    )
    db.commit()
    clock.advance(600)
    return opening


def run(app, *args):
    return app.test_cli_runner().invoke(args=["meetings", "statistics", *args], catch_exceptions=False)


def test_cli_writes_the_zip_under_a_name_that_says_what_it_holds(app, attended, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(app, "COP-4")
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(r"COP-4_whole-meeting_\d{8}T\d{4}Z\.zip", written.name)
    assert f"Wrote {written.name}." in result.output
    archive = zipfile.ZipFile(written)
    about = dict(csv.reader(io.StringIO(archive.read("about.csv").decode())))
    assert about["meeting_code"] == "COP-4" and about["scope"] == "Whole meeting"
    attendance = list(csv.DictReader(io.StringIO(archive.read("attendance.csv").decode())))
    assert sorted(row["participant"] for row in attendance) == ['\'=HYPERLINK("http://x") Budi', "Zoë Núñez"]


def test_cli_writes_one_table_as_csv_to_standard_output(app, attended):
    result = run(app, "COP-4", "--session", str(attended.id), "--table", "attendance", "-o", "-")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(row["participant"], row["party"], row["channel"]) for row in rows] == [
        ("Zoë Núñez", "CHE", "Online"),
        ('\'=HYPERLINK("http://x") Budi', "IDN", "Online"),
    ]
    zurich_in = dt.datetime.fromisoformat(rows[0]["in"])
    assert zurich_in.utcoffset() == dt.timedelta(hours=1)  # Geneva time, as the online segment
    assert rows[0]["duration"] == "1200"


def test_cli_filters_by_segment_and_category_and_writes_xlsx(app, attended, db, tmp_path):
    segment = db.get(Segment, attended.segment_id)
    target = tmp_path / "stats.xlsx"
    result = run(app, "COP-4", "--segment", str(segment.id), "--category", "party", "--format", "xlsx", "-o", target)
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(target)
    about = {row[0]: row[1] for row in book["About"].iter_rows(values_only=True) if row and row[0]}
    assert about["Scope"] == segment.name
    assert "party" in about["Filters"].lower()
    assert "Attendance" in book.sheetnames


def test_cli_writes_the_pdf_of_a_session_into_a_folder(app, attended, tmp_path):
    result = run(app, "COP-4", "--session", str(attended.id), "--format", "pdf", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(r"COP-4_opening-plenary_\d{8}T\d{4}Z\.pdf", written.name)
    first = " ".join(pymupdf.open(written)[0].get_text().split())
    assert f"Scope: {attended.title}" in first and "Produced at: 2026-11-02" in first


def test_cli_writes_json_to_standard_output(app, attended):
    result = run(app, "COP-4", "--format", "json", "-o", "-")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["meeting"]["code"] == "COP-4" and document["scope"] == "Whole meeting"
    assert document["produced_at"].startswith("2026-11-02T")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["COP-9"], "There is no meeting COP-9. The meetings are: COP-4."),
        (["COP-4", "--session", "999999"], "no such session"),
        (["COP-4", "--segment", "999999"], "no such segment"),
        (["COP-4", "--table", "nope"], "There is no table “nope” in this report. Its tables are: overview"),
        (["COP-4", "--format", "csv"], "A CSV export holds one table: choose one of overview"),
        (["COP-4", "--format", "pdf", "--table", "overview"], "Only the CSV export is of one table"),
        (["COP-4", "--category", "astronaut"], "'astronaut' is not one of 'party'"),
        (["COP-4", "--format", "docx"], "'docx' is not one of 'csv', 'zip', 'xlsx', 'pdf', 'json'"),
    ],
)
def test_cli_refusals_say_why_and_write_nothing(app, cop4, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(app, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_session_of_another_meeting(app, db, cop4):
    other = Meeting(code="COP-5", title="Fifth meeting", convention=cop4.convention, timezone=cop4.timezone)
    db.add(other)
    db.commit()
    foreign = db.scalar(sa.select(MeetingSession).where(MeetingSession.state == SessionState.SCHEDULED))
    result = run(app, "COP-5", "--session", str(foreign.id))
    assert result.exit_code != 0 and "no such session" in result.output


def test_cli_export_failing_midway_leaves_the_earlier_file_whole(app, attended, tmp_path, monkeypatch):
    target = tmp_path / "statistics.zip"
    target.write_bytes(b"last week's export")

    def failing(report, fmt, table_key=None):
        yield b"PK half a zip"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stat_exports, "export", failing)
    result = app.test_cli_runner().invoke(args=["meetings", "statistics", "COP-4", "-o", str(target)])
    assert result.exit_code != 0 and "No space left on device" in result.output
    # Neither half a new export nor nothing: the earlier file, untouched, and no leftovers beside it.
    assert target.read_bytes() == b"last week's export"
    assert [path.name for path in tmp_path.iterdir()] == ["statistics.zip"]
