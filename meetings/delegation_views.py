"""Delegations: a focal point registers its delegation; the secretariat sees each delegation and its credentials."""

from __future__ import annotations

from collections import Counter

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from werkzeug.utils import secure_filename
from wtforms.fields.choices import SelectChoice

from auth import mail, tokens
from auth.login import secretariat_required
from auth.models import Gender
from db import get_db, now
from meetings import delegations, letters, notices, services
from meetings.delegation_forms import CredentialsForm, MemberForm, NoteVerbaleForm, OnlineRoleForm
from meetings.delegations import CREDENTIALS_LABELS, ONLINE_ROLE_LABELS
from meetings.forms import ActionForm
from meetings.models import (
    FUNCTION_LABELS,
    CredentialsStatus,
    Document,
    Function,
    Meeting,
    OnlineRole,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
)
from meetings.views import bp, flash_form_errors, meeting_or_404, registration_or_404


@bp.app_context_processor
def delegation_nav() -> dict:
    """The meeting whose delegation the current user manages as focal point, for the navigation."""

    def my_delegation_meeting() -> Meeting | None:
        if not current_user.is_authenticated:
            return None
        found = delegations.focal_point_registrations(get_db(), current_user.id)
        return found[0].meeting if found else None

    return {"my_delegation_meeting": my_delegation_meeting}


def _party_or_404(meeting: Meeting, code: str) -> Party:
    party = services.find_party(get_db(), meeting, code)
    if party is None:
        abort(404)
    return party


# The secretariat ---------------------------------------------------------------------------

GROUP_CHOICES = [("", "All regional groups")] + [(g.value, g.value) for g in RegionalGroup] + [("none", "No group")]


@bp.get("/secretariat/meetings/<code>/delegations")
@secretariat_required
def delegations_overview(code: str):
    meeting = meeting_or_404(code)
    group = request.args.get("group", "")
    credentials = request.args.get("credentials", "")
    # Unknown filter values are ignored rather than refused: the list is then simply unfiltered.
    regional_group = RegionalGroup(group) if group in {g.value for g in RegionalGroup} else None
    status = CredentialsStatus(credentials) if credentials in {s.value for s in CredentialsStatus} else None
    rows = delegations.overview(
        get_db(), meeting, regional_group=regional_group, without_group=group == "none", credentials=status
    )
    totals = sum((row.counts for row in rows), Counter())
    return render_template(
        "meetings/delegations.html",
        meeting=meeting,
        rows=rows,
        totals=totals,
        group=group if regional_group or group == "none" else "",
        credentials=status.value if status else "",
        group_choices=GROUP_CHOICES,
        credentials_labels=CREDENTIALS_LABELS,
        statuses=list(RegistrationStatus),
    )


@bp.get("/secretariat/meetings/<code>/delegations/<party_code>")
@secretariat_required
def delegation(code: str, party_code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    party = _party_or_404(meeting, party_code)
    registrations = delegations.members(db, meeting, party)
    credentials = delegations.credentials_of(db, meeting, party)
    status = credentials.status if credentials else CredentialsStatus.NONE
    form = CredentialsForm(status=status.value)
    return render_template(
        "meetings/delegation.html",
        meeting=meeting,
        party=party,
        registrations=registrations,
        head=delegations.head_of(registrations),
        focal_point=delegations.focal_point_in(registrations),
        speaker=delegations.speaker_in(registrations),
        letter=delegations.note_verbale(db, meeting, party),
        credentials=credentials,
        status=status,
        history=delegations.credentials_history(db, credentials),
        credentials_form=form,
        action_form=ActionForm(),
        credentials_labels=CREDENTIALS_LABELS,
        functions=FUNCTION_LABELS,
        roles=ONLINE_ROLE_LABELS,
    )


@bp.post("/secretariat/meetings/<code>/delegations/<party_code>/credentials")
@secretariat_required
def change_credentials(code: str, party_code: str):
    db = get_db()
    meeting = meeting_or_404(code)
    party = _party_or_404(meeting, party_code)
    form = CredentialsForm()
    if not form.validate_on_submit():
        flash_form_errors(form, "Credentials not changed")
        return redirect(url_for("meetings.delegation", code=code, party_code=party.code))
    status = CredentialsStatus(form.status.data)
    try:
        delegations.set_credentials(db, meeting, party, status, current_user, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "warning")
    else:
        db.commit()
        flash(f"Credentials of {party.name}: {CREDENTIALS_LABELS[status].lower()}.", "success")
    return redirect(url_for("meetings.delegation", code=code, party_code=party.code))


def _back_to_delegation(registration: Registration):
    if registration.party is None:
        return redirect(url_for("meetings.registrations", code=registration.meeting.code))
    return redirect(url_for("meetings.delegation", code=registration.meeting.code, party_code=registration.party.code))


@bp.post("/secretariat/registrations/<int:registration_id>/focal-point")
@secretariat_required
def designate_focal_point(registration_id: int):
    db = get_db()
    registration = registration_or_404(registration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        delegations.designate_focal_point(db, registration, current_user, now())
        notices.focal_point_designated(
            db,
            registration,
            url_for("meetings.my_delegation", meeting=registration.meeting.code, _external=True),
            now(),
        )
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        mail.deliver_now()
        flash(
            f"{registration.user.full_name} is now the focal point of {registration.party.name}; we emailed them.",
            "success",
        )
    return _back_to_delegation(registration)


@bp.post("/secretariat/registrations/<int:registration_id>/focal-point/remove")
@secretariat_required
def remove_focal_point(registration_id: int):
    db = get_db()
    registration = registration_or_404(registration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        delegations.remove_focal_point(db, registration, current_user, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        flash(f"{registration.user.full_name} is no longer a focal point.", "success")
    return _back_to_delegation(registration)


@bp.get("/delegation/letters/<int:document_id>")
@login_required
def note_verbale_file(document_id: int):
    """The PDF of a delegation's note verbale: for the secretariat and that Party's focal point only."""
    db = get_db()
    document = db.get(Document, document_id)
    if document is None:
        abort(404)
    if not delegations.may_download(db, current_user, document):
        abort(403)
    path = letters.document_path(current_app.config, current_app.instance_path, document.stored_name)
    if not path.is_file():
        abort(404)
    return send_file(
        path,
        mimetype="application/pdf",
        as_attachment=True,
        download_name=secure_filename(document.original_name) or "note-verbale.pdf",
    )


# The focal point ---------------------------------------------------------------------------


def _focal_registration(meeting_id: int | None = None) -> Registration:
    """The current user's approved focal-point registration (for a meeting, or the latest one); 403 if none."""
    found = delegations.focal_point_registrations(get_db(), current_user.id)
    if meeting_id is None:
        code = request.args.get("meeting")
        found = [r for r in found if r.meeting.code == code] if code else found
    else:
        found = [r for r in found if r.meeting_id == meeting_id]
    if not found:
        abort(403)
    return found[0]


def _member_form(meeting: Meeting) -> MemberForm:
    form = MemberForm()
    form.segments.choices = [
        SelectChoice(s.id, f"{s.name.capitalize()} ({s.venue}, {s.starts_on:%-d %b}–{s.ends_on:%-d %b %Y})")
        for s in meeting.segments
    ]
    return form


def _render_my_delegation(focal: Registration, *, member_form=None, letter_form=None, status: int = 200):
    db = get_db()
    meeting, party = focal.meeting, focal.party
    registrations = delegations.members(db, meeting, party)
    credentials = delegations.credentials_of(db, meeting, party)
    return render_template(
        "meetings/my_delegation.html",
        focal=focal,
        meeting=meeting,
        party=party,
        registrations=registrations,
        speaker=delegations.speaker_in(registrations),
        letter=delegations.note_verbale(db, meeting, party),
        credentials=credentials.status if credentials else CredentialsStatus.NONE,
        credentials_labels=CREDENTIALS_LABELS,
        member_form=member_form or _member_form(meeting),
        letter_form=letter_form or NoteVerbaleForm(formdata=None),
        role_form=OnlineRoleForm(formdata=None),
        action_form=ActionForm(formdata=None),
        functions=FUNCTION_LABELS,
        roles=ONLINE_ROLE_LABELS,
        max_mb=current_app.config["LETTER_MAX_BYTES"] / 1024 / 1024,
        link_days=current_app.config["EMAIL_LINK_MAX_AGE"] // 86400,
    ), status


def _invite(db, registration: Registration, focal: Registration) -> None:
    """Queue the message whose link lets the member choose a password; the link dies once one is set."""
    user = registration.user
    token = tokens.make_token(current_app.secret_key, tokens.SET_PASSWORD, user.id, user.password_hash)
    notices.member_invited(
        db, registration, focal.user, url_for("auth.set_password", token=token, _external=True), now()
    )


@bp.route("/delegation", methods=["GET", "POST"])
@login_required
def my_delegation():
    """The focal point's delegation: its members, and the form to pre-register one."""
    focal = _focal_registration()
    if request.method == "GET":
        return _render_my_delegation(focal)
    db = get_db()
    form = _member_form(focal.meeting)
    if not form.validate_on_submit():
        return _render_my_delegation(focal, member_form=form, status=400)
    try:
        registration = delegations.pre_register_member(
            db,
            focal=focal,
            party=focal.party,
            email=form.email.data,
            given_name=form.given_name.data,
            family_name=form.family_name.data,
            gender=Gender(form.gender.data),
            title=form.title.data,
            function=Function(form.function.data),
            segment_ids=form.segments.data,
            online_role=OnlineRole(form.online_role.data),
            now=now(),
        )
        _invite(db, registration, focal)
    except services.MeetingError as exc:
        db.rollback()
        field = {
            "email_taken": form.email,
            "speaker_taken": form.online_role,
            "speaker_not_online": form.online_role,
            "segments_required": form.segments,
        }.get(exc.code)
        (field.errors if field is not None else form.form_errors).append(exc.message)
        return _render_my_delegation(focal, member_form=form, status=409)
    db.commit()
    mail.deliver_now()
    flash(
        f"{registration.user.full_name} is registered in the delegation, pending the secretariat's approval. "
        f"We sent {registration.user.email} a link to choose a password.",
        "success",
    )
    return redirect(url_for("meetings.my_delegation", meeting=focal.meeting.code))


def _member_of(focal_for_meeting, registration_id: int) -> tuple[Registration, Registration]:
    registration = registration_or_404(registration_id)
    focal = focal_for_meeting(registration.meeting_id)
    if registration.party_id != focal.party_id:
        abort(403)
    return focal, registration


@bp.post("/delegation/members/<int:registration_id>/online-role")
@login_required
def member_online_role(registration_id: int):
    db = get_db()
    focal, registration = _member_of(_focal_registration, registration_id)
    form = OnlineRoleForm()
    if not form.validate_on_submit():
        flash("Choose designated speaker or viewer.", "danger")
        return redirect(url_for("meetings.my_delegation", meeting=focal.meeting.code))
    role = OnlineRole(form.online_role.data)
    try:
        delegations.change_online_role(db, focal, registration, role, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "danger")
    else:
        db.commit()
        flash(f"{registration.user.full_name}: {ONLINE_ROLE_LABELS[role].lower()} in the online segment.", "success")
    return redirect(url_for("meetings.my_delegation", meeting=focal.meeting.code))


@bp.post("/delegation/members/<int:registration_id>/invitation")
@login_required
def resend_invitation(registration_id: int):
    db = get_db()
    focal, registration = _member_of(_focal_registration, registration_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        delegations.check_can_invite(focal, registration)
        _invite(db, registration, focal)
        services.audit(db, current_user, "delegation.invitation_sent", registration, now())
    except services.MeetingError as exc:
        db.rollback()
        flash(exc.message, "warning")
    else:
        db.commit()
        mail.deliver_now()
        flash(f"We sent {registration.user.email} a new link to choose a password.", "success")
    return redirect(url_for("meetings.my_delegation", meeting=focal.meeting.code))


@bp.post("/delegation/note-verbale")
@login_required
def upload_note_verbale():
    db = get_db()
    focal = _focal_registration()
    form = NoteVerbaleForm()
    if not form.validate_on_submit():
        return _render_my_delegation(focal, letter_form=form, status=400)
    folder = letters.folder_of(current_app.config, current_app.instance_path)
    try:
        letter = letters.read_letter(form.letter.data, current_app.config["LETTER_MAX_BYTES"], "the note verbale")
        if letter is None:
            raise services.MeetingError("letter_empty", "Choose the PDF of the note verbale.")
        # The file is deleted again if anything below fails, the commit included.
        with letters.kept_if_committed(folder, letter) as stored_name:
            result = delegations.upload_note_verbale(db, focal, letter=letter, stored_name=stored_name, now=now())
            db.commit()
    except services.MeetingError as exc:
        db.rollback()
        form.letter.errors.append(exc.message)
        return _render_my_delegation(focal, letter_form=form, status=400)
    letters.discard(folder, result.replaced_file)
    flash(
        f"The note verbale “{result.document.original_name}” is uploaded and linked to the delegation's members.",
        "success",
    )
    return redirect(url_for("meetings.my_delegation", meeting=focal.meeting.code))
