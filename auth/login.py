"""Flask-Login wiring, the role checks of views, and the half-finished login kept between its two steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps

from flask import abort, current_app, session
from flask_login import LoginManager, current_user, login_required

from auth.models import Role, User
from db import get_db

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in to continue."
login_manager.login_message_category = "info"

PENDING_KEY = "pending_login"


def login_id_parts(session_id: object) -> tuple[int, int] | None:
    """The account id and session epoch a login cookie's id ("<id>:<epoch>", User.get_id) names; None if malformed."""
    user_id, _, epoch = str(session_id or "").partition(":")
    if not user_id.isdigit() or not epoch.isdigit():
        return None
    return int(user_id), int(epoch)


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The account of a login cookie, unless its sessions were ended since (the epoch moved on)."""
    parts = login_id_parts(session_id)
    if parts is None:
        return None
    user = get_db().get(User, parts[0])
    if user is None or user.session_epoch != parts[1]:
        return None
    return user


def end_sessions(user: User) -> None:
    """End every session of the account (flushed with the caller's transaction); call end_sockets after the commit."""
    user.session_epoch += 1


def end_sockets(user: User) -> None:
    """After the commit: close the account's live connections (each of their events also re-checks the login)."""
    current_app.extensions["end_user_sockets"](user.id)


def role_required(*roles: Role) -> Callable:
    """Only logged-in accounts with one of these roles may use the view; others get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


officer_required = role_required(Role.OFFICER, Role.SECRETARIAT)
secretariat_required = role_required(Role.SECRETARIAT)


def begin_pending_login(user: User, stage: str, now: dt.datetime, next_url: str | None = None) -> None:
    """Remember that the password was right; the code step must follow within the timeout."""
    session.clear()
    session[PENDING_KEY] = {
        "user_id": user.id,
        "stage": stage,
        "at": now.timestamp(),
        "next": next_url,
    }


def pending_login(stage: str, now: dt.datetime) -> User | None:
    """The account whose password was accepted for this stage, if that was recent enough."""
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict) or pending.get("stage") != stage:
        return None
    if now.timestamp() - float(pending.get("at", 0)) > current_app.config["LOGIN_CODE_TIMEOUT"]:
        session.pop(PENDING_KEY, None)
        return None
    user = get_db().get(User, int(pending["user_id"]))
    return user if user is not None and user.is_active else None
