"""Quorum snapshots: the quorum of a session as it stood at a moment an officer names, kept for the record."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth.models import User
from meetings import dashboard, services
from meetings.models import MeetingSession, QuorumSnapshot, SessionState
from meetings.quorum import Quorum

LABEL_MAX = 200
MARKUP = set("<>")

SNAPSHOT_COLUMNS = [
    "taken_at_utc",
    "taken_at_local",
    "label",
    "parties_in_force",
    "parties_present",
    "needed_to_open",
    "needed_to_decide",
    "open_quorum_met",
    "decision_quorum_met",
    "credentials_accepted",
    "present_parties",
    "parties_in_grace",
    "grace_parties",
    "recorded_by",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored snapshot with what follows from it: the thresholds met, and who recorded it."""

    snapshot: QuorumSnapshot
    quorum: Quorum
    recorded_by: str


def clean_label(label: str | None) -> str:
    """The label as stored, or a MeetingError saying what is wrong with it."""
    label = (label or "").strip()
    if not label:
        raise services.MeetingError("label_required", "Name the moment, e.g. “Adoption of decision MC-4/1”.")
    if len(label) > LABEL_MAX:
        raise services.MeetingError("label_too_long", f"Keep the label to {LABEL_MAX} characters.")
    if any(ch in MARKUP or ord(ch) < 32 for ch in label):
        raise services.MeetingError(
            "label_markup", "Use letters, spaces and punctuation only (no < or > and no control characters)."
        )
    return label


def record(
    db: Session,
    meeting_session: MeetingSession,
    label: str,
    actor: User,
    now: dt.datetime,
    *,
    lapsed_before: dt.datetime | None = None,
) -> QuorumSnapshot:
    """Store the session's quorum as it stands now, under label.

    Online presences that lapsed before lapsed_before (now less the grace period) are ended
    first, so that a delegate whose connection dropped two minutes ago is not counted. A Party
    present only through pages gone quiet within the grace period is counted, as the dashboard
    counts it, and listed apart (grace_party_codes): if no page of theirs comes back, the
    statistics end those presences at the last contact and count fewer Parties at this instant.
    """
    label = clean_label(label)
    # Before opening nobody can be checked in: a record would only ever say zero.
    if meeting_session.state == SessionState.SCHEDULED:
        raise services.MeetingError(
            "session_not_opened", "This session has not been opened yet: there is no quorum to record."
        )
    if lapsed_before is not None:
        services.end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id)
    state = dashboard.state(db, meeting_session, now)
    snapshot = QuorumSnapshot(
        session_id=meeting_session.id,
        taken_at=now,
        label=label,
        parties_in_force=state["parties_in_force"],
        parties_present=state["parties_present"],
        needed_to_open=state["needed_to_open"],
        needed_to_decide=state["needed_to_decide"],
        credentials_accepted=state["credentials_accepted"],
        present_party_codes=sorted(state["present"]),
        grace_party_codes=state["in_grace"],
        recorded_by_id=actor.id,
    )
    db.add(snapshot)
    db.flush()
    services.audit(
        db,
        actor,
        "quorum.snapshot",
        meeting_session,
        now,
        snapshot=snapshot.id,
        label=label,
        parties_in_force=snapshot.parties_in_force,
        parties_present=snapshot.parties_present,
        parties_in_grace=len(snapshot.grace_party_codes),
    )
    db.flush()
    return snapshot


def snapshots_of(db: Session, meeting_session: MeetingSession) -> list[QuorumSnapshot]:
    """The session's snapshots, newest first."""
    return list(
        db.scalars(
            sa.select(QuorumSnapshot)
            .where(QuorumSnapshot.session_id == meeting_session.id)
            .order_by(QuorumSnapshot.taken_at.desc(), QuorumSnapshot.id.desc())
        )
    )


def quorum_of(snapshot: QuorumSnapshot) -> Quorum:
    """The stored counts as a Quorum, so thresholds are judged by the same rule as the live dashboard."""
    return Quorum(
        in_force=snapshot.parties_in_force,
        present=snapshot.parties_present,
        needed_to_open=snapshot.needed_to_open,
        needed_to_decide=snapshot.needed_to_decide,
        present_codes=tuple(snapshot.present_party_codes or ()),
    )


def entries(db: Session, meeting_session: MeetingSession) -> list[Entry]:
    """The session's snapshots, newest first, with thresholds and the names of who recorded them."""
    snapshots = snapshots_of(db, meeting_session)
    ids = {s.recorded_by_id for s in snapshots if s.recorded_by_id is not None}
    names = {user.id: user.full_name for user in db.scalars(sa.select(User).where(User.id.in_(ids)))} if ids else {}
    return [Entry(s, quorum_of(s), names.get(s.recorded_by_id, "")) for s in snapshots]


def snapshot_rows(db: Session, meeting_session: MeetingSession) -> Iterator[dict]:
    """One export row per snapshot, newest first, with times in UTC and where the session meets."""
    tz = meeting_session.tz
    for entry in entries(db, meeting_session):
        snapshot, q = entry.snapshot, entry.quorum
        yield {
            "taken_at_utc": snapshot.taken_at.isoformat(timespec="seconds"),
            "taken_at_local": snapshot.taken_at.astimezone(tz).isoformat(timespec="seconds"),
            "label": snapshot.label,
            "parties_in_force": snapshot.parties_in_force,
            "parties_present": snapshot.parties_present,
            "needed_to_open": snapshot.needed_to_open,
            "needed_to_decide": snapshot.needed_to_decide,
            "open_quorum_met": "yes" if q.can_open else "no",
            "decision_quorum_met": "yes" if q.can_decide else "no",
            "credentials_accepted": snapshot.credentials_accepted,
            "present_parties": " ".join(q.present_codes),
            "parties_in_grace": len(snapshot.grace_party_codes or ()),
            "grace_parties": " ".join(snapshot.grace_party_codes or ()),
            "recorded_by": entry.recorded_by,
        }
