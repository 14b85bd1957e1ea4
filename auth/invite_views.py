"""Choosing a password from a mailed link: for members whose focal point registered them."""

from __future__ import annotations

import datetime as dt

from flask import current_app, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo

from auth import tokens
from auth.forms import password_rules
from auth.models import AuditEntry, User
from auth.passwords import HINT, hash_password
from auth.views import bp  # routes are added to the auth blueprint
from db import get_db, now


class SetPasswordForm(FlaskForm):
    """The form's account (set by the view) is the one whose email and names the password must not be."""

    password = PasswordField("New password", description=HINT, validators=[DataRequired(), password_rules])
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )


def save_password(db: Session, user: User, password: str, hash_method: str, now: dt.datetime) -> None:
    """Give the account its password; the link that led here stops working with it."""
    user.password_hash = hash_password(password, hash_method)
    # Following the link proves the address works, for a member whose focal point typed it.
    if user.email_confirmed_at is None:
        user.email_confirmed_at = now
    db.add(
        AuditEntry(at=now, actor_id=user.id, action="user.password_set", target_type="users", target_id=str(user.id))
    )
    db.flush()


def _link_user(token: str) -> tuple[User | None, str | None]:
    """The account the link is for, or why the link cannot be used ("invalid" or "used")."""
    found = tokens.read_token(
        current_app.secret_key, tokens.SET_PASSWORD, token, current_app.config["EMAIL_LINK_MAX_AGE"]
    )
    user = get_db().get(User, found[0]) if found else None
    if user is None or not user.is_enabled:
        return None, "invalid"
    # The link carries a digest of the password hash it was made for: once a password is set, it is spent.
    if tokens.fingerprint(user.password_hash) != found[1]:
        return None, "used"
    return user, None


def _days() -> int:
    return current_app.config["EMAIL_LINK_MAX_AGE"] // 86400


@bp.route("/set-password/<token>", methods=["GET", "POST"])
def set_password(token: str):
    user, problem = _link_user(token)
    if problem is not None:
        return render_template("auth/set_password.html", problem=problem, form=None, user=None, link_days=_days()), 400
    form = SetPasswordForm()
    form.account = user
    if form.validate_on_submit():
        db = get_db()
        save_password(db, user, form.password.data, current_app.config["PASSWORD_HASH_METHOD"], now())
        refusal = current_app.extensions["login_gate"](db, user)
        db.commit()
        if refusal:
            flash(
                f"Your password is set. {refusal} At your first login you will set up an authenticator app "
                "on your phone.",
                "success",
            )
        else:
            flash(
                "Your password is set. Log in now; at your first login you will set up an authenticator app "
                "on your phone.",
                "success",
            )
        return redirect(url_for("auth.login"))
    page = render_template("auth/set_password.html", problem=None, form=form, user=user, link_days=_days())
    return page, 400 if form.errors else 200
