"""The /live namespace: who may connect, what each event accepts, and what dashboards receive."""

import pytest
from conftest import csrf_token, login, socket_client

from app import create_app, socketio
from auth.models import Role


@pytest.fixture
def officer_client(app, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="o@example.org", password="officer password")
    client = app.test_client()
    login(client, "o@example.org", "officer password", secret, clock)
    return client


@pytest.fixture
def delegate_client(app, make_delegate, clock):
    _, secret = make_delegate("CHE", email="d@example.org", password="delegate password")
    client = app.test_client()
    login(client, "d@example.org", "delegate password", secret, clock)
    return client


def emit(sio, event, payload):
    return sio.emit(event, payload, namespace="/live", callback=True)


def test_anonymous_connections_are_refused(app):
    sio = socketio.test_client(app, namespace="/live", flask_test_client=app.test_client())
    assert not sio.is_connected("/live")


def test_delegates_cannot_watch_the_quorum(app, delegate_client, online_session):
    ack = emit(socket_client(app, delegate_client), "watch_session", {"session_id": online_session.id})
    assert ack == {"ok": False, "error": {"code": "forbidden", "message": ack["error"]["message"]}}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, "bad_request"),
        ("1", "bad_request"),
        ([1], "bad_request"),
        ({}, "bad_request"),
        ({"session_id": "1"}, "bad_request"),
        ({"session_id": True}, "bad_request"),
        ({"session_id": -4}, "bad_request"),
        ({"session_id": 999999}, "not_found"),
    ],
)
def test_malformed_payloads_get_an_error_code(app, officer_client, delegate_client, online_session, payload, code):
    for client, event in ((officer_client, "watch_session"), (delegate_client, "check_in")):
        ack = emit(socket_client(app, client), event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == code and ack["error"]["message"]


def test_check_in_without_a_valid_nonce_is_refused(app, officer_client, delegate_client, online_session):
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})
    ack = emit(socket_client(app, delegate_client), "check_in", {"session_id": online_session.id})
    assert ack["error"]["code"] == "bad_nonce"


def test_check_in_to_a_scheduled_session_says_why(app, delegate_client, online_session):
    ack = emit(socket_client(app, delegate_client), "check_in", {"session_id": online_session.id, "nonce": "a" * 20})
    assert ack["error"] == {"code": "session_closed", "message": "This session has not been opened yet."}


def test_dashboards_follow_check_ins_and_state_changes(app, officer_client, delegate_client, online_session):
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})
    first = socket_client(app, officer_client)
    late = socket_client(app, officer_client)
    assert emit(first, "watch_session", {"session_id": online_session.id})["state"]["parties_present"] == 0

    browser = socket_client(app, delegate_client)
    assert emit(browser, "check_in", {"session_id": online_session.id, "nonce": "b" * 20})["ok"]
    # A dashboard opened late starts in sync from its acknowledgement.
    state = emit(late, "watch_session", {"session_id": online_session.id})["state"]
    assert state["parties_present"] == 1 and state["present"] == {"CHE": "online"}
    updates = [p["args"][0] for p in first.get_received("/live") if p["name"] == "quorum_updated"]
    assert updates[-1]["parties_present"] == 1

    # Closing the session from the dashboard ends presence and tells the delegate's page.
    officer_client.post(f"/sessions/{online_session.id}/close", data={"csrf_token": csrf_token(officer_client)})
    updates = [p["args"][0] for p in late.get_received("/live") if p["name"] == "quorum_updated"]
    assert updates[-1]["state"] == "closed" and updates[-1]["parties_present"] == 0
    told = [p["args"][0] for p in browser.get_received("/live") if p["name"] == "session_updated"]
    assert told[-1] == {"session_id": online_session.id, "state": "closed"}


def test_a_retried_check_in_counts_once(app, officer_client, delegate_client, online_session):
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})
    browser = socket_client(app, delegate_client)
    payload = {"session_id": online_session.id, "nonce": "c" * 20}
    assert emit(browser, "check_in", payload)["recorded"] is True
    assert emit(browser, "check_in", payload)["recorded"] is False


def test_officer_pages_need_an_officer(app, delegate_client, online_session):
    assert delegate_client.get(f"/sessions/{online_session.id}/dashboard").status_code == 403
    response = delegate_client.post(
        f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(delegate_client)}
    )
    assert response.status_code == 403
    assert delegate_client.get(f"/secretariat/sessions/{online_session.id}/attendance.csv").status_code == 403
    assert delegate_client.get("/secretariat/meetings/COP-4/registrations").status_code == 403


def test_state_changes_need_csrf(officer_client, online_session):
    assert officer_client.post(f"/sessions/{online_session.id}/open").status_code == 400


@pytest.mark.parametrize(("origin", "allowed"), [("http://localhost", True), ("http://evil.example", False)])
def test_sockets_are_same_origin_only(client, origin, allowed):
    response = client.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": origin})
    assert (response.status_code == 200) is allowed


def test_logging_out_ends_the_other_sessions_and_their_sockets(app, make_user, clock):
    _, secret = make_user(Role.OFFICER, email="two@example.org", password="officer password")
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, "two@example.org", "officer password", secret, clock)
    login(phone, "two@example.org", "officer password", secret, clock)
    live = socket_client(app, phone)
    assert live.is_connected("/live")
    laptop.post("/auth/logout", data={"csrf_token": csrf_token(laptop)})
    assert not live.is_connected("/live")
    assert not socket_client(app, phone).is_connected("/live")  # its cookie names a login that has ended
    response = phone.get("/sessions/1/dashboard")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_a_process_at_its_connection_cap_refuses_new_sockets_cleanly(database_url, clock, make_delegate):
    """Above SOCKETIO_MAX_CONNECTIONS the page is told "server_busy" (and retries later), never left hanging."""
    app = create_app("testing", {"DATABASE_URL": database_url, "SOCKETIO_MAX_CONNECTIONS": 2})
    app.extensions["clock"] = clock
    user, _ = make_delegate("CHE")
    pages = []
    for _ in range(3):
        client = app.test_client()
        with client.session_transaction() as cookie:
            cookie["_user_id"] = user.get_id()
        pages.append(socketio.test_client(app, namespace="/live", flask_test_client=client))
    assert [page.is_connected("/live") for page in pages] == [True, True, False]
    pages[0].disconnect(namespace="/live")
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = user.get_id()
    assert socketio.test_client(app, namespace="/live", flask_test_client=client).is_connected("/live")
    app.extensions["db_engine"].dispose()


@pytest.mark.parametrize("change", ["sessions ended", "account disabled"])
def test_an_open_socket_stops_acting_once_its_login_ends(
    app, db, delegate_client, online_session, officer_client, change
):
    """Every event checks the login again: logging out elsewhere or a disabled account stops a page already open."""
    import sqlalchemy as sa

    from auth.models import User
    from meetings import services
    from meetings.models import AttendanceEvent

    officer = db.scalar(sa.select(User).where(User.email == "o@example.org"))
    services.change_state(db, online_session, "open", officer, app.extensions["clock"]())
    db.commit()
    page = socket_client(app, delegate_client)
    delegate = db.scalar(sa.select(User).where(User.email == "d@example.org"))
    if change == "sessions ended":
        delegate.session_epoch += 1
    else:
        delegate.is_enabled = False
    db.commit()
    ack = emit(page, "check_in", {"session_id": online_session.id, "nonce": "after-the-login-ended"})
    assert ack["ok"] is False and ack["error"]["code"] == "login_required"
    assert db.scalar(sa.select(sa.func.count()).select_from(AttendanceEvent)) == 0


def test_an_officer_demoted_while_watching_is_refused_at_the_next_resync(app, db, officer_client, online_session):
    import sqlalchemy as sa

    from auth.models import User

    dashboard = socket_client(app, officer_client)
    assert emit(dashboard, "watch_session", {"session_id": online_session.id})["ok"]
    officer = db.scalar(sa.select(User).where(User.email == "o@example.org"))
    officer.role = Role.PARTICIPANT
    db.commit()
    assert emit(dashboard, "watch_session", {"session_id": online_session.id})["error"]["code"] == "forbidden"


def test_a_database_down_while_checking_the_login_is_answered_unavailable(
    app, officer_client, online_session, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from meetings import events

    dashboard = socket_client(app, officer_client)

    def down():
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(events, "account", down)
    ack = emit(dashboard, "watch_session", {"session_id": online_session.id})
    assert ack["ok"] is False and ack["error"]["code"] == "unavailable"


def test_each_event_checks_the_login_afresh_even_within_one_app_context(app, db, delegate_client, online_session):
    """The check is kept for one event only: an app context around several events does not carry it over."""
    import sqlalchemy as sa

    from auth.models import User

    page = socket_client(app, delegate_client)
    with app.app_context():
        assert emit(page, "heartbeat", {"session_id": online_session.id})["ok"]
        delegate = db.scalar(sa.select(User).where(User.email == "d@example.org"))
        delegate.session_epoch += 1
        db.commit()
        assert emit(page, "heartbeat", {"session_id": online_session.id})["error"]["code"] == "login_required"


def test_delegates_pages_hear_of_the_session_when_its_state_changes_not_at_each_check_in(
    app, officer_client, delegate_client, make_delegate, online_session
):
    """A page told "open" checks in again: told at every check-in of thousands, every page would."""
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})
    browser = socket_client(app, delegate_client)
    assert emit(browser, "check_in", {"session_id": online_session.id, "nonce": "d" * 20})["recorded"]
    for n, code in enumerate(["FRA", "NGA", "BRA"]):
        other = app.test_client()
        with other.session_transaction() as cookie:
            cookie["_user_id"] = make_delegate(code)[0].get_id()
        assert emit(
            socket_client(app, other), "check_in", {"session_id": online_session.id, "nonce": f"other-{n:04d}"}
        )["recorded"]

    officer_client.post(f"/sessions/{online_session.id}/suspend", data={"csrf_token": csrf_token(officer_client)})
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})

    told = [p["args"][0]["state"] for p in browser.get_received("/live") if p["name"] == "session_updated"]
    assert told == ["suspended", "open"]


def test_a_disabled_account_cannot_connect(app, db, make_delegate):
    user, _ = make_delegate("CHE")
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = user.get_id()
    assert socket_client(app, client).is_connected("/live")
    user.is_enabled = False
    db.commit()
    assert not socket_client(app, client).is_connected("/live")
