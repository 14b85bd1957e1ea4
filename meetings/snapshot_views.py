"""Officers record the quorum at a named moment from the dashboard, and export the records as CSV."""

from __future__ import annotations

import re

from flask import Response, current_app, flash, g, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from auth.login import officer_required
from db import get_db, now
from meetings import services, snapshots, views
from meetings.events import session_changed
from meetings.exports import csv_lines
from meetings.forms import plain_text
from meetings.models import MeetingSession
from meetings.views import bp, session_or_404


class SnapshotForm(FlaskForm):
    """The name of the moment to record; the service takes the counts."""

    label = StringField(
        "Label for the record",
        validators=[
            DataRequired("Name the moment, e.g. “Adoption of decision MC-4/1”."),
            Length(max=snapshots.LABEL_MAX),
            plain_text,
        ],
    )


@bp.app_context_processor
def snapshot_helpers() -> dict:
    """The dashboard's snapshot list and form, without changing the dashboard view."""

    def session_snapshots(meeting_session: MeetingSession) -> list[snapshots.Entry]:
        return snapshots.entries(get_db(), meeting_session)

    def snapshot_form() -> SnapshotForm:
        # A refused submission renders the dashboard again with its own form, errors and all.
        return g.get("snapshot_form") or SnapshotForm(formdata=None)

    return {"session_snapshots": session_snapshots, "snapshot_form": snapshot_form}


def _reached(reached: bool) -> str:
    return "reached" if reached else "not reached"


@bp.post("/sessions/<int:session_id>/snapshots")
@officer_required
def record_snapshot(session_id: int):
    db = get_db()
    meeting_session = session_or_404(session_id)
    form = SnapshotForm()
    if form.validate_on_submit():
        try:
            snapshot = snapshots.record(
                db,
                meeting_session,
                form.label.data,
                current_user,
                now(),
                lapsed_before=current_app.extensions["live"].lapse_cutoff(),
            )
        except services.MeetingError as exc:
            db.rollback()
            (form.label.errors if exc.code.startswith("label_") else form.form_errors).append(exc.message)
        else:
            db.commit()
            session_changed(meeting_session)
            q = snapshots.quorum_of(snapshot)
            flash(
                f"Recorded “{snapshot.label}”: {q.present} of {q.in_force} Parties present; "
                f"{q.needed_to_open} needed to open ({_reached(q.can_open)}), "
                f"{q.needed_to_decide} needed to decide ({_reached(q.can_decide)}); "
                f"{snapshot.credentials_accepted} with accepted credentials.",
                "success",
            )
            return redirect(url_for("meetings.dashboard", session_id=session_id, _anchor="snapshots"))
    g.snapshot_form = form
    return views.dashboard(session_id), 400


@bp.get("/sessions/<int:session_id>/snapshots.csv")
@officer_required
def snapshots_csv(session_id: int):
    meeting_session = session_or_404(session_id)
    rows = list(snapshots.snapshot_rows(get_db(), meeting_session))
    name = re.sub(
        r"[^A-Za-z0-9]+",
        "-",
        f"{meeting_session.segment.meeting.code} {meeting_session.title}",
    ).strip("-")
    return Response(
        csv_lines(snapshots.SNAPSHOT_COLUMNS, rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-quorum-records.csv"'},
    )
