"""Online presence over /live: heartbeats, the grace period, several tabs, restarts, hybrid presence,
acknowledgement after commit, malformed payloads and coalesced dashboard updates."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from types import SimpleNamespace

import pytest
import redis
import sqlalchemy as sa
from conftest import csrf_token, login, socket_client
from sqlalchemy.exc import OperationalError

from app import create_app
from auth.models import Role, User
from meetings import dashboard, services
from meetings import live as live_module
from meetings.live import Live
from meetings.models import AttendanceEvent, Channel, EventKind, Presence, SegmentKind, Source

GRACE = 60


@pytest.fixture
def officer(app, make_user, clock):
    user, secret = make_user(Role.OFFICER, email="o@example.org", password="officer password")
    client = app.test_client()
    login(client, "o@example.org", "officer password", secret, clock)
    return user, client


@pytest.fixture
def opened(db, online_session, officer, clock):
    services.change_state(db, online_session, "open", officer[0], clock())
    db.commit()
    return online_session


@pytest.fixture
def delegate(app, make_delegate, clock):
    """A logged-in delegate of Switzerland: (user, browser client holding the login cookie)."""
    user, secret = make_delegate("CHE", email="d@example.org", password="delegate password")
    client = app.test_client()
    login(client, "d@example.org", "delegate password", secret, clock)
    return user, client


def emit(sio, event, payload):
    return sio.emit(event, payload, namespace="/live", callback=True)


def received(sio, name):
    return [p["args"][0] for p in sio.get_received("/live") if p["name"] == name]


def log_of(db, meeting_session, user=None):
    db.expire_all()
    query = sa.select(AttendanceEvent).where(AttendanceEvent.session_id == meeting_session.id)
    if user is not None:
        query = query.where(AttendanceEvent.user_id == user.id)
    return [(e.kind, e.channel, e.at) for e in db.scalars(query.order_by(AttendanceEvent.at, AttendanceEvent.id))]


def present(db, meeting_session):
    db.expire_all()
    return services.present_users(db, meeting_session)


def sweep(app):
    with app.app_context():
        return app.extensions["live"].sweep()


def test_two_tabs_are_one_presence_until_the_last_one_goes(app, db, opened, delegate, clock):
    user, client = delegate
    arrived = clock()
    first = socket_client(app, client)
    ack = emit(first, "check_in", {"session_id": opened.id, "nonce": "tab-one-0001"})
    assert ack["ok"] and ack["recorded"] and ack["since"] == arrived.isoformat()

    clock.advance(30)
    second = socket_client(app, client)
    ack = emit(second, "check_in", {"session_id": opened.id, "nonce": "tab-two-0001"})
    # The second tab joins the presence: nothing new is recorded, and it started when the first did.
    assert ack["ok"] and not ack["recorded"] and ack["since"] == arrived.isoformat()

    first.disconnect(namespace="/live")
    for _ in range(10):  # the second tab stays open for 200 s, beating every 20 s
        clock.advance(20)
        assert emit(second, "heartbeat", {"session_id": opened.id}) == {"ok": True, "present": True}
    assert sweep(app) == set()
    assert present(db, opened) == {user.id: frozenset({"online"})}

    closed_at = clock.advance(5)
    second.disconnect(namespace="/live")
    clock.advance(GRACE + 1)
    assert sweep(app) == {opened.id}
    assert present(db, opened) == {}
    assert log_of(db, opened, user) == [
        (EventKind.ENTRY, Channel.ONLINE, arrived),
        (EventKind.EXIT, Channel.ONLINE, closed_at),
    ]


def test_a_connection_back_within_the_grace_period_keeps_presence_continuous(app, db, opened, delegate, clock):
    user, client = delegate
    arrived = clock()
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": opened.id, "nonce": "first-check-in"})
    for _ in range(15):
        clock.advance(20)
        emit(page, "heartbeat", {"session_id": opened.id})
    page.disconnect(namespace="/live")

    clock.advance(GRACE - 5)
    assert sweep(app) == set()
    back = socket_client(app, client)
    ack = emit(back, "check_in", {"session_id": opened.id, "nonce": "second-check-in"})
    assert ack["ok"] and not ack["recorded"] and ack["since"] == arrived.isoformat()
    assert log_of(db, opened, user) == [(EventKind.ENTRY, Channel.ONLINE, arrived)]


def test_a_connection_back_after_the_grace_period_is_a_new_arrival(app, db, opened, delegate, officer, clock):
    user, client = delegate
    dashboard_socket = socket_client(app, officer[1])
    emit(dashboard_socket, "watch_session", {"session_id": opened.id})
    arrived = clock()
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": opened.id, "nonce": "first-check-in"})
    dropped = clock.advance(40)
    page.disconnect(namespace="/live")

    # No sweep ran (say every process was busy): the check-in itself ends the lapsed presence first.
    back_at = clock.advance(GRACE + 30)
    back = socket_client(app, client)
    ack = emit(back, "check_in", {"session_id": opened.id, "nonce": "second-check-in"})
    assert ack["ok"] and ack["recorded"] and ack["since"] == back_at.isoformat()
    assert log_of(db, opened, user) == [
        (EventKind.ENTRY, Channel.ONLINE, arrived),
        (EventKind.EXIT, Channel.ONLINE, dropped),
        (EventKind.ENTRY, Channel.ONLINE, back_at),
    ]
    assert received(dashboard_socket, "quorum_updated")[-1]["present"] == {"CHE": "online"}


def test_a_heartbeat_after_a_lapse_asks_the_page_to_check_in_again(app, db, opened, delegate, clock):
    user, client = delegate
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": opened.id, "nonce": "first-check-in"})
    last_seen = clock.advance(20)
    emit(page, "heartbeat", {"session_id": opened.id})
    clock.advance(GRACE + 20)  # a laptop asleep: no heartbeat, no disconnect either

    assert emit(page, "heartbeat", {"session_id": opened.id}) == {"ok": True, "present": False}
    assert log_of(db, opened, user)[-1] == (EventKind.EXIT, Channel.ONLINE, last_seen)
    ack = emit(page, "check_in", {"session_id": opened.id, "nonce": "again-check-in"})
    assert ack["recorded"] and present(db, opened) == {user.id: frozenset({"online"})}


def test_presences_survive_a_server_restart(app, db, opened, delegate, make_delegate, clock):
    """A new process on the same database: who reconnects within the grace period stays continuous,
    the others end at their last heartbeat."""
    user, client = delegate
    other, other_secret = make_delegate("FRA", email="f@example.org", password="french password")
    other_client = app.test_client()
    login(other_client, "f@example.org", "french password", other_secret, clock)
    arrived = clock()
    for sio, nonce in (
        (socket_client(app, client), "che-check-in"),
        (socket_client(app, other_client), "fra-check-in"),
    ):
        emit(sio, "check_in", {"session_id": opened.id, "nonce": nonce})
        clock.advance(10)
        emit(sio, "heartbeat", {"session_id": opened.id})
    other_last_seen = clock()
    # The process dies: its sockets vanish without a disconnect handler running.

    restarted = create_app("testing", {"DATABASE_URL": app.config["DATABASE_URL"]})
    restarted.extensions["clock"] = clock
    clock.advance(30)
    browser = restarted.test_client()
    browser.set_cookie("session", client.get_cookie("session").value)
    page = socket_client(restarted, browser)
    ack = emit(page, "check_in", {"session_id": opened.id, "nonce": "che-reconnect"})
    assert ack["ok"] and not ack["recorded"] and ack["since"] == arrived.isoformat()

    clock.advance(GRACE)
    emit(page, "heartbeat", {"session_id": opened.id})
    assert sweep(restarted) == {opened.id}
    assert present(db, opened) == {user.id: frozenset({"online"})}
    assert log_of(db, opened, other)[-1] == (EventKind.EXIT, Channel.ONLINE, other_last_seen)
    restarted.extensions["db_engine"].dispose()


def test_leaving_from_one_tab_tells_the_others(app, db, opened, delegate, clock):
    _, client = delegate
    first, second = socket_client(app, client), socket_client(app, client)
    emit(first, "check_in", {"session_id": opened.id, "nonce": "tab-one-0001"})
    emit(second, "check_in", {"session_id": opened.id, "nonce": "tab-two-0001"})
    for _ in range(30):
        clock.advance(20)
        emit(second, "heartbeat", {"session_id": opened.id})
    left_at = clock()

    ack = emit(first, "check_out", {"session_id": opened.id, "nonce": "leave-0001"})
    assert ack == {"ok": True, "status": "absent", "at": left_at.isoformat(), "recorded": True}
    assert received(second, "checked_out") == [{"session_id": opened.id, "at": left_at.isoformat()}]
    assert received(first, "checked_out") == []
    assert present(db, opened) == {}
    assert emit(second, "heartbeat", {"session_id": opened.id}) == {"ok": True, "present": False}


def test_a_delegate_online_and_in_the_room_is_one_person_present(app, db, cop4, delegate, officer, clock):
    user, client = delegate
    hybrid = cop4.segments[1].sessions[0]
    hybrid.segment.kind = SegmentKind.HYBRID
    services.change_state(db, hybrid, "open", officer[0], clock())
    db.commit()
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": hybrid.id, "nonce": "online-0001"})
    clock.advance(60)
    emit(page, "heartbeat", {"session_id": hybrid.id})
    services.record_attendance(
        db,
        hybrid,
        user,
        kind=EventKind.ENTRY,
        channel=Channel.IN_PERSON,
        source=Source.KIOSK,
        nonce="gate-0001",
        now=clock(),
    )
    db.commit()

    state = dashboard.state(db, hybrid, clock())
    assert state["present"] == {"CHE": "both"} and state["parties_present"] == 1
    assert state["participants_present"] == 1
    assert state["participants_by_channel"] == {"online": 0, "in_person": 0, "both": 1}

    # The laptop closes; the delegate is still in the room.
    page.disconnect(namespace="/live")
    clock.advance(GRACE + 1)
    sweep(app)
    state = dashboard.state(db, hybrid, clock())
    assert state["present"] == {"CHE": "in_person"} and state["participants_by_channel"]["in_person"] == 1


def test_closing_ends_lapsed_presences_at_their_last_moment_and_the_rest_at_the_close(
    app, db, opened, delegate, make_delegate, officer, clock
):
    user, client = delegate
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": opened.id, "nonce": "che-check-in"})
    gone, _ = make_delegate("FRA")
    services.online_check_in(
        db, opened, gone, nonce="fra-check-in", now=clock(), lapsed_before=clock() - dt.timedelta(seconds=GRACE)
    )
    db.commit()
    gone_at = clock()
    for _ in range(6):
        clock.advance(20)
        emit(page, "heartbeat", {"session_id": opened.id})

    _, officer_client = officer
    officer_client.post(f"/sessions/{opened.id}/close", data={"csrf_token": csrf_token(officer_client)})
    closed_at = clock()
    assert present(db, opened) == {}
    assert log_of(db, opened, user)[-1][::2] == (EventKind.EXIT, closed_at)
    assert log_of(db, opened, gone)[-1][::2] == (EventKind.EXIT, gone_at)
    ack = emit(page, "check_in", {"session_id": opened.id, "nonce": "after-close"})
    assert ack["error"] == {"code": "session_closed", "message": "This session is closed."}


def test_no_one_can_take_the_nonce_of_an_exit_the_server_logs_and_so_stay_present(
    app, db, opened, delegate, make_delegate, officer, clock
):
    user, client = delegate
    page = socket_client(app, client)
    # The server's own nonces cannot be sent: a page's nonce has no ":".
    for system in (f"closed:{user.id}:online", f"lapsed:{user.id}:1"):
        ack = emit(page, "check_in", {"session_id": opened.id, "nonce": system})
        assert ack["error"]["code"] == "bad_nonce"
    # What they looked like once, taken by a delegate for their check-in, ends nothing early and
    # keeps nothing open: the lapse and the close still log their exits.
    other, _ = make_delegate("FRA")
    lapse_of_other = f"lapsed-{other.id}-{int(clock().timestamp() * 1_000_000)}"
    services.online_check_in(
        db, opened, other, nonce="fra-check-in", now=clock(), lapsed_before=clock() - dt.timedelta(seconds=GRACE)
    )
    db.commit()
    assert emit(page, "check_in", {"session_id": opened.id, "nonce": lapse_of_other})["recorded"]
    assert emit(page, "check_out", {"session_id": opened.id, "nonce": f"closed-{user.id}-online"})["recorded"]
    assert emit(page, "check_in", {"session_id": opened.id, "nonce": f"closed-{user.id}-online-2"})["recorded"]
    for _ in range(6):  # the other delegate's presence lapses; this one's does not
        clock.advance(20)
        emit(page, "heartbeat", {"session_id": opened.id})

    _, officer_client = officer
    officer_client.post(f"/sessions/{opened.id}/close", data={"csrf_token": csrf_token(officer_client)})

    assert present(db, opened) == {}
    assert log_of(db, opened, other)[-1][0] == EventKind.EXIT
    assert log_of(db, opened, user)[-1][::2] == (EventKind.EXIT, clock())


def test_an_acknowledgement_means_committed(app, db, opened, delegate, monkeypatch):
    """A failed commit is acknowledged as unavailable and records nothing; the retry with the same nonce counts once."""
    _, client = delegate
    page = socket_client(app, client)
    payload = {"session_id": opened.id, "nonce": "retry-me-0001"}
    real_commit = sa.orm.Session.commit

    def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    monkeypatch.setattr(sa.orm.Session, "commit", failing_commit)
    ack = emit(page, "check_in", payload)
    monkeypatch.setattr(sa.orm.Session, "commit", real_commit)
    assert ack["ok"] is False and ack["error"]["code"] == "unavailable"
    assert log_of(db, opened) == [] and present(db, opened) == {}

    assert emit(page, "check_in", payload)["recorded"] is True
    assert emit(page, "check_in", payload)["recorded"] is False
    assert len(log_of(db, opened)) == 1


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        ("check_in", {"session_id": 1, "nonce": "a" * 20, "extra": 1}, "fields this event does not take: extra"),
        ("heartbeat", {"session_id": 1, "nonce": "a" * 20}, "fields this event does not take: nonce"),
        ("check_out", {"session_id": 2**40, "nonce": "a" * 20}, "did not name a session"),
        ("heartbeat", "session 1", "expected an object"),
    ],
)
def test_malformed_payloads_are_refused_with_a_reason(app, opened, delegate, event, payload, message):
    ack = emit(socket_client(app, delegate[1]), event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request" and message in ack["error"]["message"]


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "spaces are not allowed", 12345678, None, "newline-at-the-end\n"])
def test_bad_nonces_are_refused(app, opened, delegate, nonce):
    ack = emit(socket_client(app, delegate[1]), "check_in", {"session_id": opened.id, "nonce": nonce})
    assert ack["error"]["code"] == "bad_nonce"


def test_concurrent_check_ins_of_one_delegate_record_one_arrival(app, db, opened, delegate, clock):
    """Two devices (or two server processes) check the same delegate in at the same moment."""
    user, _ = delegate
    cutoff = clock() - dt.timedelta(seconds=GRACE)
    results, barrier = [], threading.Barrier(4)

    def device(n):
        session = app.extensions["db_sessionmaker"]()
        try:
            barrier.wait()
            result, _ = services.online_check_in(
                session,
                session.merge(opened),
                session.merge(user),
                nonce=f"device-{n}-nonce",
                now=clock(),
                lapsed_before=cutoff,
            )
            session.commit()
            results.append(result.recorded)
        finally:
            session.close()

    threads = [threading.Thread(target=device, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert len(log_of(db, opened)) == 1 and present(db, opened) == {user.id: frozenset({"online"})}


def test_bursts_reach_dashboards_coalesced_and_current(database_url, clock, cop4, make_delegate):
    """With coalescing on, twenty check-ins in a burst give a few broadcasts, the last one complete."""
    interval = 0.2
    app = create_app("testing", {"DATABASE_URL": database_url, "LIVE_BROADCAST_SECONDS": interval})
    app.extensions["clock"] = clock
    live = app.extensions["live"]
    db = app.extensions["db_sessionmaker"]()
    try:
        meeting_session = db.merge(cop4).segments[0].sessions[0]
        secretariat = db.scalar(sa.select(User).where(User.role == Role.SECRETARIAT))
        services.change_state(db, meeting_session, "open", secretariat, clock())
        db.commit()
        watcher = app.test_client()
        with watcher.session_transaction() as cookie:
            cookie["_user_id"] = secretariat.get_id()
            cookie["_fresh"] = True
        dashboard_socket = socket_client(app, watcher)
        assert emit(dashboard_socket, "watch_session", {"session_id": meeting_session.id})["ok"]

        parties = ["CHE", "FRA", "NGA", "BRA", "IDN", "JPN", "SEN", "MEX", "NOR", "PER"]
        delegates = [make_delegate(code)[0] for code in parties * 2]
        started = time.monotonic()
        with app.app_context():
            for n, user in enumerate(delegates):
                services.record_attendance(
                    db,
                    meeting_session,
                    db.merge(user),
                    kind=EventKind.ENTRY,
                    channel=Channel.ONLINE,
                    source=Source.BROWSER,
                    nonce=f"burst-{n:04d}-nonce",
                    now=clock(),
                )
                db.commit()
                live.changed(meeting_session.id)
        burst = time.monotonic() - started

        deadline, updates = time.monotonic() + 10, []
        while time.monotonic() < deadline:
            updates += received(dashboard_socket, "quorum_updated")
            if updates and updates[-1]["participants_present"] == len(delegates):
                break
            time.sleep(0.05)
        assert updates and updates[-1]["participants_present"] == len(delegates)
        assert updates[-1]["parties_present"] == len(parties)
        # At most one broadcast per interval while the burst lasted, plus the one after it.
        assert len(updates) <= burst / interval + 2 < len(delegates)
    finally:
        live.stop()
        db.close()
        app.extensions["db_engine"].dispose()


class _Crowds:
    """A Socket.IO server stand-in whose officers' rooms hold a given number of dashboards."""

    def __init__(self, watchers: dict[int, int]) -> None:
        self.watchers = watchers
        self.server = SimpleNamespace(manager=self)

    def get_participants(self, namespace, room):
        session_id = int(room.removeprefix("officers:"))
        yield from ((f"sid-{n}", f"eio-{n}") for n in range(self.watchers.get(session_id, 0)))


def test_a_crowd_of_dashboards_gets_fewer_broadcasts_and_resyncs(database_url, monkeypatch):
    settings = {"LIVE_BROADCAST_SECONDS": 0.1, "LIVE_BROADCAST_FANOUT": 2000, "LIVE_BROADCAST_MAX_SECONDS": 0.5}
    settings |= {"DASHBOARD_RESYNC_SECONDS": 30, "DASHBOARD_RESYNC_RATE": 10}
    app = create_app("testing", {"DATABASE_URL": database_url, **settings})
    crowd, few = 1, 2
    live = Live(app, _Crowds({crowd: 1000, few: 100, 3: 500, 4: 10_000}))
    assert [live.spacing(session_id) for session_id in (few, 3, crowd, 4, 5)] == [0.1, 0.25, 0.5, 0.5, 0.1]
    # Their resyncs too: at most ten a second for the crowd, every 30 s for a few.
    assert [live.resync_seconds(session_id) for session_id in (few, 3, crowd, 4, 5)] == [30, 50, 100, 1000, 30]

    clock = [100.0]
    monkeypatch.setattr(live_module.time, "monotonic", lambda: clock[0])
    sent: list[int] = []
    monkeypatch.setattr(live, "send", sent.append)
    monkeypatch.setattr(live, "start", lambda: None)
    rounds = {}
    for tick in range(16):  # two seconds of rounds, eight a second, with both sessions changing all along
        clock[0] = 100.0 + tick * 0.125
        live.changed(crowd)
        live.changed(few)
        live.flush()
        rounds[tick] = list(sent)
        sent.clear()
    assert sum(few in r for r in rounds.values()) == 16
    assert [tick for tick, r in rounds.items() if crowd in r] == [0, 4, 8, 12]
    # Not sent yet, not forgotten: the crowd's last change goes out in its next round.
    clock[0] += 0.5
    live.flush()
    assert sent == [crowd]


def test_a_broadcast_that_fails_is_tried_again_in_the_next_round(database_url, monkeypatch):
    app = create_app("testing", {"DATABASE_URL": database_url, "LIVE_BROADCAST_SECONDS": 0.1})
    live = Live(app, _Crowds({}))
    monkeypatch.setattr(live, "start", lambda: None)
    sent: list[int] = []

    def broken(session_id: int) -> None:
        if session_id == 2:
            raise OperationalError("SELECT", {}, Exception("the database is down"))
        sent.append(session_id)

    monkeypatch.setattr(live, "send", broken)
    for session_id in (1, 2, 3):
        live.changed(session_id)
    with pytest.raises(OperationalError):
        live.flush()
    assert sent == [1]
    monkeypatch.setattr(live, "send", sent.append)
    live.flush()
    assert sent == [1, 2, 3]


def _live_with_queue(database_url: str, queue: str, sent: list, name: str, monkeypatch) -> Live:
    """A process's broadcaster, its message queue at queue, recording (name, session) for each broadcast."""
    app = create_app("testing", {"DATABASE_URL": database_url, "LIVE_BROADCAST_SECONDS": 1.0})
    app.config["SOCKETIO_MESSAGE_QUEUE"] = queue  # read by Live only: no Socket.IO listener in the test
    live = Live(app, _Crowds({}))
    monkeypatch.setattr(live, "start", lambda: None)
    monkeypatch.setattr(live, "send", lambda session_id: sent.append((name, session_id)))
    return live


@pytest.mark.skipif(
    not os.environ.get("TEST_REDIS_URL"), reason="needs TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/0 (.ci/run sets it)"
)
def test_processes_side_by_side_take_turns_to_broadcast_a_session(database_url, monkeypatch):
    # Every broadcast reaches every dashboard, whichever process holds it: two processes with
    # changes to report must not both broadcast within one spacing (here 1 s).
    url, session_id = os.environ["TEST_REDIS_URL"], 987_654
    redis.Redis.from_url(url).delete(f"live:turn:{session_id}")
    sent: list[tuple[str, int]] = []
    first, second = (_live_with_queue(database_url, url, sent, name, monkeypatch) for name in ("first", "second"))
    for live in (first, second):
        live.changed(session_id)
    first.flush()
    second.flush()
    assert sent == [("first", session_id)]
    # The second's change is not forgotten: it goes out once the turn has passed, recounted then.
    time.sleep(1.1)
    second.flush()
    first.flush()  # nothing changed in the first since it broadcast
    assert sent == [("first", session_id), ("second", session_id)]


@pytest.mark.skipif(
    not os.environ.get("TEST_REDIS_URL"), reason="needs TEST_REDIS_URL, e.g. redis://127.0.0.1:6379/0 (.ci/run sets it)"
)
def test_a_process_listens_to_relayed_messages_again_after_redis_drops_it(database_url, monkeypatch, caplog):
    url = os.environ["TEST_REDIS_URL"]
    channel = f"live:notices:test-{os.getpid()}"
    monkeypatch.setattr(live_module, "NOTICES_CHANNEL", channel)
    app = create_app("testing", {"DATABASE_URL": database_url, "LIVE_BROADCAST_SECONDS": 0.1})
    app.config["SOCKETIO_MESSAGE_QUEUE"] = url
    delivered = []
    socketio = SimpleNamespace(emit=lambda *args, **kwargs: delivered.append(args[1]), sleep=time.sleep)
    live = Live(app, socketio)
    listener = threading.Thread(target=live._listen, daemon=True)
    redis_ = redis.Redis.from_url(url)

    def relayed(n: int) -> bool:
        """Tell and relay message n until the listener hands it over (it may be between subscriptions)."""
        for _ in range(50):
            live.tell(7, "checked_out", {"n": n})
            live.relay()
            time.sleep(0.1)
            if {"n": n} in delivered:
                return True
        return False

    listener.start()
    try:
        with caplog.at_level(logging.INFO, logger="meetings.live"):
            assert relayed(1)
            # Redis drops the subscription (a restart, a failover): the listener says so and subscribes again.
            db_index = redis_.connection_pool.connection_kwargs.get("db", 0)
            for client in redis_.client_list(_type="pubsub"):
                if int(client["db"]) == db_index:
                    redis_.client_kill_filter(_id=client["id"])
            assert relayed(2)
        messages = [r.getMessage() for r in caplog.records]
        assert any("cannot listen to the pages' messages" in m for m in messages)
        assert any("listening to the pages' messages again" in m for m in messages)
    finally:
        live.stop()
        listener.join(timeout=5)
        redis_.close()


def test_with_redis_unreachable_each_process_broadcasts_on_its_own_and_says_so_once(database_url, monkeypatch, caplog):
    sent: list[tuple[str, int]] = []
    live = _live_with_queue(database_url, "redis://127.0.0.1:1/0", sent, "alone", monkeypatch)  # nothing listens
    asked = []
    ask = live.redis.set
    monkeypatch.setattr(live.redis, "set", lambda *args, **kwargs: asked.append(args[0]) or ask(*args, **kwargs))
    with caplog.at_level(logging.WARNING, logger="meetings.live"):
        for session_id in (1, 2, 3):
            live.changed(session_id)
            live.flush()
    assert sent == [("alone", 1), ("alone", 2), ("alone", 3)]
    assert len([r for r in caplog.records if "broadcasting alone" in r.getMessage()]) == 1
    # A Redis that does not answer costs a timeout once, not once per broadcast: it is asked again later.
    assert asked == ["live:turn:1"]
    later = time.monotonic() + live_module.REDIS_RETRY_SECONDS
    monkeypatch.setattr(live_module.time, "monotonic", lambda: later)
    live.changed(4)
    live.flush()
    assert asked == ["live:turn:1", "live:turn:4"] and sent[-1] == ("alone", 4)


def test_with_redis_unreachable_a_delegates_pages_in_this_process_are_still_told(database_url, caplog):
    # With several processes, messages to a delegate's pages go out in batches through Redis. If Redis
    # fails, the pages this process holds are told all the same.
    app = create_app("testing", {"DATABASE_URL": database_url, "LIVE_BROADCAST_SECONDS": 0.1})
    app.config["SOCKETIO_MESSAGE_QUEUE"] = "redis://127.0.0.1:1/0"  # nothing listens
    emitted = []
    live = Live(app, SimpleNamespace(emit=lambda *args, **kwargs: emitted.append((args, kwargs))))
    assert live.relaying
    live.tell(7, "checked_out", {"session_id": 1, "at": "then"}, skip_sid="the-tab-that-left")
    assert emitted == []  # kept for the round
    with caplog.at_level(logging.WARNING, logger="meetings.live"):
        live.relay()
        live.tell(7, "checked_out", {"session_id": 2, "at": "later"}, skip_sid="the-tab-that-left")
        live.relay()
    local = {"to": "user:7", "skip_sid": "the-tab-that-left", "namespace": "/live", "ignore_queue": True}
    assert emitted == [
        (("checked_out", {"session_id": 1, "at": "then"}), local),
        (("checked_out", {"session_id": 2, "at": "later"}), local),
    ]
    assert len([r for r in caplog.records if "this process's pages" in r.getMessage()]) == 1


def test_an_unexpected_failure_is_acknowledged_without_a_trace(app, opened, delegate, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services, "online_heartbeat", broken)
    ack = emit(socket_client(app, delegate[1]), "heartbeat", {"session_id": opened.id})
    assert ack["ok"] is False and ack["error"]["code"] == "internal_error"
    assert "secret internals" not in ack["error"]["message"]


def test_a_page_closing_after_its_presence_lapsed_does_not_revive_it(app, db, opened, delegate, clock):
    user, client = delegate
    arrived = clock()
    page = socket_client(app, client)
    emit(page, "check_in", {"session_id": opened.id, "nonce": "first-check-in"})
    clock.advance(GRACE + 1)  # silent, and no sweep ran yet
    page.disconnect(namespace="/live")
    assert present(db, opened) == {}
    assert log_of(db, opened, user) == [
        (EventKind.ENTRY, Channel.ONLINE, arrived),
        (EventKind.EXIT, Channel.ONLINE, arrived),
    ]


def test_a_sweep_that_lost_a_race_does_not_end_the_next_presence(app, db, opened, delegate, officer, clock):
    """A sweep saw a lapsed presence; before it acted, an officer checked the delegate out and the
    delegate came back. The sweep must leave the new presence alone."""
    user, _ = delegate
    cutoff = lambda: clock() - dt.timedelta(seconds=GRACE)  # noqa: E731
    services.online_check_in(db, opened, user, nonce="first-check-in", now=clock(), lapsed_before=cutoff())
    db.commit()
    seen_by_sweep = db.scalar(sa.select(Presence.since))
    clock.advance(GRACE + 5)
    services.record_attendance(
        db,
        opened,
        user,
        kind=EventKind.EXIT,
        channel=Channel.ONLINE,
        source=Source.OFFICER,
        nonce="by-hand-exit",
        now=clock(),
        recorded_by=officer[0],
        reason="left the call",
    )
    back, _ = services.online_check_in(db, opened, user, nonce="second-check-in", now=clock(), lapsed_before=cutoff())
    db.commit()

    ended = services._leave(
        db, opened, user.id, Channel.ONLINE, Source.SYSTEM, seen_by_sweep, since=seen_by_sweep, nonce="stale-sweep"
    )
    db.commit()
    assert ended is None and back.recorded
    assert present(db, opened) == {user.id: frozenset({"online"})}
