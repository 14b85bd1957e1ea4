"""The whole path through the real views and sockets: register, approve, enrol, log in, check in,
watch the quorum, export."""

import csv
import io
import re

import sqlalchemy as sa
from conftest import csrf_token, login, mailed_link, post_code, post_password, socket_client

from auth import totp
from auth.models import User
from meetings.demo import DEMO_ACCOUNTS
from meetings.models import Party, Registration, RegistrationStatus

DELEGATE, OFFICER, SECRETARIAT = DEMO_ACCOUNTS
EMAIL, PASSWORD = "wanjiru.kamau@example.org", "a long enough passphrase"


def demo_secret(db, email: str) -> str:
    return db.scalar(sa.select(User).where(User.email == email)).authenticator.secret


def received(sio, event: str) -> list[dict]:
    return [packet["args"][0] for packet in sio.get_received("/live") if packet["name"] == event]


def test_register_approve_enrol_login_check_in_watch_and_export(app, db, cop4, clock):
    online, in_person = cop4.segments
    meeting_session = online.sessions[0]
    nigeria = db.scalar(sa.select(Party).where(Party.code == "NGA"))

    # 2. A delegate registers; the registration is pending.
    delegate = app.test_client()
    response = delegate.post(
        "/meetings/COP-4/register",
        data={
            "csrf_token": csrf_token(delegate, "/meetings/COP-4/register"),
            "title": "Ms.",
            "given_name": "Wanjiru",
            "family_name": "Kamau",
            "email": "Wanjiru.Kamau@example.org",
            "password": "a long enough passphrase",
            "confirm": "a long enough passphrase",
            "gender": "female",
            "category": "party",
            "party": "NGA",
            "function": "head",
            "segments": [str(online.id), str(in_person.id)],
        },
    )
    assert response.status_code == 302
    registration = db.scalar(
        sa.select(Registration).join(Registration.user).where(User.email == "wanjiru.kamau@example.org")
    )
    assert registration.status == RegistrationStatus.PENDING
    assert registration.party_id == nigeria.id and len(registration.segments) == 2

    # The address is confirmed through the mailed link before the secretariat sees the registration.
    response = post_password(delegate, EMAIL, PASSWORD)
    assert response.status_code == 403 and "confirm your email address first" in response.get_data(as_text=True)
    assert delegate.get(mailed_link(db, EMAIL)).status_code == 302
    assert "your email address is confirmed" in delegate.get("/").get_data(as_text=True)

    # Before approval, the password alone gets a clear refusal, not a login.
    response = post_password(delegate, EMAIL, PASSWORD)
    assert response.status_code == 403
    assert "awaiting approval" in response.get_data(as_text=True)

    # 3. The secretariat sees the pending registration and approves it.
    secretariat = app.test_client()
    login(secretariat, SECRETARIAT.email, SECRETARIAT.password, demo_secret(db, SECRETARIAT.email), clock)
    page = secretariat.get("/secretariat/meetings/COP-4/registrations").get_data(as_text=True)
    assert "Wanjiru Kamau" in page and "Nigeria" in page
    response = secretariat.post(
        f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(secretariat)}
    )
    assert response.status_code == 302
    db.expire_all()
    assert db.get(Registration, registration.id).status == RegistrationStatus.APPROVED
    assert mailed_link(db, EMAIL) == "/auth/login"

    # 4. The delegate logs in, is sent to enrol, reads the key and confirms with a current code.
    response = post_password(delegate, EMAIL, PASSWORD)
    assert response.headers["Location"].endswith("/auth/enrol")
    page = delegate.get("/auth/enrol").get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'<code class="key" id="totp-key">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
    code = totp.code_at(secret, clock())
    response = delegate.post("/auth/enrol", data={"code": code, "csrf_token": csrf_token(delegate, "/auth/enrol")})
    assert response.status_code == 302
    assert delegate.get("/").status_code == 200
    assert "Wanjiru Kamau" in delegate.get("/").get_data(as_text=True)

    # From then on a login needs password and code, and a code works once.
    delegate.post("/auth/logout", data={"csrf_token": csrf_token(delegate)})
    clock.advance(30)
    code = totp.code_at(secret, clock())
    for attempt in ("first", "replay"):
        response = post_password(delegate, EMAIL, PASSWORD)
        assert response.headers["Location"].endswith("/auth/login/code")
        response = post_code(delegate, code)
        if attempt == "first":
            assert response.status_code == 302
            delegate.post("/auth/logout", data={"csrf_token": csrf_token(delegate)})
        else:
            assert response.status_code == 401
            assert "already used" in response.get_data(as_text=True)
    clock.advance(30)
    assert post_code(delegate, totp.code_at(secret, clock())).status_code == 302

    # 6. An officer opens the session and watches its dashboard over Socket.IO.
    officer = app.test_client()
    login(officer, OFFICER.email, OFFICER.password, demo_secret(db, OFFICER.email), clock)
    officer.post(f"/sessions/{meeting_session.id}/open", data={"csrf_token": csrf_token(officer)})
    dashboard = socket_client(app, officer)
    ack = dashboard.emit("watch_session", {"session_id": meeting_session.id}, namespace="/live", callback=True)
    assert ack["ok"]
    in_force = ack["state"]["parties_in_force"]
    assert in_force == db.scalar(
        sa.select(sa.func.count(Party.id)).where(Party.entry_into_force_on <= meeting_session.local_date)
    )
    assert ack["state"]["needed_to_open"] == -(-in_force // 3)
    assert ack["state"]["needed_to_decide"] == -(-2 * in_force // 3)
    # The demo delegate of Indonesia is not here yet: nobody is present.
    assert ack["state"]["parties_present"] == 0 and not ack["state"]["can_open"]

    # 5. The delegate opens the session page and is checked in over Socket.IO.
    assert "Connecting" in delegate.get(f"/sessions/{meeting_session.id}").get_data(as_text=True)
    browser = socket_client(app, delegate)
    assert browser.is_connected("/live")
    ack = browser.emit(
        "check_in", {"session_id": meeting_session.id, "nonce": "n" * 32}, namespace="/live", callback=True
    )
    assert ack["ok"] and ack["status"] == "present" and ack["recorded"]

    update = received(dashboard, "quorum_updated")[-1]
    assert update["parties_present"] == 1
    assert update["present"] == {"NGA": "online"}

    # The delegate closes the page after 45 minutes and does not come back: once the grace
    # period has passed, the sweep checks them out as of the moment they left.
    for _ in range(45 * 3):  # the page's heartbeats, every 20 seconds
        clock.advance(20)
        assert browser.emit("heartbeat", {"session_id": meeting_session.id}, namespace="/live", callback=True) == {
            "ok": True,
            "present": True,
        }
    left_at = clock()
    browser.disconnect(namespace="/live")
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] + 1)
    with app.app_context():
        assert app.extensions["live"].sweep() == {meeting_session.id}
    update = received(dashboard, "quorum_updated")[-1]
    assert update["parties_present"] == 0 and update["present"] == {}

    # 7. The secretariat downloads the attendance: one row per interval.
    response = secretariat.get(f"/secretariat/sessions/{meeting_session.id}/attendance.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 1
    row = rows[0]
    assert row["participant"] == "Ms. Wanjiru Kamau"
    assert (row["category"], row["party"], row["regional_group"], row["channel"]) == (
        "party",
        "NGA",
        "African",
        "online",
    )
    assert row["in_utc"] < row["out_utc"] == left_at.isoformat(timespec="seconds")
