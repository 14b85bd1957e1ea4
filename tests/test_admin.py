"""The secretariat's administration: Parties and their CSV import, accounts and roles, the audit log."""

import datetime as dt
import io
import re

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login

from auth import roles
from auth.models import AuditEntry, Role, User
from meetings import parties
from meetings import services as meeting_services
from meetings.demo import PARTIES_CSV
from meetings.models import MeetingSession, Party, RegionalGroup

PARTIES = "/secretariat/meetings/COP-4/parties"
IMPORT = PARTIES + "/import"
HEADER = b"code,name,regional_group,entry_into_force\n"
REPORT_ROW = re.compile(
    r'<tr><td class="num">(\d+)</td><td>(?:<code>(\w+)</code>|<span class="muted">whole row</span>)</td>'
)


@pytest.fixture
def desk(app, cop4, make_user, clock):
    """A secretariat member (s@example.org) logged in through the real views."""
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    client = app.test_client()
    login(client, "s@example.org", "secretariat pass", secret, clock)
    return client


def upload(client, content: bytes, name: str = "parties.csv"):
    data = {"csrf_token": csrf_token(client, IMPORT), "file": (io.BytesIO(content), name)}
    return client.post(IMPORT, data=data, content_type="multipart/form-data")


def followed(client, response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


def snapshot(db) -> list[tuple]:
    """Every Party as stored, and how many changes to Parties the audit log holds."""
    db.expire_all()
    rows = db.execute(
        sa.select(Party.code, Party.name, Party.regional_group, Party.entry_into_force_on).order_by(Party.code)
    )
    audited = db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.target_type == "parties"))
    return [tuple(row) for row in rows] + [("audit entries", audited)]


def party(db, code: str) -> Party | None:
    db.expire_all()
    return db.scalar(sa.select(Party).where(Party.code == code))


def post_form(client, path: str, **data):
    """Submit a form as the browser would: with the page's CSRF token and every select sent."""
    data = {"regional_group": "", **data}
    return client.post(path, data={"csrf_token": csrf_token(client, PARTIES), **data})


# Import ----------------------------------------------------------------------------------------

GOOD_FILE = (
    # A byte order mark and CRLF line ends, as spreadsheets save “CSV UTF-8”.
    b"\xef\xbb\xbfcode,name,regional_group,entry_into_force\r\n"
    b"CHE,Switzerland,WEOG,2017-08-16\r\n"
    b"IDN,Republic of Indonesia,Asia-Pacific,2017-12-21\r\n"
    b"TLS,Timor-Leste,Asia-Pacific,2026-12-01\r\n"
    b'SSD,"South Sudan, Republic of",African,2026-10-15\r\n'
)


def test_a_good_file_adds_and_updates_and_a_second_import_changes_nothing(desk, db):
    page = followed(desk, upload(desk, GOOD_FILE))
    assert "Import done: 2 added (TLS, SSD), 1 updated (IDN), 1 unchanged." in page
    assert party(db, "TLS").entry_into_force_on == dt.date(2026, 12, 1)
    assert party(db, "SSD").name == "South Sudan, Republic of"
    assert party(db, "SSD").regional_group == RegionalGroup.AFRICAN
    assert party(db, "IDN").name == "Republic of Indonesia"
    # Today (2 November 2026) South Sudan is in force and Timor-Leste not yet: 111 of 112.
    assert '<p class="tile-value" id="parties-total">112</p>' in page
    assert '<p class="tile-value" id="parties-in-force">111</p>' in page

    updated = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "party.updated"))
    assert updated.actor.email == "s@example.org"
    assert updated.detail == {
        "code": "IDN",
        "name": {"old": "Indonesia", "new": "Republic of Indonesia"},
        "source": "import",
        "file": "parties.csv",
    }
    added = db.scalars(
        sa.select(AuditEntry).where(AuditEntry.action == "party.added", AuditEntry.actor_id == updated.actor_id)
    ).all()
    assert {entry.detail["code"] for entry in added} == {"TLS", "SSD"}

    before = snapshot(db)
    page = followed(desk, upload(desk, GOOD_FILE))
    assert "Import done: 0 added, 0 updated, 4 unchanged." in page
    assert snapshot(db) == before


def test_reimporting_the_shipped_list_changes_nothing(desk, db):
    before = snapshot(db)
    page = followed(desk, upload(desk, PARTIES_CSV.read_bytes()))
    assert "Import done: 0 added, 0 updated, 110 unchanged." in page
    assert snapshot(db) == before


def test_bad_rows_are_each_reported_and_nothing_changes(desk, db):
    before = snapshot(db)
    content = (
        HEADER
        + (
            "che,Switzerland,WEOG,2017-08-16\n"  # 2: code in lower case
            "FRA,<b>France</b>,WEOG,2017-09-13\n"  # 3: markup
            "DEU,Germany,Western,2017-12-14\n"  # 4: unknown group
            "ITA,Italy,WEOG,09/09/2021\n"  # 5: not ISO
            "TLS,Timor-Leste,Asia-Pacific,2026-12-01\n"  # 6: fine on its own
            "\n"  # 7: a blank row, skipped but counted as the spreadsheet counts it
            "TLS,Timor-Leste,Asia-Pacific,2026-12-01\n"  # 8: duplicate of row 6
            "BRA,Brazil,GRULAC\n"  # 9: a cell short
            "IDN,Indonesia renamed,Asia-Pacific,2017-02-30\n"  # 10: no such day
            f"ARG,{'A' * 101},GRULAC,2017-12-24\n"  # 11: too long
            "ARM,,Eastern European,\n"  # 12: name and date missing
        ).encode()
    )
    response = upload(desk, content)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Nothing was imported" in page
    assert "9 rows of the file have errors, so nothing was imported." in page
    assert REPORT_ROW.findall(page) == [
        ("2", "code"),
        ("3", "name"),
        ("4", "regional_group"),
        ("5", "entry_into_force"),
        ("8", "code"),
        ("9", ""),
        ("10", "entry_into_force"),
        ("11", "name"),
        ("12", "name"),
        ("12", "entry_into_force"),
    ]
    for message in (
        "Use the three capital letters",
        "no &lt; or &gt;",
        "Use one of African, Asia-Pacific, Eastern European, GRULAC, WEOG",
        "Write the date as YYYY-MM-DD",
        "TLS is already on row 6",
        "Has 3 cells; each row needs 4",
        "Use at most 100 characters (this one has 101)",
        "Give the Party&#39;s name.",
        "Give the date.",
    ):
        assert message in page
    assert "<b>France</b>" not in page
    assert snapshot(db) == before


def test_formula_cells_are_refused(desk, db):
    before = snapshot(db)
    content = HEADER + (
        b'CHE,"=HYPERLINK(""http://evil.example"",""Switzerland"")",WEOG,2017-08-16\n'
        b"FRA,+France,WEOG,2017-09-13\n"
        b"DEU,Germany,@WEOG,2017-12-14\n"
        b"ITA,Italy,WEOG,-2021-09-09\n"
        b"BRA,  =cmd|' /C calc'!A0,GRULAC,2017-11-06\n"
    )
    response = upload(desk, content)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert REPORT_ROW.findall(page) == [
        ("2", "name"),
        ("3", "name"),
        ("4", "regional_group"),
        ("5", "entry_into_force"),
        ("6", "name"),
    ]
    assert page.count("cells starting with = + - @ are refused") == 5
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("content", "messages"),
    [
        (
            b"code,name,group,entry_into_force\nCHE,Switzerland,WEOG,2017-08-16\n",
            [
                "must name exactly these columns, in this order: code,name,regional_group,entry_into_force",
                "Missing: regional_group.",
                "Not expected: group.",
            ],
        ),
        (b"code,name,entry_into_force\nCHE,Switzerland,2017-08-16\n", ["Missing: regional_group."]),
        (b"name,code,regional_group,entry_into_force\n", ["Found them in another order"]),
        (b"code;name;regional_group;entry_into_force\nCHE;Switzerland;WEOG;2017-08-16\n", ["semicolons"]),
        (HEADER + "CIV,Côte d'Ivoire,African,2017-08-16\n".encode("latin-1"), ["not UTF-8", "CSV UTF-8"]),
        (b"", ["The file is empty."]),
        (b"\n\n", ["The file is empty."]),
        (b"\xef\xbb\xbf\r\n", ["The file is empty."]),
        (HEADER, ["a header row but no Parties below it"]),
        (HEADER + b"CHE,Switzerland,WEOG,2017-08-16\n" * 40_000, ["larger than 1 MiB"]),
    ],
    ids=[
        "wrong-column",
        "missing-column",
        "order",
        "semicolons",
        "latin-1",
        "empty",
        "blank",
        "bom",
        "header-only",
        "1MiB",
    ],
)
def test_unusable_files_are_refused_as_a_whole(desk, db, content, messages):
    before = snapshot(db)
    response = upload(desk, content)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Nothing was imported" in page
    for message in messages:
        assert message in page
    assert REPORT_ROW.findall(page) == []
    assert snapshot(db) == before


def test_an_import_needs_a_file(desk):
    response = desk.post(IMPORT, data={"csrf_token": csrf_token(desk, IMPORT)}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose the CSV file to import." in response.get_data(as_text=True)


def test_the_downloaded_list_imports_back_unchanged(desk, db):
    response = desk.get(PARTIES + ".csv")
    assert response.mimetype == "text/csv"
    content = response.get_data()
    assert content.startswith(b"code,name,regional_group,entry_into_force\r\n")
    assert b"EUR,European Union,,2017-08-16\r\n" in content
    assert "0 added, 0 updated, 110 unchanged" in followed(desk, upload(desk, content))


def test_rows_are_numbered_as_a_spreadsheet_numbers_them():
    content = HEADER + b'CHE,"Swiss\nConfederation",WEOG,2017-08-16\n\nFRA,France,WEOG,bad\n'
    with pytest.raises(parties.ImportRefused) as refused:
        parties.parse_csv(content)
    assert refused.value.code == "invalid_rows"
    # The quoted cell spans two lines of text but one spreadsheet row; the blank row counts.
    assert [(e.row, e.column) for e in refused.value.errors] == [(2, "name"), (4, "entry_into_force")]


# Parties by hand -------------------------------------------------------------------------------


def test_the_list_searches_by_code_or_name_and_by_group(desk):
    page = desk.get(PARTIES + "?q=switz").get_data(as_text=True)
    assert "Switzerland" in page and "Indonesia" not in page and "1 of 110 Parties match." in page
    page = desk.get(PARTIES + "?q=IDN").get_data(as_text=True)
    assert "Indonesia" in page and "Switzerland" not in page
    page = desk.get(PARTIES + "?group=none").get_data(as_text=True)
    assert "European Union" in page and "1 of 110 Parties match." in page
    page = desk.get(PARTIES + "?group=Eastern+European").get_data(as_text=True)
    assert "13 of 110 Parties match." in page and "Armenia" in page


def test_adding_a_party_shows_errors_next_to_the_fields(desk, db):
    before = snapshot(db)
    response = post_form(desk, PARTIES + "/new", code="C1", name="<i>Atlantis</i>", regional_group="Oceania")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    fields = dict(
        re.findall(
            r'<div class="field has-error">\s*<label for="(\w+)".*?<p class="error" role="alert">(.*?)</p>', page, re.S
        )
    )
    assert fields["code"].startswith("Use the three capital letters")
    assert fields["name"].startswith("Use letters, spaces and punctuation only")
    assert fields["regional_group"] == "Not a valid choice."
    assert fields["entry_into_force"] == "Give the date the convention entered into force for this Party."
    response = post_form(desk, PARTIES + "/new", code="TLS", name="Timor-Leste", entry_into_force="2026-02-30")
    assert "Not a valid date value." in response.get_data(as_text=True)
    assert snapshot(db) == before

    response = post_form(desk, PARTIES + "/new", code="CHE", name="Swiss", entry_into_force="2017-08-16")
    assert response.status_code == 409
    assert "CHE is already in the list, as Switzerland: edit it instead." in response.get_data(as_text=True)

    page = followed(
        desk,
        post_form(
            desk,
            PARTIES + "/new",
            code=" tls ",
            name="Timor-Leste",
            regional_group="Asia-Pacific",
            entry_into_force="2026-12-01",
        ),
    )
    assert "Added Timor-Leste (TLS)." in page
    assert party(db, "TLS").regional_group == RegionalGroup.ASIA_PACIFIC
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "party.added", AuditEntry.actor_id.is_not(None)))
    assert entry.detail == {
        "code": "TLS",
        "name": "Timor-Leste",
        "regional_group": "Asia-Pacific",
        "entry_into_force": "2026-12-01",
        "source": "form",
    }


def test_editing_a_party_is_audited_with_old_and_new_values(desk, db):
    edit = PARTIES + "/IDN/edit"
    page = desk.get(edit).get_data(as_text=True)
    assert 'value="Indonesia"' in page and 'value="2017-12-21"' in page
    response = post_form(desk, edit, name="", regional_group="Asia-Pacific", entry_into_force="2017-12-21")
    assert response.status_code == 400 and "Give the Party&#39;s name." in response.get_data(as_text=True)

    page = followed(desk, post_form(desk, edit, name="Indonesia", regional_group="", entry_into_force="2017-12-22"))
    assert "Saved Indonesia (IDN)." in page
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "party.updated"))
    assert entry.detail == {
        "code": "IDN",
        "regional_group": {"old": "Asia-Pacific", "new": None},
        "entry_into_force": {"old": "2017-12-21", "new": "2017-12-22"},
        "source": "form",
    }
    assert "Indonesia: nothing changed." in followed(
        desk, post_form(desk, edit, name="Indonesia", regional_group="", entry_into_force="2017-12-22")
    )
    assert db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.action == "party.updated")) == 1


def test_a_party_with_registrations_cannot_be_deleted(desk, db):
    # The demo delegate represents Indonesia.
    page = followed(desk, post_form(desk, PARTIES + "/IDN/delete"))
    assert "Indonesia cannot be deleted while other records refer to it (1 registration, 1 credentials record)." in page
    assert party(db, "IDN") is not None

    followed(desk, post_form(desk, PARTIES + "/new", code="XXA", name="Mistake", entry_into_force="2020-01-01"))
    assert "Deleted Mistake (XXA)." in followed(desk, post_form(desk, PARTIES + "/XXA/delete"))
    assert party(db, "XXA") is None
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "party.deleted"))
    assert entry.detail["code"] == "XXA" and entry.actor.email == "s@example.org"


# Accounts and roles ----------------------------------------------------------------------------


def role_of(db, email: str) -> Role:
    db.expire_all()
    return db.scalar(sa.select(User.role).where(User.email == email))


def change_role(client, user_id: int, role: str, back: str = "/secretariat/accounts"):
    return client.post(
        f"/secretariat/accounts/{user_id}/role",
        data={"role": role, "back": back, "csrf_token": csrf_token(client, "/secretariat/accounts")},
    )


def test_the_secretariat_changes_roles_and_each_change_is_audited(desk, db, make_user):
    user, _ = make_user(email="p@example.org")
    page = followed(desk, change_role(desk, user.id, "officer"))
    assert "Test Person (p@example.org) is now a meeting officer, no longer a participant." in page
    assert role_of(db, "p@example.org") == Role.OFFICER
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "user.role_changed"))
    assert entry.target_type == "users" and entry.target_id == str(user.id)
    assert entry.detail == {"role": {"old": "participant", "new": "officer"}}
    assert entry.actor.email == "s@example.org"

    # Another secretariat member may lose the role; the desk still holds one.
    other = db.scalar(sa.select(User).where(User.email == "secretariat@example.org"))
    followed(desk, change_role(desk, other.id, "participant"))
    assert role_of(db, "secretariat@example.org") == Role.PARTICIPANT

    page = followed(desk, change_role(desk, user.id, "officer"))
    assert "already had that role; nothing changed." in page
    assert db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.action == "user.role_changed")) == 2


def test_a_secretariat_member_cannot_remove_their_own_role(desk, db):
    me = db.scalar(sa.select(User).where(User.email == "s@example.org"))
    for role in ("officer", "participant"):
        page = followed(desk, change_role(desk, me.id, role))
        assert "You cannot remove your own secretariat role." in page
    assert role_of(db, "s@example.org") == Role.SECRETARIAT
    assert db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.action == "user.role_changed")) == 0
    assert desk.get("/secretariat/accounts").status_code == 200


def test_role_changes_go_back_to_the_filtered_list_and_refuse_unknown_roles(desk, db, make_user):
    user, _ = make_user(email="p@example.org")
    response = change_role(desk, user.id, "officer", back="/secretariat/accounts?q=p%40example&role=participant")
    assert response.headers["Location"].endswith("/secretariat/accounts?q=p%40example&role=participant")
    response = change_role(desk, user.id, "participant", back="https://evil.example/accounts")
    assert response.headers["Location"].endswith("/secretariat/accounts")
    assert "Role not changed: Not a valid choice." in followed(desk, change_role(desk, user.id, "admin"))
    assert role_of(db, "p@example.org") == Role.PARTICIPANT


def test_the_last_secretariat_account_is_never_lost(db, cop4, make_user, clock):
    demo_secretariat = db.scalar(sa.select(User).where(User.email == "secretariat@example.org"))
    with pytest.raises(roles.RoleError) as refused:
        roles.set_role(db, demo_secretariat, Role.OFFICER, None, clock())
    assert refused.value.code == "last_secretariat"
    db.rollback()

    # A disabled secretariat account cannot log in: it does not count.
    disabled, _ = make_user(Role.SECRETARIAT, email="gone@example.org")
    disabled.is_enabled = False
    db.commit()
    with pytest.raises(roles.RoleError):
        roles.set_role(db, demo_secretariat, Role.OFFICER, disabled, clock())
    db.rollback()

    make_user(Role.SECRETARIAT, email="new@example.org")
    assert roles.set_role(db, demo_secretariat, Role.OFFICER, None, clock()) is True
    with pytest.raises(roles.RoleError) as refused:
        roles.set_role(db, demo_secretariat, "admin", None, clock())
    assert refused.value.code == "unknown_role"


def test_accounts_are_searched_filtered_and_paginated(desk, db, make_user):
    for number in range(30):
        make_user(email=f"member{number:02d}@delegation.example")
    make_user(Role.OFFICER, email="chair@delegation.example")

    page = desk.get("/secretariat/accounts?q=delegation.example").get_data(as_text=True)
    assert "Accounts 1–25 of 31." in page and page.count("@delegation.example</td>") == 25
    page = desk.get("/secretariat/accounts?q=delegation.example&page=2").get_data(as_text=True)
    assert "Accounts 26–31 of 31." in page and page.count("@delegation.example</td>") == 6
    assert 'href="/secretariat/accounts?q=delegation.example&amp;page=1"' in page

    page = desk.get("/secretariat/accounts?q=delegation.example&role=officer").get_data(as_text=True)
    assert "Accounts 1–1 of 1." in page and "chair@delegation.example" in page
    page = desk.get("/secretariat/accounts?q=Nadia+okafor").get_data(as_text=True)
    assert "secretariat@example.org" in page and "Accounts 1–1 of 1." in page
    page = desk.get("/secretariat/accounts?q=100%25").get_data(as_text=True)
    assert "No account matches." in page
    page = desk.get("/secretariat/accounts?role=robot").get_data(as_text=True)
    assert "Not a valid choice." in page


# The audit log ---------------------------------------------------------------------------------


def audited_actions(page: str) -> list[str]:
    return re.findall(r'<code class="action">([^<]+)</code>', page)


@pytest.fixture
def history(db, cop4, make_user):
    """Entries at known times: an officer opened a session, the secretariat changed a role."""
    officer, _ = make_user(Role.OFFICER, email="o@example.org")
    secretariat = db.scalar(sa.select(User).where(User.email == "secretariat@example.org"))
    meeting_session = db.scalar(sa.select(MeetingSession).order_by(MeetingSession.id).limit(1))
    utc = dt.UTC
    # 00:30 on 1 October in Geneva (CEST) is still 30 September in UTC.
    meeting_services.audit(db, officer, "session.open", meeting_session, dt.datetime(2026, 9, 30, 22, 30, tzinfo=utc))
    meeting_services.audit(
        db,
        secretariat,
        "user.role_changed",
        officer,
        dt.datetime(2026, 10, 1, 22, 30, tzinfo=utc),
        role={"old": "participant", "new": "officer"},
    )
    db.commit()
    return officer


def test_the_audit_log_is_newest_first_and_readable(desk, history):
    page = desk.get("/secretariat/audit").get_data(as_text=True)
    actions = audited_actions(page)
    # Newest first: the demo loading (2 November, clock time) comes before October's entries.
    assert actions[0] in ("registration.approved", "party.added")
    assert "Entries 1–50 of 113." in page and len(actions) == 50
    page = desk.get("/secretariat/audit?page=3").get_data(as_text=True)
    assert audited_actions(page)[-2:] == ["user.role_changed", "session.open"]
    assert "2 Oct 2026, 00:30:00" in page  # shown in the meeting's time zone
    assert "participant → officer" in page
    assert "Test Person &lt;o@example.org&gt;" in page
    assert "Opening plenary (online segment)" in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("action=session.open", ["session.open"]),
        ("actor=o%40example.org", ["session.open"]),
        ("actor=SECRETARIAT%40example.org&action=user.role_changed", ["user.role_changed"]),
        ("target_type=meeting_sessions", ["session.open"]),
        ("target_type=users", ["user.role_changed"]),
        ("since=2026-10-01&until=2026-10-01", ["session.open"]),
        ("since=2026-10-02&until=2026-10-31", ["user.role_changed"]),
        ("until=2026-10-31", ["user.role_changed", "session.open"]),
        ("actor=nobody%40example.org", []),
    ],
)
def test_audit_filters_return_the_right_rows(desk, history, query, expected):
    page = desk.get(f"/secretariat/audit?{query}").get_data(as_text=True)
    assert audited_actions(page) == expected


def test_audit_filters_by_system_and_by_one_target(desk, db, history):
    page = desk.get("/secretariat/audit?actor=system").get_data(as_text=True)
    assert "Entries 1–50 of 110." in page and set(audited_actions(page)) == {"party.added"}
    idn = party(db, "IDN")
    page = desk.get(f"/secretariat/audit?target_type=parties&target_id={idn.id}").get_data(as_text=True)
    assert audited_actions(page) == ["party.added"] and "IDN · Indonesia" in page


def test_a_reversed_date_range_is_refused_next_to_the_field(desk, history):
    page = desk.get("/secretariat/audit?since=2026-10-05&until=2026-10-01").get_data(as_text=True)
    assert "The end date is before the start date." in page and audited_actions(page) == []
    page = desk.get("/secretariat/audit?since=yesterday").get_data(as_text=True)
    assert "Not a valid date value." in page


# Permissions -----------------------------------------------------------------------------------

PAGES = [
    PARTIES,
    PARTIES + ".csv",
    PARTIES + "/new",
    PARTIES + "/CHE/edit",
    IMPORT,
    "/secretariat/accounts",
    "/secretariat/audit",
]
ACTIONS = [PARTIES + "/new", PARTIES + "/CHE/edit", PARTIES + "/CHE/delete", IMPORT, "/secretariat/accounts/1/role"]


def test_anonymous_visitors_are_sent_to_the_login(client, db, cop4):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], path
    for path in ACTIONS:
        response = client.post(path, data={"csrf_token": csrf_token(client, "/"), "role": "secretariat"})
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"], path
    assert party(db, "CHE") is not None


@pytest.mark.parametrize("who", ["delegate", "officer"])
def test_delegates_and_officers_are_refused(app, db, cop4, make_user, make_delegate, clock, who):
    if who == "delegate":
        user, secret = make_delegate("CHE", email="d@example.org", password="delegate pass")
    else:
        user, secret = make_user(Role.OFFICER, email="d@example.org", password="delegate pass")
    client = app.test_client()
    login(client, "d@example.org", "delegate pass", secret, clock)
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client, "/")
    for path in ACTIONS[:-1]:
        assert client.post(path, data={"csrf_token": token}).status_code == 403, path
    response = client.post(f"/secretariat/accounts/{user.id}/role", data={"csrf_token": token, "role": "secretariat"})
    assert response.status_code == 403
    assert role_of(db, "d@example.org") != Role.SECRETARIAT
    assert party(db, "CHE") is not None
