"""Delegation use cases: focal points, members pre-registered by them, the note verbale, credentials.

Services take the database session and `now`, flush but never commit, and refuse with a MeetingError
whose message a focal point or the secretariat understands.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from auth.models import AuditEntry, Gender, User
from auth.services import find_user, normalize_email
from meetings.letters import Letter, new_document
from meetings.models import (
    Category,
    Credentials,
    CredentialsStatus,
    Document,
    DocumentKind,
    Function,
    Meeting,
    OnlineRole,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
)
from meetings.services import MeetingError, audit

CREDENTIALS_LABELS = {
    CredentialsStatus.NONE: "None received",
    CredentialsStatus.COPY: "Copy received",
    CredentialsStatus.ORIGINAL: "Original received",
    CredentialsStatus.ACCEPTED: "Accepted by the Bureau",
}

ONLINE_ROLE_LABELS = {
    OnlineRole.SPEAKER: "Designated speaker",
    OnlineRole.VIEWER: "Viewer",
}

# Registrations that still count in a delegation: a withdrawn or rejected speaker frees the seat.
ACTIVE = (RegistrationStatus.PENDING, RegistrationStatus.APPROVED)


# Reading delegations -----------------------------------------------------------------------


@dataclass(slots=True)
class DelegationSummary:
    """One line of the secretariat's overview: a Party's registrations, head, focal point and credentials."""

    party: Party
    counts: Counter = field(default_factory=Counter)
    head: Registration | None = None
    focal_point: Registration | None = None
    credentials: CredentialsStatus = CredentialsStatus.NONE

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def members(db: Session, meeting: Meeting, party: Party) -> list[Registration]:
    """The registrations of a Party's delegation to a meeting: heads first, then by family name."""
    rows = db.scalars(
        sa.select(Registration)
        .join(Registration.user)
        .where(
            Registration.meeting_id == meeting.id,
            Registration.party_id == party.id,
            Registration.category == Category.PARTY,
        )
        .options(
            selectinload(Registration.user),
            selectinload(Registration.segments),
            selectinload(Registration.submitted_by),
            selectinload(Registration.letter),
        )
        .order_by(User.family_name, User.given_name, Registration.id)
    )
    order = {Function.HEAD: 0, Function.ALTERNATE: 1, Function.ADVISER: 2}
    return sorted(rows, key=lambda r: order[r.function])


def head_of(registrations: list[Registration]) -> Registration | None:
    """The head of delegation: an approved one if there is one, else a pending one."""
    heads = [r for r in registrations if r.function == Function.HEAD and r.status in ACTIVE]
    heads.sort(key=lambda r: (r.status != RegistrationStatus.APPROVED, r.submitted_at, r.id))
    return heads[0] if heads else None


def focal_point_in(registrations: list[Registration]) -> Registration | None:
    return next((r for r in registrations if r.focal_point and r.status == RegistrationStatus.APPROVED), None)


def speaker_in(registrations: list[Registration], exclude: Registration | None = None) -> Registration | None:
    return next(
        (r for r in registrations if r.online_role == OnlineRole.SPEAKER and r.status in ACTIVE and r is not exclude),
        None,
    )


def overview(
    db: Session,
    meeting: Meeting,
    *,
    regional_group: RegionalGroup | None = None,
    without_group: bool = False,
    credentials: CredentialsStatus | None = None,
) -> list[DelegationSummary]:
    """Each Party with delegates registered for the meeting, by name, optionally filtered."""
    rows = db.scalars(
        sa.select(Registration)
        .where(
            Registration.meeting_id == meeting.id,
            Registration.category == Category.PARTY,
            Registration.party_id.is_not(None),
        )
        .options(selectinload(Registration.user), selectinload(Registration.party))
    )
    by_party: dict[int, list[Registration]] = {}
    for registration in rows:
        by_party.setdefault(registration.party_id, []).append(registration)
    statuses = dict(
        db.execute(
            sa.select(Credentials.party_id, Credentials.status).where(Credentials.meeting_id == meeting.id)
        ).all()
    )
    summaries = []
    for registrations in by_party.values():
        party = registrations[0].party
        if (regional_group is not None and party.regional_group != regional_group) or (
            without_group and party.regional_group is not None
        ):
            continue
        status = statuses.get(party.id, CredentialsStatus.NONE)
        if credentials is not None and status != credentials:
            continue
        summaries.append(
            DelegationSummary(
                party=party,
                counts=Counter(r.status for r in registrations),
                head=head_of(registrations),
                focal_point=focal_point_in(registrations),
                credentials=status,
            )
        )
    return sorted(summaries, key=lambda s: s.party.name)


def focal_point_registrations(db: Session, user_id: int) -> list[Registration]:
    """The approved registrations through which a user is a focal point, newest meeting first."""
    return list(
        db.scalars(
            sa.select(Registration)
            .where(
                Registration.user_id == user_id,
                Registration.focal_point.is_(True),
                Registration.status == RegistrationStatus.APPROVED,
                Registration.party_id.is_not(None),
            )
            .options(selectinload(Registration.meeting), selectinload(Registration.party))
            .order_by(Registration.meeting_id.desc())
        )
    )


def note_verbale(db: Session, meeting: Meeting, party: Party) -> Document | None:
    """The delegation's note verbale for the meeting, if one was uploaded."""
    return db.scalar(
        sa.select(Document)
        .where(
            Document.meeting_id == meeting.id,
            Document.party_id == party.id,
            Document.kind == DocumentKind.NOTE_VERBALE,
        )
        .order_by(Document.id.desc())
        .limit(1)
    )


def may_download(db: Session, user: User, document: Document) -> bool:
    """A note verbale is for the secretariat and for the focal point of its Party at that meeting."""
    if document.kind != DocumentKind.NOTE_VERBALE or document.party_id is None:
        return False
    if user.is_secretariat:
        return True
    return any(
        r.meeting_id == document.meeting_id and r.party_id == document.party_id
        for r in focal_point_registrations(db, user.id)
    )


# Focal points ------------------------------------------------------------------------------


def designate_focal_point(db: Session, registration: Registration, actor: User, now: dt.datetime) -> None:
    """Make an approved Party delegate the focal point of their delegation, replacing any other."""
    if registration.category != Category.PARTY or registration.party is None:
        raise MeetingError("not_a_party_delegate", "Only a delegate of a Party can be its national focal point.")
    if registration.status != RegistrationStatus.APPROVED:
        raise MeetingError(
            "not_approved",
            f"{registration.user.full_name}'s registration is {registration.status.value}; "
            "approve it before designating them as focal point.",
        )
    if registration.focal_point:
        raise MeetingError(
            "already_focal_point",
            f"{registration.user.full_name} is already the focal point of {registration.party.name}.",
        )
    previous = [
        r for r in members(db, registration.meeting, registration.party) if r.focal_point and r is not registration
    ]
    for other in previous:
        other.focal_point = False
        other.updated_at = now
        audit(db, actor, "focal_point.removed", other, now, party=registration.party.code, replaced_by=registration.id)
    registration.focal_point = True
    registration.updated_at = now
    audit(
        db,
        actor,
        "focal_point.designated",
        registration,
        now,
        party=registration.party.code,
        replaces=[other.id for other in previous],
    )
    db.flush()


def remove_focal_point(db: Session, registration: Registration, actor: User, now: dt.datetime) -> None:
    """Withdraw a focal point's designation; their registration itself is unchanged."""
    if not registration.focal_point:
        raise MeetingError("not_focal_point", f"{registration.user.full_name} is not a focal point.")
    registration.focal_point = False
    registration.updated_at = now
    audit(
        db,
        actor,
        "focal_point.removed",
        registration,
        now,
        party=registration.party.code if registration.party else None,
    )
    db.flush()


def _check_focal_point(focal: Registration) -> None:
    if not focal.focal_point or focal.status != RegistrationStatus.APPROVED or focal.party is None:
        raise MeetingError(
            "not_focal_point", "Only the national focal point of a Party, once approved, registers its delegation."
        )


def _check_own_member(focal: Registration, registration: Registration) -> None:
    if (
        registration.meeting_id != focal.meeting_id
        or registration.party_id != focal.party_id
        or registration.category != Category.PARTY
    ):
        raise MeetingError(
            "other_party",
            f"You manage the delegation of {focal.party.name} only; "
            "another Party's members are managed by its own focal point.",
        )


def _check_speaker(
    db: Session,
    meeting: Meeting,
    party: Party,
    segments: list,
    role: OnlineRole | None,
    exclude: Registration | None = None,
) -> None:
    """COP-4's online segment allowed one designated speaker per delegation."""
    if role != OnlineRole.SPEAKER:
        return
    if not any(segment.online_check_in for segment in segments):
        raise MeetingError(
            "speaker_not_online",
            "A designated speaker must attend the online segment: choose it, or make this member a viewer.",
        )
    current = speaker_in(members(db, meeting, party), exclude=exclude)
    if current is not None:
        raise MeetingError(
            "speaker_taken",
            f"{current.user.full_name} is already the designated speaker of the delegation of {party.name}; "
            "there is only one speaker per delegation in the online segment. "
            "Make them a viewer first, or choose viewer for this member.",
        )


# Members pre-registered by the focal point -------------------------------------------------


def pre_register_member(
    db: Session,
    *,
    focal: Registration,
    party: Party,
    email: str,
    given_name: str,
    family_name: str,
    gender: Gender,
    title: str | None,
    function: Function,
    segment_ids: list[int],
    online_role: OnlineRole | None,
    now: dt.datetime,
) -> Registration:
    """Create a member's account (no password yet) and a pending registration submitted by the focal point."""
    _check_focal_point(focal)
    meeting = focal.meeting
    if party.id != focal.party_id:
        raise MeetingError(
            "other_party",
            f"You register members of the delegation of {focal.party.name} only; "
            f"members for {party.name} are registered by its own focal point.",
        )
    if find_user(db, email) is not None:
        # Say no more than that: whether or where the person is registered is theirs to tell.
        raise MeetingError(
            "email_taken",
            "This email address already has an account, so it cannot be registered from here. "
            "The person should register for the meeting themselves, or ask the secretariat to add them.",
        )
    segments = [segment for segment in meeting.segments if segment.id in set(segment_ids)]
    if not segments or len(segments) != len(set(segment_ids)):
        raise MeetingError("segments_required", "Choose the segments of the meeting the member will attend.")
    if not any(segment.online_check_in for segment in segments) and online_role != OnlineRole.SPEAKER:
        # A role in online sessions means nothing to someone who attends in person only.
        online_role = None
    _check_speaker(db, meeting, party, segments, online_role)
    user = User(
        email=normalize_email(email),
        # No password until the member follows the mailed link; the focal point vouches for the address.
        password_hash=None,
        email_confirmed_at=now,
        title=(title or "").strip() or None,
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        gender=gender,
        created_at=now,
    )
    letter = note_verbale(db, meeting, party)
    registration = Registration(
        meeting=meeting,
        user=user,
        category=Category.PARTY,
        party=party,
        function=function,
        segments=segments,
        status=RegistrationStatus.PENDING,
        submitted_at=now,
        submitted_by=focal.user,
        online_role=online_role,
        letter_id=letter.id if letter else None,
    )
    try:
        with db.begin_nested():
            db.add(user)
            db.add(registration)
            db.flush()
    except IntegrityError:
        # The same address was registered at the same moment by someone else.
        raise MeetingError(
            "email_taken",
            "This email address already has an account, so it cannot be registered from here. "
            "The person should register for the meeting themselves, or ask the secretariat to add them.",
        ) from None
    audit(
        db,
        focal.user,
        "delegation.member_added",
        registration,
        now,
        party=party.code,
        email=user.email,
        online_role=online_role.value if online_role else None,
    )
    db.flush()
    return registration


def change_online_role(
    db: Session, focal: Registration, registration: Registration, role: OnlineRole, now: dt.datetime
) -> None:
    """The focal point makes a member of their delegation the designated speaker or a viewer."""
    _check_focal_point(focal)
    _check_own_member(focal, registration)
    if registration.status not in ACTIVE:
        raise MeetingError(
            "not_active",
            f"{registration.user.full_name}'s registration is {registration.status.value}; "
            "only pending or approved members have a role.",
        )
    if registration.online_role == role:
        raise MeetingError("unchanged", f"{registration.user.full_name} is already {ONLINE_ROLE_LABELS[role].lower()}.")
    if not any(segment.online_check_in for segment in registration.segments):
        raise MeetingError(
            "not_online", f"{registration.user.full_name} does not attend the online segment, so has no role there."
        )
    _check_speaker(db, registration.meeting, registration.party, registration.segments, role, exclude=registration)
    old = registration.online_role
    registration.online_role = role
    registration.updated_at = now
    audit(
        db,
        focal.user,
        "delegation.online_role_changed",
        registration,
        now,
        old=old.value if old else None,
        new=role.value,
    )
    db.flush()


def check_can_invite(focal: Registration, registration: Registration) -> None:
    """A new set-password link goes only to a member of the focal point's delegation who has no password yet."""
    _check_focal_point(focal)
    _check_own_member(focal, registration)
    if registration.user.password_hash is not None:
        raise MeetingError(
            "password_set", f"{registration.user.full_name} has already chosen a password; no new link is needed."
        )
    if registration.status not in ACTIVE:
        raise MeetingError(
            "not_active", f"{registration.user.full_name}'s registration is {registration.status.value}."
        )


# The note verbale --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """What an upload did: the new document, and the file of the one it replaced, to remove after the commit."""

    document: Document
    replaced_file: str | None


def upload_note_verbale(
    db: Session, focal: Registration, *, letter: Letter, stored_name: str, now: dt.datetime
) -> Upload:
    """Record the delegation's note verbale (already stored as stored_name) and link it to its members.

    One per delegation: a new one replaces the last, whose file the caller removes after the commit.
    """
    _check_focal_point(focal)
    meeting, party = focal.meeting, focal.party
    previous = note_verbale(db, meeting, party)
    document = new_document(
        letter,
        stored_name,
        kind=DocumentKind.NOTE_VERBALE,
        meeting_id=meeting.id,
        party_id=party.id,
        uploaded_by_id=focal.user_id,
        now=now,
    )
    db.add(document)
    db.flush()
    linked = 0
    for registration in members(db, meeting, party):
        # A member's own nomination letter stays; the note verbale covers everyone else.
        letter = registration.letter
        if letter is None or letter.kind == DocumentKind.NOTE_VERBALE:
            registration.letter_id = document.id
            linked += 1
    replaced, replaced_file = None, None
    if previous is not None:
        replaced = {"name": previous.original_name, "sha256": previous.sha256}
        replaced_file = previous.stored_name
        # The members now point to the new letter; the old row goes, and its file after the commit.
        db.flush()
        db.delete(previous)
    audit(db, focal.user, "note_verbale.uploaded", document, now, party=party.code, members=linked, replaced=replaced)
    db.flush()
    return Upload(document, replaced_file)


# Credentials -------------------------------------------------------------------------------


def credentials_of(db: Session, meeting: Meeting, party: Party) -> Credentials | None:
    return db.scalar(
        sa.select(Credentials).where(Credentials.meeting_id == meeting.id, Credentials.party_id == party.id)
    )


def set_credentials(
    db: Session, meeting: Meeting, party: Party, status: CredentialsStatus, actor: User, now: dt.datetime
) -> Credentials:
    """Record the state of a delegation's credentials; each change is audited with the old and new state."""
    credentials = credentials_of(db, meeting, party)
    if credentials is None:
        credentials = Credentials(meeting_id=meeting.id, party_id=party.id, status=CredentialsStatus.NONE)
        db.add(credentials)
    old = credentials.status or CredentialsStatus.NONE
    if old == status:
        raise MeetingError(
            "unchanged", f"The credentials of {party.name} are already marked “{CREDENTIALS_LABELS[status]}”."
        )
    credentials.status = status
    credentials.updated_at = now
    credentials.updated_by_id = actor.id
    db.flush()
    audit(db, actor, "credentials.changed", credentials, now, party=party.code, old=old.value, new=status.value)
    db.flush()
    return credentials


@dataclass(frozen=True, slots=True)
class CredentialsChange:
    at: dt.datetime
    by: str
    old: CredentialsStatus
    new: CredentialsStatus


def credentials_history(db: Session, credentials: Credentials | None) -> list[CredentialsChange]:
    """The changes to a delegation's credentials, newest first, from the audit log."""
    if credentials is None:
        return []
    entries = db.scalars(
        sa.select(AuditEntry)
        .where(
            AuditEntry.action == "credentials.changed",
            AuditEntry.target_type == Credentials.__tablename__,
            AuditEntry.target_id == str(credentials.id),
        )
        .options(selectinload(AuditEntry.actor))
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    )
    return [
        CredentialsChange(
            at=entry.at,
            by=entry.actor.full_name if entry.actor else "the system",
            old=CredentialsStatus(entry.detail.get("old", "none")),
            new=CredentialsStatus(entry.detail.get("new", "none")),
        )
        for entry in entries
    ]
