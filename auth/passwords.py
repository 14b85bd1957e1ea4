"""Passwords: the rules a new password must meet (NIST SP 800-63B) and hashing with scrypt through Werkzeug.

The rules: at least 8 characters (15 or more recommended), at most 128, no composition rules, not
on the list of common passwords in auth/data, and not the person's email or names.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

from db import on_gevent

MIN_LENGTH = 8
RECOMMENDED_LENGTH = 15
MAX_LENGTH = 128
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt"

HINT = (
    f"At least {MIN_LENGTH} characters; a passphrase of {RECOMMENDED_LENGTH} or more, a few unrelated words, "
    "is best. Any characters, spaces included."
)


T = TypeVar("T")


# The nice value of the threads that hash: the lowest priority. A hash is about 100 ms of CPU; at
# a plenary's opening hundreds of delegates log in at once, and the hashes would otherwise take
# every core from the event loop that serves the sockets.
HASHING_NICE = 19

_pool = None


def off_the_loop(function: Callable[..., T], *args: object) -> T:
    """Call function(*args), in a pool of low-priority threads when the server runs on gevent.

    A password hash is about 100 ms of CPU inside a C call that releases the GIL. Called in a
    greenlet, it would stall every socket of the process for that long (a thousand delegates log in
    at a plenary's opening); in the pool, the event loop goes on serving them meanwhile. The pool
    has a thread per core, each at the lowest priority: hashes take only the CPU that the event
    loop (and the database) leave, and a storm of logins waits rather than slowing check-ins.
    """
    if on_gevent():
        return _hashing_pool().apply(_at_low_priority, (function, args))
    return function(*args)


def _hashing_pool():
    global _pool
    if _pool is None:  # made in the server process that uses it, never before a fork
        from gevent.threadpool import ThreadPool

        _pool = ThreadPool(maxsize=len(os.sched_getaffinity(0)))
    return _pool


def _at_low_priority(function: Callable[..., T], args: tuple) -> T:
    # On Linux a nice value is a thread's own: this lowers the pool's thread, not the event loop's.
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < HASHING_NICE:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICE)
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
