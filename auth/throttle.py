"""Throttling of failed logins and codes per email address, stored in the database (shared by all processes).

The first four failures cost nothing; from the fifth on, the address waits 30 s, then twice as long
after each further failure (at most an hour); after 100 consecutive failures it is locked until the
secretariat unlocks it. Addresses without an account are throttled the same way, so that no answer
reveals whether an account exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auth.models import LoginThrottle

FREE_FAILURES = 4
FIRST_WAIT = dt.timedelta(seconds=30)
LONGEST_WAIT = dt.timedelta(hours=1)
LOCK_AFTER = 100


def key_of(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def wait_after(failures: int) -> dt.timedelta | None:
    """How long an address waits after this many consecutive failures."""
    if failures <= FREE_FAILURES:
        return None
    # The exponent stops growing once the wait passes the longest one.
    return min(FIRST_WAIT * 2 ** min(failures - FREE_FAILURES - 1, 12), LONGEST_WAIT)


def _row(db: Session, email: str) -> LoginThrottle | None:
    return db.scalar(sa.select(LoginThrottle).where(LoginThrottle.key == key_of(email)))


def _in_words(delta: dt.timedelta) -> str:
    seconds = max(1, round(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{round(seconds / 60)} minutes"


def refusal(db: Session, email: str, now: dt.datetime) -> tuple[str, str] | None:
    """(code, message) if attempts for this address must wait or are locked; None if it may try."""
    row = _row(db, email)
    if row is None:
        return None
    if row.locked_at is not None:
        return (
            "locked",
            "Too many failed attempts: logging in with this address is locked. Contact the secretariat to unlock it.",
        )
    if row.blocked_until is not None and now < row.blocked_until:
        return (
            "throttled",
            f"Too many failed attempts. Try again in {_in_words(row.blocked_until - now)} "
            f"(at {row.blocked_until:%H:%M:%S} UTC).",
        )
    return None


def failed(db: Session, email: str, now: dt.datetime) -> None:
    """Count a failed password or code for the address (the caller commits, also when refusing)."""
    key = key_of(email)
    if _row(db, email) is None:
        try:
            with db.begin_nested():
                db.add(LoginThrottle(key=key, failures=0))
        except IntegrityError:
            pass  # another request created it first
    db.execute(
        sa.update(LoginThrottle)
        .where(LoginThrottle.key == key)
        .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
        .execution_options(synchronize_session=False)
    )
    row = _row(db, email)
    db.refresh(row)
    wait = wait_after(row.failures)
    row.blocked_until = now + wait if wait else None
    if row.failures >= LOCK_AFTER and row.locked_at is None:
        row.locked_at = now
    db.flush()


def succeeded(db: Session, email: str) -> None:
    """A correct password and code: the count starts again."""
    db.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key_of(email), LoginThrottle.locked_at.is_(None)))


def unlock(db: Session, email: str) -> bool:
    """Lift the lock and the wait of an address (the secretariat's decision, audited by the caller)."""
    return db.execute(sa.delete(LoginThrottle).where(LoginThrottle.key == key_of(email))).rowcount > 0
