"""Signed, expiring tokens for links sent by email (confirm an address, set a password)."""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM_EMAIL = "confirm-email"
SET_PASSWORD = "set-password"


def fingerprint(value: str | None) -> str:
    """A short digest of state that, once changed, must void the link (the email, the password hash)."""
    return hashlib.sha256((value or "").encode()).hexdigest()[:16]


def make_token(secret_key: str, purpose: str, user_id: int, state: str | None) -> str:
    return URLSafeTimedSerializer(secret_key, salt=purpose).dumps([user_id, fingerprint(state)])


def read_token(secret_key: str, purpose: str, token: str, max_age: int) -> tuple[int, str] | None:
    """(user id, state fingerprint) if the token is ours, for this purpose and recent enough; else None."""
    try:
        user_id, state = URLSafeTimedSerializer(secret_key, salt=purpose).loads(token, max_age=max_age)
    except (SignatureExpired, BadSignature, TypeError, ValueError):
        return None
    if not isinstance(user_id, int) or not isinstance(state, str):
        return None
    return user_id, state
