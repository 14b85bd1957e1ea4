"""Password hashing with a slow, salted hash made for passwords (scrypt through Werkzeug)."""

from __future__ import annotations

from werkzeug.security import check_password_hash, generate_password_hash

MIN_LENGTH = 8
MAX_LENGTH = 128


def hash_password(password: str, method: str = "scrypt") -> str:
    return generate_password_hash(password, method=method)


def verify_password(password_hash: str, password: str) -> bool:
    return check_password_hash(password_hash, password)
