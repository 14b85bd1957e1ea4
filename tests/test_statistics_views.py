"""The statistics page and its exports: what the secretariat and officers see, filters, downloads, permissions."""

import csv
import datetime as dt
import io
import json
import re
import time
import zipfile
from html import unescape
from zoneinfo import ZoneInfo

import fitz
import openpyxl
import pytest
from conftest import login

import meetings.statistics_views  # noqa: F401  (adds the statistics routes to the blueprint before the app is built)
from auth.models import Role
from meetings import services, statistics, statistics_views
from meetings.models import Category, Channel, EventKind, Source
from meetings.statistics_views import chart_data, format_cell

PASSWORD = "statistics pass phrase"
PAGE = "/meetings/COP-4/statistics"
CHARTS_RE = re.compile(r'<script type="application/json" id="statistics-charts">(.*?)</script>', re.S)
SCOPE_RE = re.compile(r'<dd id="scope">(.*?)</dd>', re.S)
FILTERS_RE = re.compile(r'<dd id="filters">(.*?)</dd>', re.S)


def logged_in(app, make_user, clock, role: Role, email: str):
    user, secret = make_user(role, email=email, password=PASSWORD)
    client = app.test_client()
    login(client, email, PASSWORD, secret, clock)
    return user, client


@pytest.fixture
def secretariat(app, cop4, make_user, clock):
    return logged_in(app, make_user, clock, Role.SECRETARIAT, "sec@example.org")


@pytest.fixture
def officer(app, cop4, make_user, clock):
    return logged_in(app, make_user, clock, Role.OFFICER, "chair@example.org")


def move(db, meeting_session, user, clock, kind, seconds=60):
    """A delegate enters or leaves the online session, as their session page does."""
    clock.advance(seconds)
    services.record_attendance(
        db,
        meeting_session,
        user,
        kind=kind,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce=f"nonce-{user.id}-{kind.value}-{clock().timestamp():.0f}",
        now=clock(),
    )
    db.commit()


@pytest.fixture
def attended(db, cop4, online_session, secretariat, make_delegate, clock):
    """The online opening plenary held for about an hour: three Parties' delegates came, one left early."""
    services.change_state(db, online_session, "open", secretariat[0], clock())
    db.commit()
    delegates = [make_delegate(code)[0] for code in ("CHE", "FRA", "IDN")]
    for delegate in delegates:
        move(db, online_session, delegate, clock, EventKind.ENTRY)
    move(db, online_session, delegates[0], clock, EventKind.EXIT, seconds=1200)
    clock.advance(2400)
    services.change_state(db, online_session, "close", secretariat[0], clock())
    db.commit()
    return online_session


def text(response) -> str:
    return response.get_data(as_text=True)


def scope_of(page: str) -> str:
    return unescape(SCOPE_RE.search(page).group(1)).strip()


def filters_of(page: str) -> str:
    return unescape(FILTERS_RE.search(page).group(1)).strip()


def report_now(db, meeting, clock, **filters):
    db.expire_all()
    return statistics.report(db, meeting, now=clock(), **filters)


# Formatting ---------------------------------------------------------------------------------------

ZURICH = ZoneInfo("Europe/Zurich")


@pytest.mark.parametrize(
    ("value", "kind", "shown"),
    [
        (1234567, "int", "1,234,567"),
        (0, "int", "0"),
        (0.4567, "percent", "45.7%"),
        (1.0, "percent", "100.0%"),
        # Durations as hours:minutes:seconds, as the overview, its note and the PDF write them.
        (3 * 3600 + 5 * 60 + 10, "duration", "3:05:10"),
        (59, "duration", "0:00:59"),
        (59.6, "duration", "0:01:00"),
        (0, "duration", "0:00:00"),
        (100 * 3600, "duration", "100:00:00"),
        (dt.timedelta(hours=26, seconds=5), "duration", "26:00:05"),
        (dt.datetime(2021, 11, 1, 12, 5, tzinfo=dt.UTC), "datetime", "1 Nov 2021, 13:05"),
        (None, "datetime", "—"),
        (None, "int", "—"),
        ("=HYPERLINK()", "text", "=HYPERLINK()"),  # the page escapes it; only the exports neutralise
        (2.25, "float", "2.2"),
    ],
)
def test_cells_are_shown_as_people_read_them(value, kind, shown):
    assert format_cell(value, kind, ZURICH) == shown


def test_a_naive_time_is_utc_whatever_the_servers_zone(monkeypatch):
    """SQLite gives back naive datetimes; astimezone() alone would take them as the server's local time."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert format_cell(dt.datetime(2021, 11, 1, 12, 5), "datetime", ZURICH) == "1 Nov 2021, 13:05"
    finally:
        monkeypatch.undo()
        time.tzset()


# The page ------------------------------------------------------------------------------------------


def test_the_page_shows_every_table_but_the_attendance_log_and_the_charts(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    response = client.get(PAGE)
    page = text(response)

    assert response.status_code == 200
    report = report_now(db, cop4, clock)
    assert scope_of(page) == report.scope
    assert report.meeting_title in page
    tz = ZoneInfo(report.timezone)
    assert f"{clock().astimezone(tz):%-d %B %Y, %H:%M}" in page and f"({report.timezone})" in page

    for table in report.tables:
        assert f'id="table-{table.key}"' in page
        section = page.split(f'id="table-{table.key}"')[1].split("</section>")[0]
        if table.key == "attendance":
            assert "<table" not in section and f"statistics.csv?table={table.key}" in section
            continue
        for row in table.rows:
            assert unescape(section).count(str(row[0])) >= 1, (table.key, row[0])
    # The session attended is listed in the sessions table.
    assert attended.title in page.split('id="table-sessions"')[1].split("</section>")[0]

    charts = json.loads(unescape(CHARTS_RE.search(page).group(1)))
    assert charts == chart_data(report)
    assert charts["charts"], "the report has charts"
    for chart in charts["charts"]:
        assert f'id="chart-{chart["key"]}"' in page or not chart["labels"]
    assert "vendor/chartjs/chart.umd.min.js" in page and "js/statistics.js" in page


def test_the_page_shows_the_participants_who_attended(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    page = text(client.get(f"{PAGE}?session={attended.id}"))
    overview = page.split('id="t-overview"')[1].split("</section>")[0]
    # Three delegates of three Parties attended: the overview counts them.
    assert "<dt>Participants present</dt><dd>3</dd>" in overview, overview
    by_channel = page.split('id="table-by_channel"')[1].split("</section>")[0]
    assert re.search(r"Online[^<]*</th>\s*<td class=\"num\">3</td>", by_channel), by_channel


def test_the_filters_change_the_scope_line(db, cop4, secretariat, attended):
    _, client = secretariat
    in_person = cop4.segments[1]

    segment_page = text(client.get(f"{PAGE}?segment={in_person.id}"))
    assert in_person.name.lower() in scope_of(segment_page).lower()
    assert f'option value="{in_person.id}" selected' in segment_page

    session_page = text(client.get(f"{PAGE}?session={attended.id}"))
    assert attended.title in scope_of(session_page)
    # Both segments open with an "Opening plenary": the scope line says which one.
    assert attended.segment.name in scope_of(session_page)

    both = text(client.get(f"{PAGE}?segment={cop4.segments[0].id}&session={attended.id}"))
    assert attended.title in scope_of(both)

    category_page = text(client.get(f"{PAGE}?category=party"))
    assert scope_of(category_page) == "Whole meeting"
    assert filters_of(category_page) == "Category: Party"
    assert filters_of(text(client.get(PAGE))).startswith("None")


def test_exports_keep_the_filters_of_the_page(secretariat, attended):
    _, client = secretariat
    page = text(client.get(f"{PAGE}?session={attended.id}&category=party"))
    for fmt in ("zip", "xlsx", "pdf", "json"):
        assert f"/meetings/COP-4/statistics.{fmt}?session={attended.id}&amp;category=party" in page
    assert f"/meetings/COP-4/statistics.csv?session={attended.id}&amp;category=party&amp;table=overview" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("segment=9999", "The segment asked for is not one of COP-4's."),
        ("segment=online", "The segment asked for is not one of COP-4's."),
        ("session=9999", "The session asked for is not one of COP-4's."),
        ("session=%3Cscript%3E", "The session asked for is not one of COP-4's."),
        ("category=minister", "The category asked for is not a category of participants."),
    ],
)
def test_invalid_filters_say_so_and_show_the_whole_meeting(secretariat, cop4, query, message):
    _, client = secretariat
    response = client.get(f"{PAGE}?{query}")
    page = unescape(text(response))
    # The page is still shown, with a form to choose again, but not as a success: the scope asked for was refused.
    assert response.status_code == 400
    assert message in page and "Showing the whole meeting, without filters." in page
    assert scope_of(page) == "Whole meeting"
    assert filters_of(page).startswith("None")


def test_a_session_of_another_segment_is_refused(secretariat, cop4):
    _, client = secretariat
    online, in_person = cop4.segments
    session = in_person.sessions[1]
    response = client.get(f"{PAGE}?segment={online.id}&session={session.id}")
    page = unescape(text(response))
    assert response.status_code == 400
    assert f"“{session.title}” is not a session of the {online.name}." in page
    assert scope_of(page) == "Whole meeting"


def test_a_segment_scope_reads_as_a_title_and_the_filters_can_be_cleared(secretariat, cop4):
    _, client = secretariat
    in_person = cop4.segments[1]
    page = text(client.get(f"{PAGE}?segment={in_person.id}&category=party"))
    assert scope_of(page) == in_person.name[:1].upper() + in_person.name[1:]
    assert ">Clear filters</a>" in page
    assert "Clear filters" not in text(client.get(PAGE)), "nothing to clear"


def test_a_session_scope_links_to_its_dashboard(officer, attended):
    _, client = officer
    page = text(client.get(f"{PAGE}?session={attended.id}"))
    assert f'href="/sessions/{attended.id}/dashboard"' in page


def test_every_table_has_a_caption_and_every_csv_link_names_its_table(secretariat, attended):
    _, client = secretariat
    page = unescape(text(client.get(PAGE)))
    tables = page.count("<table")
    assert tables and page.count('<caption class="visually-hidden">') == tables
    assert '<caption class="visually-hidden">Participants by category</caption>' in page
    assert 'CSV<span class="visually-hidden">: Participants by Party</span>' in page
    assert 'CSV<span class="visually-hidden">: Overview</span>' in page


def figures_of(page: str, key: str) -> str:
    """The table that stands for a chart, under it."""
    return page.split(f'id="figures-{key}"')[1].split("</details>")[0]


def test_each_chart_has_its_figures_as_a_table(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    page = unescape(text(client.get(PAGE)))
    report = report_now(db, cop4, clock)
    for chart in report.charts:
        figures = figures_of(page, chart.key)
        assert f'<caption class="visually-hidden">{chart.title}</caption>' in figures
        for series in chart.series:
            assert f'<th scope="col" class="num">{series.name}</th>' in figures
        for label in chart.labels:
            assert f"{label}</th>" in figures
    channels = figures_of(page, "participants_by_channel")
    assert re.search(r'Online only</th><td class="num">3</td>', channels), channels


def test_the_count_over_time_is_a_table_of_local_times(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    page = unescape(text(client.get(f"{PAGE}?session={attended.id}")))
    report = report_now(db, cop4, clock, session_id=attended.id)
    chart = next(chart for chart in report.charts if chart.kind == "step")
    figures = figures_of(page, chart.key)
    assert f"({report.timezone})" in figures
    rows = re.findall(r'<tr><th scope="row" class="when">([^<]+)</th>((?:<td class="num">\d+</td>)+)</tr>', figures)
    assert len(rows) == len(chart.labels)
    first = dt.datetime.fromisoformat(chart.labels[0]).astimezone(ZoneInfo(report.timezone))
    assert rows[0][0] == f"{first:%-d %b %Y, %H:%M:%S}"
    # Three Parties' delegates came, one left: the count rises to three.
    assert max(int(cells.split(">")[1].split("<")[0]) for _, cells in rows) == 3


def test_empty_charts_say_why_instead_of_drawing_empty_axes(secretariat, cop4, online_session):
    """Nobody has attended yet: no empty frames, but a sentence for each chart; the tables still show."""
    _, client = secretariat
    page = unescape(text(client.get(PAGE)))
    assert "<canvas" not in page and 'class="chart-figures"' not in page
    assert page.count("No participant has been present in this scope: nothing to chart.") == 4
    assert 'id="table-sessions"' in page

    party = unescape(text(client.get(f"{PAGE}?category=party")))
    assert "No participant of the category Party has been present in this scope: nothing to chart." in party

    session = unescape(text(client.get(f"{PAGE}?session={online_session.id}")))
    assert "The count of Parties starts when the session is opened: nothing to chart yet." in session


def test_a_session_opened_with_nobody_inside_says_so(db, secretariat, online_session, clock):
    _, client = secretariat
    services.change_state(db, online_session, "open", secretariat[0], clock())
    db.commit()
    clock.advance(600)
    page = unescape(text(client.get(f"{PAGE}?session={online_session.id}")))
    assert "<canvas" not in page
    assert "No Party has had a delegate inside this session: nothing to chart." in page


def test_an_unknown_meeting_is_not_found(secretariat):
    _, client = secretariat
    assert client.get("/meetings/COP-99/statistics").status_code == 404
    assert client.get("/meetings/COP-99/statistics.json").status_code == 404


# Exports ---------------------------------------------------------------------------------------------


def download(client, path: str, mimetype: str, extension: str) -> tuple[bytes, str]:
    """The body of an export and the file name it is saved as."""
    # Closing the response ends the request, as a server does after the last byte: the stream
    # reads the database until then.
    with client.get(path) as response:
        assert response.status_code == 200, text(response)
        assert response.mimetype == mimetype
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment;")
        assert response.headers["Cache-Control"] == "private, no-store"
        match = re.search(rf'filename="(COP-4[^"/\\]*\.{extension})"', disposition)
        assert match, disposition
        assert response.is_streamed
        return response.get_data(), match.group(1)


def test_the_zip_holds_one_readable_csv_per_table(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    body, name = download(client, f"{PAGE}.zip", "application/zip", "zip")
    assert "whole-meeting" in name.lower()
    report = report_now(db, cop4, clock)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = set(archive.namelist())
        for table in report.tables:
            assert f"{table.key}.csv" in names, (table.key, names)
            rows = list(csv.reader(io.StringIO(archive.read(f"{table.key}.csv").decode("utf-8-sig"))))
            assert rows[0] == [column.key for column in table.columns]
        # It says which meeting, scope and moment it is about.
        tables = {f"{table.key}.csv" for table in report.tables}
        about = " ".join(archive.read(n).decode("utf-8-sig") for n in names - tables)
        assert "COP-4" in about and report.scope in about


def test_one_table_as_csv(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    body, name = download(client, f"{PAGE}.csv?session={attended.id}&table=sessions", "text/csv", "csv")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert [row["session"] for row in rows] == [attended.title]
    # A single table names its meeting, scope and table in its file name.
    assert re.sub(r"[^a-z0-9]+", "-", attended.title.lower()) in name.lower() and "sessions" in name


def test_the_attendance_log_as_csv_has_one_line_per_presence(db, cop4, secretariat, attended):
    _, client = secretariat
    content = download(client, f"{PAGE}.csv?table=attendance", "text/csv", "csv")[0].decode("utf-8-sig")
    # Three delegates entered once each: three presence intervals.
    lines = [row for row in csv.reader(io.StringIO(content)) if any("Test Person" in cell for cell in row)]
    assert len(lines) == 3


def test_the_xlsx_has_a_sheet_per_table(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    body, _ = download(
        client,
        f"{PAGE}.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    )
    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    report = report_now(db, cop4, clock)
    assert len(workbook.sheetnames) >= len(report.tables)
    cells = " ".join(
        str(value)
        for sheet in workbook.worksheets
        for row in sheet.iter_rows(values_only=True)
        for value in row
        if value
    )
    assert "COP-4" in cells and attended.title in cells


def test_the_pdf_report_reads_back(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    body, _ = download(client, f"{PAGE}.pdf?segment={cop4.segments[0].id}", "application/pdf", "pdf")
    with fitz.open(stream=body, filetype="pdf") as document:
        content = " ".join(page.get_text() for page in document)
    report = report_now(db, cop4, clock, segment_id=cop4.segments[0].id)
    assert "COP-4" in content
    assert report.scope.lower() in content.lower()


def test_the_json_endpoint(db, cop4, secretariat, attended, clock):
    _, client = secretariat
    body, _ = download(client, f"{PAGE}.json?session={attended.id}&category=party", "application/json", "json")
    data = json.loads(body)
    # The document says what it is about, with the filters of the request.
    assert data["meeting"]["code"] == "COP-4"
    assert data["scope"] == attended.title
    assert data["filters"] == {"category": Category.PARTY.value}
    report = report_now(db, cop4, clock, session_id=attended.id, category=Category.PARTY)
    assert [table["key"] for table in data["tables"]] == [table.key for table in report.tables]


def test_a_csv_needs_a_known_table(secretariat, attended):
    _, client = secretariat
    response = client.get(f"{PAGE}.csv?table=salaries")
    assert response.status_code == 400
    assert "salaries" in unescape(text(response)) and "Content-Disposition" not in response.headers
    response = client.get(f"{PAGE}.csv")
    assert response.status_code == 400
    assert "overview" in text(response), "the refusal names the tables there are"


def test_an_export_with_invalid_filters_exports_nothing(secretariat, attended):
    _, client = secretariat
    response = client.get(f"{PAGE}.json?session=9999")
    assert response.status_code == 400
    assert "Nothing was exported." in unescape(text(response))


def test_exports_only_read(secretariat, attended):
    _, client = secretariat
    assert client.post(f"{PAGE}.json").status_code == 405


@pytest.mark.parametrize("fmt", ["csv", "zip", "xlsx", "pdf", "json"])
def test_exports_are_kept_by_no_cache(secretariat, attended, fmt):
    """An export holds named people's attendance: no shared cache, and not the browser's, may keep it."""
    _, client = secretariat
    table = "&table=attendance" if fmt == "csv" else ""
    with client.get(f"{PAGE}.{fmt}?session={attended.id}{table}") as response:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize("fmt", ["xml", "html", "CSV", "%3Cscript%3E"])
def test_an_unknown_export_format_is_named_with_the_formats_there_are(secretariat, cop4, fmt):
    _, client = secretariat
    response = client.get(f"{PAGE}.{fmt}")
    page = text(response)
    assert response.status_code == 404
    assert "Content-Disposition" not in response.headers
    assert "The formats are: csv, zip, xlsx, pdf, json." in page
    assert "<script>" not in page.split("<main")[1], "the format asked for is escaped"


def test_an_officer_asking_for_an_unknown_format_is_refused_as_for_any_export(officer, cop4):
    _, client = officer
    assert client.get(f"{PAGE}.xml").status_code == 403


def test_the_file_name_is_safe_whatever_the_session_is_called(db, secretariat, attended):
    attended.title = 'Séance "plénière"; filename=../../evil.exe\u202e'
    db.commit()
    _, client = secretariat
    with client.get(f"{PAGE}.csv?session={attended.id}&table=sessions") as response:
        disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+\.csv"', disposition), disposition
    assert "seance-pleniere-filename-evil-exe" in disposition


def test_the_download_links_let_a_refusal_show(secretariat, attended):
    """The server names the files; a download attribute would save a refusal page instead of showing it."""
    _, client = secretariat
    page = text(client.get(f"{PAGE}?session={attended.id}"))
    links = re.findall(r"<a [^>]*statistics\.(?:csv|zip|xlsx|pdf|json)[^>]*>", page)
    assert links and not [link for link in links if " download" in link]


# Permissions -----------------------------------------------------------------------------------------


def test_an_officer_sees_a_session_without_exports(officer, attended):
    _, client = officer
    response = client.get(f"{PAGE}?session={attended.id}")
    page = text(response)
    assert response.status_code == 200
    assert attended.title in scope_of(page)
    assert "statistics.zip" not in page and "statistics.csv" not in page and "statistics.json" not in page
    # They choose another session, not a wider scope.
    assert 'name="segment"' not in page and "All sessions" not in page


def test_the_dashboard_links_officers_to_the_session_statistics(officer, attended):
    _, client = officer
    dashboard = text(client.get(f"/sessions/{attended.id}/dashboard"))
    link = f"{PAGE}?session={attended.id}"
    assert f'href="{link}"' in dashboard
    assert client.get(link).status_code == 200


@pytest.mark.parametrize("query", ["", "?category=party", "?segment={segment}"])
def test_an_officer_does_not_see_the_meeting_or_a_segment(officer, cop4, attended, query):
    _, client = officer
    response = client.get(PAGE + query.format(segment=cop4.segments[0].id))
    assert response.status_code == 403
    assert "Officers see the statistics of one session at a time." in unescape(text(response))


def test_an_officer_with_an_invalid_session_gets_a_message(officer, attended):
    _, client = officer
    response = client.get(f"{PAGE}?session=9999")
    assert response.status_code == 400
    assert "The session asked for is not one of COP-4's." in unescape(text(response))


@pytest.mark.parametrize("fmt", ["csv", "zip", "xlsx", "pdf", "json"])
def test_an_officer_cannot_export(officer, attended, fmt):
    _, client = officer
    response = client.get(f"{PAGE}.{fmt}?session={attended.id}&table=overview")
    assert response.status_code == 403
    assert "Only the secretariat exports statistics." in text(response)
    assert "Content-Disposition" not in response.headers


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}?session=1", f"{PAGE}.json", f"{PAGE}.csv?table=overview"])
def test_a_participant_is_refused(app, make_delegate, clock, attended, path):
    _, secret = make_delegate("DEU", password=PASSWORD, email="deu@example.org")
    client = app.test_client()
    login(client, "deu@example.org", PASSWORD, secret, clock)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}.json", f"{PAGE}.pdf"])
def test_anonymous_visitors_are_sent_to_log_in(client, cop4, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]


def test_a_streamed_export_gives_its_database_connection_back(app, secretariat, attended):
    """The attendance rows read the database while they stream; the connection returns to the pool after."""
    _, client = secretariat
    pool = app.extensions["db_engine"].pool
    download(client, f"{PAGE}.csv?table=attendance", "text/csv", "csv")
    assert pool.checkedout() == 0


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_a_long_export_lets_the_servers_other_work_run_while_it_is_made(app, secretariat, attended, monkeypatch, fmt):
    """On gevent, an export holding the event loop would freeze every socket of the process until it ends."""
    _, client = secretariat
    turns = []
    monkeypatch.setattr(statistics_views, "ROWS_PER_TURN", 1)
    monkeypatch.setattr(app.extensions["socketio"], "sleep", lambda seconds: turns.append(seconds))
    table = "&table=attendance" if fmt == "csv" else ""
    response = client.get(f"{PAGE}.{fmt}?{table}")
    assert response.status_code == 200
    response.get_data()
    # Three stretches of presence in the attendance log: a turn after each row read.
    assert turns == [0, 0, 0]
