"""Officers check participants in or out by hand, with a reason kept in the log and the audit trail.

An officer at the room's door or on the meeting's platform finds the person by badge number or
email, then records the entry or exit through the same service as browsers and kiosks
(services.record_attendance, source "officer"); the audit entry is written in the same
transaction. The officers' list of who is present now is paged and searched in SQL: a plenary
can have two thousand people inside.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, selectinload

from auth.models import User
from auth.services import normalize_email
from meetings import badges, services
from meetings.models import (
    Badge,
    Channel,
    EventKind,
    MeetingSession,
    Party,
    Presence,
    Registration,
    Source,
)
from meetings.services import CheckInError, CheckInResult, MeetingError

REASON_MIN = 3
# AttendanceEvent.reason holds this much.
REASON_MAX = 200
WHO_MAX = 254
PER_PAGE = 50
MAX_SEARCH_WORDS = 6

CHANNEL_LABELS = {Channel.ONLINE: "online", Channel.IN_PERSON: "in the room"}


def new_nonce() -> str:
    """The identifier of one rendered form: the same form sent twice records once."""
    return secrets.token_hex(16)


def channels_of(meeting_session: MeetingSession) -> list[Channel]:
    """The channels the session's segment takes check-ins through."""
    segment = meeting_session.segment
    return [
        channel
        for channel, allowed in ((Channel.ONLINE, segment.online_check_in), (Channel.IN_PERSON, segment.gate_check_in))
        if allowed
    ]


# Finding the person ------------------------------------------------------------------------


def find_registration(db: Session, meeting_session: MeetingSession, who: str) -> Registration:
    """The registration, for the session's meeting, of the person a badge number or an email names."""
    meeting = meeting_session.segment.meeting
    who = " ".join((who or "").split())
    if not who:
        raise MeetingError("who_required", "Type the person's badge number or email address.")
    if len(who) > WHO_MAX:
        raise MeetingError("not_found", "No participant has a badge number or email address that long.")
    if "@" in who:
        registration = db.scalar(
            sa.select(Registration)
            .join(Registration.user)
            .where(Registration.meeting_id == meeting.id, User.email == normalize_email(who))
        )
        if registration is None:
            raise MeetingError(
                "not_found",
                f"No one with the email address {who} is registered for {meeting.code}. "
                "Check the spelling, or try the badge number.",
            )
        return registration
    number = who.replace(" ", "").upper()
    badge = db.scalar(
        sa.select(Badge)
        .join(Badge.registration)
        .where(Registration.meeting_id == meeting.id, Badge.number == number)
        .options(selectinload(Badge.registration).selectinload(Registration.badges))
    )
    if badge is None:
        raise MeetingError(
            "not_found",
            f"No badge {number} was issued for {meeting.code}. Check the number as printed on the badge "
            f"(e.g. {re.sub(r'[^A-Z0-9]', '', meeting.code.upper())}-00012), or try the email address.",
        )
    status = badges.status_of(badge)
    if status in ("revoked", "replaced"):
        raise MeetingError(
            "badge_not_valid",
            f"Badge {badge.number} was {status} and no longer identifies anyone. "
            "Check the person's identity and find them by email address.",
        )
    return badge.registration


# Checking in and out -----------------------------------------------------------------------


def clean_reason(reason: str | None) -> str:
    """The reason on one line, refused if missing or too long for the log."""
    reason = " ".join((reason or "").split())
    if len(reason) < REASON_MIN:
        raise MeetingError("reason_required", "Give the reason (at least 3 characters); it is kept in the audit log.")
    if len(reason) > REASON_MAX:
        raise MeetingError("reason_too_long", f"Keep the reason to {REASON_MAX} characters.")
    return reason


def _for_officer(exc: CheckInError, meeting_session: MeetingSession, registration: Registration) -> CheckInError:
    """A refusal worded for the officer who acts, not for the delegate who would check in themselves."""
    name = registration.user.full_name
    messages = {
        "not_registered": f"{name} is not registered for this meeting.",
        "not_approved": f"The registration of {name} is {registration.status.value}, not approved: "
        "only approved participants can be checked in.",
        "not_registered_for_segment": f"{name} is not registered for the {meeting_session.segment.name}.",
        "wrong_channel": "This session does not take check-ins through that channel.",
        "nonce_reused": "This form was already used to record something else, so nothing was recorded. "
        "Fill in the form again.",
        "bad_nonce": "The form was incomplete, so nothing was recorded. Fill in the form again.",
    }
    return CheckInError(exc.code, messages.get(exc.code, exc.message))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a manual check-in or check-out did, for the officer's message."""

    name: str
    delegation: str
    kind: EventKind
    channel: Channel
    result: CheckInResult

    @property
    def already(self) -> bool:
        """This form was already sent and recorded (the result is the earlier event)."""
        return not self.result.recorded and self.result.event_id is not None

    @property
    def nothing_to_do(self) -> bool:
        """Already inside (entry) or not inside (exit) through that channel: nothing was recorded."""
        return not self.result.recorded and self.result.event_id is None


def record(
    db: Session,
    meeting_session: MeetingSession,
    registration: Registration,
    *,
    kind: EventKind,
    channel: Channel,
    reason: str,
    officer: User,
    nonce: str,
    now: dt.datetime,
    lapsed_before: dt.datetime | None = None,
) -> Outcome:
    """Check the registration's holder in or out by hand, and audit it; flushed, never committed.

    lapsed_before: online presences last seen before then have lapsed (meetings.live): the officer
    acts on the presence as the log will tell it, not on one whose pages went quiet long ago.
    """
    reason = clean_reason(reason)
    user = registration.user
    try:
        result = services.record_attendance(
            db,
            meeting_session,
            user,
            kind=kind,
            channel=channel,
            source=Source.OFFICER,
            nonce=nonce,
            now=now,
            recorded_by=officer,
            reason=reason,
            lapsed_before=lapsed_before,
        )
    except CheckInError as exc:
        raise _for_officer(exc, meeting_session, registration) from None
    if result.recorded:
        services.audit(
            db,
            officer,
            f"attendance.manual_{kind.value}",
            meeting_session,
            now,
            user=user.id,
            participant=user.full_name,
            channel=channel.value,
            reason=reason,
        )
        db.flush()
    return Outcome(user.full_name, registration.represents, kind, channel, result)


# Who is present ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresentRow:
    """A participant present now: their registration, and since when through each channel."""

    registration: Registration
    since: dict[str, dt.datetime]

    @property
    def channels(self) -> list[str]:
        return [channel.value for channel in Channel if channel.value in self.since]


@dataclass(frozen=True, slots=True)
class PresentPage:
    rows: list[PresentRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def _present_registrations(meeting_session: MeetingSession, q: str) -> sa.Select:
    """Registrations of the participants present, searched; joins User and outer-joins Party."""
    inside = sa.select(Presence.user_id).where(Presence.session_id == meeting_session.id).distinct()
    conditions = [
        Registration.meeting_id == meeting_session.segment.meeting_id,
        Registration.user_id.in_(inside),
    ]
    for word in q.split()[:MAX_SEARCH_WORDS]:
        # Every word must match somewhere, so "souza ana" finds Ana Souza.
        conditions.append(
            sa.or_(
                *(
                    column.icontains(word, autoescape=True)
                    for column in (User.given_name, User.family_name, User.email, Registration.organization, Party.name)
                ),
                Registration.id.in_(
                    sa.select(Badge.registration_id).where(Badge.number.icontains(word, autoescape=True))
                ),
            )
        )
    return sa.select(Registration).join(Registration.user).outerjoin(Registration.party).where(*conditions)


def present_page(
    db: Session, meeting_session: MeetingSession, *, q: str = "", page: int = 1, per_page: int = PER_PAGE
) -> PresentPage:
    """One page of the participants present now, by name: four queries whatever the number present."""
    query = _present_registrations(meeting_session, q)
    total = db.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    page = min(max(1, page), max(1, -(-total // per_page)))
    registrations = list(
        db.scalars(
            query.order_by(sa.func.lower(User.family_name), sa.func.lower(User.given_name), Registration.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
            .options(
                contains_eager(Registration.user),
                contains_eager(Registration.party),
                selectinload(Registration.badges),
            )
        )
    )
    since: dict[int, dict[str, dt.datetime]] = {}
    if registrations:
        for user_id, channel, at in db.execute(
            sa.select(Presence.user_id, Presence.channel, Presence.since).where(
                Presence.session_id == meeting_session.id,
                Presence.user_id.in_([registration.user_id for registration in registrations]),
            )
        ):
            since.setdefault(user_id, {})[channel.value] = at
    rows = [
        PresentRow(registration, since[registration.user_id])
        for registration in registrations
        # Someone who left between the two queries is not listed.
        if registration.user_id in since
    ]
    return PresentPage(rows, total, page, per_page)
