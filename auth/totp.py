"""Time-based one-time passwords (RFC 6238): enrolment secrets, provisioning URIs and replay-safe checks."""

from __future__ import annotations

import datetime as dt

import pyotp
import pyotp.exceptions

DIGITS = 6
STEP_SECONDS = 30


def new_secret() -> str:
    """A fresh random base32 secret of 160 bits, as RFC 4226 recommends."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI that authenticator apps read from a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def is_well_formed(code: str) -> bool:
    """Exactly six ASCII digits (str.isdigit would also take other scripts' digits)."""
    return len(code) == DIGITS and all("0" <= ch <= "9" for ch in code)


def code_at(secret: str, at: dt.datetime) -> str:
    """The code an authenticator shows at the given moment."""
    return pyotp.TOTP(secret).at(at)


def matching_step(secret: str, code: str, now: dt.datetime, window: int = 1) -> int | None:
    """The time step whose code this is, within window steps of now, or None."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not is_well_formed(code):
        return None
    try:
        return pyotp.TOTP(secret).verify_and_get_timecode(code, for_time=now, valid_window=window)
    except pyotp.exceptions.OTPVerificationError:
        return None


def accepted_step(
    secret: str,
    code: str,
    now: dt.datetime,
    last_used_step: int | None,
    window: int = 1,
) -> int | None:
    """The step to record if the code is valid and newer than the last one used; None otherwise."""
    step = matching_step(secret, code, now, window)
    if step is None or (last_used_step is not None and step <= last_used_step):
        return None
    return step
