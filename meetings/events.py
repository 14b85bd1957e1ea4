"""The /live Socket.IO namespace: online check-in from delegates' browsers, officers' dashboards, gate kiosks.

Handlers are thin: check the payload and the permission, call a service, commit, acknowledge,
then broadcast. Every acknowledgement is {"ok": true, ...} or {"ok": false, "error": {code, message}}.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import Namespace, join_room, leave_room
from sqlalchemy.exc import SQLAlchemyError

from auth import throttle
from db import get_db, now
from meetings import kiosk, services
from meetings.models import Channel, EventKind, MeetingSession, Source

NAMESPACE = "/live"
CHECKED_IN_KEY = "checked_in_sessions"

log = logging.getLogger(__name__)


def officers_room(session_id: int) -> str:
    return f"officers:{session_id}"


def attendees_room(session_id: int) -> str:
    return f"attendees:{session_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def end_user_sockets(user_id: int) -> None:
    """Close an account's connections: its sessions have ended (logout, authenticator reset, role change)."""
    socketio = current_app.extensions["socketio"]
    # Other processes' pages hear this through the message queue and disconnect themselves.
    socketio.emit("session_ended", {}, to=user_room(user_id), namespace=NAMESPACE)
    for sid, _ in list(socketio.server.manager.get_participants(NAMESPACE, user_room(user_id))):
        socketio.server.disconnect(sid, namespace=NAMESPACE)


def error(code: str, message: str) -> dict:
    return {"ok": False, "error": {"code": code, "message": message}}


def broadcast_session(meeting_session: MeetingSession) -> None:
    """Send the session's committed state to its officers' dashboards and its attendees' pages."""
    socketio = current_app.extensions["socketio"]
    state = services.dashboard_state(get_db(), meeting_session)
    socketio.emit(
        "quorum_updated",
        state,
        to=officers_room(meeting_session.id),
        namespace=NAMESPACE,
    )
    socketio.emit(
        "session_updated",
        {"session_id": meeting_session.id, "state": meeting_session.state.value},
        to=attendees_room(meeting_session.id),
        namespace=NAMESPACE,
    )


def acknowledged(handler: Callable) -> Callable:
    """Turn refusals and failures of a socket event into an error acknowledgement, never a trace."""

    @wraps(handler)
    def wrapped(self, data=None):
        if not current_user.is_authenticated:
            return error(
                "login_required",
                "Your login has ended. Reload the page and log in again.",
            )
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

    return wrapped


def _session_from(data: object) -> MeetingSession:
    """The meeting session a payload names, refusing malformed payloads."""
    if not isinstance(data, dict):
        raise services.MeetingError("bad_request", "The request was malformed.")
    session_id = data.get("session_id")
    if not isinstance(session_id, int) or isinstance(session_id, bool) or session_id <= 0:
        raise services.MeetingError("bad_request", "The request did not name a session.")
    meeting_session = get_db().get(MeetingSession, session_id)
    if meeting_session is None:
        raise services.MeetingError("not_found", "There is no such session.")
    return meeting_session


class LiveNamespace(Namespace):
    """Check-ins and dashboards for logged-in accounts only."""

    def on_connect(self, auth=None):
        if not current_user.is_authenticated:
            raise ConnectionRefusedError("login_required")
        session[CHECKED_IN_KEY] = []
        join_room(user_room(current_user.id))

    def on_disconnect(self, reason=None):
        """Closing the page checks the delegate out of the sessions this connection checked in to."""
        if not current_user.is_authenticated:
            return
        db = get_db()
        for session_id in session.get(CHECKED_IN_KEY, []):
            meeting_session = db.get(MeetingSession, session_id)
            if meeting_session is None:
                continue
            try:
                result = services.record_attendance(
                    db,
                    meeting_session,
                    current_user,
                    kind=EventKind.EXIT,
                    channel=Channel.ONLINE,
                    source=Source.BROWSER,
                    nonce=f"disconnect-{request.sid}-{session_id}",
                    now=now(),
                )
                db.commit()
            except (services.MeetingError, SQLAlchemyError):
                db.rollback()
                log.exception("could not record the check-out of a closed connection")
                continue
            if result.recorded:
                broadcast_session(meeting_session)

    @acknowledged
    def on_check_in(self, data):
        """A delegate's browser checks in to an open online session."""
        return self._attend(data, EventKind.ENTRY)

    @acknowledged
    def on_check_out(self, data):
        return self._attend(data, EventKind.EXIT)

    def _attend(self, data, kind: EventKind) -> dict:
        meeting_session = _session_from(data)
        nonce = data.get("nonce")
        db = get_db()
        result = services.record_attendance(
            db,
            meeting_session,
            current_user,
            kind=kind,
            channel=Channel.ONLINE,
            source=Source.BROWSER,
            nonce=nonce,
            now=now(),
        )
        db.commit()
        checked_in = [sid for sid in session.get(CHECKED_IN_KEY, []) if sid != meeting_session.id]
        if kind == EventKind.ENTRY:
            checked_in.append(meeting_session.id)
            join_room(attendees_room(meeting_session.id))
        else:
            leave_room(attendees_room(meeting_session.id))
        session[CHECKED_IN_KEY] = checked_in
        if result.recorded:
            broadcast_session(meeting_session)
        return {
            "ok": True,
            "status": "present" if kind == EventKind.ENTRY else "absent",
            "at": result.at.isoformat(),
            "recorded": result.recorded,
        }

    @acknowledged
    def on_watch_session(self, data):
        """An officer's dashboard joins the session's room and starts from its current state."""
        if not current_user.is_officer:
            return error(
                "forbidden",
                "Only meeting officers and the secretariat can watch the quorum.",
            )
        meeting_session = _session_from(data)
        join_room(officers_room(meeting_session.id))
        return {
            "ok": True,
            "state": services.dashboard_state(get_db(), meeting_session),
        }

    @acknowledged
    def on_kiosk_scan(self, data):
        """A gate kiosk records a scanned badge: an entry (with the holder's code) or an exit."""
        if not current_user.is_officer:
            return error(
                "forbidden",
                "Only meeting officers and the secretariat can run a gate kiosk.",
            )
        meeting_session = _session_from(data)
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
            broadcast_session(meeting_session)
        return {"ok": True, **result.as_ack()}
