"""Login in two steps (password, then a code from the authenticator), enrolment and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from auth import mail, services, throttle, tokens, totp
from auth.forms import CodeForm, LoginForm, ResendForm
from auth.login import PENDING_KEY, begin_pending_login, end_sessions, end_sockets, pending_login
from auth.models import User
from auth.qr import qr_svg
from db import get_db, now

bp = Blueprint("auth", __name__, url_prefix="/auth")


def safe_next(target: str | None) -> str | None:
    """A local path to go back to after login; anything pointing at another host is dropped."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else None


def _finish_login(user) -> str:
    next_url = (session.get(PENDING_KEY) or {}).get("next")
    session.clear()
    login_user(user)
    return next_url or url_for("meetings.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("meetings.index"))
    form = LoginForm()
    if form.validate_on_submit():
        db = get_db()
        refused = throttle.refusal(db, form.email.data, now())
        if refused:
            form.password.errors.append(refused[1])
            return render_template("auth/login.html", form=form), 429
        try:
            user = services.check_password(db, form.email.data, form.password.data)
        except services.AuthError as exc:
            _count_failure(db, form.email.data)
            form.password.errors.append(exc.message)
            return render_template("auth/login.html", form=form), 401
        refusal = current_app.extensions["login_gate"](db, user)
        if refusal:
            flash(refusal, "warning")
            return render_template("auth/login.html", form=form), 403
        stage = "code" if user.has_authenticator else "enrol"
        begin_pending_login(user, stage, now(), safe_next(request.args.get("next")))
        return redirect(url_for("auth.code" if stage == "code" else "auth.enrol"))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


def _count_failure(db, email: str) -> None:
    """Record a failed attempt for the address; it must stay recorded although the request is refused."""
    db.rollback()
    throttle.failed(db, email, now())
    db.commit()


# Wrong and replayed codes count as failures; a malformed one is a typing slip and does not.
COUNTED_CODE_ERRORS = {"bad_code", "replayed_code"}


def _expired():
    flash(
        "Your login took too long or was interrupted. Please enter your email and password again.",
        "warning",
    )
    return redirect(url_for("auth.login"))


@bp.route("/login/code", methods=["GET", "POST"])
def code():
    user = pending_login("code", now())
    if user is None:
        return _expired()
    form = CodeForm()
    if form.validate_on_submit():
        db = get_db()
        refused = throttle.refusal(db, user.email, now())
        if refused:
            form.code.errors.append(refused[1])
            return render_template("auth/code.html", form=form, user=user), 429
        try:
            services.verify_code(db, user, form.code.data, now(), current_app.config["TOTP_VALID_WINDOW"])
        except services.AuthError as exc:
            if exc.code in COUNTED_CODE_ERRORS:
                _count_failure(db, user.email)
            form.code.errors.append(exc.message)
            return render_template("auth/code.html", form=form, user=user), 401
        throttle.succeeded(db, user.email)
        db.commit()
        return redirect(_finish_login(user))
    return render_template("auth/code.html", form=form, user=user), 400 if form.errors else 200


@bp.route("/enrol", methods=["GET", "POST"])
def enrol():
    user = pending_login("enrol", now())
    if user is None:
        return _expired()
    db = get_db()
    try:
        authenticator = services.start_enrolment(db, user)
    except services.AuthError:
        return redirect(url_for("auth.login"))
    db.commit()
    form = CodeForm()
    status = 200
    refused = throttle.refusal(db, user.email, now()) if form.is_submitted() else None
    if refused:
        form.code.errors.append(refused[1])
        status = 429
    elif form.validate_on_submit():
        try:
            services.confirm_enrolment(db, user, form.code.data, now(), current_app.config["TOTP_VALID_WINDOW"])
        except services.AuthError as exc:
            if exc.code in COUNTED_CODE_ERRORS:
                _count_failure(db, user.email)
            form.code.errors.append(exc.message)
            status = 401
        else:
            throttle.succeeded(db, user.email)
            db.commit()
            flash(
                "Your authenticator app is enrolled. From now on, log in with your password and a code.",
                "success",
            )
            return redirect(_finish_login(user))
    elif form.errors:
        status = 400
    uri = totp.provisioning_uri(authenticator.secret, user.email, current_app.config["TOTP_ISSUER"])
    key = " ".join(authenticator.secret[i : i + 4] for i in range(0, len(authenticator.secret), 4))
    return render_template("auth/enrol.html", form=form, user=user, qr=qr_svg(uri), key=key, uri=uri), status


@bp.post("/logout")
@login_required
def logout():
    """Log out everywhere: this session, the account's other sessions and its live connections."""
    user = get_db().get(User, current_user.id)
    end_sessions(user)
    get_db().commit()
    end_sockets(user)
    logout_user()
    session.clear()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def send_confirmation(db, user: User) -> None:
    """Queue the message whose link confirms the user's current email address."""
    token = tokens.make_token(current_app.secret_key, tokens.CONFIRM_EMAIL, user.id, user.email)
    url = url_for("auth.confirm_email", token=token, _external=True)
    mail.queue(
        db,
        user.email,
        "Confirm your email address",
        f"Dear {user.full_name},\n\nPlease confirm your email address by opening this link:\n\n{url}\n\n"
        "Your registration goes to the secretariat for review once the address is confirmed. "
        "If you did not register, ignore this message." + mail.SIGNATURE,
        now(),
    )


@bp.get("/confirm/<token>")
def confirm_email(token: str):
    db = get_db()
    found = tokens.read_token(
        current_app.secret_key, tokens.CONFIRM_EMAIL, token, current_app.config["EMAIL_LINK_MAX_AGE"]
    )
    user = db.get(User, found[0]) if found else None
    if user is None or tokens.fingerprint(user.email) != found[1]:
        flash("That confirmation link is not valid or has expired. Ask for a new one below.", "danger")
        return redirect(url_for("auth.resend_confirmation"))
    if services.confirm_email(db, user, now()):
        db.commit()
        flash("Thank you: your email address is confirmed. Your registration now goes to the secretariat.", "success")
    else:
        flash("Your email address was already confirmed.", "info")
    return redirect(url_for("meetings.index"))


@bp.route("/confirm", methods=["GET", "POST"])
def resend_confirmation():
    """Send a new confirmation link; the answer is the same whether or not the address has an account."""
    form = ResendForm()
    if form.validate_on_submit():
        db = get_db()
        user = services.find_user(db, form.email.data)
        if user is not None and user.email_confirmed_at is None:
            send_confirmation(db, user)
            db.commit()
            mail.deliver_now()
        flash(
            "If that address has an account waiting for confirmation, a new link is on its way. "
            "Check your spam folder too.",
            "info",
        )
        return redirect(url_for("auth.login"))
    return render_template("auth/resend.html", form=form), 400 if form.errors else 200
