"""The secretariat's administration: the Parties and their import, accounts and roles, the audit log."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy.orm import selectinload
from wtforms import DateField, Form, HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from auth import mail, roles
from auth import services as auth_services
from auth.login import end_sockets, secretariat_required
from auth.models import AuditEntry, Role, User
from auth.views import safe_next
from db import get_db, now
from meetings import parties, services
from meetings.exports import csv_lines
from meetings.forms import ActionForm, plain_text
from meetings.models import Meeting, MeetingSession, Party, RegionalGroup, Registration
from meetings.views import bp, flash_form_errors, meeting_or_404

ACCOUNTS_PER_PAGE = 25
AUDIT_PER_PAGE = 50
# Rows of an import report shown on the page; a file can hold thousands of mistakes.
REPORT_LIMIT = 200

ROLE_PHRASES = {
    Role.PARTICIPANT: "a participant",
    Role.OFFICER: "a meeting officer",
    Role.SECRETARIAT: "a secretariat member",
}
TARGET_LABELS = {
    "users": "Account",
    "parties": "Party",
    "registrations": "Registration",
    "meeting_sessions": "Session",
    "credentials": "Credentials",
    "badges": "Badge",
    "documents": "Document",
}


# Forms: shape only -----------------------------------------------------------------------------


def _rule(check):
    """A form validator from one of the rules the import applies too, so both say the same."""

    def validate(form, field) -> None:
        if field.data and (problem := check(field.data)):
            raise ValidationError(problem)

    return validate


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _upper(value):
    return value.upper() if isinstance(value, str) else value


GROUP_CHOICES = [SelectChoice("", "None (the European Union)")] + [
    SelectChoice(g.value, g.value) for g in RegionalGroup
]


class PartyForm(FlaskForm):
    code = StringField(
        "Code",
        description="ISO 3166 alpha-3, e.g. CHE; EUR for the European Union. It cannot be changed later.",
        filters=[_strip, _upper],
        validators=[DataRequired("Give the three-letter code."), _rule(parties.code_problem)],
    )
    name = StringField(
        "Name",
        filters=[_strip],
        validators=[DataRequired("Give the Party's name."), _rule(parties.name_problem)],
    )
    regional_group = SelectField("UN regional group", choices=GROUP_CHOICES)
    entry_into_force = DateField(
        "Entry into force",
        description="The date the convention entered into force for this Party (YYYY-MM-DD).",
        validators=[InputRequired("Give the date the convention entered into force for this Party.")],
    )

    def data_for(self, code: str) -> parties.PartyData:
        group = self.regional_group.data
        return parties.PartyData(
            code=code,
            name=self.name.data,
            regional_group=RegionalGroup(group) if group else None,
            entry_into_force_on=self.entry_into_force.data,
        )


class PartyImportForm(FlaskForm):
    file = FileField(
        "CSV file",
        description="UTF-8, at most 1 MiB, with the columns code,name,regional_group,entry_into_force.",
        validators=[FileRequired("Choose the CSV file to import.")],
    )


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r.value, label) for r, label in roles.ROLE_LABELS.items()])
    back = HiddenField()


class ResetAuthenticatorForm(FlaskForm):
    reason = TextAreaField(
        "Reason (kept in the audit log)",
        validators=[DataRequired("Give the reason for the reset."), Length(max=500), plain_text],
    )
    back = HiddenField()


class UnlockForm(FlaskForm):
    back = HiddenField()


class AccountFilter(Form):
    q = StringField("Name or email", filters=[_strip], validators=[Length(max=200)])
    role = SelectField(
        "Role",
        default="",
        choices=[SelectChoice("", "All roles")]
        + [SelectChoice(r.value, label) for r, label in roles.ROLE_LABELS.items()],
    )


class AuditFilter(Form):
    action = SelectField("Action", default="", validate_choice=False)
    actor = StringField(
        "By (email)", filters=[_strip], validators=[Length(max=254)], description="“system” for automatic entries."
    )
    target_type = SelectField("Target", default="", validate_choice=False)
    target_id = HiddenField()
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])

    def validate_until(self, field) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")


# Pagination ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a query's rows, counted and sliced by the database."""

    items: list
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def first(self) -> int:
        return (self.number - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0


def _page_number() -> int:
    return max(1, request.args.get("page", 1, type=int))


def _paginate(query: sa.Select, number: int, per_page: int) -> Page:
    db = get_db()
    total = db.scalar(sa.select(sa.func.count()).select_from(query.order_by(None).subquery()))
    items = list(db.scalars(query.limit(per_page).offset((number - 1) * per_page)))
    return Page(items, number, per_page, total)


def _page_url(number: int) -> str:
    """The current page's address with the same filters and another page number."""
    args = request.args.to_dict()
    args["page"] = str(number)
    return url_for(request.endpoint, **(request.view_args or {}), **args)


# Parties ---------------------------------------------------------------------------------------


def _party_or_404(meeting: Meeting, party_code: str) -> Party:
    party = parties.find(get_db(), meeting.convention, party_code)
    if party is None:
        abort(404)
    return party


def _today(meeting: Meeting) -> dt.date:
    return now().astimezone(ZoneInfo(meeting.timezone)).date()


@bp.get("/secretariat/meetings/<code>/parties", endpoint="parties")
@secretariat_required
def parties_list(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    search = request.args.get("q", "").strip()[:100]
    group_name = request.args.get("group", "")
    group = RegionalGroup(group_name) if group_name in parties.GROUPS else None
    rows = parties.listing(db, meeting.convention, search, group, without_group=group_name == "none")
    today = _today(meeting)
    total = db.scalar(sa.select(sa.func.count(Party.id)).where(Party.convention == meeting.convention))
    return render_template(
        "meetings/parties.html",
        meeting=meeting,
        rows=rows,
        search=search,
        group=group_name,
        groups=parties.GROUPS,
        today=today,
        total=total,
        in_force=parties.in_force_count(db, meeting.convention, today),
    )


@bp.get("/secretariat/meetings/<code>/parties.csv")
@secretariat_required
def parties_csv(code: str):
    meeting = meeting_or_404(code)
    rows = parties.export_rows(get_db(), meeting.convention)
    return Response(
        csv_lines(list(parties.COLUMNS), rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="parties-{meeting.convention.value}.csv"'},
    )


@bp.route("/secretariat/meetings/<code>/parties/new", methods=["GET", "POST"])
@secretariat_required
def party_new(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    form = PartyForm()
    status = 200
    if form.validate_on_submit():
        try:
            party = parties.add_party(db, meeting.convention, form.data_for(form.code.data), current_user, now())
        except services.MeetingError as exc:
            db.rollback()
            (form.code.errors if exc.code == "party_exists" else form.form_errors).append(exc.message)
            status = 409
        else:
            db.commit()
            flash(f"Added {party.name} ({party.code}).", "success")
            return redirect(url_for("meetings.parties", code=meeting.code))
    elif form.errors:
        status = 400
    return render_template("meetings/party_form.html", meeting=meeting, form=form, party=None), status


@bp.route("/secretariat/meetings/<code>/parties/<party_code>/edit", methods=["GET", "POST"])
@secretariat_required
def party_edit(code: str, party_code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    party = _party_or_404(meeting, party_code)
    form = PartyForm(
        name=party.name,
        regional_group=party.regional_group.value if party.regional_group else "",
        entry_into_force=party.entry_into_force_on,
    )
    # The code identifies the Party in imports and registrations: it is shown, never edited.
    del form.code
    status = 200
    if form.validate_on_submit():
        try:
            changes = parties.update_party(db, party, form.data_for(party.code), current_user, now())
        except services.MeetingError as exc:
            db.rollback()
            form.form_errors.append(exc.message)
            status = 409
        else:
            db.commit()
            flash(f"Saved {party.name} ({party.code})." if changes else f"{party.name}: nothing changed.", "success")
            return redirect(url_for("meetings.parties", code=meeting.code))
    elif form.errors:
        status = 400
    return (
        render_template(
            "meetings/party_form.html",
            meeting=meeting,
            form=form,
            party=party,
            uses=parties.uses(db, party),
            delete_form=ActionForm(),
        ),
        status,
    )


@bp.post("/secretariat/meetings/<code>/parties/<party_code>/delete")
@secretariat_required
def party_delete(code: str, party_code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    party = _party_or_404(meeting, party_code)
    if not ActionForm().validate_on_submit():
        abort(400)
    name = party.name
    try:
        parties.delete_party(db, party, current_user, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
        return redirect(url_for("meetings.party_edit", code=meeting.code, party_code=party_code))
    db.commit()
    flash(f"Deleted {name} ({party_code}).", "success")
    return redirect(url_for("meetings.parties", code=meeting.code))


@bp.route("/secretariat/meetings/<code>/parties/import", methods=["GET", "POST"])
@secretariat_required
def party_import(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    form = PartyImportForm()
    refused: parties.ImportRefused | None = None
    status = 200
    if form.validate_on_submit():
        upload = form.file.data
        # Read one byte past the cap: enough to know the file is too large without reading all of it.
        data = upload.stream.read(parties.MAX_BYTES + 1)
        try:
            result = parties.import_csv(db, meeting.convention, data, current_user, now(), upload.filename)
        except parties.ImportRefused as exc:
            db.rollback()
            refused = exc
            status = 400
        except services.MeetingError as exc:
            db.rollback()
            form.form_errors.append(exc.message)
            status = 409
        else:
            db.commit()
            flash(_import_summary(result), "success")
            return redirect(url_for("meetings.parties", code=meeting.code))
    elif form.errors:
        status = 400
    return (
        render_template(
            "meetings/party_import.html",
            meeting=meeting,
            form=form,
            refused=refused,
            report=refused.errors[:REPORT_LIMIT] if refused else (),
            columns=parties.COLUMNS,
            groups=parties.GROUPS,
        ),
        status,
    )


def _import_summary(result: parties.ImportResult) -> str:
    def listed(codes: tuple[str, ...]) -> str:
        return f" ({', '.join(codes)})" if 0 < len(codes) <= 10 else ""

    return (
        f"Import done: {len(result.added)} added{listed(result.added)}, "
        f"{len(result.updated)} updated{listed(result.updated)}, {result.unchanged} unchanged."
    )


# Accounts and roles ----------------------------------------------------------------------------


@bp.get("/secretariat/accounts")
@secretariat_required
def accounts():
    filters = AccountFilter(request.args)
    valid = filters.validate()
    role = Role(filters.role.data) if valid and filters.role.data else None
    search = (filters.q.data or "") if valid else ""
    query = roles.account_query(search, role).options(selectinload(User.authenticator))
    page = _paginate(query, _page_number(), ACCOUNTS_PER_PAGE)
    return render_template(
        "meetings/accounts.html",
        filters=filters,
        page=page,
        page_url=_page_url,
        role_form=RoleForm(),
        reset_form=ResetAuthenticatorForm(),
        unlock_form=UnlockForm(),
        blocks=auth_services.login_blocks(get_db(), [user.email for user in page.items]),
        now=now(),
        role_labels=roles.ROLE_LABELS,
        back=request.full_path,
    )


def _account_or_404(user_id: int) -> User:
    user = get_db().get(User, user_id)
    if user is None:
        abort(404)
    return user


@bp.post("/secretariat/accounts/<int:user_id>/role")
@secretariat_required
def account_role(user_id: int):
    db = get_db()
    user = db.get(User, user_id)
    if user is None:
        abort(404)
    form = RoleForm()
    back = safe_next(form.back.data) or url_for("meetings.accounts")
    if not form.validate_on_submit():
        flash_form_errors(form, "Role not changed")
        return redirect(back)
    old = user.role
    try:
        changed = roles.set_role(db, user, Role(form.role.data), current_user, now())
    except roles.RoleError as exc:
        db.rollback()
        flash(exc.message, "danger")
        return redirect(back)
    db.commit()
    if changed:
        end_sockets(user)
        flash(
            f"{user.full_name} ({user.email}) is now {ROLE_PHRASES[user.role]}, no longer {ROLE_PHRASES[old]}. "
            "They were logged out and log in again with the new role.",
            "success",
        )
    else:
        flash(f"{user.full_name} already had that role; nothing changed.", "info")
    return redirect(back)


@bp.post("/secretariat/accounts/<int:user_id>/reset-authenticator")
@secretariat_required
def account_reset_authenticator(user_id: int):
    """For a lost phone: the account enrols again at its next login; its sessions and live connections end."""
    db = get_db()
    user = _account_or_404(user_id)
    form = ResetAuthenticatorForm()
    back = safe_next(form.back.data) or url_for("meetings.accounts")
    if not form.validate_on_submit():
        flash_form_errors(form, "Authenticator not reset")
        return redirect(back)
    try:
        auth_services.reset_authenticator(
            db, user, current_user, form.reason.data, url_for("auth.login", _external=True), now()
        )
    except auth_services.AuthError as exc:
        db.rollback()
        flash(f"Authenticator not reset: {exc.message}", "danger")
        return redirect(back)
    db.commit()
    end_sockets(user)
    mail.deliver_now()
    flash(
        f"The authenticator of {user.full_name} ({user.email}) is reset and their recovery codes cancelled. They were "
        "logged out everywhere and told by email; at their next login they set up an authenticator again.",
        "success",
    )
    return redirect(back)


@bp.post("/secretariat/accounts/<int:user_id>/unlock")
@secretariat_required
def account_unlock(user_id: int):
    """Lift the lock or the wait that failed logins put on the account's address."""
    db = get_db()
    user = _account_or_404(user_id)
    form = UnlockForm()
    back = safe_next(form.back.data) or url_for("meetings.accounts")
    if not form.validate_on_submit():
        abort(400)
    if auth_services.unlock_login(db, user, current_user, now()):
        db.commit()
        flash(
            f"{user.full_name} ({user.email}) can log in again; the count of failed attempts starts afresh.", "success"
        )
    else:
        flash(f"Logging in as {user.email} was neither locked nor waiting; nothing changed.", "info")
    return redirect(back)


# The audit log ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry as the page shows it."""

    entry: AuditEntry
    what: str
    target_type: str
    target: str
    details: list[tuple[str, str]]


def _readable(value: object) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_readable(item) for item in value) or "—"
    if isinstance(value, dict):
        if set(value) == {"old", "new"}:
            return f"{_readable(value['old'])} → {_readable(value['new'])}"
        return "; ".join(f"{str(key).replace('_', ' ')}: {_readable(item)}" for key, item in value.items())
    return str(value)


def describe_detail(detail: dict | None) -> list[tuple[str, str]]:
    """An entry's detail as label and text pairs; a changed value reads “old → new”."""
    if not isinstance(detail, dict):
        return [] if detail is None else [("detail", _readable(detail))]
    return [(str(key).replace("_", " "), _readable(value)) for key, value in detail.items()]


def describe_action(action: str) -> str:
    """registration.approved reads “Registration approved”."""
    return action.replace(".", " ").replace("_", " ").capitalize()


def _target_labels(entries: list[AuditEntry]) -> dict[tuple[str, str], str]:
    """What each entry's target is called today, looked up in one query per kind of target."""
    db = get_db()
    ids: dict[str, set[int]] = {}
    for entry in entries:
        if entry.target_id.isdigit():
            ids.setdefault(entry.target_type, set()).add(int(entry.target_id))
    labels: dict[tuple[str, str], str] = {}
    if ids.get("users"):
        for user in db.scalars(sa.select(User).where(User.id.in_(ids["users"]))):
            labels["users", str(user.id)] = f"{user.full_name} <{user.email}>"
    if ids.get("parties"):
        for party in db.scalars(sa.select(Party).where(Party.id.in_(ids["parties"]))):
            labels["parties", str(party.id)] = f"{party.code} · {party.name}"
    if ids.get("registrations"):
        for registration in db.scalars(
            sa.select(Registration)
            .where(Registration.id.in_(ids["registrations"]))
            .options(selectinload(Registration.user), selectinload(Registration.party))
        ):
            labels["registrations", str(registration.id)] = (
                f"{registration.user.full_name}, {registration.represents}".rstrip(", ")
            )
    if ids.get("meeting_sessions"):
        for meeting_session in db.scalars(
            sa.select(MeetingSession)
            .where(MeetingSession.id.in_(ids["meeting_sessions"]))
            .options(selectinload(MeetingSession.segment))
        ):
            labels["meeting_sessions", str(meeting_session.id)] = (
                f"{meeting_session.title} ({meeting_session.segment.name})"
            )
    return labels


def _audit_query(filters: AuditFilter, tz: ZoneInfo) -> sa.Select:
    query = sa.select(AuditEntry).options(selectinload(AuditEntry.actor))
    if filters.action.data:
        query = query.where(AuditEntry.action == filters.action.data)
    actor = (filters.actor.data or "").lower()
    if actor == "system":
        query = query.where(AuditEntry.actor_id.is_(None))
    elif actor:
        query = query.join(User, AuditEntry.actor_id == User.id).where(User.email == actor)
    if filters.target_type.data:
        query = query.where(AuditEntry.target_type == filters.target_type.data)
        if filters.target_id.data:
            query = query.where(AuditEntry.target_id == filters.target_id.data)
    # Dates are the meeting's days: from the start of the first to the end of the last.
    if filters.since.data:
        query = query.where(AuditEntry.at >= dt.datetime.combine(filters.since.data, dt.time(), tz))
    if filters.until.data:
        end = dt.datetime.combine(filters.until.data + dt.timedelta(days=1), dt.time(), tz)
        query = query.where(AuditEntry.at < end)
    return query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


@bp.get("/secretariat/audit")
@secretariat_required
def audit():
    db = get_db()
    meeting = db.scalar(sa.select(Meeting).order_by(Meeting.id.desc()).limit(1))
    tz_name = meeting.timezone if meeting else "UTC"
    filters = AuditFilter(request.args)
    actions = list(db.scalars(sa.select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    types = list(db.scalars(sa.select(AuditEntry.target_type).distinct().order_by(AuditEntry.target_type)))
    filters.action.choices = [SelectChoice("", "All actions")] + [SelectChoice(a, a) for a in actions]
    filters.target_type.choices = [SelectChoice("", "All targets")] + [
        SelectChoice(t, TARGET_LABELS.get(t, t.replace("_", " ").capitalize())) for t in types
    ]
    if filters.validate():
        page = _paginate(_audit_query(filters, ZoneInfo(tz_name)), _page_number(), AUDIT_PER_PAGE)
    else:
        page = Page([], 1, AUDIT_PER_PAGE, 0)
    labels = _target_labels(page.items)
    rows = [
        AuditRow(
            entry=entry,
            what=describe_action(entry.action),
            target_type=TARGET_LABELS.get(entry.target_type, entry.target_type.replace("_", " ").capitalize()),
            target=labels.get((entry.target_type, entry.target_id), f"#{entry.target_id}"),
            details=describe_detail(entry.detail),
        )
        for entry in page.items
    ]
    actor_emails = list(
        db.scalars(
            sa.select(User.email).join(AuditEntry, AuditEntry.actor_id == User.id).distinct().order_by(User.email)
        )
    )
    return render_template(
        "meetings/audit.html",
        filters=filters,
        page=page,
        rows=rows,
        page_url=_page_url,
        tz=tz_name,
        actor_emails=actor_emails,
        filtered=any(value for key, value in request.args.items() if key != "page"),
    )
