"""Recovery codes: made at enrolment and shown once, single use, counted, audited, throttled, renewed."""

import re
import threading

import pytest
import sqlalchemy as sa
from conftest import csrf_token, post_code, post_password

from auth import recovery, services, totp
from auth.models import AuditEntry, Authenticator, RecoveryCode, Role, User

PASSWORD = "officer pass phrase"
CODE_RE = re.compile(r"<li><code>([A-Z0-9]{5}-[A-Z0-9]{5})</code></li>")


def enrol(app, db, make_user, clock, email="o@example.org"):
    """First login and enrolment; returns (client, user, secret, the response of the codes page)."""
    user, _ = make_user(Role.OFFICER, email=email, password=PASSWORD, enrolled=False)
    client = app.test_client()
    assert post_password(client, email, PASSWORD).headers["Location"].endswith("/auth/enrol")
    token = csrf_token(client, "/auth/enrol")
    secret = db.scalar(sa.select(Authenticator.secret).where(Authenticator.user_id == user.id))
    response = client.post("/auth/enrol", data={"code": totp.code_at(secret, clock()), "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/auth/recovery-codes")
    return client, user, secret, client.get("/auth/recovery-codes")


@pytest.fixture
def enrolled(app, db, make_user, clock):
    """An officer who has just enrolled: (client, user, secret, the ten codes as shown)."""
    client, user, secret, page = enrol(app, db, make_user, clock)
    codes = CODE_RE.findall(page.get_data(as_text=True))
    client.post("/auth/recovery-codes/saved", data={"csrf_token": csrf_token(client, "/auth/recovery-codes")})
    client.post("/auth/logout", data={"csrf_token": csrf_token(client)})
    return client, user, secret, codes


def post_recovery(client, code: str):
    return client.post(
        "/auth/login/recovery", data={"code": code, "csrf_token": csrf_token(client, "/auth/login/recovery")}
    )


def start_login(client, email="o@example.org"):
    response = post_password(client, email, PASSWORD)
    assert response.headers["Location"].endswith("/auth/login/code")


# Made at enrolment and shown once ------------------------------------------------------------------


def test_enrolment_shows_ten_codes_once_with_a_download_and_keeps_only_their_hashes(app, db, make_user, clock):
    client, user, _, page = enrol(app, db, make_user, clock)
    text = page.get_data(as_text=True)
    codes = CODE_RE.findall(text)
    assert len(codes) == len(set(codes)) == 10
    assert page.headers["Cache-Control"] == "no-store"
    assert "I have saved them" in text and "Download as a text file" in text

    download = client.get("/auth/recovery-codes.txt")
    assert download.headers["Content-Disposition"] == 'attachment; filename="recovery-codes.txt"'
    assert download.mimetype == "text/plain" and all(code in download.get_data(as_text=True) for code in codes)

    stored = db.scalars(sa.select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not any(code.replace("-", "") in h or code in h for h in stored for code in codes)
    assert all(h.startswith("scrypt:") for h in stored)

    response = client.post(
        "/auth/recovery-codes/saved", data={"csrf_token": csrf_token(client, "/auth/recovery-codes")}
    )
    assert response.headers["Location"] == "/"
    # Once saved, they are not shown again: the account page offers to make new ones.
    again = client.get("/auth/recovery-codes")
    assert again.headers["Location"].endswith("/auth/account")
    assert not CODE_RE.search(client.get("/auth/account").get_data(as_text=True))
    assert client.get("/auth/recovery-codes.txt").status_code == 302


def test_unsaved_codes_are_not_shown_after_half_an_hour(app, db, make_user, clock):
    client, *_ = enrol(app, db, make_user, clock)
    clock.advance(31 * 60)
    assert client.get("/auth/recovery-codes").headers["Location"].endswith("/auth/account")


def test_codes_look_like_xxxxx_xxxxx_without_look_alike_characters():
    code = recovery.new_code()
    assert len(code) == 10 and not set(code) & set("01ILO")
    assert re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", recovery.formatted(code))
    assert recovery.normalized(f" {recovery.formatted(code).lower()} ") == code
    assert recovery.normalized("ABCDE FGHJK") == "ABCDEFGHJK"
    assert recovery.normalized("ABCDE-FGHJ0") is None


# Logging in with one ------------------------------------------------------------------------------


def test_the_code_page_offers_a_recovery_code(app, enrolled):
    client = app.test_client()
    start_login(client)
    assert 'href="/auth/login/recovery">Use a recovery code</a>' in client.get("/auth/login/code").get_data(
        as_text=True
    )


def test_a_recovery_code_logs_in_once_and_says_how_many_remain(app, db, enrolled):
    _, user, _, codes = enrolled
    client = app.test_client()
    start_login(client)
    response = post_recovery(client, codes[0].lower().replace("-", " "))
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You logged in with a recovery code; it cannot be used again. 9 remain." in page
    assert client.get("/auth/account").status_code == 200

    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "user.recovery_code_used"))
    assert entry.actor_id == user.id and entry.target_id == str(user.id) and entry.detail == {"remaining": 9}
    assert recovery.remaining(db, user) == 9

    # The same code again: refused.
    other = app.test_client()
    start_login(other)
    response = post_recovery(other, codes[0])
    assert response.status_code == 401
    assert "not right, or it was already used" in response.get_data(as_text=True)


def test_few_remaining_codes_ask_for_new_ones(app, db, enrolled, clock):
    _, user, _, codes = enrolled
    for code in codes[:7]:
        recovery.use(db, user, code, clock())
    db.commit()
    client = app.test_client()
    start_login(client)
    page = client.get(post_recovery(client, codes[7]).headers["Location"]).get_data(as_text=True)
    assert "Only 2 remain: make new ones on your account page." in page
    account = client.get("/auth/account").get_data(as_text=True)
    assert "2 of 10 unused" in account and "Only 2 recovery codes left" in account


def test_wrong_recovery_codes_count_as_failures_in_the_throttle(app, enrolled):
    _, _, _, codes = enrolled
    client = app.test_client()
    start_login(client)
    for _ in range(5):
        assert post_recovery(client, "ABCDE-FGHJK").status_code == 401
    response = post_recovery(client, codes[1])
    assert response.status_code == 429 and "Try again in 30 seconds" in response.get_data(as_text=True)


def test_a_recovery_code_typed_with_impossible_characters_is_a_typing_slip(app, db, enrolled):
    client = app.test_client()
    start_login(client)
    response = post_recovery(client, "ABCDE-FGHJ0")
    assert response.status_code == 401 and "never contains 0, 1, I, L or O" in response.get_data(as_text=True)
    assert db.scalar(sa.text("SELECT count(*) FROM login_throttles")) == 0


def test_one_recovery_code_used_by_parallel_logins_lets_exactly_one_in(app, db, enrolled, clock):
    _, user, _, codes = enrolled
    workers = 8
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []

    def attempt():
        session = app.extensions["db_sessionmaker"]()
        try:
            account = session.get(User, user.id)
            session.commit()
            barrier.wait(timeout=60)
            recovery.use(session, account, codes[2], clock())
            session.commit()
            outcomes.append("ok")
        except services.AuthError as exc:
            session.rollback()
            outcomes.append(exc.code)
        finally:
            session.close()

    threads = [threading.Thread(target=attempt) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["bad_recovery_code"] * (workers - 1) + ["ok"]
    assert recovery.remaining(db, user) == 9


# Renewing them --------------------------------------------------------------------------------------


def test_new_codes_need_a_fresh_code_and_cancel_the_old_ones(app, db, enrolled, clock):
    _, user, secret, codes = enrolled
    client = app.test_client()
    start_login(client)
    clock.advance(30)
    assert post_code(client, totp.code_at(secret, clock())).status_code == 302
    token = csrf_token(client, "/auth/account")

    wrong = client.post("/auth/account/recovery-codes", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 401 and "That code is not right" in wrong.get_data(as_text=True)
    replayed = client.post(
        "/auth/account/recovery-codes", data={"code": totp.code_at(secret, clock()), "csrf_token": token}
    )
    assert replayed.status_code == 401 and "already used" in replayed.get_data(as_text=True)
    assert recovery.remaining(db, user) == 10

    clock.advance(30)
    response = client.post(
        "/auth/account/recovery-codes", data={"code": totp.code_at(secret, clock()), "csrf_token": token}
    )
    assert response.headers["Location"].endswith("/auth/recovery-codes")
    new_codes = CODE_RE.findall(client.get("/auth/recovery-codes").get_data(as_text=True))
    assert len(new_codes) == 10 and not set(new_codes) & set(codes)
    saved = client.post("/auth/recovery-codes/saved", data={"csrf_token": csrf_token(client, "/auth/recovery-codes")})
    assert saved.headers["Location"].endswith("/auth/account")

    issued = db.scalars(
        sa.select(AuditEntry.detail).where(AuditEntry.action == "user.recovery_codes_issued").order_by(AuditEntry.id)
    ).all()
    assert issued == [{"reason": "enrolment", "replaced": 0}, {"reason": "renewed", "replaced": 10}]

    other = app.test_client()
    start_login(other)
    assert post_recovery(other, codes[3]).status_code == 401
    assert post_recovery(other, new_codes[3]).status_code == 302


def test_the_account_page_needs_a_login(client):
    assert "/auth/login" in client.get("/auth/account").headers["Location"]
    assert "/auth/login" in client.get("/auth/recovery-codes").headers["Location"]
    assert "/auth/login" in client.get("/auth/recovery-codes.txt").headers["Location"]
    assert (
        "/auth/login"
        in client.post("/auth/account/recovery-codes", data={"csrf_token": csrf_token(client)}).headers["Location"]
    )


def test_a_recovery_code_needs_the_password_first(client):
    response = client.get("/auth/login/recovery")
    assert response.status_code == 302 and response.headers["Location"].endswith("/auth/login")


def test_while_codes_are_hashed_the_database_is_free_for_other_writers(
    app, db, make_user, clock, database_url, monkeypatch
):
    """Ten hashes take a second: on SQLite, a transaction holding the write lock meanwhile would stall every writer."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's database-wide write lock")
    elsewhere = sa.create_engine(database_url, connect_args={"timeout": 0})
    locked = []
    real = recovery.hash_password

    def hash_while_checking(*args):
        with elsewhere.connect() as connection:
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.exec_driver_sql("ROLLBACK")
                locked.append(False)
            except sa.exc.OperationalError:
                locked.append(True)
        return real(*args)

    monkeypatch.setattr(recovery, "hash_password", hash_while_checking)
    client, _, secret, _ = enrol(app, db, make_user, clock)
    clock.advance(30)
    token = csrf_token(client, "/auth/account")
    renewed = client.post(
        "/auth/account/recovery-codes", data={"code": totp.code_at(secret, clock()), "csrf_token": token}
    )
    elsewhere.dispose()

    assert renewed.headers["Location"].endswith("/auth/recovery-codes")
    assert locked == [False] * 20  # ten at enrolment, ten renewed


def test_no_database_connection_is_held_while_a_recovery_code_is_checked(app, db, enrolled, monkeypatch):
    _, _, _, codes = enrolled
    db.rollback()  # the test's own session lets go of its connection
    engine = app.extensions["db_engine"]
    held = []
    real = recovery.verify_password

    def verify(stored: str, code: str) -> bool:
        held.append(engine.pool.checkedout())
        return real(stored, code)

    monkeypatch.setattr(recovery, "verify_password", verify)
    client = app.test_client()
    start_login(client)
    assert post_recovery(client, codes[-1]).status_code == 302
    assert held and set(held) == {0}
