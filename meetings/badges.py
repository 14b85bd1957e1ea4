"""Badges: the signed token printed as the QR code, and what a scanned token proves.

A token names a badge and its version (auth/badges.py signs it with the app's key). It proves
nothing unless the badge exists, is that version, is not revoked, and its registration is approved.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from auth.badges import BadgeRef, badge_token, read_badge_token
from meetings.models import Badge, Registration, RegistrationStatus
from meetings.services import CheckInError

MAX_TOKEN_LENGTH = 200


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
