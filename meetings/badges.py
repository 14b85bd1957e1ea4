"""Badges: the signed token printed as the QR code, what a scanned token proves, revoking and reissuing,
and the secretariat's badge list and print runs.

A token names a badge and its version (auth/badges.py signs it with the app's key). It proves
nothing unless the badge exists, is that version, is not revoked, and its registration is approved.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased, contains_eager, selectinload

from auth.badges import BadgeRef, badge_token, read_badge_token
from auth.models import User
from meetings import services
from meetings.badge_pdf import BadgeRow
from meetings.models import (
    CATEGORY_LABELS,
    Badge,
    Meeting,
    Party,
    Registration,
    RegistrationStatus,
    Segment,
)
from meetings.services import CheckInError, MeetingError

MAX_TOKEN_LENGTH = 200
# Badge.revoked_reason holds this much.
MAX_REASON_LENGTH = 200


def token_for(secret_key: str, badge: Badge) -> str:
    """What the badge's QR code holds."""
    return badge_token(secret_key, BadgeRef(badge.id, badge.version))


def current_badge(registration: Registration) -> Badge | None:
    """The badge in force: the newest version, unless it was revoked."""
    newest = max(registration.badges, key=lambda badge: badge.version, default=None)
    return newest if newest is not None and newest.revoked_at is None else None


def badge_for_token(db: Session, secret_key: str, token: object) -> Badge:
    """The badge a scanned token names, refused with a stable code unless it may check in now."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise CheckInError("forged_badge", "This is not a badge of this meeting (the code could not be read).")
    ref = read_badge_token(secret_key, token.strip())
    if ref is None:
        raise CheckInError("forged_badge", "This badge is not genuine: its code was not issued by the secretariat.")
    badge = db.get(Badge, ref.badge_id)
    if badge is None:
        raise CheckInError("forged_badge", "This badge is not genuine: no such badge was issued.")
    if badge.version != ref.version or badge.revoked_at is not None:
        raise CheckInError(
            "revoked_badge", "This badge was revoked or replaced by a newer one. Send the person to the secretariat."
        )
    newer = any(other.version > badge.version for other in badge.registration.badges)
    if newer:
        raise CheckInError(
            "revoked_badge", "This badge was replaced by a newer one. Send the person to the secretariat."
        )
    if badge.registration.status != RegistrationStatus.APPROVED:
        raise CheckInError(
            "not_approved", f"This person's registration is {badge.registration.status.value}, not approved."
        )
    return badge


# Status ------------------------------------------------------------------------------------

# What a badge is now, as the list filters and shows it.
STATUS_LABELS = {
    "valid": "Valid",
    "revoked": "Revoked",
    "replaced": "Replaced",
    "void": "Registration not approved",
}


def status_of(badge: Badge) -> str:
    """valid, revoked, replaced (a newer version exists) or void (the registration is no longer approved)."""
    if badge.revoked_at is not None:
        return "revoked"
    if any(other.version > badge.version for other in badge.registration.badges):
        return "replaced"
    if badge.registration.status != RegistrationStatus.APPROVED:
        return "void"
    return "valid"


# Revoking and reissuing --------------------------------------------------------------------


def _reason(reason: str | None, what: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise MeetingError("reason_required", f"Give the reason for {what}; it is kept in the audit log.")
    if len(reason) > MAX_REASON_LENGTH:
        raise MeetingError("reason_too_long", f"Keep the reason to {MAX_REASON_LENGTH} characters.")
    return reason


def revoke(db: Session, badge: Badge, actor: User, reason: str, now: dt.datetime) -> None:
    """Revoke a badge: from now on its QR code is refused at the gate."""
    reason = _reason(reason, "revoking the badge")
    # Lock the row (PostgreSQL) and read it afresh, so two people revoking at once audit it once.
    db.refresh(badge, with_for_update=True)
    if badge.revoked_at is not None:
        raise MeetingError(
            "already_revoked",
            f"Badge {badge.number} was already revoked ({badge.revoked_reason}). Reissue it to give a new one.",
        )
    newest = _newest_version(db, badge.registration)
    if newest > badge.version:
        raise MeetingError(
            "badge_replaced",
            f"Badge {badge.number} was already replaced by a newer one and no longer works; revoke the newer one.",
        )
    badge.revoked_at = now
    badge.revoked_by_id = actor.id
    badge.revoked_reason = reason
    db.flush()
    services.audit(
        db, actor, "badge.revoked", badge, now, number=badge.number, registration=badge.registration_id, reason=reason
    )
    db.flush()


def reissue(db: Session, registration: Registration, actor: User, reason: str, now: dt.datetime) -> Badge:
    """Issue a new version of the registration's badge; the previous one stops working at once."""
    reason = _reason(reason, "reissuing the badge")
    # Lock the registration so two reissues at once cannot both take the same version (PostgreSQL; SQLite
    # serialises writers), and so the status read is the one committed.
    db.refresh(registration, with_for_update=True)
    if registration.status != RegistrationStatus.APPROVED:
        raise MeetingError(
            "not_approved",
            f"The registration of {registration.user.full_name} is {registration.status.value}: "
            "only approved registrations have badges.",
        )
    previous = db.scalar(
        sa.select(Badge).where(Badge.registration_id == registration.id).order_by(Badge.version.desc()).limit(1)
    )
    version = previous.version + 1 if previous is not None else 1
    badge = Badge(
        registration=registration,
        number=services.badge_number(registration, version),
        version=version,
        issued_at=now,
    )
    db.add(badge)
    db.flush()
    services.audit(
        db,
        actor,
        "badge.reissued",
        badge,
        now,
        number=badge.number,
        registration=registration.id,
        replaces=previous.number if previous is not None else None,
        reason=reason,
    )
    db.flush()
    return badge


def _newest_version(db: Session, registration: Registration) -> int:
    return db.scalar(sa.select(sa.func.max(Badge.version)).where(Badge.registration_id == registration.id)) or 0


# Printing ----------------------------------------------------------------------------------


def badge_row(secret_key: str, badge: Badge) -> BadgeRow:
    """What the badge's printed page shows, as plain values."""
    registration = badge.registration
    user = registration.user
    meeting = registration.meeting
    return BadgeRow(
        meeting_code=meeting.code,
        meeting_title=meeting.title,
        title=user.title or "",
        given_name=user.given_name,
        family_name=user.family_name,
        delegation=registration.represents,
        category=registration.category.value,
        category_label=CATEGORY_LABELS[registration.category],
        number=badge.number,
        token=token_for(secret_key, badge),
    )


def _newer_exists() -> sa.ColumnElement[bool]:
    newer = aliased(Badge)
    return sa.exists().where(newer.registration_id == Badge.registration_id, newer.version > Badge.version)


def _valid() -> sa.ColumnElement[bool]:
    return sa.and_(Badge.revoked_at.is_(None), ~_newer_exists(), Registration.status == RegistrationStatus.APPROVED)


def _delegation_order() -> list[sa.ColumnElement]:
    delegation = sa.func.lower(sa.func.coalesce(Party.name, Registration.organization, ""))
    return [delegation, sa.func.lower(User.family_name), sa.func.lower(User.given_name), Badge.version.desc()]


def _joined(statement: sa.Select) -> sa.Select:
    return statement.join(Badge.registration).join(Registration.user).outerjoin(Registration.party)


def _sort_key(text: str) -> str:
    """Accents ignored and case folded, so "Élodie" sorts with the E's (databases' lower() may only fold ASCII)."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def printable_badges(db: Session, meeting: Meeting, segment: Segment) -> list[Badge]:
    """The valid badges of approved registrations that include the segment, by delegation, then name."""
    found = db.scalars(
        _joined(sa.select(Badge))
        .where(
            Registration.meeting_id == meeting.id,
            Registration.segments.any(Segment.id == segment.id),
            _valid(),
        )
        .options(
            contains_eager(Badge.registration).contains_eager(Registration.user),
            contains_eager(Badge.registration).contains_eager(Registration.party),
        )
    )
    return sorted(
        found,
        key=lambda badge: (
            _sort_key(badge.registration.represents),
            _sort_key(badge.registration.user.family_name),
            _sort_key(badge.registration.user.given_name),
            badge.id,
        ),
    )


# A print run longer than this comes in parts, each drawn in a request of a few seconds.
PRINT_PART_SIZE = 500


def print_parts(count: int, size: int | None = None) -> list[tuple[int, int]]:
    """The parts of a print run of count badges, as (first, last) positions counted from 1."""
    size = size or PRINT_PART_SIZE
    return [(first, min(first + size - 1, count)) for first in range(1, count + 1, size)]


def printable_counts(db: Session, meeting: Meeting) -> dict[int, int]:
    """How many badges a print run of each segment would print, by segment id."""
    rows = db.execute(
        _joined(sa.select(Segment.id, sa.func.count(Badge.id)))
        .join(Registration.segments)
        .where(Registration.meeting_id == meeting.id, _valid())
        .group_by(Segment.id)
    )
    return {segment_id: count for segment_id, count in rows}


# The secretariat's list --------------------------------------------------------------------

STATUS_FILTERS = {"all": "All", **STATUS_LABELS}
PAGE_SIZE = 50


def _status_condition(status: str) -> sa.ColumnElement[bool] | None:
    not_revoked = Badge.revoked_at.is_(None)
    return {
        "valid": _valid(),
        "revoked": Badge.revoked_at.is_not(None),
        "replaced": sa.and_(not_revoked, _newer_exists()),
        "void": sa.and_(not_revoked, ~_newer_exists(), Registration.status != RegistrationStatus.APPROVED),
    }.get(status)


@dataclass(frozen=True, slots=True)
class BadgeQuery:
    """The list's filters and page, read from the query string; unknown values fall back to the defaults."""

    status: str = "all"
    segment: int | None = None
    q: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> BadgeQuery:
        status = args.get("status", "all")
        segment = args.get("segment", "")
        page = args.get("page", "1")
        return cls(
            status=status if status in STATUS_FILTERS else "all",
            segment=int(segment) if segment.isdigit() else None,
            q=" ".join(args.get("q", "").split())[:100],
            page=max(1, int(page)) if page.isdigit() else 1,
        )

    def args(self, **changes) -> dict[str, str | int]:
        """The query string of this list, with changes."""
        values = {"status": self.status, "segment": self.segment, "q": self.q, "page": self.page} | changes
        defaults = {"status": "all", "segment": None, "q": "", "page": 1}
        return {key: value for key, value in values.items() if value != defaults[key]}


@dataclass(frozen=True, slots=True)
class BadgePage:
    rows: list[Badge]
    total: int
    page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def _conditions(meeting: Meeting, query: BadgeQuery, *, status: bool = True) -> list[sa.ColumnElement[bool]]:
    conditions = [Registration.meeting_id == meeting.id]
    if query.segment is not None:
        conditions.append(Registration.segments.any(Segment.id == query.segment))
    for word in query.q.lower().split()[:6]:
        conditions.append(
            sa.or_(
                *(
                    sa.func.lower(column).contains(word, autoescape=True)
                    for column in (User.given_name, User.family_name, User.email, Badge.number, Party.name)
                ),
                sa.func.lower(sa.func.coalesce(Registration.organization, "")).contains(word, autoescape=True),
            )
        )
    condition = _status_condition(query.status) if status else None
    if condition is not None:
        conditions.append(condition)
    return conditions


def list_badges(db: Session, meeting: Meeting, query: BadgeQuery) -> BadgePage:
    """One page of the meeting's badges (every version), by delegation, then name, newest version first."""
    conditions = _conditions(meeting, query)
    total = db.scalar(_joined(sa.select(sa.func.count(Badge.id))).where(*conditions))
    page = min(query.page, max(1, -(-total // PAGE_SIZE)))
    rows = list(
        db.scalars(
            _joined(sa.select(Badge))
            .where(*conditions)
            .options(
                contains_eager(Badge.registration).contains_eager(Registration.user),
                contains_eager(Badge.registration).contains_eager(Registration.party),
                contains_eager(Badge.registration).selectinload(Registration.badges),
                contains_eager(Badge.registration).selectinload(Registration.segments),
            )
            .order_by(*_delegation_order(), Badge.id)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
    )
    return BadgePage(rows, total, page)


def status_counts(db: Session, meeting: Meeting, query: BadgeQuery) -> dict[str, int]:
    """How many badges each status tab holds under the other filters."""
    conditions = _conditions(meeting, query, status=False)
    counts = {"all": db.scalar(_joined(sa.select(sa.func.count(Badge.id))).where(*conditions))}
    for status in STATUS_LABELS:
        counts[status] = db.scalar(
            _joined(sa.select(sa.func.count(Badge.id))).where(*conditions, _status_condition(status))
        )
    return counts


def revoked_by(db: Session, badges: list[Badge]) -> dict[int, User]:
    """Who revoked each revoked badge, by user id."""
    ids = {badge.revoked_by_id for badge in badges if badge.revoked_by_id is not None}
    if not ids:
        return {}
    return {user.id: user for user in db.scalars(sa.select(User).where(User.id.in_(ids)))}


def load_for_print(db: Session, badge_id: int) -> Badge | None:
    """A badge with what its page needs."""
    return db.scalar(
        sa.select(Badge)
        .where(Badge.id == badge_id)
        .options(
            selectinload(Badge.registration).selectinload(Registration.badges),
            selectinload(Badge.registration).selectinload(Registration.user),
            selectinload(Badge.registration).selectinload(Registration.party),
        )
    )
