"""The officers' attendance page of a session: who is present now, and checking a person in or out by hand."""

from __future__ import annotations

from collections.abc import Mapping

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Regexp, ValidationError

from auth.login import officer_required
from db import get_db, now
from meetings import manual, services
from meetings.events import session_changed
from meetings.forms import plain_text
from meetings.models import Channel, EventKind, MeetingSession
from meetings.views import bp, flash_form_errors, session_or_404

SEARCH_MAX = 100


def _reason_field(description: str) -> StringField:
    return StringField(
        "Reason",
        description=description,
        validators=[
            DataRequired("Give the reason; it is kept in the audit log."),
            Length(
                min=manual.REASON_MIN,
                max=manual.REASON_MAX,
                message=f"Give a reason of {manual.REASON_MIN} to {manual.REASON_MAX} characters.",
            ),
            plain_text,
        ],
    )


def _nonce_field() -> HiddenField:
    message = "The form was incomplete, so nothing was recorded. Fill in the form again."
    return HiddenField(validators=[DataRequired(message), Regexp(services.NONCE_RE, message=message)])


class CheckInForm(FlaskForm):
    """Whom to check in, through which channel, and why; the services decide whether they may."""

    who = StringField(
        "Badge number or email address",
        validators=[
            DataRequired("Type the person's badge number or email address."),
            Length(max=manual.WHO_MAX),
            plain_text,
        ],
    )
    # The choices are the channels the session's segment takes.
    channel = RadioField("Channel", validate_choice=False)
    reason = _reason_field("Kept with the entry and in the audit log.")
    nonce = _nonce_field()

    def validate_channel(self, field) -> None:
        allowed = [choice.value for choice in self.channel.choices]
        if field.data not in allowed:
            labels = " or ".join(choice.label for choice in self.channel.choices)
            raise ValidationError(
                f"Choose the channel: {labels}." if len(allowed) > 1 else f"This session takes check-ins {labels} only."
            )


class CheckOutForm(FlaskForm):
    """Through which channel a present participant leaves, and why."""

    channel = SelectField(
        "Channel",
        choices=[SelectChoice(channel.value, label) for channel, label in manual.CHANNEL_LABELS.items()],
    )
    reason = _reason_field("Kept with the exit and in the audit log.")
    nonce = _nonce_field()


def _check_in_form(meeting_session: MeetingSession, **kwargs) -> CheckInForm:
    form = CheckInForm(**kwargs)
    form.channel.choices = [
        SelectChoice(channel.value, manual.CHANNEL_LABELS[channel]) for channel in manual.channels_of(meeting_session)
    ]
    if form.channel.data is None and len(form.channel.choices) == 1:
        form.channel.data = form.channel.choices[0].value
    return form


def _list_args(args: Mapping[str, str]) -> dict[str, str | int]:
    """The list's search and page as the officer left them, to come back to after an action."""
    values: dict[str, str | int] = {}
    q = " ".join(args.get("q", "").split())[:SEARCH_MAX]
    if q:
        values["q"] = q
    page = args.get("page", "")
    if page.isdigit() and int(page) > 1:
        values["page"] = int(page)
    return values


def _back(meeting_session: MeetingSession) -> str:
    """The page as the officer left it; the flashed outcome shows at its top."""
    return url_for("meetings.session_attendance", session_id=meeting_session.id, **_list_args(request.args))


def _render(meeting_session: MeetingSession, check_in_form: CheckInForm, status: int = 200):
    db = get_db()
    list_args = _list_args(request.args)
    present = services.present_users(db, meeting_session)
    page = manual.present_page(db, meeting_session, q=list_args.get("q", ""), page=list_args.get("page", 1))
    by_channel = {"online": 0, "in_person": 0, "both": 0}
    for channels in present.values():
        by_channel["both" if len(channels) > 1 else next(iter(channels))] += 1
    # Every rendering gets a fresh identifier: a form sent twice records once, a new form records again.
    check_in_form.nonce.data = manual.new_nonce()

    def page_url(number: int) -> str:
        return url_for("meetings.session_attendance", session_id=meeting_session.id, **(list_args | {"page": number}))

    response = make_response(
        render_template(
            "meetings/attendance.html",
            meeting_session=meeting_session,
            present_count=len(present),
            by_channel=by_channel,
            page=page,
            page_url=page_url,
            q=list_args.get("q", ""),
            list_args=list_args | ({"page": page.page} if page.page > 1 else {}),
            check_in_form=check_in_form,
            check_out_form=CheckOutForm(formdata=None),
            new_nonce=manual.new_nonce,
            channel_labels={channel.value: label for channel, label in manual.CHANNEL_LABELS.items()},
        ),
        status,
    )
    # A list of named people: not for shared caches or the browser's history.
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _flash_outcome(outcome: manual.Outcome, meeting_session: MeetingSession) -> None:
    """Name the person, the direction, the channel and the time where the session meets."""
    who = f"{outcome.name} ({outcome.delegation})" if outcome.delegation else outcome.name
    channel = manual.CHANNEL_LABELS[outcome.channel]
    entry = outcome.kind == EventKind.ENTRY
    if outcome.nothing_to_do:
        if entry:
            flash(f"{who} is already present {channel}: nothing was recorded.", "warning")
        else:
            flash(f"{who} is not present {channel} any more: nothing to check out.", "warning")
        return
    at = outcome.result.at.astimezone(meeting_session.tz)
    when = f"{at:%H:%M} on {at:%-d %b %Y} ({meeting_session.segment.timezone} time)"
    direction = "Checked in" if entry else "Checked out"
    if outcome.already:
        flash(f"Already recorded: {direction.lower()} {who}, {channel}, at {when}.", "info")
    else:
        flash(f"{direction}: {who}, {channel}, at {when}.", "success")


@bp.get("/sessions/<int:session_id>/attendance")
@officer_required
def session_attendance(session_id: int):
    """Who is present now, each with a check-out form, and the form to check someone in by hand."""
    meeting_session = session_or_404(session_id)
    return _render(meeting_session, _check_in_form(meeting_session, formdata=None))


@bp.post("/sessions/<int:session_id>/attendance/check-in")
@officer_required
def manual_check_in(session_id: int):
    db = get_db()
    meeting_session = session_or_404(session_id)
    form = _check_in_form(meeting_session)
    if not form.validate_on_submit():
        return _render(meeting_session, form, 400)
    try:
        registration = manual.find_registration(db, meeting_session, form.who.data)
    except services.MeetingError as exc:
        form.who.errors.append(exc.message)
        return _render(meeting_session, form, 400)
    try:
        outcome = manual.record(
            db,
            meeting_session,
            registration,
            kind=EventKind.ENTRY,
            channel=Channel(form.channel.data),
            reason=form.reason.data,
            officer=current_user,
            nonce=form.nonce.data,
            now=now(),
            lapsed_before=current_app.extensions["live"].lapse_cutoff(),
        )
    except services.MeetingError as exc:
        db.rollback()
        (form.reason.errors if exc.code.startswith("reason_") else form.form_errors).append(exc.message)
        return _render(meeting_session, form, 409)
    db.commit()
    # Recorded, or a lapsed presence ended first: the dashboards must hear of it either way.
    session_changed(meeting_session)
    _flash_outcome(outcome, meeting_session)
    return redirect(_back(meeting_session))


@bp.post("/sessions/<int:session_id>/attendance/<int:user_id>/check-out")
@officer_required
def manual_check_out(session_id: int, user_id: int):
    db = get_db()
    meeting_session = session_or_404(session_id)
    registration = services.registration_of(db, meeting_session.segment.meeting_id, user_id)
    if registration is None:
        abort(404)
    name = registration.user.full_name
    form = CheckOutForm()
    if not form.validate_on_submit():
        flash_form_errors(form, f"{name} was not checked out")
        return redirect(_back(meeting_session))
    try:
        outcome = manual.record(
            db,
            meeting_session,
            registration,
            kind=EventKind.EXIT,
            channel=Channel(form.channel.data),
            reason=form.reason.data,
            officer=current_user,
            nonce=form.nonce.data,
            now=now(),
            lapsed_before=current_app.extensions["live"].lapse_cutoff(),
        )
    except services.MeetingError as exc:
        db.rollback()
        flash(f"{name} was not checked out: {exc.message}", "danger")
        return redirect(_back(meeting_session))
    db.commit()
    # Recorded, or a lapsed presence ended first: the dashboards must hear of it either way.
    session_changed(meeting_session)
    _flash_outcome(outcome, meeting_session)
    return redirect(_back(meeting_session))
