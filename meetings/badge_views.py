"""Badges: a participant's own badge and its PDF; the secretariat's badge list, revocations, reissues and print runs."""

from __future__ import annotations

import re
import tempfile
import time

from flask import abort, current_app, flash, make_response, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length

from auth.login import secretariat_required
from auth.qr import qr_svg
from db import get_db, now
from meetings import badge_pdf, badges, services
from meetings.forms import plain_text
from meetings.models import Badge, Registration, Segment
from meetings.views import bp, flash_form_errors, meeting_or_404, registration_or_404

# A batch PDF this large stays in memory; a larger one is spooled to a temporary file while it is sent.
SPOOL_BYTES = 8 * 1024 * 1024


# Why a badge that is not valid is not printed.
NOT_PRINTED = {
    "revoked": "was revoked",
    "replaced": "was replaced by a newer one",
    "void": "belongs to a registration that is no longer approved",
}


class BadgeReasonForm(FlaskForm):
    """Why a badge is revoked or reissued: kept with the badge and in the audit log."""

    reason = TextAreaField(
        "Reason",
        validators=[
            DataRequired("Give the reason; it is kept in the audit log."),
            Length(max=badges.MAX_REASON_LENGTH),
            plain_text,
        ],
    )


def _private(response):
    """A page or file about one person: not to be kept by shared caches or the browser's history."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _filename(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", " ".join(parts)).strip("-") + ".pdf"


def _badge_or_404(badge_id: int) -> Badge:
    badge = badges.load_for_print(get_db(), badge_id)
    if badge is None:
        abort(404)
    return badge


def _list_url(code: str) -> str:
    """The badge list as the secretariat left it (the state travels in the action's query string)."""
    return url_for("meetings.badges", code=code, **badges.BadgeQuery.from_args(request.args).args())


# The participant ---------------------------------------------------------------------------


@bp.get("/meetings/<code>/my-badge", endpoint="badge")
@login_required
def my_badge(code: str):
    """The participant's badge: its number and status, the QR code shown at the gate, and the PDF to print."""
    meeting = meeting_or_404(code)
    registration = services.registration_of(get_db(), meeting.id, current_user.id)
    if registration is None:
        flash(f"You have no registration for {meeting.code}.", "info")
        return redirect(url_for("meetings.index"))
    badge = registration.badges[-1] if registration.badges else None
    status = badges.status_of(badge) if badge is not None else None
    qr = qr_svg(badges.token_for(current_app.secret_key, badge)) if status == "valid" else None
    name = " ".join(part for part in (current_user.title, current_user.given_name, current_user.family_name) if part)
    response = make_response(
        render_template(
            "meetings/badge.html",
            meeting=meeting,
            registration=registration,
            badge=badge,
            status=status,
            qr=qr,
            unprintable=badge_pdf.unprintable(f"{name} {registration.represents}"),
        )
    )
    return _private(response)


@bp.get("/badges/<int:badge_id>.pdf", endpoint="badge_pdf")
@login_required
def download_badge(badge_id: int):
    """One badge as an A6 PDF, for its owner and the secretariat only."""
    badge = _badge_or_404(badge_id)
    owner = badge.registration.user_id == current_user.id
    if not owner and not current_user.is_secretariat:
        abort(403)
    status = badges.status_of(badge)
    if status != "valid":
        flash(f"Badge {badge.number} {NOT_PRINTED[status]}: it no longer works and is not printed.", "warning")
        if current_user.is_secretariat:
            return redirect(url_for("meetings.badges", code=badge.registration.meeting.code))
        return redirect(url_for("meetings.badge", code=badge.registration.meeting.code))
    pdf = badge_pdf.badges_pdf(
        [badges.badge_row(current_app.secret_key, badge)], title=f"{badge.registration.meeting.code} badge"
    )
    response = make_response(pdf)
    response.mimetype = "application/pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename("badge", badge.number)}"'
    return _private(response)


# The secretariat ---------------------------------------------------------------------------


@bp.get("/secretariat/meetings/<code>/badges", endpoint="badges")
@secretariat_required
def badge_list(code: str):
    """Every badge of the meeting, filtered by segment, status and a search, with revoke, reissue and print."""
    db = get_db()
    meeting = meeting_or_404(code)
    query = badges.BadgeQuery.from_args(request.args)
    page = badges.list_badges(db, meeting, query)

    def list_url(**changes) -> str:
        return url_for("meetings.badges", code=meeting.code, **query.args(**changes))

    return render_template(
        "meetings/badges.html",
        meeting=meeting,
        query=query,
        page=page,
        list_url=list_url,
        state=query.args(page=page.page),
        counts=badges.status_counts(db, meeting, query),
        status_filters=badges.STATUS_FILTERS,
        status_of=badges.status_of,
        revokers=badges.revoked_by(db, page.rows),
        print_counts=badges.printable_counts(db, meeting),
        print_parts=badges.print_parts,
        part_size=badges.PRINT_PART_SIZE,
        bands=badge_pdf.BANDS,
        unprintable=badge_pdf.unprintable,
        form=BadgeReasonForm(),
    )


def _refused_form(form: BadgeReasonForm, what: str) -> None:
    if form.csrf_token.errors:
        abort(400)
    flash_form_errors(form, what)


@bp.post("/secretariat/badges/<int:badge_id>/revoke")
@secretariat_required
def revoke_badge(badge_id: int):
    db = get_db()
    badge = _badge_or_404(badge_id)
    code = badge.registration.meeting.code
    form = BadgeReasonForm()
    if not form.validate_on_submit():
        _refused_form(form, "Not revoked")
        return redirect(_list_url(code))
    try:
        badges.revoke(db, badge, current_user, form.reason.data, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(f"Not revoked: {exc.message}", "danger")
    else:
        db.commit()
        flash(
            f"Badge {badge.number} of {badge.registration.user.full_name} is revoked: the gates refuse it from now on.",
            "success",
        )
    return redirect(_list_url(code))


@bp.post("/secretariat/registrations/<int:registration_id>/reissue-badge")
@secretariat_required
def reissue_badge(registration_id: int):
    db = get_db()
    registration: Registration = registration_or_404(registration_id)
    code = registration.meeting.code
    form = BadgeReasonForm()
    if not form.validate_on_submit():
        _refused_form(form, "Not reissued")
        return redirect(_list_url(code))
    try:
        badge = badges.reissue(db, registration, current_user, form.reason.data, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(f"Not reissued: {exc.message}", "danger")
    else:
        db.commit()
        flash(
            f"Badge {badge.number} issued to {registration.user.full_name}; the previous one no longer works.",
            "success",
        )
    return redirect(_list_url(code))


def _rows(secret_key: str, found: list[Badge]):
    for badge in found:
        # Drawing a page is pure CPU (the QR encoder most): give other requests and live sockets a turn between
        # pages, as a long print run would otherwise hold a gevent worker, or the GIL, for seconds.
        time.sleep(0)
        yield badges.badge_row(secret_key, badge)


@bp.get("/secretariat/meetings/<code>/badges/print")
@secretariat_required
def print_badges(code: str):
    """A segment's valid badges as one PDF, one A6 page each, by delegation, then name; large runs come in parts."""
    db = get_db()
    meeting = meeting_or_404(code)
    segment_id = request.args.get("segment", "")
    segment = db.get(Segment, int(segment_id)) if segment_id.isdigit() else None
    if segment is None or segment.meeting_id != meeting.id:
        abort(404)
    found = badges.printable_badges(db, meeting, segment)
    if not found:
        flash(f"No valid badges to print for the {segment.name}.", "info")
        return redirect(url_for("meetings.badges", code=meeting.code, segment=segment.id))
    parts = badges.print_parts(len(found))
    part = request.args.get("part", "1")
    if not part.isdigit() or not 1 <= int(part) <= len(parts):
        abort(404)
    first, last = parts[int(part) - 1]
    name = [meeting.code, segment.name, "badges"] + ([f"part {part} of {len(parts)}"] if len(parts) > 1 else [])
    # Spooled: a few hundred badges stay in memory, more go to a temporary file, and either is sent in chunks.
    # send_file closes it once the response is sent.
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        badge_pdf.write_badges(_rows(current_app.secret_key, found[first - 1 : last]), out, title=" ".join(name))
    except BaseException:
        out.close()
        raise
    out.seek(0)
    response = send_file(out, mimetype="application/pdf", as_attachment=True, download_name=_filename(*name), max_age=0)
    return _private(response)
