"""A participant's own registration: the mailed manage link, corrections and withdrawal while pending, the letter.

Services take the database session and `now`, flush but never commit, and refuse with a MeetingError.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth import tokens
from auth.models import Gender, User
from meetings import services
from meetings.letters import Letter, new_document
from meetings.models import (
    Category,
    Document,
    DocumentKind,
    Function,
    Registration,
    RegistrationStatus,
)
from meetings.services import MeetingError, audit

MANAGE_REGISTRATION = "manage-registration"

NOT_PENDING = {
    RegistrationStatus.APPROVED: "Your registration is already approved: contact the secretariat to change anything.",
    RegistrationStatus.REJECTED: "Your registration was not approved, so it can no longer be changed.",
    RegistrationStatus.WITHDRAWN: "You withdrew this registration, so it can no longer be changed.",
}


# The manage link ------------------------------------------------------------------------------


def _link_state(registration: Registration) -> str:
    """What a manage link is bound to: it stops working once the registration is decided or withdrawn.

    Corrections do not change it, so the link in the participant's inbox keeps working while they fix
    their details; a changed email address (by the secretariat) voids links sent to the old one.
    """
    decided = registration.decided_at.isoformat() if registration.decided_at else ""
    return f"{registration.id}|{registration.status.value}|{decided}|{registration.user.email}"


def manage_token(secret_key: str, registration: Registration) -> str:
    """The token of the link that lets the owner see and, while pending, change their registration."""
    return tokens.make_token(secret_key, MANAGE_REGISTRATION, registration.id, _link_state(registration))


def registration_for_token(db: Session, secret_key: str, token: str, max_age: int) -> Registration | None:
    """The registration a manage link opens; None if forged, expired, issued before a decision, or account disabled."""
    found = tokens.read_token(secret_key, MANAGE_REGISTRATION, token, max_age)
    if found is None:
        return None
    registration = db.get(Registration, found[0])
    if registration is None or not registration.user.is_active:
        return None
    if not hmac.compare_digest(tokens.fingerprint(_link_state(registration)), found[1]):
        return None
    return registration


def registrations_of(db: Session, user: User) -> list[Registration]:
    """Every registration of an account, newest meeting first."""
    return list(
        db.scalars(sa.select(Registration).where(Registration.user_id == user.id).order_by(Registration.id.desc()))
    )


# Corrections and withdrawal -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Details:
    """What a participant may correct while their registration is pending: all but the email and password."""

    title: str | None
    given_name: str
    family_name: str
    gender: Gender
    category: Category
    party_code: str | None
    organization: str | None
    function: Function
    segment_ids: tuple[int, ...]
    nomination_ref: str | None


def _require_pending(registration: Registration) -> None:
    if registration.status != RegistrationStatus.PENDING:
        raise MeetingError("not_pending", NOT_PENDING[registration.status])


def as_recorded(registration: Registration) -> dict[str, object]:
    """The correctable details as plain values, to compare and to write in the audit log."""
    user = registration.user
    return {
        "title": user.title or "",
        "given_name": user.given_name,
        "family_name": user.family_name,
        "gender": user.gender.value,
        "category": registration.category.value,
        "party": registration.party.code if registration.party else "",
        "organization": registration.organization or "",
        "function": registration.function.value,
        "segments": [segment.name for segment in registration.segments],
        "nomination_ref": registration.nomination_ref or "",
    }


def correct(db: Session, registration: Registration, details: Details, actor: User, now: dt.datetime) -> list[str]:
    """Correct a pending registration; returns the names of the fields that changed (audited as old and new)."""
    _require_pending(registration)
    meeting = registration.meeting
    party = None
    organization = (details.organization or "").strip() or None
    if details.category == Category.PARTY:
        party = services.find_party(db, meeting, details.party_code or "")
        if party is None:
            raise MeetingError("unknown_party", "Choose the Party you represent from the list.")
        organization = None
    elif organization is None:
        raise MeetingError("organization_required", "Name the State or organization you represent.")
    wanted = set(details.segment_ids)
    segments = [segment for segment in meeting.segments if segment.id in wanted]
    if not segments or len(segments) != len(wanted):
        raise MeetingError("segments_required", "Choose the segments of the meeting you will attend.")

    before = as_recorded(registration)
    user = registration.user
    user.title = (details.title or "").strip() or None
    user.given_name = details.given_name.strip()
    user.family_name = details.family_name.strip()
    user.gender = details.gender
    registration.category = details.category
    registration.party = party
    registration.organization = organization
    registration.function = details.function
    if [s.id for s in registration.segments] != [s.id for s in segments]:
        registration.segments = segments
    registration.nomination_ref = (details.nomination_ref or "").strip() or None
    after = as_recorded(registration)

    changes = {name: [before[name], after[name]] for name in before if before[name] != after[name]}
    if changes:
        registration.updated_at = now
        audit(db, actor, "registration.corrected", registration, now, **changes)
    db.flush()
    return list(changes)


def withdraw(db: Session, registration: Registration, actor: User, now: dt.datetime) -> None:
    """Withdraw a pending registration: the secretariat no longer has it to decide."""
    _require_pending(registration)
    registration.status = RegistrationStatus.WITHDRAWN
    registration.updated_at = now
    audit(db, actor, "registration.withdrawn", registration, now)
    db.flush()


# The nomination letter ------------------------------------------------------------------------


def _record_letter(
    db: Session, registration: Registration, letter: Letter, stored_name: str, actor: User, now: dt.datetime
) -> Document:
    document = new_document(
        letter,
        stored_name,
        kind=DocumentKind.NOMINATION_LETTER,
        meeting_id=registration.meeting_id,
        uploaded_by_id=actor.id,
        now=now,
    )
    db.add(document)
    db.flush()
    registration.letter = document
    return document


def attach_letter(
    db: Session, registration: Registration, letter: Letter, stored_name: str, actor: User, now: dt.datetime
) -> str | None:
    """Record the uploaded letter of a pending registration; returns the stored name of the letter it replaces.

    The caller has written the file under stored_name and deletes it if the commit fails; the replaced
    letter's row goes in this transaction and its file after the commit.
    """
    _require_pending(registration)
    replaced = registration.letter
    _record_letter(db, registration, letter, stored_name, actor, now)
    registration.updated_at = now
    detail = {"name": letter.original_name, "size": letter.size, "sha256": letter.sha256}
    if replaced is not None:
        detail["replaced_sha256"] = replaced.sha256
        db.delete(replaced)
    audit(db, actor, "registration.letter_uploaded", registration, now, **detail)
    db.flush()
    return replaced.stored_name if replaced is not None else None


def nominate(
    db: Session,
    registration: Registration,
    *,
    reference: str | None,
    letter: Letter | None,
    stored_name: str | None,
    actor: User,
    now: dt.datetime,
) -> None:
    """The nomination given with a new registration: a reference, an uploaded letter, or both."""
    registration.nomination_ref = (reference or "").strip() or None
    if letter is not None and stored_name is not None:
        _record_letter(db, registration, letter, stored_name, actor, now)
    db.flush()
