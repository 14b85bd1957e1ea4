"""Password rules (NIST SP 800-63B): length, the list of common passwords, not the person's email or names."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import csrf_token, post_password

from auth import passwords, tokens
from auth import services as auth_services
from auth.models import AuditEntry, Role, User
from auth.passwords import password_problem
from db import get_db

ROOT = Path(__file__).resolve().parent.parent

PERSON = {"email": "jane.okafor@example.org", "names": ("Jane", "Okafor")}


@pytest.mark.parametrize(
    "password",
    [
        "a long passphrase of unrelated words",
        "correct horse battery staple",
        "abcdefgh",
        "x" * 128,
        "Ünïcödé wörds are fine 🌍",
        "        spaces count",
    ],
)
def test_long_passwords_without_composition_rules_are_accepted(password):
    assert password_problem(password, **PERSON) is None


@pytest.mark.parametrize(("password", "allowed"), [("1234567", False), ("abcdefgh", True), ("x" * 129, False)])
def test_length_is_8_to_128_characters_and_the_message_recommends_15(password, allowed):
    problem = password_problem(password)
    assert (problem is None) is allowed
    if not allowed:
        assert "Use 8 to 128 characters" in problem
    if len(password) < 8:
        assert "15 or more" in problem


@pytest.mark.parametrize("password", ["password1", "PASSWORD123", "Sunshine", "qwertyuiop", "IloveYou2", " iloveyou "])
def test_common_passwords_are_refused_whatever_their_case(password):
    assert "most common passwords" in password_problem(password)


@pytest.mark.parametrize(
    "password",
    [
        "jane.okafor",
        "Jane.Okafor",
        "JANEOKAFOR",
        "jane okafor",
        "okafor jane",
        "jane.okafor@example.org",
        "Okafor-Jane",
    ],
)
def test_the_email_and_the_names_are_refused_as_the_password(password):
    assert "your name or your email address" in password_problem(password, **PERSON)


def test_a_password_that_only_contains_a_name_is_accepted():
    assert password_problem("okafor's garden in lagos", **PERSON) is None


def test_the_shipped_list_holds_ten_thousand_lowercase_passwords_the_other_rules_would_accept():
    lines = passwords.COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(set(lines)) == 10_000
    assert all(line == line.lower() == line.strip() and 8 <= len(line) <= 128 for line in lines)
    assert lines[0] == "password" and "12345678" in lines[:3]
    assert (passwords.COMMON_PASSWORDS.parent / "README.md").read_text().count("MIT") >= 1


# Through the forms -------------------------------------------------------------------------------

REGISTRATION = {
    "title": "Dr.",
    "given_name": "Jane",
    "family_name": "Okafor",
    "email": "jane.okafor@example.org",
    "gender": "female",
    "category": "party",
    "party": "NGA",
    "organization": "",
    "function": "adviser",
}


def register(client, cop4, password: str):
    data = {**REGISTRATION, "password": password, "confirm": password, "segments": [str(cop4.segments[0].id)]}
    data["csrf_token"] = csrf_token(client, "/meetings/COP-4/register")
    return client.post("/meetings/COP-4/register", data=data)


def field_errors(response) -> list[str]:
    """The messages shown next to the password field."""
    page = response.get_data(as_text=True)
    block = page.split('for="password"', 1)[1].split('class="field', 1)[0]
    return re.findall(r'<p class="error" role="alert">([^<]+)</p>', block)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "Use 8 to 128 characters"),
        ("Password123", "one of the most common passwords"),
        ("Jane Okafor", "your name or your email address"),
        ("jane.okafor", "your name or your email address"),
    ],
)
def test_registration_refuses_weak_passwords_next_to_the_field(client, db, cop4, password, message):
    response = register(client, cop4, password)
    assert response.status_code == 400
    errors = field_errors(response)
    assert len(errors) == 1 and message in errors[0].replace("&#39;", "'")
    assert db.scalar(sa.select(User).where(User.email == REGISTRATION["email"])) is None


def test_registration_accepts_a_long_passphrase(client, db, cop4):
    response = register(client, cop4, "mangoes ripen slowly under lagos rain")
    assert response.status_code == 302
    assert db.scalar(sa.select(User).where(User.email == REGISTRATION["email"])) is not None


def set_password_link(app, db, make_user) -> tuple[User, str]:
    """A member pre-registered without a password, and the link mailed to choose one."""
    user, _ = make_user(email="jane.okafor@example.org", enrolled=False)
    user.given_name, user.family_name, user.password_hash = "Jane", "Okafor", None
    db.commit()
    token = tokens.make_token(app.secret_key, tokens.SET_PASSWORD, user.id, None)
    return user, f"/auth/set-password/{token}"


@pytest.mark.parametrize(
    ("password", "message"),
    [("okafor jane", "your name or your email address"), ("iloveyou2", "most common"), ("1234567", "Use 8 to 128")],
)
def test_the_set_password_page_applies_the_same_rules(app, db, client, make_user, password, message):
    user, link = set_password_link(app, db, make_user)
    response = client.post(
        link, data={"password": password, "confirm": password, "csrf_token": csrf_token(client, link)}
    )
    assert response.status_code == 400
    assert message in " ".join(field_errors(response))
    db.expire_all()
    assert db.get(User, user.id).password_hash is None


def test_the_set_password_page_accepts_a_passphrase(app, db, client, make_user):
    user, link = set_password_link(app, db, make_user)
    phrase = "four unrelated words suffice"
    response = client.post(link, data={"password": phrase, "confirm": phrase, "csrf_token": csrf_token(client, link)})
    assert response.status_code == 302
    db.expire_all()
    assert passwords.verify_password(db.get(User, user.id).password_hash, phrase)
    assert db.scalar(sa.select(AuditEntry.action).where(AuditEntry.target_id == str(user.id))) == "user.password_set"


GEVENT_PROBE = """
from gevent import monkey

monkey.patch_all()
import sys
import time

import gevent
from werkzeug.security import generate_password_hash

from auth.passwords import hash_password

ticks = []


def ticker():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.005)


gevent.spawn(ticker)
gevent.sleep(0.05)
hashing = generate_password_hash if sys.argv[1] == "direct" else hash_password
started = time.monotonic()
hashing("correct horse battery", "scrypt:65536:8:1")
took = time.monotonic() - started
gevent.sleep(0.02)
during = [t for t in ticks if t >= started - 0.01]
print(took, max(b - a for a, b in zip(during, during[1:], strict=False)))
"""


@pytest.mark.parametrize("way", ["direct", "off the loop"])
def test_hashing_under_gevent_leaves_every_other_socket_served(way):
    """Under gevent, a hash in the event loop stalls every greenlet for its whole length; ours does not."""
    pytest.importorskip("gevent")
    probe = subprocess.run(
        [sys.executable, "-c", GEVENT_PROBE, "direct" if way == "direct" else "pool"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    took, longest_gap = map(float, probe.stdout.split())
    if way == "direct":
        # The check that the probe can tell: called in the loop, nothing else ran meanwhile.
        assert longest_gap >= 0.8 * took
    else:
        assert longest_gap < 0.5 * took, (took, longest_gap)


NICE_PROBE = """
from gevent import monkey

monkey.patch_all()
import os
import threading

from auth.passwords import off_the_loop


def nice():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


print(off_the_loop(nice), nice())
"""


def test_under_gevent_hashes_run_at_the_lowest_priority_and_the_event_loop_at_its_own():
    """A storm of logins takes only the CPU the event loop leaves: check-ins keep their pace."""
    pytest.importorskip("gevent")
    probe = subprocess.run(
        [sys.executable, "-c", NICE_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    hashing, loop = map(int, probe.stdout.split())
    assert hashing == passwords.HASHING_NICE
    assert loop == os.getpriority(os.PRIO_PROCESS, 0) < hashing


@pytest.mark.parametrize("right", [True, False])
def test_a_login_holds_no_database_connection_while_its_password_hash_runs(app, client, make_user, monkeypatch, right):
    """At a plenary's opening, hashes wait their turn for seconds: the check-ins need the pool meanwhile."""
    user, _secret = make_user(Role.SECRETARIAT)
    engine = app.extensions["db_engine"]
    held = []

    def verify(stored: str, password: str) -> bool:
        held.append((get_db().in_transaction(), engine.pool.checkedout()))
        return passwords.verify_password(stored, password)

    monkeypatch.setattr(auth_services, "verify_password", verify)
    response = post_password(client, user.email, "correct horse battery" if right else "not the password at all")
    assert response.status_code == (302 if right else 401)
    assert held == [(False, 0)]
