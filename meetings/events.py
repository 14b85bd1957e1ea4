"""The /live Socket.IO namespace: online check-in from delegates' browsers, officers' dashboards, gate kiosks.

Handlers are thin: check the payload and the permission, call a service, commit, acknowledge,
then mark the session changed for the coalesced broadcast. Every acknowledgement is
{"ok": true, ...} or {"ok": false, "error": {code, message}}; docs/socket-protocol.md has them all.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from functools import partial, wraps
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app, g, request, session
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room
from sqlalchemy.exc import SQLAlchemyError

from auth import throttle
from auth.login import login_id_parts
from auth.models import Role, User
from db import get_db, now
from meetings import dashboard, kiosk, online, services
from meetings.commits import CommitTimeout
from meetings.live import NAMESPACE, attendees_room, officers_room, user_room
from meetings.models import MeetingSession
from meetings.online import LOGIN_ENDED

__all__ = ["NAMESPACE", "LiveNamespace", "end_user_sockets", "session_changed"]

# The sessions this connection checked in to, so that its disconnect can say when it was last seen.
# Losing it (a crashed process) costs only precision: the presence then ends at the last heartbeat.
CHECKED_IN_KEY = "checked_in_sessions"

log = logging.getLogger(__name__)


def end_user_sockets(user_id: int) -> None:
    """Close an account's connections: its sessions have ended (logout, authenticator reset, role change)."""
    socketio = current_app.extensions["socketio"]
    # Other processes' pages hear this through the message queue and disconnect themselves.
    socketio.emit("session_ended", {}, to=user_room(user_id), namespace=NAMESPACE)
    for sid, _ in list(socketio.server.manager.get_participants(NAMESPACE, user_room(user_id))):
        socketio.server.disconnect(sid, namespace=NAMESPACE)


class Account(NamedTuple):
    """The account a socket event comes from: what the handlers need of it, read without the ORM."""

    id: int
    role: Role

    @property
    def is_officer(self) -> bool:
        return self.role in (Role.OFFICER, Role.SECRETARIAT)


_ACCOUNT = sa.select(User.role, User.session_epoch, User.is_enabled).where(User.id == sa.bindparam("uid"))


def account() -> Account | None:
    """The socket's account, if its login still holds (same session epoch, account enabled); once per event.

    Flask-Login would load the whole account through the ORM for every event; check-ins come by the
    thousand a second, so this reads the three columns that decide, with a statement built once.
    The connection itself was let in by Flask-Login (on_connect).
    """
    # Kept for this event only: g can outlive it (a test's app context around several events).
    event = request._get_current_object()
    cached = g.get("socket_account")
    if cached is not None and cached[0] is event:
        return cached[1]
    found = None
    login = login_of_session()
    if login is not None:
        role = _role_if_login_holds(*login)
        if role is not None:
            found = Account(login[0], role)
    g.socket_account = (event, found)
    return found


def login_of_session() -> tuple[int, int] | None:
    """The account id and session epoch the socket's login cookie names, read without the database."""
    return login_id_parts(session.get("_user_id"))


def _role_if_login_holds(user_id: int, epoch: int) -> Role | None:
    """The account's role if its login still holds (same session epoch, account enabled); else None.

    Read on the event's database session if it has one open, else on a connection of the pool in
    autocommit, without a session or a transaction: a connect reads nothing else, and thousands of
    pages connect within seconds at a plenary's opening (a session of its own cost as much as the
    read, and on PostgreSQL its transaction two round trips more).
    """
    if "db" in g:
        row = g.db.connection().execute(_ACCOUNT, {"uid": user_id}).first()
    else:
        with current_app.extensions["db_autocommit"].connect() as connection:
            row = connection.execute(_ACCOUNT, {"uid": user_id}).first()
    return row.role if row is not None and row.session_epoch == epoch and row.is_enabled else None


def session_changed(meeting_session: MeetingSession | int) -> None:
    """After a commit: the session's dashboards and attendees' pages get its new state (coalesced)."""
    session_id = meeting_session if isinstance(meeting_session, int) else meeting_session.id
    current_app.extensions["live"].changed(session_id)


UNAVAILABLE = "The server could not record this just now. It will be retried; if not, reload."


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def bad_request(message: str = "The request was malformed.") -> services.MeetingError:
    return services.MeetingError("bad_request", message)


def acknowledged(
    handler: Callable | None = None, *, login_in_unit: bool = False, quiet_when_ok: bool = False
) -> Callable:
    """Turn refusals and failures of a socket event into an error acknowledgement, never a trace; log the outcome.

    Every event checks that its login still holds. With login_in_unit (check-ins, check-outs,
    heartbeats: thousands a second), the check runs inside the event's group commit unit, so that
    the event itself does no database work (on PostgreSQL, four round trips fewer); the others
    check it here first.

    Each event gets one INFO line (with quiet_when_ok, DEBUG when it succeeds): the event, the
    account, the session the payload names, "ok" or the error code, and the time taken. Never the
    payload (a kiosk scan carries a badge code). Check-ins come by thousands a second, so the line
    costs two clock reads and one record: no serialisation of the payload, no query.
    """
    if handler is None:
        return lambda handler: acknowledged(handler, login_in_unit=login_in_unit, quiet_when_ok=quiet_when_ok)
    event = handler.__name__.removeprefix("on_")

    @wraps(handler)
    def wrapped(self, data=None):
        started = time.perf_counter()
        user_id = None
        if login_in_unit:
            login = login_of_session()
            if login is not None:
                user_id = login[0]
                ack = answer(self, data)
            else:
                ack = error("login_required", LOGIN_ENDED)
        else:
            try:
                who = account()
            except SQLAlchemyError:
                get_db().rollback()
                log.warning("database error checking the login of socket event %s", event, exc_info=True)
                ack = error("unavailable", UNAVAILABLE)
            else:
                if who is not None:
                    user_id = who.id
                    ack = answer(self, data)
                else:
                    ack = error("login_required", LOGIN_ENDED)
        # A heartbeat that finds all well says only that a page is still open: at DEBUG, or ten
        # thousand open pages would write five hundred lines a second.
        level = logging.DEBUG if quiet_when_ok and ack.get("ok") else logging.INFO
        if log.isEnabledFor(level):
            session_id = data.get("session_id") if isinstance(data, dict) else None
            outcome = "ok" if ack.get("ok") else ack.get("error", {}).get("code", "error")
            log.log(
                level,
                "%s: %s",
                event,
                outcome,
                extra={
                    "event": event,
                    "user_id": user_id,
                    # Only a well-formed id: whatever else a client sent stays out of the log.
                    "session_id": session_id if type(session_id) is int else None,
                    "outcome": outcome,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        return ack

    def answer(self, data):
        try:
            return handler(self, data)
        except services.MeetingError as exc:
            get_db().rollback()
            return error(exc.code, exc.message)
        except SQLAlchemyError:
            get_db().rollback()
            log.exception("database error in socket event %s", handler.__name__)
            return error("unavailable", UNAVAILABLE)
        except Exception:
            get_db().rollback()
            log.exception("unexpected error in socket event %s", handler.__name__)
            return error("internal_error", "Something went wrong on the server; nothing was recorded. Try again.")

    return wrapped


def checked_payload(data: object, allowed: frozenset[str]) -> dict:
    """The payload as a dict with only the allowed fields; anything else is a bad_request."""
    if not isinstance(data, dict):
        raise bad_request("The request was malformed (expected an object).")
    unknown = set(data) - allowed
    if unknown:
        raise bad_request(f"The request had fields this event does not take: {', '.join(sorted(map(str, unknown)))}.")
    return data


def session_from(data: dict) -> MeetingSession:
    """The meeting session a checked payload names."""
    meeting_session = get_db().get(MeetingSession, _session_id(data), options=services.WITH_MEETING)
    if meeting_session is None:
        raise services.MeetingError("not_found", "There is no such session.")
    return meeting_session


def _session_id(data: dict) -> int:
    session_id = data.get("session_id")
    if not isinstance(session_id, int) or isinstance(session_id, bool) or not 0 < session_id < 2**31:
        raise bad_request("The request did not name a session.")
    return session_id


SESSION_ONLY = frozenset({"session_id"})
SESSION_AND_NONCE = frozenset({"session_id", "nonce"})


def _remember(session_id: int, checked_in: bool) -> None:
    sessions = [sid for sid in session.get(CHECKED_IN_KEY, []) if sid != session_id]
    if checked_in:
        sessions.append(session_id)
    session[CHECKED_IN_KEY] = sessions


def _online(kind: str, data: object, fields: frozenset[str]) -> tuple[int, object, dt.datetime | None]:
    """Record the current delegate's online event: check the payload, run it, wait for its commit, announce.

    The event runs in the process's group commit (meetings/commits.py), in a database session of its
    own, by ids (meetings/online.py), and with the other events of its group at once where it can.
    Returns the session's id, the outcome and, for a check-in, when the delegate's online presence
    began (None if absent).
    """
    data = checked_payload(data, fields)
    session_id = _session_id(data)
    user_id, epoch = login_of_session()
    at, lapsed_before = now(), current_app.extensions["live"].lapse_cutoff()
    item = online.Online(kind, session_id, user_id, epoch, data.get("nonce"), at, lapsed_before)
    try:
        outcome, changed, since = current_app.extensions["commits"].run(
            partial(online.one, item=item), batch=(online.many, item)
        )
    except CommitTimeout:
        raise services.MeetingError(
            "unavailable", "The server could not confirm this in time. It will be retried; if not, reload."
        ) from None
    if changed:
        session_changed(session_id)
    return session_id, outcome, since


def _connections() -> int:
    """The sockets connected to /live in this process, this one included."""
    rooms = current_app.extensions["socketio"].server.manager.rooms
    return len(rooms.get(NAMESPACE, {}).get(None, ()))


# Reasons for which the connection was alive until it ended: the page closed it, or the server did,
# or its transport closed (a tab closed, a network switched). Any other (a ping timeout, a transport
# error) comes after a silence: the page was last heard from before.
ALIVE_UNTIL_THE_END = frozenset({"client disconnect", "server disconnect", "transport close"})


def _last_contact(reason: str | None) -> dt.datetime | None:
    """When the disconnecting page was last heard from, if later than its last check-in or heartbeat.

    After a silence, the last packet received is the answer to the transport's last ping: Engine.IO
    sends a ping one ping interval after each answer, so an unanswered ping sent at t was preceded by
    an answer at t - interval. None when that is not known: the last heartbeat's stamp stands.
    """
    if reason in ALIVE_UNTIL_THE_END:
        return now()
    server = current_app.extensions["socketio"].server
    try:
        eio_sid = server.manager.eio_sid_from_sid(request.sid, NAMESPACE)
        last_ping = server.eio.sockets[eio_sid].last_ping
    except (KeyError, AttributeError):
        return None
    if not last_ping:
        return None
    return dt.datetime.fromtimestamp(last_ping - server.eio.ping_interval, dt.UTC)


def _last_page_in(user_id: int, session_ids: list[int]) -> set[int]:
    """The sessions in which the disconnecting page was the user's last page connected to this process."""
    rooms = current_app.extensions["socketio"].server.manager.rooms.get(NAMESPACE, {})
    others = set(rooms.get(user_room(user_id), ())) - {request.sid}
    return {s for s in session_ids if others.isdisjoint(rooms.get(attendees_room(s), ()))}


class LiveNamespace(Namespace):
    """Check-ins, heartbeats, dashboards and kiosks, for logged-in accounts only."""

    def on_connect(self, auth=None):
        # The login, read as every event reads it (account(): three columns, no ORM): at a plenary's
        # opening, thousands of pages connect within seconds.
        who = account()
        # flask_socketio's ConnectionRefusedError: its message reaches the page (Python's own would not).
        if who is None:
            raise ConnectionRefusedError("login_required")
        cap = current_app.config["SOCKETIO_MAX_CONNECTIONS"]
        if cap and _connections() > cap:
            # Refused cleanly while descriptors remain: the page tries again later (static/js/live.js).
            raise ConnectionRefusedError("server_busy")
        session[CHECKED_IN_KEY] = []
        join_room(user_room(who.id))
        current_app.extensions["live"].start()

    def on_disconnect(self, reason=None):
        """A closed page is not yet a departure: the presence lapses unless a page reconnects within the grace."""
        checked_in = session.get(CHECKED_IN_KEY, [])
        if not checked_in:
            return  # a dashboard, a kiosk, a page that never checked in: nothing to stamp
        who = account()
        if who is None:
            return
        db = get_db()
        try:
            changed = services.online_disconnected(
                db,
                checked_in,
                who,
                now=now(),
                lapsed_before=current_app.extensions["live"].lapse_cutoff(),
                seen_at=_last_contact(reason),
                last_page=_last_page_in(who.id, checked_in),
            )
            db.commit()
        except SQLAlchemyError:
            db.rollback()
            log.warning("could not stamp the last moment a closed connection was seen", exc_info=True)
            return
        for session_id in changed:
            session_changed(session_id)

    @acknowledged(login_in_unit=True)
    def on_check_in(self, data):
        """A delegate's page joins an open online session; a second tab or device joins the same presence."""
        session_id, result, since = _online(online.CHECK_IN, data, SESSION_AND_NONCE)
        join_room(attendees_room(session_id))
        _remember(session_id, checked_in=True)
        return {
            "ok": True,
            "status": "present",
            "at": result.at.isoformat(),
            "since": (since or result.at).isoformat(),
            "recorded": result.recorded,
        }

    @acknowledged(login_in_unit=True, quiet_when_ok=True)
    def on_heartbeat(self, data):
        """The page is still open. present: false (the presence lapsed or was ended) asks the page to check in again."""
        _, present, _ = _online(online.HEARTBEAT, data, SESSION_ONLY)
        return {"ok": True, "present": present}

    @acknowledged(login_in_unit=True)
    def on_check_out(self, data):
        """The delegate leaves the session: every tab and device of theirs is told."""
        session_id, result, _ = _online(online.CHECK_OUT, data, SESSION_AND_NONCE)
        leave_room(attendees_room(session_id))
        _remember(session_id, checked_in=False)
        if result.recorded:
            current_app.extensions["live"].tell(
                login_of_session()[0],
                "checked_out",
                {"session_id": session_id, "at": result.at.isoformat()},
                skip_sid=request.sid,
            )
        return {"ok": True, "status": "absent", "at": result.at.isoformat(), "recorded": result.recorded}

    @acknowledged
    def on_watch_session(self, data):
        """An officer's dashboard joins the session's room and starts (or resyncs) from its full current state."""
        if not account().is_officer:
            return error(
                "forbidden",
                "Only meeting officers and the secretariat can watch the quorum.",
            )
        data = checked_payload(data, SESSION_ONLY)
        meeting_session = session_from(data)
        join_room(officers_room(meeting_session.id))
        return {
            "ok": True,
            "state": dashboard.initial(get_db(), meeting_session, now()),
            "resync_seconds": current_app.extensions["live"].resync_seconds(meeting_session.id),
        }

    @acknowledged
    def on_kiosk_scan(self, data):
        """A gate kiosk records a scanned badge: an entry (with the holder's code) or an exit."""
        if not account().is_officer:
            return error(
                "forbidden",
                "Only meeting officers and the secretariat can run a gate kiosk.",
            )
        data = checked_payload(data, kiosk.SCAN_FIELDS)
        meeting_session = session_from(data)
        scan = kiosk.read_scan(data)
        db = get_db()
        try:
            result = kiosk.record_scan(
                db,
                meeting_session,
                scan,
                officer=current_user,
                secret_key=current_app.secret_key,
                now=now(),
                window=current_app.config["TOTP_VALID_WINDOW"],
            )
        except kiosk.CodeRefused as exc:
            # The wrong code stays counted although the scan is refused, as at login.
            db.rollback()
            throttle.failed(db, exc.email, now())
            db.commit()
            raise
        db.commit()
        if result.recorded:
            session_changed(meeting_session)
        return {"ok": True, **result.as_ack()}
