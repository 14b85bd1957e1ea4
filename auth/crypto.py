"""Encryption at rest for TOTP secrets: Fernet (AES-128-CBC + HMAC-SHA256) with keys from the environment.

TOTP_ENCRYPTION_KEY holds one or more Fernet keys separated by commas; the first encrypts, all
decrypt, so a key can be rotated by putting the new one first. Without it (development and
tests only; production refuses to start) a key is derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

FERNET_PREFIX = "gAAAAA"


def derived_key(secret_key: str) -> str:
    """A Fernet key derived from the app's secret key, for development setups without TOTP_ENCRYPTION_KEY."""
    digest = hashlib.sha256(b"totp-secrets:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def cipher(keys: str) -> MultiFernet:
    """The cipher for a comma-separated list of Fernet keys (the first one encrypts)."""
    parts = [key.strip() for key in keys.split(",") if key.strip()]
    if not parts:
        raise ValueError("no encryption key given")
    try:
        return MultiFernet([Fernet(key) for key in parts])
    except ValueError:
        raise ValueError(
            "TOTP_ENCRYPTION_KEY must be Fernet keys (urlsafe base64 of 32 bytes), comma-separated"
        ) from None


def encrypt(box: MultiFernet, plaintext: str) -> str:
    return box.encrypt(plaintext.encode()).decode()


def decrypt(box: MultiFernet, token: str) -> str:
    try:
        return box.decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("a TOTP secret cannot be decrypted with the configured TOTP_ENCRYPTION_KEY") from None


class _Keys:
    """The process's cipher, set by the app factory: column values are encrypted and decrypted with it."""

    box: MultiFernet | None = None


def configure(keys: str) -> None:
    _Keys.box = cipher(keys)


def keys_from_settings(settings: dict) -> str:
    return settings.get("TOTP_ENCRYPTION_KEY") or derived_key(settings["SECRET_KEY"])


class EncryptedString(sa.types.TypeDecorator):
    """A string column stored encrypted; the key comes from the environment, never from the database."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        if _Keys.box is None:
            raise RuntimeError("encryption keys are not configured (create the app first)")
        return encrypt(_Keys.box, value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        if value is None:
            return None
        if _Keys.box is None:
            raise RuntimeError("encryption keys are not configured (create the app first)")
        return decrypt(_Keys.box, value)
