"""Badge tokens: signed, tamper-evident references to a badge and its version, free of personal data."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "badge-token"


@dataclass(frozen=True, slots=True)
class BadgeRef:
    badge_id: int
    version: int


def badge_token(secret_key: str, ref: BadgeRef) -> str:
    """The token printed as the badge's QR code."""
    return URLSafeSerializer(secret_key, salt=SALT).dumps([ref.badge_id, ref.version])


def read_badge_token(secret_key: str, token: str) -> BadgeRef | None:
    """The badge a token names, or None if it was not signed with this key or is malformed."""
    try:
        badge_id, version = URLSafeSerializer(secret_key, salt=SALT).loads(token)
    except (BadSignature, TypeError, ValueError):
        return None
    if not isinstance(badge_id, int) or not isinstance(version, int):
        return None
    return BadgeRef(badge_id, version)
