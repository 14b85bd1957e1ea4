"""Passwords: the rules a new password must meet (NIST SP 800-63B) and hashing with scrypt through Werkzeug.

The rules: at least 8 characters (15 or more recommended), at most 128, no composition rules, not
on the list of common passwords in auth/data, and not the person's email or names.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

MIN_LENGTH = 8
RECOMMENDED_LENGTH = 15
MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt"

HINT = (
    f"At least {MIN_LENGTH} characters; a passphrase of {RECOMMENDED_LENGTH} or more, a few unrelated words, "
    "is best. Any characters, spaces included."
)


T = TypeVar("T")


def off_the_loop(function: Callable[..., T], *args: object) -> T:
    """Call function(*args), in gevent's thread pool when the server runs on gevent.

    A password hash is about 100 ms of CPU inside a C call that releases the GIL. Called in a
    greenlet, it would stall every socket of the process for that long (a thousand delegates log in
    at a plenary's opening); in the pool, the event loop goes on serving them meanwhile.
    """
    if "gevent" in sys.modules:
        from gevent import get_hub, monkey

        if monkey.is_module_patched("socket"):
            return get_hub().threadpool.apply(function, args)
    return function(*args)


def hash_password(password: str, method: str = "scrypt") -> str:
    return off_the_loop(generate_password_hash, password, method)


def verify_password(password_hash: str, password: str) -> bool:
    return off_the_loop(check_password_hash, password_hash, password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lowercase (read once per process)."""
    return frozenset(line.strip() for line in COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines() if line.strip())


def _letters_and_digits(text: str) -> str:
    # "Jane.Okafor" and "jane okafor" are the same name as a password.
    return re.sub(r"[\W_]+", "", text.casefold())


def _personal_words(email: str, names: Iterable[str]) -> set[str]:
    names = [name for name in names if name and name.strip()]
    local_part = email.rpartition("@")[0] if "@" in email else email
    words = {email, local_part, *names}
    if len(names) >= 2:
        words.add("".join(names))
        words.add("".join(reversed(names)))
    return {word for word in map(_letters_and_digits, words) if word}


def password_problem(password: str, *, email: str = "", names: Iterable[str] = ()) -> str | None:
    """Why this password may not be chosen by the person with this email and names, or None if it may."""
    if len(password) < MIN_LENGTH:
        return (
            f"Use {MIN_LENGTH} to {MAX_LENGTH} characters: a passphrase of {RECOMMENDED_LENGTH} or more, "
            "a few unrelated words, is best."
        )
    if len(password) > MAX_LENGTH:
        return f"Use {MIN_LENGTH} to {MAX_LENGTH} characters (this one has {len(password)})."
    if password.casefold() in common_passwords() or password.strip().casefold() in common_passwords():
        return (
            "This is one of the most common passwords, which attackers try first. Choose another: "
            "a few unrelated words make a strong passphrase that is easy to remember."
        )
    if _letters_and_digits(password) in _personal_words(email, names):
        return "Do not use your name or your email address as the password: others can guess it."
    return None
