"""Account use cases: create accounts, check passwords, enrol and verify authenticators.

Services flush but never commit; a refusal is an AuthError with a stable code.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth import mail, throttle, totp
from auth.login import end_sessions
from auth.models import AuditEntry, Authenticator, Gender, LoginThrottle, RecoveryCode, Role, User
from auth.passwords import hash_password, verify_password


class AuthError(Exception):
    """A refused authentication step, with a stable code and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Checked when no account matches, so that a wrong email costs as long as a wrong password.
_DUMMY_HASH = hash_password("not a real password", method="scrypt")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user(db: Session, email: str) -> User | None:
    return db.scalar(sa.select(User).where(User.email == normalize_email(email)))


def create_user(
    db: Session,
    *,
    email: str,
    password: str,
    given_name: str,
    family_name: str,
    gender: Gender,
    title: str | None = None,
    role: Role = Role.PARTICIPANT,
    hash_method: str = "scrypt",
) -> User:
    """A new account; refused if the email already has one."""
    if find_user(db, email) is not None:
        raise AuthError(
            "email_taken",
            "An account with this email address already exists. Log in, or use another address.",
        )
    user = User(
        email=normalize_email(email),
        password_hash=hash_password(password, hash_method),
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        title=(title or "").strip() or None,
        gender=gender,
        role=role,
    )
    db.add(user)
    db.flush()
    return user


def check_password(db: Session, email: str, password: str) -> User:
    """The enabled account with this email and password; the same refusal whatever was wrong.

    Ends the session's transaction (call it with nothing to write) once the account is read: the
    hash can wait its turn for seconds while hundreds of delegates log in, and must not hold a
    database connection meanwhile (the pool is shared with every check-in of the process).
    """
    user = find_user(db, email)
    stored = user.password_hash if user is not None else None
    db.commit()  # the account stays loaded (expire_on_commit=False)
    ok = verify_password(stored or _DUMMY_HASH, password) and stored is not None
    if user is None or not ok or not user.is_enabled:
        raise AuthError("bad_credentials", "That email and password do not match an account.")
    return user


def start_enrolment(db: Session, user: User) -> Authenticator:
    """The authenticator being enrolled: a new secret, or the one already shown if not yet confirmed."""
    authenticator = user.authenticator
    if authenticator is not None and authenticator.confirmed_at is not None:
        raise AuthError("already_enrolled", "An authenticator is already enrolled for this account.")
    if authenticator is None:
        authenticator = Authenticator(user=user, secret=totp.new_secret())
        db.add(authenticator)
        db.flush()
    return authenticator


def _claim_step(db: Session, authenticator: Authenticator, step: int, values: dict) -> bool:
    """Record step as used if it is newer than the last used one, atomically (a compare-and-set)."""
    result = db.execute(
        sa.update(Authenticator)
        .where(
            Authenticator.id == authenticator.id,
            sa.or_(
                Authenticator.last_used_step.is_(None),
                Authenticator.last_used_step < step,
            ),
        )
        .values(last_used_step=step, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        db.refresh(authenticator)
        return True
    return False


def _check_code(authenticator: Authenticator, code: str, now: dt.datetime, window: int) -> int:
    code = code.strip().replace(" ", "")
    if not totp.is_well_formed(code):
        raise AuthError("malformed_code", "Enter the 6-digit code shown by your authenticator app.")
    step = totp.matching_step(authenticator.secret, code, now, window)
    if step is None:
        raise AuthError(
            "bad_code",
            "That code is not right. Check the clock of your phone and try the current code.",
        )
    return step


def confirm_enrolment(db: Session, user: User, code: str, now: dt.datetime, window: int = 1) -> None:
    """Confirm the authenticator being enrolled with a current code; that code is then used up."""
    authenticator = user.authenticator
    if authenticator is None or authenticator.confirmed_at is not None:
        raise AuthError("not_enrolling", "There is no authenticator waiting for confirmation.")
    step = _check_code(authenticator, code, now, window)
    if not _claim_step(db, authenticator, step, {"confirmed_at": now}):
        raise AuthError(
            "replayed_code",
            "That code was already used. Wait for the next code and enter it.",
        )
    db.add(
        AuditEntry(
            at=now,
            actor_id=user.id,
            action="authenticator.enrolled",
            target_type=User.__tablename__,
            target_id=str(user.id),
        )
    )
    db.flush()


def verify_code(db: Session, user: User, code: str, now: dt.datetime, window: int = 1) -> int:
    """Accept a code from the user's enrolled authenticator once; return its time step."""
    authenticator = user.authenticator
    if authenticator is None or authenticator.confirmed_at is None:
        raise AuthError("not_enrolled", "No authenticator is enrolled for this account yet.")
    step = _check_code(authenticator, code, now, window)
    if not _claim_step(db, authenticator, step, {}):
        raise AuthError(
            "replayed_code",
            "That code was already used. Wait for the next code and enter it.",
        )
    return step


def confirm_email(db: Session, user: User, now: dt.datetime) -> bool:
    """Mark the user's address as confirmed; False if it already was."""
    if user.email_confirmed_at is not None:
        return False
    user.email_confirmed_at = now
    db.add(
        AuditEntry(at=now, actor_id=user.id, action="user.email_confirmed", target_type="users", target_id=str(user.id))
    )
    db.flush()
    return True


# The secretariat's help with lost authenticators and locked logins -----------------------------


def reset_authenticator(db: Session, user: User, actor: User, reason: str, login_url: str, now: dt.datetime) -> None:
    """Remove the account's authenticator and recovery codes and end its sessions; it enrols again at the next login.

    The caller commits, then closes the account's live connections (auth.login.end_sockets) and delivers the mail.
    """
    reason = " ".join(reason.split())
    if not reason:
        raise AuthError("reason_required", "Give the reason for the reset: it is kept in the audit log.")
    if actor.id == user.id:
        raise AuthError(
            "own_authenticator",
            "You cannot reset your own authenticator: another secretariat member can, after checking it is you.",
        )
    authenticator = user.authenticator
    if authenticator is None:
        raise AuthError("no_authenticator", f"{user.full_name} has no authenticator to reset.")
    codes = db.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id)).rowcount
    db.delete(authenticator)
    end_sessions(user)
    db.add(
        AuditEntry(
            at=now,
            actor_id=actor.id,
            action="authenticator.reset",
            target_type=User.__tablename__,
            target_id=str(user.id),
            detail={
                "reason": reason,
                "was_confirmed": authenticator.confirmed_at is not None,
                "recovery_codes_cancelled": codes,
            },
        )
    )
    mail.queue(
        db,
        user.email,
        "Your authenticator was reset",
        f"Dear {user.full_name},\n\n"
        "The secretariat has reset the authenticator of your account. The codes of your authenticator app and "
        "your recovery codes no longer work for this account, and you were logged out everywhere.\n\n"
        f"At your next login ({login_url}), after your password, you will set up an authenticator app again "
        "(a QR code to scan) and get new recovery codes. In your authenticator app you can delete the old "
        "entry for this account.\n\n"
        "If you did not ask the secretariat for this, contact them at once." + mail.SIGNATURE,
        now,
    )
    db.flush()
    db.expire(user, ["authenticator"])


def login_blocks(db: Session, emails: list[str]) -> dict[str, LoginThrottle]:
    """The throttle rows of these addresses that have any, by address as given."""
    keys = {throttle.key_of(email): email for email in emails}
    rows = db.scalars(sa.select(LoginThrottle).where(LoginThrottle.key.in_(list(keys)))) if keys else []
    return {keys[row.key]: row for row in rows}


def unlock_login(db: Session, user: User, actor: User, now: dt.datetime) -> bool:
    """Lift the lock or wait on the account's address (audited); False if there was none."""
    row = login_blocks(db, [user.email]).get(user.email)
    if row is None:
        return False
    detail = {"failures": row.failures, "was_locked": row.locked_at is not None}
    if not throttle.unlock(db, user.email):
        return False
    db.add(
        AuditEntry(
            at=now,
            actor_id=actor.id,
            action="user.login_unlocked",
            target_type=User.__tablename__,
            target_id=str(user.id),
            detail=detail,
        )
    )
    db.flush()
    return True
