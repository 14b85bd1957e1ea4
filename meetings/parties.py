"""The Parties to a convention: what a valid Party is, the CSV import, and changes made by hand.

The import checks the whole file before it touches anything: one bad row and nothing changes.
Services flush but never commit, audit every change, and refuse with a MeetingError.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.models import User
from meetings.models import AttendanceEvent, Convention, Credentials, Document, Party, RegionalGroup, Registration
from meetings.services import MeetingError, audit

COLUMNS = ("code", "name", "regional_group", "entry_into_force")
MAX_BYTES = 1024 * 1024
NAME_MAX = 100
CODE_RE = re.compile(r"^[A-Z]{3}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What spreadsheets run as a formula when the file is opened (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@")
MARKUP = set("<>")
GROUPS = tuple(group.value for group in RegionalGroup)


@dataclass(frozen=True, slots=True)
class PartyData:
    """A Party as a form or a CSV row describes it, already checked."""

    code: str
    name: str
    regional_group: RegionalGroup | None
    entry_into_force_on: dt.date


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in an uploaded file: the row as a spreadsheet numbers it (header = 1), the column, why."""

    row: int
    column: str
    message: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: the codes added and updated, and how many rows matched the Parties already."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: int


class ImportRefused(MeetingError):
    """A refused upload; errors lists each bad row when the file itself could be read."""

    def __init__(self, code: str, message: str, errors: Sequence[RowError] = ()) -> None:
        super().__init__(code, message)
        self.errors = tuple(errors)


# The rules of a valid Party, shared by the form and the import --------------------------------


def _formula_problem(value: str) -> str | None:
    if value.startswith(FORMULA_PREFIXES):
        return (
            f"Starts with “{value[0]}”: cells starting with = + - @ are refused, as spreadsheets run them as formulas."
        )
    return None


def code_problem(value: str) -> str | None:
    if not CODE_RE.match(value):
        return "Use the three capital letters of the ISO 3166 alpha-3 code (EUR for the European Union)."
    return None


def name_problem(value: str) -> str | None:
    if not value:
        return "Give the Party's name."
    if value.startswith(FORMULA_PREFIXES):
        return _formula_problem(value)
    if len(value) > NAME_MAX:
        return f"Use at most {NAME_MAX} characters (this one has {len(value)})."
    if any(ch in MARKUP for ch in value) or any(ord(ch) < 32 for ch in value):
        return "Use letters, spaces and punctuation only (no < or > and no control characters)."
    return None


def group_problem(value: str) -> str | None:
    if value and value not in GROUPS:
        return f"Use one of {', '.join(GROUPS)}, or leave it empty (the European Union)."
    return None


def parse_date(value: str) -> dt.date | None:
    """The date written as YYYY-MM-DD, or None if it is not one."""
    if not DATE_RE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


# Reading an uploaded file ----------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise ImportRefused("too_large", "The file is larger than 1 MiB; a list of Parties is far smaller.")
    try:
        # utf-8-sig drops the byte order mark that spreadsheets put at the start of “CSV UTF-8” files.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused(
            "not_utf8",
            "The file is not UTF-8 text. In your spreadsheet, save it as “CSV UTF-8 (comma delimited)”.",
        ) from None
    if not text.strip():
        raise ImportRefused("empty", "The file is empty. Upload a CSV file with a header row and one row per Party.")
    return text


def _check_header(header: list[str]) -> None:
    found = [cell.strip() for cell in header]
    if tuple(found) == COLUMNS:
        return
    expected = ",".join(COLUMNS)
    message = f"The first row must name exactly these columns, in this order: {expected}."
    missing = [column for column in COLUMNS if column not in found]
    unexpected = [cell for cell in found if cell not in COLUMNS]
    if len(found) == 1 and ";" in found[0]:
        message += " The file uses semicolons: save it with commas as separators."
    else:
        if missing:
            message += f" Missing: {', '.join(missing)}."
        if unexpected:
            message += f" Not expected: {', '.join(cell or '(empty)' for cell in unexpected)}."
        if not missing and not unexpected:
            message += f" Found them in another order: {','.join(found)}."
    raise ImportRefused("bad_header", message)


def _check_row(number: int, cells: list[str]) -> tuple[PartyData | None, list[RowError]]:
    if len(cells) != len(COLUMNS):
        message = f"Has {len(cells)} cells; each row needs {len(COLUMNS)}: {','.join(COLUMNS)}."
        return None, [RowError(number, "", message)]
    values = dict(zip(COLUMNS, (cell.strip() for cell in cells), strict=True))
    errors = []
    for column, value in values.items():
        problem = _formula_problem(value)
        if problem is None:
            if column == "code":
                problem = code_problem(value)
            elif column == "name":
                problem = name_problem(value)
            elif column == "regional_group":
                problem = group_problem(value)
            elif parse_date(value) is None:
                problem = "Write the date as YYYY-MM-DD, e.g. 2017-08-16." if value else "Give the date."
        if problem:
            errors.append(RowError(number, column, problem))
    if errors:
        return None, errors
    return PartyData(
        code=values["code"],
        name=values["name"],
        regional_group=RegionalGroup(values["regional_group"]) if values["regional_group"] else None,
        entry_into_force_on=parse_date(values["entry_into_force"]),
    ), []


def parse_csv(data: bytes) -> list[PartyData]:
    """The Parties listed in an uploaded CSV file, or ImportRefused naming every problem."""
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        _check_header(header)
        rows: list[PartyData] = []
        errors: list[RowError] = []
        first_row_of: dict[str, int] = {}
        # Rows are numbered as a spreadsheet shows them: the header is row 1, blank rows count.
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            party, problems = _check_row(number, cells)
            errors += problems
            if party is None:
                continue
            if party.code in first_row_of:
                errors.append(
                    RowError(
                        number,
                        "code",
                        f"{party.code} is already on row {first_row_of[party.code]}; list each Party once.",
                    )
                )
                continue
            first_row_of[party.code] = number
            rows.append(party)
    except csv.Error as exc:
        raise ImportRefused("not_csv", f"The file could not be read as CSV ({exc}).") from None
    if errors:
        rows_with_errors = len({error.row for error in errors})
        raise ImportRefused(
            "invalid_rows",
            f"{rows_with_errors} row{'s' if rows_with_errors != 1 else ''} of the file "
            f"{'have' if rows_with_errors != 1 else 'has'} errors, so nothing was imported. "
            "Correct them and upload the file again.",
            errors,
        )
    if not rows:
        raise ImportRefused("empty", "The file has a header row but no Parties below it.")
    return rows


# Changes ---------------------------------------------------------------------------------------


def _values(party: Party | PartyData) -> dict[str, str | None]:
    """A Party's fields as the CSV writes them: what the audit log records."""
    return {
        "code": party.code,
        "name": party.name,
        "regional_group": party.regional_group.value if party.regional_group else None,
        "entry_into_force": party.entry_into_force_on.isoformat() if party.entry_into_force_on else None,
    }


def _changes(party: Party, data: PartyData) -> dict[str, dict[str, str | None]]:
    old, new = _values(party), _values(data)
    return {
        key: {"old": old[key], "new": new[key]}
        for key in ("name", "regional_group", "entry_into_force")
        if old[key] != new[key]
    }


def _assign(party: Party, data: PartyData) -> None:
    party.name = data.name
    party.regional_group = data.regional_group
    party.entry_into_force_on = data.entry_into_force_on


def _flush(db: Session) -> None:
    try:
        db.flush()
    except IntegrityError:
        # Two people adding the same Party at once: the other one's change was saved first.
        raise MeetingError(
            "conflict", "Someone else changed the Parties at the same moment; nothing was saved. Try again."
        ) from None


def apply(
    db: Session,
    convention: Convention,
    rows: Iterable[PartyData],
    actor: User | None,
    now: dt.datetime,
    **detail,
) -> ImportResult:
    """Add the Parties that are new and update those that differ; never delete one."""
    existing = {party.code: party for party in db.scalars(sa.select(Party).where(Party.convention == convention))}
    added: list[Party] = []
    updated: list[tuple[Party, dict]] = []
    unchanged = 0
    for data in rows:
        party = existing.get(data.code)
        if party is None:
            party = Party(convention=convention, code=data.code)
            _assign(party, data)
            db.add(party)
            existing[data.code] = party
            added.append(party)
        elif changes := _changes(party, data):
            _assign(party, data)
            updated.append((party, changes))
        else:
            unchanged += 1
    _flush(db)
    for party in added:
        audit(db, actor, "party.added", party, now, **_values(party), **detail)
    for party, changes in updated:
        audit(db, actor, "party.updated", party, now, code=party.code, **changes, **detail)
    db.flush()
    return ImportResult(
        added=tuple(party.code for party in added),
        updated=tuple(party.code for party, _ in updated),
        unchanged=unchanged,
    )


def import_csv(
    db: Session,
    convention: Convention,
    data: bytes,
    actor: User,
    now: dt.datetime,
    filename: str | None = None,
) -> ImportResult:
    """Import an uploaded CSV of Parties: all rows valid and applied, or ImportRefused and nothing changed."""
    rows = parse_csv(data)
    detail = {"source": "import"}
    if filename:
        detail["file"] = filename[:100]
    return apply(db, convention, rows, actor, now, **detail)


def find(db: Session, convention: Convention, code: str) -> Party | None:
    return db.scalar(sa.select(Party).where(Party.convention == convention, Party.code == code))


def add_party(db: Session, convention: Convention, data: PartyData, actor: User, now: dt.datetime) -> Party:
    """A new Party, refused if its code is taken."""
    existing = find(db, convention, data.code)
    if existing is not None:
        raise MeetingError("party_exists", f"{data.code} is already in the list, as {existing.name}: edit it instead.")
    party = Party(convention=convention, code=data.code)
    _assign(party, data)
    db.add(party)
    _flush(db)
    audit(db, actor, "party.added", party, now, **_values(party), source="form")
    db.flush()
    return party


def update_party(db: Session, party: Party, data: PartyData, actor: User, now: dt.datetime) -> dict:
    """Change a Party's name, regional group or date; its code stays. The changes made, if any."""
    if data.code != party.code:
        raise MeetingError("code_fixed", f"The code of {party.name} stays {party.code}; add a new Party instead.")
    changes = _changes(party, data)
    if changes:
        _assign(party, data)
        audit(db, actor, "party.updated", party, now, code=party.code, **changes, source="form")
        db.flush()
    return changes


def uses(db: Session, party: Party) -> dict[str, int]:
    """What refers to the Party: registrations, credentials, documents and attendance records."""
    counts = {}
    for label, model in (
        ("registration", Registration),
        ("credentials record", Credentials),
        ("document", Document),
        ("attendance record", AttendanceEvent),
    ):
        counts[label] = db.scalar(sa.select(sa.func.count()).select_from(model).where(model.party_id == party.id))
    return {label: count for label, count in counts.items() if count}


def delete_party(db: Session, party: Party, actor: User, now: dt.datetime) -> None:
    """Remove a Party added by mistake; refused once anything refers to it."""
    used = uses(db, party)
    if used:
        listed = ", ".join(f"{count} {label}{'s' if count != 1 else ''}" for label, count in used.items())
        raise MeetingError(
            "party_in_use",
            f"{party.name} cannot be deleted while other records refer to it ({listed}). "
            "Correct its name or dates instead.",
        )
    audit(db, actor, "party.deleted", party, now, **_values(party))
    db.delete(party)
    db.flush()


def listing(
    db: Session,
    convention: Convention,
    search: str = "",
    group: RegionalGroup | None = None,
    without_group: bool = False,
) -> list[Party]:
    """The convention's Parties by name, filtered by a code or name fragment and by regional group."""
    query = sa.select(Party).where(Party.convention == convention)
    if search.strip():
        word = search.strip().lower()
        query = query.where(
            sa.or_(
                sa.func.lower(Party.code).contains(word, autoescape=True),
                sa.func.lower(Party.name).contains(word, autoescape=True),
            )
        )
    if group is not None:
        query = query.where(Party.regional_group == group)
    elif without_group:
        query = query.where(Party.regional_group.is_(None))
    return list(db.scalars(query.order_by(Party.name)))


def in_force_count(db: Session, convention: Convention, day: dt.date) -> int:
    """How many Parties the convention is in force for on day."""
    return db.scalar(
        sa.select(sa.func.count(Party.id)).where(Party.convention == convention, Party.entry_into_force_on <= day)
    )


def export_rows(db: Session, convention: Convention) -> list[dict]:
    """The Parties as rows of the import format, so a downloaded list can be edited and imported back."""
    return [
        _values(party)
        for party in db.scalars(sa.select(Party).where(Party.convention == convention).order_by(Party.code))
    ]
