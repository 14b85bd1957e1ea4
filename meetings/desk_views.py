"""The secretariat's registration desk: searchable list, filters, bulk decisions, registration statistics."""

from __future__ import annotations

import dataclasses

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, SelectMultipleField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from auth import mail
from auth.login import secretariat_required
from db import get_db, now
from meetings import desk, notices, services
from meetings.forms import ActionForm, RejectForm, plain_text
from meetings.models import CATEGORY_LABELS, FUNCTION_LABELS, RegionalGroup
from meetings.views import bp, flash_form_errors, meeting_or_404, registration_or_404

# A flash listing more refusals than this would bury the page; the rest are counted.
REFUSALS_SHOWN = 10


class BulkDecisionForm(FlaskForm):
    """The ticked registrations and what to do with them; the services decide whether each may be."""

    ids = SelectMultipleField(
        "Registrations",
        coerce=int,
        validate_choice=False,
        validators=[DataRequired("Tick the registrations to decide first.")],
    )
    action = SelectField("Decision", choices=[SelectChoice("approve", "Approve"), SelectChoice("reject", "Reject")])
    reason = TextAreaField(
        "Reason for rejecting (the delegates will read it)", validators=[Optional(), Length(max=500), plain_text]
    )

    def validate_ids(self, field) -> None:
        if len(field.data or []) > desk.MAX_BATCH:
            raise ValidationError(f"Decide at most {desk.MAX_BATCH} registrations at once.")

    def validate_reason(self, field) -> None:
        if self.action.data == "reject" and not (field.data or "").strip():
            raise ValidationError("Give the reason for the rejection; the delegates will read it.")


def _list_url(code: str) -> str:
    """The list as the secretariat left it: the request's list state, read again so only known values pass."""
    return url_for("meetings.registrations", code=code, **desk.ListQuery.from_args(request.args).args())


@bp.get("/secretariat/meetings/<code>/registrations")
@secretariat_required
def registrations(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    query = desk.ListQuery.from_args(request.args)
    page = desk.list_registrations(db, meeting, query)
    # A page beyond the end shows the last one; its links must say so.
    query = dataclasses.replace(query, page=page.page)

    def list_url(**changes) -> str:
        return url_for("meetings.registrations", code=meeting.code, **query.args(**changes))

    return render_template(
        "meetings/registrations.html",
        meeting=meeting,
        query=query,
        page=page,
        list_url=list_url,
        state=query.args(),
        counts=desk.status_counts(db, meeting),
        status_filters=desk.STATUS_FILTERS,
        sorts=desk.SORTS,
        per_page_choices=desk.PER_PAGE_CHOICES,
        parties=desk.parties_of(db, meeting),
        groups=[(g.value, g.value) for g in RegionalGroup]
        + [(desk.NO_GROUP, f"{desk.NO_GROUP_LABEL} (EU, observers)")],
        sessions=services.sessions_of(db, meeting),
        action_form=ActionForm(),
        reject_form=RejectForm(),
        bulk_form=BulkDecisionForm(),
        categories=CATEGORY_LABELS,
        functions=FUNCTION_LABELS,
    )


@bp.post("/secretariat/meetings/<code>/registrations/bulk")
@secretariat_required
def bulk_decide(code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    form = BulkDecisionForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        flash_form_errors(form, "Nothing was changed")
        return redirect(_list_url(meeting.code))
    login_url = url_for("auth.login", _external=True)
    try:
        decided = desk.decide_many(
            db, meeting, form.ids.data, form.action.data, current_user, now(), reason=form.reason.data or ""
        )
        for registration in decided:
            notices.registration_decided(db, registration, login_url, now())
    except desk.BatchRefused as exc:
        db.rollback()
        flash(exc.message, "danger")
        for refusal in exc.refusals[:REFUSALS_SHOWN]:
            flash(f"{refusal.name} (#{refusal.registration_id}): {refusal.message}", "danger")
        if len(exc.refusals) > REFUSALS_SHOWN:
            flash(f"… and {len(exc.refusals) - REFUSALS_SHOWN} more.", "danger")
    except services.MeetingError as exc:
        db.rollback()
        flash(f"Nothing was changed: {exc.message}", "danger")
    else:
        db.commit()
        mail.deliver_now()
        count = len(decided)
        noun = "registration" if count == 1 else "registrations"
        if form.action.data == "approve":
            flash(f"Approved {count} {noun} and issued the badges; each delegate was emailed.", "success")
        else:
            flash(f"Rejected {count} {noun}; each delegate was emailed the reason.", "success")
    return redirect(_list_url(meeting.code))


@bp.get("/secretariat/meetings/<code>/registrations/stats")
@secretariat_required
def registration_stats(code: str):
    meeting = meeting_or_404(code)
    status = request.args.get("status", "all")
    status = status if status in desk.STATUS_FILTERS else "all"
    return render_template(
        "meetings/registration_stats.html",
        meeting=meeting,
        status=status,
        status_filters=desk.STATUS_FILTERS,
        tables=desk.registration_stats(get_db(), meeting, status),
        # The tables whose lines the list can filter on (it has no gender filter).
        filters={"category", "group", "segment"},
    )


@bp.post("/secretariat/registrations/<int:registration_id>/approve")
@secretariat_required
def approve(registration_id: int):
    db = get_db()
    registration = registration_or_404(registration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        badge = services.approve(db, registration, current_user, now())
        notices.registration_decided(db, registration, url_for("auth.login", _external=True), now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        mail.deliver_now()
        flash(f"Approved {registration.user.full_name}; badge {badge.number} issued.", "success")
    return redirect(_list_url(registration.meeting.code))


@bp.post("/secretariat/registrations/<int:registration_id>/reject")
@secretariat_required
def reject(registration_id: int):
    db = get_db()
    registration = registration_or_404(registration_id)
    form = RejectForm()
    if not form.validate_on_submit():
        flash_form_errors(form, "Not rejected")
        return redirect(_list_url(registration.meeting.code))
    try:
        services.reject(db, registration, current_user, form.reason.data, now())
        notices.registration_decided(db, registration, url_for("auth.login", _external=True), now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        mail.deliver_now()
        flash(f"Rejected {registration.user.full_name}.", "success")
    return redirect(_list_url(registration.meeting.code))
