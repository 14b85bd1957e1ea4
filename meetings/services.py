"""Meeting use cases: registration, decisions, session states, check-in and check-out, quorum.

Services take the database session and `now`, flush but never commit, and refuse with a
MeetingError (or CheckInError) that carries a stable code and a message for people.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from auth.models import AuditEntry, User
from meetings import presence
from meetings.models import (
    AttendanceEvent,
    Badge,
    Category,
    Channel,
    Credentials,
    CredentialsStatus,
    EventKind,
    Meeting,
    MeetingSession,
    Party,
    Presence,
    Registration,
    RegistrationStatus,
    Segment,
    SessionState,
    Source,
    registration_segments,
)
from meetings.quorum import Quorum, in_force_on, quorum


class MeetingError(Exception):
    """A refused meeting action, with a stable code and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CheckInError(MeetingError):
    """A refused check-in or check-out."""


# A nonce from a page, a kiosk or a form. The server's own (an exit at the close, the exit of a
# lapsed presence) contain ":", which this refuses: no one can take one first and so keep a
# presence from ending.
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}\Z")  # \Z: "$" would let a final newline through


def system_nonce(*parts: object) -> str:
    """The nonce of an event the server logs itself, out of reach of NONCE_RE."""
    return ":".join(map(str, parts))


def audit(
    db: Session,
    actor: User | None,
    action: str,
    target: object,
    now: dt.datetime,
    **detail,
) -> None:
    """Append an entry to the audit log."""
    db.add(
        AuditEntry(
            at=now,
            actor_id=actor.id if actor else None,
            action=action,
            target_type=type(target).__tablename__,
            target_id=str(target.id),
            detail=detail,
        )
    )


# Registration ------------------------------------------------------------------------------


def find_party(db: Session, meeting: Meeting, code: str) -> Party | None:
    return db.scalar(sa.select(Party).where(Party.convention == meeting.convention, Party.code == code.upper()))


def register(
    db: Session,
    *,
    meeting: Meeting,
    user: User,
    category: Category,
    function: str,
    segment_ids: list[int],
    party_code: str | None = None,
    organization: str | None = None,
    now: dt.datetime,
) -> Registration:
    """A pending registration of user for meeting."""
    existing = registration_of(db, meeting.id, user.id)
    if existing is not None:
        raise MeetingError("already_registered", f"You are already registered for {meeting.code}.")
    party = None
    if category == Category.PARTY:
        party = find_party(db, meeting, party_code or "")
        if party is None:
            raise MeetingError("unknown_party", "Choose the Party you represent from the list.")
        organization = None
    elif not (organization or "").strip():
        raise MeetingError("organization_required", "Name the State or organization you represent.")
    segments = [segment for segment in meeting.segments if segment.id in set(segment_ids)]
    if not segments or len(segments) != len(set(segment_ids)):
        raise MeetingError("segments_required", "Choose the segments of the meeting you will attend.")
    registration = Registration(
        meeting=meeting,
        user=user,
        category=category,
        party=party,
        organization=(organization or "").strip() or None,
        function=function,
        segments=segments,
        status=RegistrationStatus.PENDING,
        submitted_at=now,
    )
    db.add(registration)
    db.flush()
    return registration


def _decide(db: Session, registration: Registration) -> None:
    # Lock the row (PostgreSQL) and read its status afresh, so that a decision cannot overwrite a
    # withdrawal or another decision made at the same moment.
    db.refresh(registration, with_for_update=True)
    if registration.status != RegistrationStatus.PENDING:
        raise MeetingError(
            "already_decided",
            f"This registration is already {registration.status.value}; only pending ones can be decided.",
        )
    if registration.user.email_confirmed_at is None:
        raise MeetingError(
            "email_unconfirmed", f"{registration.user.email} has not confirmed the address yet; decide once it has."
        )


def approve(db: Session, registration: Registration, actor: User, now: dt.datetime) -> Badge:
    """Approve a pending registration and issue its first badge."""
    _decide(db, registration)
    registration.status = RegistrationStatus.APPROVED
    registration.decided_at = now
    registration.decided_by = actor
    badge = Badge(
        registration=registration,
        number=badge_number(registration, 1),
        version=1,
        issued_at=now,
    )
    db.add(badge)
    if registration.party is not None:
        _ensure_credentials(db, registration.meeting, registration.party, now)
    db.flush()
    audit(db, actor, "registration.approved", registration, now, badge=badge.number)
    db.flush()
    return badge


def reject(db: Session, registration: Registration, actor: User, reason: str, now: dt.datetime) -> None:
    """Reject a pending registration, with the reason the delegate will read."""
    _decide(db, registration)
    reason = reason.strip()
    if not reason:
        raise MeetingError(
            "reason_required",
            "Give the reason for the rejection; the delegate will read it.",
        )
    registration.status = RegistrationStatus.REJECTED
    registration.decided_at = now
    registration.decided_by = actor
    registration.decision_reason = reason
    audit(db, actor, "registration.rejected", registration, now, reason=reason)
    db.flush()


def badge_number(registration: Registration, version: int) -> str:
    """A human-readable badge number, unique without a counter: meeting, registration, version."""
    prefix = re.sub(r"[^A-Z0-9]", "", registration.meeting.code.upper())
    suffix = f"-{version}" if version > 1 else ""
    return f"{prefix}-{registration.id:05d}{suffix}"


def _ensure_credentials(db: Session, meeting: Meeting, party: Party, now: dt.datetime) -> None:
    exists = db.scalar(
        sa.select(Credentials.id).where(Credentials.meeting_id == meeting.id, Credentials.party_id == party.id)
    )
    if exists is None:
        db.add(
            Credentials(
                meeting_id=meeting.id,
                party_id=party.id,
                status=CredentialsStatus.NONE,
                updated_at=now,
            )
        )


def registration_of(db: Session, meeting_id: int, user_id: int) -> Registration | None:
    """The user's registration for the meeting, whatever its status (there is at most one)."""
    return db.scalar(
        sa.select(Registration).where(Registration.meeting_id == meeting_id, Registration.user_id == user_id)
    )


def approved_registration(db: Session, meeting_id: int, user_id: int) -> Registration | None:
    registration = registration_of(db, meeting_id, user_id)
    return registration if registration and registration.status == RegistrationStatus.APPROVED else None


# Session states ----------------------------------------------------------------------------

TRANSITIONS = {
    "open": ({SessionState.SCHEDULED, SessionState.SUSPENDED}, SessionState.OPEN),
    "suspend": ({SessionState.OPEN}, SessionState.SUSPENDED),
    "close": ({SessionState.OPEN, SessionState.SUSPENDED}, SessionState.CLOSED),
}


def change_state(
    db: Session,
    meeting_session: MeetingSession,
    action: str,
    actor: User,
    now: dt.datetime,
    *,
    lapsed_before: dt.datetime | None = None,
) -> None:
    """Open, suspend or close a session; closing ends every presence at the closing time.

    Online presences whose connection was last seen before lapsed_before (now less the grace
    period) end at that last moment instead, as they would have without the close.
    """
    try:
        allowed_from, target = TRANSITIONS[action]
    except KeyError:
        raise MeetingError("unknown_action", "That is not something a session can do.") from None
    if meeting_session.state not in allowed_from:
        raise MeetingError(
            "bad_transition",
            f"A {meeting_session.state.value} session cannot be {target.value.replace('_', ' ')}.",
        )
    meeting_session.state = target
    if target == SessionState.OPEN and meeting_session.opened_at is None:
        meeting_session.opened_at = now
    if target == SessionState.CLOSED:
        meeting_session.closed_at = now
        if lapsed_before is not None:
            end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id)
        for user_id, channel in db.execute(
            sa.select(Presence.user_id, Presence.channel).where(Presence.session_id == meeting_session.id)
        ).all():
            _leave(
                db,
                meeting_session,
                user_id,
                channel,
                Source.SYSTEM,
                now,
                nonce=system_nonce("closed", user_id, channel.value),
            )
    audit(db, actor, f"session.{action}", meeting_session, now)
    db.flush()


# Attendance --------------------------------------------------------------------------------
#
# The attendance log (AttendanceEvent) is append-only and is the record. The presences table is
# who is inside now: each entry opens a presence and each exit ends one, in the same savepoint,
# so a check-in costs a primary-key lookup instead of a fold over the whole session's log.


def actor_column() -> sa.ColumnElement[str]:
    """Who logged an event (meetings.presence.actor), computed by the database: the server's exits by their nonce."""
    return sa.case(
        (AttendanceEvent.source != Source.SYSTEM, sa.type_coerce(AttendanceEvent.source, sa.String)),
        (AttendanceEvent.nonce.startswith(presence.LAPSE_NONCE, autoescape=True), presence.LAPSE),
        else_=presence.CLOSE,
    )


def log_events(db: Session, session_id: int) -> list[presence.Event]:
    """A session's attendance log as the presence rule takes it, in (at, id) order."""
    rows = db.execute(
        sa.select(
            AttendanceEvent.user_id,
            AttendanceEvent.kind,
            AttendanceEvent.channel,
            AttendanceEvent.at,
            actor_column(),
            AttendanceEvent.id,
            AttendanceEvent.party_id,
        )
        .where(AttendanceEvent.session_id == session_id)
        .order_by(AttendanceEvent.at, AttendanceEvent.id)
    )
    return [
        presence.Event(user_id, kind.value, channel.value, at, by, seq, party_id)
        for user_id, kind, channel, at, by, seq, party_id in rows
    ]


def logged_presence(db: Session, meeting_session: MeetingSession) -> dict[int, frozenset[str]]:
    """Who the attendance log says is inside: a full fold, for checks and reports, not for each check-in."""
    return presence.present(log_events(db, meeting_session.id))


def present_users(db: Session, meeting_session: MeetingSession) -> dict[int, frozenset[str]]:
    """Participants present in the session, each with the channels they are present through."""
    channels: dict[int, set[str]] = {}
    for user_id, channel in db.execute(
        sa.select(Presence.user_id, Presence.channel).where(Presence.session_id == meeting_session.id)
    ):
        channels.setdefault(user_id, set()).add(channel.value)
    return {user_id: frozenset(chs) for user_id, chs in channels.items()}


# The statements of the check-in path, built once: building a statement and its cache key costs more
# than running it, and check-ins come by the thousand a second. Run on the session's connection.
_s, _u, _c = sa.bindparam("sid"), sa.bindparam("uid"), sa.bindparam("chan")
_PRESENCE_SINCE = sa.select(Presence.since, Presence.last_seen_at).where(
    Presence.session_id == _s, Presence.user_id == _u, Presence.channel == _c
)
_LAST_EVENT_AT = sa.select(sa.func.max(AttendanceEvent.at)).where(
    AttendanceEvent.session_id == _s, AttendanceEvent.user_id == _u, AttendanceEvent.channel == _c
)
_INSERT_PRESENCE = sa.insert(Presence.__table__)
_INSERT_EVENT = sa.insert(AttendanceEvent.__table__)
_END_PRESENCE = sa.delete(Presence.__table__).where(
    Presence.session_id == _s,
    Presence.user_id == _u,
    Presence.channel == _c,
    Presence.since == sa.bindparam("since_at"),
)
_END_UNSEEN_PRESENCE = _END_PRESENCE.where(Presence.last_seen_at < sa.bindparam("unseen_since"))
_BY_NONCE = sa.select(AttendanceEvent.id, AttendanceEvent.user_id, AttendanceEvent.kind, AttendanceEvent.at).where(
    AttendanceEvent.session_id == _s, AttendanceEvent.nonce == sa.bindparam("nonce")
)
_ENTITLED = sa.select(Registration.id, Registration.category, Registration.party_id).where(
    Registration.meeting_id == sa.bindparam("meeting_id"), Registration.user_id == _u
)
_ENTRY_RIGHTS = sa.select(
    Registration.id,
    Registration.category,
    Registration.party_id,
    Registration.status,
    sa.select(registration_segments.c.registration_id)
    .where(
        registration_segments.c.registration_id == Registration.id,
        registration_segments.c.segment_id == sa.bindparam("segment_id"),
    )
    .exists(),
).where(Registration.meeting_id == sa.bindparam("meeting_id"), Registration.user_id == _u)
_at = sa.bindparam("seen_at", type_=Presence.last_seen_at.type)
_SEEN_ONLINE = (
    sa.update(Presence.__table__)
    .where(Presence.session_id == _s, Presence.user_id == _u, Presence.channel == Channel.ONLINE)
    .values(
        last_seen_at=sa.case((Presence.last_seen_at < _at, _at), else_=Presence.last_seen_at),
        disconnected_at=None,
    )
)
# A page's connection closed and no other page of the delegate is connected to this process.
_DISCONNECTED = (
    sa.update(Presence.__table__)
    .where(
        Presence.session_id == _s,
        Presence.user_id == _u,
        Presence.channel == Channel.ONLINE,
        Presence.last_seen_at.is_not(None),
    )
    .values(disconnected_at=sa.bindparam("disconnected_at", type_=Presence.disconnected_at.type))
)
# A person confirms an online presence that rested on the browser: no lapse ends it now.
_HOLD = (
    sa.update(Presence.__table__)
    .where(Presence.session_id == _s, Presence.user_id == _u, Presence.channel == Channel.ONLINE)
    .values(last_seen_at=None, disconnected_at=None)
)
_LAPSED_OF = sa.select(Presence.session_id, Presence.user_id, Presence.since, Presence.last_seen_at).where(
    Presence.channel == Channel.ONLINE,
    Presence.last_seen_at < sa.bindparam("lapsed_before"),
    Presence.session_id == _s,
    Presence.user_id == _u,
)


class Logged(NamedTuple):
    """An attendance event just written: its id and time."""

    id: int
    at: dt.datetime


class Entitled(NamedTuple):
    """What an attendance event needs of the participant's registration."""

    id: int
    category: Category
    party_id: int | None


def _entitled(db: Session, meeting_id: int, user_id: int) -> Entitled | None:
    row = db.connection().execute(_ENTITLED, {"meeting_id": meeting_id, "uid": user_id}).first()
    return Entitled(*row) if row else None


def _log_event(
    db: Session,
    meeting_session: MeetingSession,
    user_id: int,
    kind: EventKind,
    channel: Channel,
    source: Source,
    at: dt.datetime,
    *,
    nonce: str,
    recorded_by: User | None = None,
    reason: str | None = None,
    registration: Entitled | Registration | None = None,
) -> Logged:
    """Append an event to the attendance log (a Core insert: check-ins come by the thousand)."""
    if registration is None:
        registration = _entitled(db, meeting_session.segment.meeting_id, user_id)
    inserted = db.connection().execute(
        _INSERT_EVENT,
        {
            "session_id": meeting_session.id,
            "user_id": user_id,
            "registration_id": registration.id,
            "party_id": registration.party_id if registration.category == Category.PARTY else None,
            "kind": kind,
            "channel": channel,
            "source": source,
            "at": at,
            "nonce": nonce,
            "recorded_by_id": recorded_by.id if recorded_by else None,
            "reason": reason,
        },
    )
    return Logged(inserted.inserted_primary_key[0], at)


def _last_event_at(db: Session, session_id: int, user_id: int, channel: Channel) -> dt.datetime | None:
    params = {"sid": session_id, "uid": user_id, "chan": channel}
    return db.connection().execute(_LAST_EVENT_AT, params).scalar()


def _presence_since(db: Session, session_id: int, user_id: int, channel: Channel) -> dt.datetime | None:
    """When the participant's presence through the channel began, or None if they are not inside."""
    params = {"sid": session_id, "uid": user_id, "chan": channel}
    return db.connection().execute(_PRESENCE_SINCE, params).scalar()


class _NotInside(Exception):
    """Rolls back the savepoint of an exit that found no presence to end."""


def _enter(
    db: Session,
    meeting_session: MeetingSession,
    user_id: int,
    channel: Channel,
    source: Source,
    at: dt.datetime,
    **details,
) -> Logged | None:
    """Open a presence and log the entry; None if already inside through that channel.

    A presence opened by a person (an officer, a kiosk) is held (last_seen_at None): no lapse ends
    it (meetings.presence, rule 4). A person's entry while the participant is inside online through
    the browser alone is logged too, and holds the presence from then on.

    A concurrent entry of the same person and channel (another process, another tab) collides
    on the presence's primary key; the loser rolls back its savepoint and records nothing.
    """
    by_person = source in (Source.OFFICER, Source.KIOSK)
    params = {"sid": meeting_session.id, "uid": user_id, "chan": channel}
    existing = db.connection().execute(_PRESENCE_SINCE, params).first()
    if existing is not None:
        # A second tab, or a page reconnecting: the usual case, answered without a failed insert.
        if not (by_person and existing.last_seen_at is not None):
            return None
        try:
            with db.begin_nested():
                db.connection().execute(_HOLD, params)
                at = max(at, existing.since)
                return _log_event(db, meeting_session, user_id, EventKind.ENTRY, channel, source, at, **details)
        except IntegrityError:
            return None  # the same entry (same nonce) was committed by a concurrent request
    # Never before the person's last exit through this channel (a kiosk's queued scan may be
    # older): the log, folded in time order, must say what the presences table says.
    last = _last_event_at(db, meeting_session.id, user_id, channel)
    at = max(at, last) if last else at
    try:
        with db.begin_nested():
            db.connection().execute(
                _INSERT_PRESENCE,
                {
                    "session_id": meeting_session.id,
                    "user_id": user_id,
                    "channel": channel,
                    "since": at,
                    "last_seen_at": at if channel == Channel.ONLINE and not by_person else None,
                },
            )
            return _log_event(db, meeting_session, user_id, EventKind.ENTRY, channel, source, at, **details)
    except IntegrityError:
        return None


def _leave(
    db: Session,
    meeting_session: MeetingSession,
    user_id: int,
    channel: Channel,
    source: Source,
    at: dt.datetime,
    *,
    since: dt.datetime | None = None,
    unseen_since: dt.datetime | None = None,
    **details,
) -> Logged | None:
    """End a presence and log the exit; None if not inside through that channel.

    Only the presence looked at is ended: if a concurrent request ended it and the person came
    back, the new presence stays. With since, only the presence that began then; with
    unseen_since, only a presence still not seen since then.
    """
    if since is None:
        since = _presence_since(db, meeting_session.id, user_id, channel)
    if since is None:
        return None
    at = max(at, since)
    try:
        with db.begin_nested():
            params = {"sid": meeting_session.id, "uid": user_id, "chan": channel, "since_at": since}
            if unseen_since:
                ended = db.connection().execute(_END_UNSEEN_PRESENCE, {**params, "unseen_since": unseen_since}).rowcount
            else:
                ended = db.connection().execute(_END_PRESENCE, params).rowcount
            if not ended:
                raise _NotInside
            return _log_event(db, meeting_session, user_id, EventKind.EXIT, channel, source, at, **details)
    except _NotInside:
        return None
    except IntegrityError:
        # The same exit (same nonce) was committed by a concurrent request.
        return None


@dataclass(frozen=True, slots=True)
class CheckInResult:
    """What a check-in or check-out did: the event (or the one its nonce found), and whether this call recorded it."""

    event_id: int | None
    kind: str
    at: dt.datetime
    recorded: bool


def _earlier(
    db: Session, meeting_session: MeetingSession, user: User, kind: EventKind, nonce: str
) -> CheckInResult | None:
    earlier = db.connection().execute(_BY_NONCE, {"sid": meeting_session.id, "nonce": nonce}).first()
    if earlier is None:
        return None
    if earlier.user_id != user.id or earlier.kind != kind:
        raise CheckInError(
            "nonce_reused",
            "This check-in identifier was already used for something else.",
        )
    return CheckInResult(earlier.id, earlier.kind.value, earlier.at, recorded=False)


def record_attendance(
    db: Session,
    meeting_session: MeetingSession,
    user: User,
    *,
    kind: EventKind,
    channel: Channel,
    source: Source,
    nonce: str,
    now: dt.datetime,
    recorded_by: User | None = None,
    reason: str | None = None,
    lapsed_before: dt.datetime | None = None,
) -> CheckInResult:
    """Check a participant in or out of a session; the same nonce twice records one event.

    With lapsed_before, an online presence of theirs that lapsed (not seen since then) is ended
    first, at its last moment seen: an officer acting on it acts on what the log will say.
    """
    if not isinstance(nonce, str) or not NONCE_RE.match(nonce):
        raise CheckInError(
            "bad_nonce",
            "The check-in was malformed (its identifier is missing or invalid).",
        )
    earlier = _earlier(db, meeting_session, user, kind, nonce)
    if earlier is not None:
        return earlier
    if lapsed_before is not None and channel == Channel.ONLINE:
        end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id, user_id=user.id)
    details = {"nonce": nonce, "recorded_by": recorded_by, "reason": reason}
    if kind == EventKind.ENTRY:
        details["registration"] = _check_entry_allowed(db, meeting_session, user, channel)
        event = _enter(db, meeting_session, user.id, channel, source, now, **details)
    else:
        event = _leave(db, meeting_session, user.id, channel, source, now, **details)
    if event is None:
        # Already inside (entry) or outside (exit); or a concurrent request with this nonce won.
        return _earlier(db, meeting_session, user, kind, nonce) or CheckInResult(None, kind.value, now, recorded=False)
    return CheckInResult(event.id, kind.value, event.at, recorded=True)


# Online presence -----------------------------------------------------------------------------
#
# A browser's connection is the delegate's online presence. It says it is alive (check-in,
# heartbeats, disconnect) by stamping last_seen_at on the presence, shared by all of the
# delegate's tabs and devices. A presence not seen for the grace period has lapsed: it ends at
# its last_seen_at. Everything is in the database, so a restarted or different server process
# picks up where another left off.


def online_since(db: Session, session_id: int, user_id: int) -> dt.datetime | None:
    """When the delegate's online presence in the session began; None if they are not present online."""
    return _presence_since(db, session_id, user_id, Channel.ONLINE)


def online_seen(db: Session, session_id: int, user_id: int, at: dt.datetime) -> bool:
    """Stamp the delegate's online presence as connected at `at`; False if they are not present online."""
    stamped = db.connection().execute(_SEEN_ONLINE, {"sid": session_id, "uid": user_id, "seen_at": at})
    return stamped.rowcount > 0


def end_lapsed_presences(
    db: Session,
    lapsed_before: dt.datetime,
    *,
    session_id: int | None = None,
    user_id: int | None = None,
) -> set[int]:
    """End online presences last seen before lapsed_before, at their last_seen_at; the sessions changed."""
    if session_id is not None and user_id is not None:
        # One delegate's presence, before each of their check-ins and heartbeats: the prebuilt statement.
        rows = db.connection().execute(_LAPSED_OF, {"lapsed_before": lapsed_before, "sid": session_id, "uid": user_id})
    else:
        query = sa.select(Presence.session_id, Presence.user_id, Presence.since, Presence.last_seen_at).where(
            Presence.channel == Channel.ONLINE,
            Presence.last_seen_at < lapsed_before,
        )
        if session_id is not None:
            query = query.where(Presence.session_id == session_id)
        if user_id is not None:
            query = query.where(Presence.user_id == user_id)
        rows = db.execute(query)
    changed: set[int] = set()
    for lapsed_session_id, lapsed_user_id, since, last_seen_at in rows.all():
        meeting_session = db.get(MeetingSession, lapsed_session_id)
        # One exit per presence, whichever process sees the lapse first.
        nonce = system_nonce("lapsed", lapsed_user_id, int(since.timestamp() * 1_000_000))
        if _leave(
            db,
            meeting_session,
            lapsed_user_id,
            Channel.ONLINE,
            Source.SYSTEM,
            last_seen_at,
            since=since,
            unseen_since=lapsed_before,
            nonce=nonce,
        ):
            changed.add(lapsed_session_id)
    return changed


def _check_entry_allowed(db: Session, meeting_session: MeetingSession, user: User, channel: Channel) -> Entitled:
    """The participant's registration, if they may enter the session through the channel; else a CheckInError."""
    if meeting_session.state != SessionState.OPEN:
        messages = {
            SessionState.SCHEDULED: "This session has not been opened yet.",
            SessionState.SUSPENDED: "This session is suspended; check in again when it resumes.",
            SessionState.CLOSED: "This session is closed.",
        }
        raise CheckInError("session_closed", messages[meeting_session.state])
    segment = meeting_session.segment
    params = {"segment_id": segment.id, "meeting_id": segment.meeting_id, "uid": user.id}
    row = db.connection().execute(_ENTRY_RIGHTS, params).first()
    if row is None:
        raise CheckInError("not_registered", "You are not registered for this meeting.")
    registration_id, category, party_id, status, covered = row
    if status != RegistrationStatus.APPROVED:
        raise CheckInError(
            "not_approved",
            f"Your registration is {status.value}, not approved.",
        )
    if not covered:
        raise CheckInError(
            "not_registered_for_segment",
            f"Your registration does not include the {segment.name}.",
        )
    if channel == Channel.ONLINE and not segment.online_check_in:
        raise CheckInError(
            "wrong_channel",
            "This session meets in person: check in at the gate with your badge.",
        )
    if channel == Channel.IN_PERSON and not segment.gate_check_in:
        raise CheckInError(
            "wrong_channel",
            "This session meets online: check in from the session page.",
        )
    return Entitled(registration_id, category, party_id)


def online_check_in(
    db: Session,
    meeting_session: MeetingSession,
    user: User,
    *,
    nonce: str,
    now: dt.datetime,
    lapsed_before: dt.datetime,
) -> tuple[CheckInResult, bool]:
    """A delegate's page checks in; another tab or device joins the same presence.

    A presence of theirs that had lapsed (not seen since lapsed_before) is ended first, at its
    last moment seen, so that the gap shows in the log. Returns the result and whether the
    session's presences changed.
    """
    lapsed = end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id, user_id=user.id)
    result = record_attendance(
        db,
        meeting_session,
        user,
        kind=EventKind.ENTRY,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce=nonce,
        now=now,
    )
    online_seen(db, meeting_session.id, user.id, now)
    return result, result.recorded or bool(lapsed)


def online_heartbeat(
    db: Session, meeting_session: MeetingSession, user: User, *, now: dt.datetime, lapsed_before: dt.datetime
) -> tuple[bool, bool]:
    """A page is still open. Returns whether the delegate is (still) present online, and whether presences changed."""
    lapsed = end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id, user_id=user.id)
    return online_seen(db, meeting_session.id, user.id, now), bool(lapsed)


def online_check_out(
    db: Session,
    meeting_session: MeetingSession,
    user: User,
    *,
    nonce: str,
    now: dt.datetime,
    lapsed_before: dt.datetime,
) -> tuple[CheckInResult, bool]:
    """The delegate leaves the session, from all tabs and devices. Returns the result and whether presences changed."""
    lapsed = end_lapsed_presences(db, lapsed_before, session_id=meeting_session.id, user_id=user.id)
    result = record_attendance(
        db,
        meeting_session,
        user,
        kind=EventKind.EXIT,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce=nonce,
        now=now,
    )
    return result, result.recorded or bool(lapsed)


def online_disconnected(
    db: Session,
    session_ids: Iterable[int],
    user: User,
    *,
    now: dt.datetime,
    lapsed_before: dt.datetime,
    seen_at: dt.datetime | None,
    last_page: Iterable[int] = (),
) -> set[int]:
    """A page's connection ended: the grace period runs from the last moment the delegate was known connected.

    seen_at: when the page was last heard from, if its end says so (it closed: now); None when it
    went silent (a frozen page, a network drop noticed by the ping timeout), whose last contact is
    already stamped by its last check-in or heartbeat. last_page: the sessions for which it was the
    delegate's last page connected to this process: their presences are marked disconnected (in a
    grace period) until a page of theirs is heard from again. A presence that had already lapsed is
    ended at its last moment seen, not revived. Returns the sessions whose presences changed.
    """
    changed: set[int] = set()
    last_page = set(last_page)
    for session_id in session_ids:
        changed |= end_lapsed_presences(db, lapsed_before, session_id=session_id, user_id=user.id)
        if seen_at is not None:
            online_seen(db, session_id, user.id, seen_at)
        if session_id in last_page:
            marked = db.connection().execute(_DISCONNECTED, {"sid": session_id, "uid": user.id, "disconnected_at": now})
            if marked.rowcount:
                changed.add(session_id)
    return changed


# Quorum ------------------------------------------------------------------------------------


class PresenceSummary(NamedTuple):
    """How many are present through each channel, and the Parties present with their delegates' channels.

    in_grace: the Parties present only through online presences in their grace period (in_grace()).
    """

    participants: dict[str, int]  # "online", "in_person", "both"
    parties: dict[str, frozenset[str]]
    in_grace: frozenset[str] = frozenset()


def in_grace(quiet_before: sa.BindParameter | dt.datetime) -> sa.ColumnElement[bool]:
    """An online presence in its grace period: resting on the browser alone, and its delegate's last page
    gone (disconnected_at) or silent since before quiet_before. It is counted until the grace period
    ends; then the lapse ends it at its last moment seen, and the statistics count it until then only."""
    return sa.and_(
        Presence.channel == Channel.ONLINE,
        Presence.last_seen_at.is_not(None),
        sa.or_(Presence.disconnected_at.is_not(None), Presence.last_seen_at < quiet_before),
    )


def _presence_summary_statement() -> sa.CompoundSelect:
    session_id = sa.bindparam("session_id")
    # 1 for a presence that settles its Party's presence, 0 for one in its grace period.
    settled = sa.case((in_grace(sa.bindparam("quiet_before", type_=Presence.last_seen_at.type)), 0), else_=1)
    per_participant = (
        sa.select(sa.func.count(Presence.channel).label("ways"), sa.func.min(Presence.channel).label("channel"))
        .where(Presence.session_id == session_id)
        .group_by(Presence.user_id)
        .subquery()
    )
    participants = sa.select(
        sa.null().label("code"),
        per_participant.c.ways,
        per_participant.c.channel,
        sa.func.count().label("n"),
        sa.literal(1).label("settled"),
    ).group_by(per_participant.c.ways, per_participant.c.channel)
    parties = (
        sa.select(
            Party.code,
            sa.func.count(sa.distinct(Presence.channel)),
            sa.func.min(Presence.channel),
            sa.literal(0),
            sa.func.max(settled),
        )
        .select_from(Presence)
        .join(
            Registration,
            sa.and_(
                Registration.user_id == Presence.user_id,
                Registration.meeting_id == sa.bindparam("meeting_id"),
                Registration.status == RegistrationStatus.APPROVED,
                Registration.category == Category.PARTY,
            ),
        )
        .join(Party, Party.id == Registration.party_id)
        .where(Presence.session_id == session_id)
        .group_by(Party.code)
    )
    return sa.union_all(participants, parties)


# Counted by the database, in one statement (one snapshot of the presences: a delegate may leave
# between two): dashboards ask ten times a second while thousands are present.
_PRESENCE_SUMMARY = _presence_summary_statement()
BOTH_CHANNELS = frozenset(channel.value for channel in Channel)
# Without quiet_before, only a presence whose last page is known gone is in its grace period.
_LONG_AGO = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def presence_summary(
    db: Session, meeting_session: MeetingSession, quiet_before: dt.datetime | None = None
) -> PresenceSummary:
    """Who is present through which channels, counted; and which Parties, through their approved delegates.

    quiet_before: an online presence last heard from before then is in its grace period (a page
    frozen or cut off, which the server has not noticed yet).
    """
    participants = {"online": 0, "in_person": 0, "both": 0}
    parties: dict[str, frozenset[str]] = {}
    grace: set[str] = set()
    params = {
        "session_id": meeting_session.id,
        "meeting_id": meeting_session.segment.meeting_id,
        "quiet_before": quiet_before or _LONG_AGO,
    }
    for code, ways, channel, n, settled in db.execute(_PRESENCE_SUMMARY, params):
        channels = BOTH_CHANNELS if ways > 1 else frozenset({Channel(channel).value})
        if code is None:
            participants["both" if ways > 1 else Channel(channel).value] += n
        else:
            parties[code] = channels
            if not settled:
                grace.add(code)
    return PresenceSummary(participants, parties, frozenset(grace))


def present_parties_channels(db: Session, meeting_session: MeetingSession) -> dict[str, frozenset[str]]:
    """Parties with an approved delegate present, each with the channels its delegates are present through."""
    return presence_summary(db, meeting_session).parties


# Loading a session with these options reads its segment and meeting in the same statement: what a
# socket event or a broadcast about a session needs, without two more round trips.
WITH_MEETING = (joinedload(MeetingSession.segment).joinedload(Segment.meeting),)


def session_quorum(
    db: Session,
    meeting_session: MeetingSession,
    present_codes: set[str] | None = None,
    parties: Iterable[tuple[str, dt.date | None]] | None = None,
) -> Quorum:
    """The quorum of the session now: Parties in force on its date against Parties present.

    present_codes: the Parties present, if the caller has read them already (one read of the
    presences for everything it shows, which may change between two reads). parties: the
    convention's Parties as (code, entry into force), if the caller has read them already.
    """
    meeting = meeting_session.segment.meeting
    if parties is None:
        parties = db.execute(
            sa.select(Party.code, Party.entry_into_force_on).where(Party.convention == meeting.convention)
        )
    in_force = in_force_on(parties, meeting_session.local_date)
    if present_codes is None:
        present_codes = set(present_parties_channels(db, meeting_session))
    return quorum(in_force, present_codes, meeting.open_fraction, meeting.decide_fraction)


# Exports -----------------------------------------------------------------------------------


def attendance_rows(db: Session, meeting_session: MeetingSession) -> Iterator[dict]:
    """One row per stretch of presence (meetings.presence): who, whom they represent, channel, in and out."""
    intervals = presence.stretches(log_events(db, meeting_session.id))
    user_ids = {interval.participant for interval in intervals}
    registrations = (
        {
            registration.user_id: registration
            for registration in db.scalars(
                sa.select(Registration)
                .where(
                    Registration.meeting_id == meeting_session.segment.meeting_id,
                    Registration.user_id.in_(user_ids),
                )
                .options(selectinload(Registration.user), selectinload(Registration.party))
            )
        }
        if user_ids
        else {}
    )
    tz = meeting_session.tz
    for interval in intervals:
        registration = registrations[interval.participant]
        party = registration.party
        yield {
            "participant": registration.user.full_name,
            "email": registration.user.email,
            "category": registration.category.value,
            "party": party.code if party else "",
            "represents": registration.represents,
            "regional_group": party.regional_group.value if party and party.regional_group else "",
            "channel": interval.channel,
            "in_utc": interval.start.isoformat(timespec="seconds"),
            "out_utc": interval.end.isoformat(timespec="seconds") if interval.end else "",
            "in_local": interval.start.astimezone(tz).isoformat(timespec="seconds"),
            "out_local": interval.end.astimezone(tz).isoformat(timespec="seconds") if interval.end else "",
        }


def sessions_of(db: Session, meeting: Meeting) -> list[MeetingSession]:
    return list(
        db.scalars(
            sa.select(MeetingSession)
            .join(Segment)
            .where(Segment.meeting_id == meeting.id)
            .order_by(MeetingSession.scheduled_start_at)
        )
    )


def login_refusal(db: Session, user: User) -> str | None:
    """Why a participant may not log in yet (no approved registration), or None if they may."""
    if user.is_officer:
        return None
    if user.email_confirmed_at is None:
        return (
            f"Please confirm your email address first: open the link we sent to {user.email}. "
            "No message? Ask for a new link on the confirmation page."
        )
    registrations = list(
        db.scalars(
            sa.select(Registration).where(Registration.user_id == user.id).options(selectinload(Registration.meeting))
        )
    )
    if any(r.status == RegistrationStatus.APPROVED for r in registrations):
        return None
    for registration in registrations:
        if registration.status == RegistrationStatus.PENDING:
            return (
                f"Your registration for {registration.meeting.code} is awaiting approval by the secretariat. "
                "You can log in once it is approved."
            )
    for registration in registrations:
        if registration.status == RegistrationStatus.REJECTED:
            return (
                f"Your registration for {registration.meeting.code} was not approved: {registration.decision_reason} "
                "Contact the secretariat if you think this is a mistake."
            )
    return "This account has no approved registration. Register for a meeting first."
