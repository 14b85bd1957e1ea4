"""The gate kiosk page: a tablet at a door of an in-person session reads badges and records entries or exits."""

from __future__ import annotations

from flask import render_template

from auth.login import officer_required
from db import now
from meetings.kiosk import MAX_AGE, Gate
from meetings.models import CATEGORY_LABELS
from meetings.views import bp, session_or_404


@bp.get("/sessions/<int:session_id>/kiosk/<any(entry, exit):gate>")
@officer_required
def kiosk(session_id: int, gate: str):
    """The kiosk of one gate; the scans themselves go over the /live socket (kiosk_scan)."""
    meeting_session = session_or_404(session_id)
    return render_template(
        "meetings/kiosk.html",
        meeting_session=meeting_session,
        gate=Gate(gate),
        # The kiosk stamps its scans with the server's clock, which it learns from the page.
        server_time=now().isoformat(),
        max_age_minutes=int(MAX_AGE.total_seconds() // 60),
        category_names={category.value: label for category, label in CATEGORY_LABELS.items()},
    )
