"""The /live Socket.IO namespace: online check-in from delegates' browsers, officers' dashboards, gate kiosks.

Handlers are thin: check the payload and the permission, call a service, commit, acknowledge,
then mark the session changed for the coalesced broadcast. Every acknowledgement is
{"ok": true, ...} or {"ok": false, "error": {code, message}}; docs/socket-protocol.md has them all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps

import sqlalchemy as sa
from flask import current_app, session
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, Namespace, join_room, leave_room
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from auth import throttle
from auth.models import User
from db import get_db, now
from meetings import dashboard, kiosk, services
from meetings.commits import CommitTimeout
from meetings.live import NAMESPACE, attendees_room, officers_room, user_room
from meetings.models import Channel, MeetingSession, Presence

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


def session_changed(meeting_session: MeetingSession | int) -> None:
    """After a commit: the session's dashboards and attendees' pages get its new state (coalesced)."""
    session_id = meeting_session if isinstance(meeting_session, int) else meeting_session.id
    current_app.extensions["live"].changed(session_id)


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def bad_request(message: str = "The request was malformed.") -> services.MeetingError:
    return services.MeetingError("bad_request", message)


def acknowledged(handler: Callable) -> Callable:
    """Turn refusals and failures of a socket event into an error acknowledgement, never a trace; log the outcome.

    Each event gets one INFO line: the event, the account, the session the payload names, "ok" or
    the error code, and the time taken. Never the payload (a kiosk scan carries a badge code). Check-ins
    come by thousands a second, so the line costs two clock reads and one record: no serialisation
    of the payload, no query.
    """
    event = handler.__name__.removeprefix("on_")

    @wraps(handler)
    def wrapped(self, data=None):
        started = time.perf_counter()
        if current_user.is_authenticated:
            # Read before the handler: a rollback expires the account, and reading it then would query.
            user_id = current_user.id
            ack = answer(self, data)
        else:
            user_id = None
            ack = error("login_required", "Your login has ended. Reload the page and log in again.")
        if log.isEnabledFor(logging.INFO):
            session_id = data.get("session_id") if isinstance(data, dict) else None
            outcome = "ok" if ack.get("ok") else ack.get("error", {}).get("code", "error")
            log.info(
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
            return error(
                "unavailable",
                "The server could not record this just now. It will be retried; if not, reload.",
            )
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
    session_id = data.get("session_id")
    if not isinstance(session_id, int) or isinstance(session_id, bool) or not 0 < session_id < 2**31:
        raise bad_request("The request did not name a session.")
    meeting_session = get_db().get(MeetingSession, session_id)
    if meeting_session is None:
        raise services.MeetingError("not_found", "There is no such session.")
    return meeting_session


SESSION_ONLY = frozenset({"session_id"})
SESSION_AND_NONCE = frozenset({"session_id", "nonce"})


def _remember(session_id: int, checked_in: bool) -> None:
    sessions = [sid for sid in session.get(CHECKED_IN_KEY, []) if sid != session_id]
    if checked_in:
        sessions.append(session_id)
    session[CHECKED_IN_KEY] = sessions


def _since(meeting_session: MeetingSession) -> str | None:
    since = get_db().scalar(
        sa.select(Presence.since).where(
            Presence.session_id == meeting_session.id,
            Presence.user_id == current_user.id,
            Presence.channel == Channel.ONLINE,
        )
    )
    return since.isoformat() if since else None


def _online(service: Callable, data: object, fields: frozenset[str]) -> tuple[MeetingSession, object]:
    """Run an online-presence service for the current delegate: check the payload, call, commit, announce.

    The service runs in the process's group commit (meetings/commits.py), in a database session of
    its own, so it is given ids to load there rather than this request's objects.
    """
    data = checked_payload(data, fields)
    meeting_session = session_from(data)
    session_id, user_id = meeting_session.id, current_user.id
    extra = {"nonce": data.get("nonce")} if "nonce" in fields else {}
    at, lapsed_before = now(), current_app.extensions["live"].lapse_cutoff()

    def work(db: Session) -> tuple[object, bool]:
        return service(
            db, db.get(MeetingSession, session_id), db.get(User, user_id), now=at, lapsed_before=lapsed_before, **extra
        )

    commits = current_app.extensions["commits"]
    if commits.enabled:
        # Give this request's connection back while waiting for the group: hundreds of events wait
        # at once, and the committer needs a connection of the pool too.
        get_db().close()
    try:
        outcome, changed = commits.run(work)
    except CommitTimeout:
        raise services.MeetingError(
            "unavailable", "The server could not confirm this in time. It will be retried; if not, reload."
        ) from None
    if changed:
        session_changed(session_id)
    return meeting_session, outcome


def _connections() -> int:
    """The sockets connected to /live in this process, this one included."""
    rooms = current_app.extensions["socketio"].server.manager.rooms
    return len(rooms.get(NAMESPACE, {}).get(None, ()))


class LiveNamespace(Namespace):
    """Check-ins, heartbeats, dashboards and kiosks, for logged-in accounts only."""

    def on_connect(self, auth=None):
        # flask_socketio's ConnectionRefusedError: its message reaches the page (Python's own would not).
        if not current_user.is_authenticated:
            raise ConnectionRefusedError("login_required")
        cap = current_app.config["SOCKETIO_MAX_CONNECTIONS"]
        if cap and _connections() > cap:
            # Refused cleanly while descriptors remain: the page tries again later (static/js/live.js).
            raise ConnectionRefusedError("server_busy")
        session[CHECKED_IN_KEY] = []
        join_room(user_room(current_user.id))
        current_app.extensions["live"].start()

    def on_disconnect(self, reason=None):
        """A closed page is not yet a departure: the presence lapses unless a page reconnects within the grace."""
        if not current_user.is_authenticated:
            return
        db = get_db()
        try:
            changed = services.online_disconnected(
                db,
                session.get(CHECKED_IN_KEY, []),
                current_user,
                now=now(),
                lapsed_before=current_app.extensions["live"].lapse_cutoff(),
            )
            db.commit()
        except SQLAlchemyError:
            db.rollback()
            log.warning("could not stamp the last moment a closed connection was seen", exc_info=True)
            return
        for session_id in changed:
            session_changed(session_id)

    @acknowledged
    def on_check_in(self, data):
        """A delegate's page joins an open online session; a second tab or device joins the same presence."""
        meeting_session, result = _online(services.online_check_in, data, SESSION_AND_NONCE)
        join_room(attendees_room(meeting_session.id))
        _remember(meeting_session.id, checked_in=True)
        return {
            "ok": True,
            "status": "present",
            "at": result.at.isoformat(),
            "since": _since(meeting_session) or result.at.isoformat(),
            "recorded": result.recorded,
        }

    @acknowledged
    def on_heartbeat(self, data):
        """The page is still open. present: false (the presence lapsed or was ended) asks the page to check in again."""
        _, present = _online(services.online_heartbeat, data, SESSION_ONLY)
        return {"ok": True, "present": present}

    @acknowledged
    def on_check_out(self, data):
        """The delegate leaves the session: every tab and device of theirs is told."""
        meeting_session, result = _online(services.online_check_out, data, SESSION_AND_NONCE)
        leave_room(attendees_room(meeting_session.id))
        _remember(meeting_session.id, checked_in=False)
        if result.recorded:
            self.emit(
                "checked_out",
                {"session_id": meeting_session.id, "at": result.at.isoformat()},
                room=user_room(current_user.id),
                include_self=False,
            )
        return {"ok": True, "status": "absent", "at": result.at.isoformat(), "recorded": result.recorded}

    @acknowledged
    def on_watch_session(self, data):
        """An officer's dashboard joins the session's room and starts (or resyncs) from its full current state."""
        if not current_user.is_officer:
            return error(
                "forbidden",
                "Only meeting officers and the secretariat can watch the quorum.",
            )
        data = checked_payload(data, SESSION_ONLY)
        meeting_session = session_from(data)
        join_room(officers_room(meeting_session.id))
        return {"ok": True, "state": dashboard.initial(get_db(), meeting_session, now())}

    @acknowledged
    def on_kiosk_scan(self, data):
        """A gate kiosk records a scanned badge: an entry (with the holder's code) or an exit."""
        if not current_user.is_officer:
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
