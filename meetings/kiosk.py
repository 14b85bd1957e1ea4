"""Gate kiosks: a scanned badge (and, at an entry gate, the holder's authenticator code) becomes an entry or exit.

A kiosk may record scans while its connection is down and send them later, so a scan carries the
time the kiosk recorded it (`scanned_at`). The code is verified at that time, and the entry or exit
is recorded at that time. The server cannot prove that a scan really happened when the kiosk says,
so the claim is bounded: at most MAX_AGE old and at most MAX_AHEAD in the future. A longer outage
loses its queued scans (refused as `stale_scan`: the person scans again); a looser bound would let a
code read over someone's shoulder be used for longer. Each code still works once, and only if no
newer code of the account was used since.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth import services as auth_services
from auth import throttle
from auth.badges import read_badge_token
from auth.models import LoginThrottle, User
from meetings import badges, services
from meetings.models import AttendanceEvent, Badge, Channel, EventKind, MeetingSession, Source
from meetings.services import CheckInError, MeetingError

MAX_AGE = dt.timedelta(minutes=15)
MAX_AHEAD = dt.timedelta(seconds=30)
# Generous for any badge token (badges.MAX_TOKEN_LENGTH refuses long ones as not genuine, which says
# more to the gate than "malformed"); this only keeps oversized payloads out.
MAX_TOKEN_CHARS = 2000
MAX_CODE_CHARS = 12
MAX_TIME_CHARS = 40
SCAN_FIELDS = frozenset({"session_id", "gate", "token", "code", "nonce", "scanned_at"})


class Gate(enum.StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


GATE_KINDS = {Gate.ENTRY: EventKind.ENTRY, Gate.EXIT: EventKind.EXIT}


class CodeRefused(CheckInError):
    """A wrong or replayed code: the scan is refused and the failure counts against the holder's address."""

    def __init__(self, code: str, message: str, email: str) -> None:
        super().__init__(code, message)
        self.email = email


@dataclass(frozen=True, slots=True)
class Scan:
    """A badge scan as the kiosk sent it, checked for shape."""

    gate: Gate
    token: str
    code: str | None
    nonce: str
    scanned_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Whom the scan let in or out, and whether this call recorded it (False: already recorded or already there)."""

    name: str
    delegation: str
    category: str
    kind: str
    recorded: bool
    at: dt.datetime

    def as_ack(self) -> dict:
        return {
            "name": self.name,
            "delegation": self.delegation,
            "category": self.category,
            "kind": self.kind,
            "recorded": self.recorded,
            "at": self.at.isoformat(),
        }


def _malformed(message: str) -> MeetingError:
    return MeetingError("bad_request", message)


def read_scan(data: dict) -> Scan:
    """The scan a kiosk_scan payload describes; a payload of the wrong shape or size is a bad_request."""
    try:
        gate = Gate(data.get("gate"))
    except ValueError:
        raise _malformed("The scan did not say whether this is an entry or an exit gate.") from None
    token = data.get("token")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise _malformed("The scan carried no readable badge code.")
    code = data.get("code")
    if gate == Gate.ENTRY:
        if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
            raise _malformed("An entry needs the 6-digit code from the person's authenticator app.")
    elif code is not None:
        raise _malformed("An exit gate takes no code.")
    nonce = data.get("nonce")
    if not isinstance(nonce, str) or not services.NONCE_RE.match(nonce):
        raise CheckInError("bad_nonce", "The scan was malformed (its identifier is missing or invalid).")
    scanned_at = data.get("scanned_at")
    if not isinstance(scanned_at, str) or len(scanned_at) > MAX_TIME_CHARS:
        raise _malformed("The scan did not say when it was made.")
    try:
        at = dt.datetime.fromisoformat(scanned_at)
    except ValueError:
        raise _malformed("The time of the scan could not be read.") from None
    if at.tzinfo is None:
        raise _malformed("The time of the scan has no time zone.")
    return Scan(gate, token, code, nonce, at.astimezone(dt.UTC))


def _by_nonce(db: Session, meeting_session: MeetingSession, nonce: str) -> AttendanceEvent | None:
    return db.scalar(
        sa.select(AttendanceEvent).where(
            AttendanceEvent.session_id == meeting_session.id,
            AttendanceEvent.nonce == nonce,
        )
    )


def _result(badge: Badge, kind: str, recorded: bool, at: dt.datetime) -> ScanResult:
    registration = badge.registration
    return ScanResult(
        name=registration.user.full_name,
        delegation=registration.represents,
        category=registration.category.value,
        kind=kind,
        recorded=recorded,
        at=at,
    )


def _already_recorded(
    db: Session, secret_key: str, scan: Scan, earlier: AttendanceEvent, kind: EventKind
) -> ScanResult:
    """A scan sent again (its acknowledgement was lost): answer as the first time, without using the code again."""
    ref = read_badge_token(secret_key, scan.token.strip())
    badge = db.get(Badge, ref.badge_id) if ref is not None else None
    if badge is None or badge.registration.user_id != earlier.user_id or earlier.kind != kind:
        raise CheckInError("nonce_reused", "This scan's identifier was already used for another scan.")
    return _result(badge, earlier.kind.value, False, earlier.at)


def _check_time(scanned_at: dt.datetime, now: dt.datetime) -> None:
    if scanned_at < now - MAX_AGE:
        minutes = int(MAX_AGE.total_seconds() // 60)
        raise CheckInError(
            "stale_scan",
            f"This scan was made more than {minutes} minutes ago, while the kiosk was offline. "
            "Ask the person to scan their badge again.",
        )
    if scanned_at > now + MAX_AHEAD:
        raise CheckInError(
            "future_scan",
            "This kiosk's clock is ahead of the server's. Reload the kiosk page, then scan again.",
        )


def _in_words(delta: dt.timedelta) -> str:
    seconds = max(1, round(delta.total_seconds()))
    return f"{seconds} seconds" if seconds < 90 else f"{round(seconds / 60)} minutes"


def _check_throttle(db: Session, email: str, now: dt.datetime) -> None:
    """Refuse an entry while the holder's address must wait after wrong codes (the login throttle)."""
    refused = throttle.refusal(db, email, now)
    if refused is None:
        return
    code, _ = refused
    if code == "throttled":
        until = db.scalar(sa.select(LoginThrottle.blocked_until).where(LoginThrottle.key == throttle.key_of(email)))
        raise CheckInError(
            code, f"Too many wrong codes for this badge. Wait {_in_words(until - now)}, then scan it again."
        )
    raise CheckInError(
        code, "Too many wrong codes for this badge: its codes are locked. Send the person to the secretariat."
    )


def _verify_code(db: Session, holder: User, code: str, at: dt.datetime, window: int) -> None:
    """Accept the holder's code once, as it was at the time of the scan."""
    try:
        auth_services.verify_code(db, holder, code, at, window)
    except auth_services.AuthError as exc:
        if exc.code in ("bad_code", "replayed_code"):
            raise CodeRefused(exc.code, exc.message, holder.email) from None
        if exc.code == "not_enrolled":
            raise CheckInError(
                "not_enrolled",
                "This person has not set up an authenticator app yet. Send them to the registration desk.",
            ) from None
        raise CheckInError(exc.code, exc.message) from None
    throttle.succeeded(db, holder.email)


def record_scan(
    db: Session,
    meeting_session: MeetingSession,
    scan: Scan,
    *,
    officer: User,
    secret_key: str,
    now: dt.datetime,
    window: int = 1,
) -> ScanResult:
    """Record the entry or exit of a scanned badge's holder at the time of the scan.

    `now` is the server's time: it bounds the scan's age and drives the throttle, whose waits are
    real time. The code is verified, and the event recorded, at `scan.scanned_at`.
    """
    kind = GATE_KINDS[scan.gate]
    earlier = _by_nonce(db, meeting_session, scan.nonce)
    if earlier is not None:
        return _already_recorded(db, secret_key, scan, earlier, kind)
    _check_time(scan.scanned_at, now)
    badge = badges.badge_for_token(db, secret_key, scan.token)
    registration = badge.registration
    if registration.meeting_id != meeting_session.segment.meeting_id:
        raise CheckInError("wrong_meeting", f"This badge is for {registration.meeting.code}, not this meeting.")
    holder = registration.user
    if scan.gate == Gate.ENTRY:
        # Refused before the code is looked at: a throttled address learns nothing from more guesses.
        _check_throttle(db, holder.email, now)
        # The code is claimed before the entry is written, in the same transaction: if the entry is then
        # refused (session not open, wrong segment), the rollback gives the code back. (The other order
        # fails on SQLite: a savepoint opened before any write in the transaction commits on release.)
        _verify_code(db, holder, scan.code or "", scan.scanned_at, window)
    result = services.record_attendance(
        db,
        meeting_session,
        holder,
        kind=kind,
        channel=Channel.IN_PERSON,
        source=Source.KIOSK,
        nonce=scan.nonce,
        now=scan.scanned_at,
        recorded_by=officer,
    )
    return _result(badge, kind.value, result.recorded, result.at)
