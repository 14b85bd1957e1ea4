"""Pages: the meeting, registration, a delegate's session page, officers' dashboards and the secretariat's desk."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_login import current_user, login_required
from wtforms.fields.choices import SelectChoice

from auth import mail
from auth import services as auth_services
from auth.login import officer_required, secretariat_required
from auth.models import Gender
from auth.views import send_confirmation
from db import get_db, now
from meetings import letters, notices, selfservice, services
from meetings.dashboard import initial as dashboard_initial
from meetings.events import session_changed
from meetings.exports import ATTENDANCE_COLUMNS, csv_lines
from meetings.forms import ActionForm, RegistrationForm
from meetings.models import (
    Category,
    Meeting,
    MeetingSession,
    Party,
    Registration,
)

bp = Blueprint("meetings", __name__)


def meeting_or_404(code: str) -> Meeting:
    meeting = get_db().scalar(sa.select(Meeting).where(Meeting.code == code))
    if meeting is None:
        abort(404)
    return meeting


def flash_form_errors(form, prefix: str) -> None:
    """Tell, after a redirect, why a small form on a list page was refused: one message per error."""
    for errors in form.errors.values():
        for message in errors:
            flash(f"{prefix}: {message}", "danger")


def registration_or_404(registration_id: int) -> Registration:
    registration = get_db().get(Registration, registration_id)
    if registration is None:
        abort(404)
    return registration


def session_or_404(session_id: int) -> MeetingSession:
    meeting_session = get_db().get(MeetingSession, session_id)
    if meeting_session is None:
        abort(404)
    return meeting_session


@bp.app_context_processor
def current_meeting() -> dict:
    """The meeting that navigation links point to: the most recent one."""

    def latest() -> Meeting | None:
        return get_db().scalar(sa.select(Meeting).order_by(Meeting.id.desc()).limit(1))

    return {"current_meeting": latest}


@bp.get("/")
def index():
    db = get_db()
    meetings = list(db.scalars(sa.select(Meeting).order_by(Meeting.id)))
    registrations = {}
    if current_user.is_authenticated:
        registrations = {
            r.meeting_id: r for r in db.scalars(sa.select(Registration).where(Registration.user_id == current_user.id))
        }
    return render_template("meetings/index.html", meetings=meetings, registrations=registrations)


@bp.route("/meetings/<code>/register", methods=["GET", "POST"])
def register(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    form = RegistrationForm()
    parties = list(db.scalars(sa.select(Party).where(Party.convention == meeting.convention).order_by(Party.name)))
    form.party.choices = [SelectChoice("", "Choose a Party…")] + [SelectChoice(p.code, p.name) for p in parties]
    form.segments.choices = [
        SelectChoice(s.id, f"{s.name.capitalize()} ({s.venue}, {s.starts_on:%-d %b}–{s.ends_on:%-d %b %Y})")
        for s in meeting.segments
    ]
    status = 200
    if form.validate_on_submit():
        folder = letters.folder_of(current_app.config, current_app.instance_path)
        try:
            # The letter is checked first: a refused upload leaves no account and no registration behind.
            letter = letters.read_letter(form.letter.data, current_app.config["LETTER_MAX_BYTES"])
            user = auth_services.create_user(
                db,
                email=form.email.data,
                password=form.password.data,
                given_name=form.given_name.data,
                family_name=form.family_name.data,
                gender=Gender(form.gender.data),
                title=form.title.data,
                hash_method=current_app.config["PASSWORD_HASH_METHOD"],
            )
            registration = services.register(
                db,
                meeting=meeting,
                user=user,
                category=Category(form.category.data),
                function=form.function.data,
                segment_ids=form.segments.data,
                party_code=form.party.data,
                organization=form.organization.data,
                now=now(),
            )
            # The file is deleted again if anything below fails, the commit included.
            with letters.kept_if_committed(folder, letter) as stored_name:
                selfservice.nominate(
                    db,
                    registration,
                    reference=form.nomination_ref.data,
                    letter=letter,
                    stored_name=stored_name,
                    actor=user,
                    now=now(),
                )
                manage_url = url_for(
                    "meetings.my_registration",
                    token=selfservice.manage_token(current_app.secret_key, registration),
                    _external=True,
                )
                notices.manage_link(
                    db,
                    registration,
                    manage_url,
                    current_app.config["EMAIL_LINK_MAX_AGE"] // 86400,
                    now(),
                    received=True,
                )
                # Queued last, the confirmation is on top of the inbox: it is the message to open first.
                send_confirmation(db, user)
                db.commit()
        except (auth_services.AuthError, services.MeetingError) as exc:
            db.rollback()
            field = {
                "email_taken": form.email,
                "unknown_party": form.party,
                "letter_empty": form.letter,
                "letter_too_large": form.letter,
                "letter_not_pdf": form.letter,
            }.get(exc.code)
            (field.errors if field is not None else form.form_errors).append(exc.message)
            status = 400 if field is form.letter else 409
        else:
            mail.deliver_now()
            flash(
                f"Thank you. We sent a link to {user.email}: open it to confirm your address, and your registration "
                f"for {meeting.code} goes to the secretariat. Once it is approved you can log in and set up your "
                "authenticator app. A second message has a link to review, correct or withdraw your registration "
                "while it is pending.",
                "success",
            )
            return redirect(url_for("meetings.index"))
    elif form.errors:
        status = 400
    return render_template("meetings/register.html", form=form, meeting=meeting), status


@bp.get("/sessions/<int:session_id>")
@login_required
def session_page(session_id: int):
    """A delegate's page for a session: opening it checks them in (online sessions)."""
    meeting_session = session_or_404(session_id)
    registration = services.approved_registration(get_db(), meeting_session.segment.meeting_id, current_user.id)
    return render_template(
        "meetings/session.html",
        meeting_session=meeting_session,
        registration=registration,
    )


@bp.get("/sessions/<int:session_id>/dashboard")
@officer_required
def dashboard(session_id: int):
    meeting_session = session_or_404(session_id)
    state = dashboard_initial(get_db(), meeting_session, now())
    transitions = [
        (action, action.capitalize(), sorted(s.value for s in services.TRANSITIONS[action][0]))
        for action in ("open", "suspend", "close")
    ]
    return render_template(
        "meetings/dashboard.html",
        meeting_session=meeting_session,
        state=state,
        form=ActionForm(),
        transitions=transitions,
    )


@bp.post("/sessions/<int:session_id>/<any(open, suspend, close):action>")
@officer_required
def change_state(session_id: int, action: str):
    db = get_db()
    meeting_session = session_or_404(session_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        services.change_state(
            db,
            meeting_session,
            action,
            current_user,
            now(),
            lapsed_before=current_app.extensions["live"].lapse_cutoff(),
        )
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        session_changed(meeting_session)
        flash(f"{meeting_session.title}: {meeting_session.state.value}.", "success")
    return redirect(url_for("meetings.dashboard", session_id=session_id))


@bp.get("/secretariat/sessions/<int:session_id>/attendance.csv")
@secretariat_required
def attendance_csv(session_id: int):
    meeting_session = session_or_404(session_id)
    rows = list(services.attendance_rows(get_db(), meeting_session))
    name = re.sub(
        r"[^A-Za-z0-9]+",
        "-",
        f"{meeting_session.segment.meeting.code} {meeting_session.title}",
    ).strip("-")
    return Response(
        csv_lines(ATTENDANCE_COLUMNS, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-attendance.csv"'},
    )
