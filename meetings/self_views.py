"""A participant's own registration: status, corrections, withdrawal, nomination letter; the secretariat's outbox."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from auth import mail
from auth import services as auth_services
from auth.forms import ResendForm
from auth.login import login_manager, secretariat_required
from auth.models import GENDER_LABELS, Gender, OutboxMessage
from db import get_db, now
from meetings import badges, letters, notices, selfservice, services
from meetings.forms import ActionForm, CorrectionForm, LetterForm
from meetings.models import (
    FUNCTION_LABELS,
    Category,
    Function,
    Meeting,
    Party,
    Registration,
    RegistrationStatus,
)
from meetings.views import bp

log = logging.getLogger(__name__)

OUTBOX_PAGE_SIZE = 25

# The owner reaches the same pages two ways: logged in (approved participants and officers), or through the
# link mailed to them, since a registrant cannot log in before the secretariat approves them.
MINE = "/meetings/<code>/my-registration"
LINK = "/manage-registration/<token>"


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    return letters.human_size(size)


@dataclass(frozen=True, slots=True)
class Access:
    """The owner's way in to their registration: logged in (no token) or through the mailed link (its token)."""

    registration: Registration
    token: str | None

    def url(self, endpoint: str) -> str:
        """The same page or action, reached the same way."""
        if self.token is None:
            return url_for(endpoint, code=self.registration.meeting.code)
        return url_for(endpoint, token=self.token)


def _owner_route(suffix: str, **options) -> Callable:
    """Route a view both ways in: under MINE for the logged-in owner and under LINK for the mailed link."""

    def decorator(view: Callable) -> Callable:
        bp.add_url_rule(MINE + suffix, view_func=view, defaults={"token": None}, **options)
        bp.add_url_rule(LINK + suffix, view_func=view, defaults={"code": None}, **options)
        return view

    return decorator


def _own_registration(code: str | None, token: str | None, *, lock: bool = False) -> Access:
    """The registration whose owner is asking, or the response that turns them away."""
    db = get_db()
    if token is not None:
        registration = selfservice.registration_for_token(
            db, current_app.secret_key, token, current_app.config["EMAIL_LINK_MAX_AGE"]
        )
        if registration is None:
            flash(
                "That link does not work any more: it has expired, or your registration was decided or withdrawn "
                "after it was sent. Ask for a new link below.",
                "warning",
            )
            abort(redirect(url_for("meetings.request_manage_link")))
    else:
        if not current_user.is_authenticated:
            abort(login_manager.unauthorized())
        meeting = db.scalar(sa.select(Meeting).where(Meeting.code == code))
        if meeting is None:
            abort(404)
        registration = services.registration_of(db, meeting.id, current_user.id)
        if registration is None:
            flash(f"You have no registration for {meeting.code}.", "info")
            abort(redirect(url_for("meetings.index")))
    if lock:
        # A change waits for a concurrent decision to commit, then sees its status (PostgreSQL; SQLite serialises).
        db.refresh(registration, with_for_update=True)
    return Access(registration, token)


def _private(template: str, status: int = 200, **context):
    """A page about one person's registration: not to be kept by shared caches or the browser's history."""
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _folder() -> Path:
    return letters.folder_of(current_app.config, current_app.instance_path)


def _status_page(access: Access, letter_form: LetterForm | None = None, status: int = 200):
    registration = access.registration
    badge = badges.current_badge(registration)
    return _private(
        "meetings/my_registration.html",
        status,
        access=access,
        registration=registration,
        meeting=registration.meeting,
        badge=badge,
        letter_form=letter_form or LetterForm(),
        functions=FUNCTION_LABELS,
        genders=GENDER_LABELS,
    )


@_owner_route("")
def my_registration(code: str | None, token: str | None):
    """Where the registration stands, all its details and the letter; the way to change it while pending."""
    return _status_page(_own_registration(code, token))


def _offer_choices(form: CorrectionForm, meeting: Meeting) -> None:
    parties = get_db().scalars(sa.select(Party).where(Party.convention == meeting.convention).order_by(Party.name))
    form.party.choices = [SelectChoice("", "Choose a Party…")] + [SelectChoice(p.code, p.name) for p in parties]
    form.segments.choices = [
        SelectChoice(s.id, f"{s.name.capitalize()} ({s.venue}, {s.starts_on:%-d %b}–{s.ends_on:%-d %b %Y})")
        for s in meeting.segments
    ]


def _as_form_data(registration: Registration) -> dict:
    """The registration as the correction form's initial data (segments by id, as the form sends them)."""
    return selfservice.as_recorded(registration) | {"segments": [segment.id for segment in registration.segments]}


def _not_pending(access: Access):
    flash(selfservice.NOT_PENDING[access.registration.status], "warning")
    return redirect(access.url("meetings.my_registration"))


@_owner_route("/correct", methods=["GET", "POST"])
def correct_registration(code: str | None, token: str | None):
    db = get_db()
    access = _own_registration(code, token, lock=request.method == "POST")
    registration = access.registration
    if registration.status != RegistrationStatus.PENDING:
        return _not_pending(access)
    form = CorrectionForm(data=_as_form_data(registration) if request.method == "GET" else None)
    _offer_choices(form, registration.meeting)
    status = 200
    if form.validate_on_submit():
        details = selfservice.Details(
            title=form.title.data,
            given_name=form.given_name.data,
            family_name=form.family_name.data,
            gender=Gender(form.gender.data),
            category=Category(form.category.data),
            party_code=form.party.data,
            organization=form.organization.data,
            function=Function(form.function.data),
            segment_ids=tuple(form.segments.data),
            nomination_ref=form.nomination_ref.data,
        )
        try:
            changed = selfservice.correct(db, registration, details, registration.user, now())
        except services.MeetingError as exc:
            db.rollback()
            if exc.code == "not_pending":
                return _not_pending(access)
            field = {
                "unknown_party": form.party,
                "organization_required": form.organization,
                "segments_required": form.segments,
            }.get(exc.code)
            (field.errors if field is not None else form.form_errors).append(exc.message)
            status = 409
        else:
            db.commit()
            if changed:
                labels = ", ".join(form[name].label.text.lower() for name in changed)
                flash(f"Your corrections are saved ({labels}).", "success")
            else:
                flash("Nothing was changed.", "info")
            return redirect(access.url("meetings.my_registration"))
    elif form.errors:
        status = 400
    return _private(
        "meetings/correct_registration.html",
        status,
        form=form,
        access=access,
        registration=registration,
        meeting=registration.meeting,
    )


@_owner_route("/withdraw", methods=["GET", "POST"])
def withdraw_registration(code: str | None, token: str | None):
    """Ask for confirmation (GET), then withdraw (POST)."""
    db = get_db()
    access = _own_registration(code, token, lock=request.method == "POST")
    registration = access.registration
    if registration.status != RegistrationStatus.PENDING:
        return _not_pending(access)
    form = ActionForm()
    if form.validate_on_submit():
        try:
            selfservice.withdraw(db, registration, registration.user, now())
        except services.MeetingError as exc:
            db.rollback()
            flash(exc.message, "danger")
            return redirect(access.url("meetings.my_registration"))
        db.commit()
        flash(f"Your registration for {registration.meeting.code} is withdrawn.", "success")
        if token is None:
            return redirect(access.url("meetings.my_registration"))
        # The link just used was bound to the pending registration; the owner gets one for the withdrawn one.
        fresh = selfservice.manage_token(current_app.secret_key, registration)
        return redirect(url_for("meetings.my_registration", token=fresh))
    return _private(
        "meetings/withdraw_registration.html",
        form=form,
        access=access,
        registration=registration,
        meeting=registration.meeting,
    )


@_owner_route("/letter", methods=["POST"])
def upload_letter(code: str | None, token: str | None):
    """Upload (or replace) the nomination letter of a pending registration."""
    db = get_db()
    access = _own_registration(code, token, lock=True)
    registration = access.registration
    form = LetterForm()
    if not form.validate_on_submit():
        return _status_page(access, form, 400)
    folder = _folder()
    try:
        letter = letters.read_letter(form.letter.data, current_app.config["LETTER_MAX_BYTES"])
        # The file is deleted again if the letter is refused or the commit fails.
        with letters.kept_if_committed(folder, letter) as stored_name:
            replaced = selfservice.attach_letter(db, registration, letter, stored_name, registration.user, now())
            db.commit()
    except services.MeetingError as exc:
        db.rollback()
        if exc.code == "not_pending":
            return _not_pending(access)
        form.letter.errors.append(exc.message)
        return _status_page(access, form, 400)
    letters.discard(folder, replaced)
    flash(f"Your nomination letter is uploaded ({letter.original_name}, {letters.human_size(letter.size)}).", "success")
    return redirect(access.url("meetings.my_registration"))


def _letter_response(registration: Registration):
    document = registration.letter
    if document is None:
        abort(404)
    path = letters.path_of(_folder(), document.stored_name)
    if not path.is_file():
        log.error("letter %s of registration %s is missing from %s", document.id, registration.id, path.parent)
        abort(404)
    response = send_file(
        path,
        mimetype="application/pdf",
        as_attachment=True,
        download_name=document.original_name,
        max_age=0,
        etag=False,
        conditional=False,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@_owner_route("/letter", methods=["GET"])
def my_letter(code: str | None, token: str | None):
    """The owner downloads their own letter: the URL names no registration, so it cannot name someone else's."""
    return _letter_response(_own_registration(code, token).registration)


@bp.get("/secretariat/registrations/<int:registration_id>/letter")
@secretariat_required
def registration_letter(registration_id: int):
    """The secretariat downloads a registration's nomination letter."""
    registration = get_db().get(Registration, registration_id)
    if registration is None:
        abort(404)
    return _letter_response(registration)


@bp.route("/manage-registration", methods=["GET", "POST"])
def request_manage_link():
    """Mail the link to each registration of an address; the answer is the same whether or not there is one."""
    form = ResendForm()
    if form.validate_on_submit():
        db = get_db()
        user = auth_services.find_user(db, form.email.data)
        registrations = selfservice.registrations_of(db, user) if user is not None and user.is_active else []
        for registration in registrations:
            url = url_for(
                "meetings.my_registration",
                token=selfservice.manage_token(current_app.secret_key, registration),
                _external=True,
            )
            notices.manage_link(db, registration, url, current_app.config["EMAIL_LINK_MAX_AGE"] // 86400, now())
        if registrations:
            db.commit()
            mail.deliver_now()
        flash(
            "If that address has a registration, a link to it is on its way. Check your spam folder too.",
            "info",
        )
        return redirect(url_for("meetings.index"))
    return render_template("meetings/request_manage_link.html", form=form), 400 if form.errors else 200


@bp.get("/secretariat/outbox")
@secretariat_required
def outbox():
    """The emails the app wrote, newest first: without a mail server, this is where they are read."""
    db = get_db()
    page = max(request.args.get("page", 1, type=int), 1)
    to = request.args.get("to", "").strip()[:254]
    query = sa.select(OutboxMessage)
    if to:
        query = query.where(sa.func.lower(OutboxMessage.to_address).contains(to.lower(), autoescape=True))
    total = db.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    pages = max(1, math.ceil(total / OUTBOX_PAGE_SIZE))
    page = min(page, pages)
    messages = list(
        db.scalars(
            query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
            .limit(OUTBOX_PAGE_SIZE)
            .offset((page - 1) * OUTBOX_PAGE_SIZE)
        )
    )
    meeting = db.scalar(sa.select(Meeting).order_by(Meeting.id.desc()).limit(1))
    # The messages hold live links (confirmation, manage, set-password): no copies in caches.
    return _private(
        "meetings/outbox.html",
        messages=messages,
        page=page,
        pages=pages,
        total=total,
        to=to,
        tz=meeting.timezone if meeting else "UTC",
        mail_server=current_app.config["MAIL_SERVER"],
    )
