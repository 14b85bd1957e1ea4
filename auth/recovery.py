"""Recovery codes: ten single-use codes that stand in for the authenticator app, stored hashed like passwords.

A code is 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L), about 49 bits of
randomness, shown as XXXXX-XXXXX. Codes are given in clear once, when they are made; the
database keeps only their hashes. Services flush but never commit; a refusal is an AuthError.
"""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth.models import AuditEntry, RecoveryCode, User
from auth.passwords import hash_password, verify_password
from auth.services import AuthError

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 10
COUNT = 10
# At or below this many unused codes, the person is asked to make new ones.
FEW = 3


def new_code() -> str:
    """A random code, unformatted (10 characters of ALPHABET)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def formatted(code: str) -> str:
    """XXXXX-XXXXX, as the person sees and types it."""
    return f"{code[:5]}-{code[5:]}"


def normalized(text: str) -> str | None:
    """The code as stored (uppercase, no spaces or hyphen), or None if it cannot be a code."""
    code = "".join(text.split()).replace("-", "").upper()
    if len(code) != LENGTH or not all(ch in ALPHABET for ch in code):
        return None
    return code


def _audit(db: Session, user: User, action: str, now: dt.datetime, **detail) -> None:
    db.add(
        AuditEntry(
            at=now,
            actor_id=user.id,
            action=action,
            target_type=User.__tablename__,
            target_id=str(user.id),
            detail=detail,
        )
    )


def issue(db: Session, user: User, now: dt.datetime, hash_method: str, *, reason: str) -> list[str]:
    """Ten new codes for the account, replacing any earlier ones; they are returned formatted, to be shown once.

    The codes are hashed before anything is written: ten hashes take about a second, and a
    transaction that has written holds SQLite's write lock meanwhile (the caller commits what it
    wrote before calling).
    """
    codes = [new_code() for _ in range(COUNT)]
    hashes = [hash_password(code, hash_method) for code in codes]
    earlier = db.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id)).rowcount
    db.add_all(RecoveryCode(user_id=user.id, code_hash=code_hash, created_at=now) for code_hash in hashes)
    _audit(db, user, "user.recovery_codes_issued", now, reason=reason, replaced=earlier)
    db.flush()
    return [formatted(code) for code in codes]


def remaining(db: Session, user: User) -> int:
    """How many of the account's recovery codes are still unused."""
    return db.scalar(
        sa.select(sa.func.count(RecoveryCode.id)).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    )


def use(db: Session, user: User, text: str, now: dt.datetime) -> int:
    """Accept one unused recovery code of the account, once; return how many remain unused."""
    code = normalized(text)
    if code is None:
        raise AuthError(
            "malformed_recovery_code",
            "A recovery code is 10 letters and digits, written like 7KQ2M-XH4PD; it never contains 0, 1, I, L or O.",
        )
    unused = db.scalars(
        sa.select(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).all()
    # The hashes below take up to a second, more while others log in: no database connection is held
    # meanwhile (nothing is written yet; the rows stay loaded, expire_on_commit=False).
    db.commit()
    # Each hash is salted, so each must be checked; there are at most ten.
    match = next((row for row in unused if verify_password(row.code_hash, code)), None)
    if match is not None:
        # Compare-and-set: of two requests with the same code, only one marks it used.
        claimed = db.execute(
            sa.update(RecoveryCode)
            .where(RecoveryCode.id == match.id, RecoveryCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed == 1:
            left = remaining(db, user)
            _audit(db, user, "user.recovery_code_used", now, remaining=left)
            db.flush()
            return left
    raise AuthError(
        "bad_recovery_code",
        "That recovery code is not right, or it was already used: each code works once. Try another of your codes.",
    )
