"""Login in two steps (password, then a code from the authenticator or a recovery code), enrolment, logout,
and the account page where recovery codes are renewed."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from auth import crypto, mail, recovery, roles, services, throttle, tokens, totp
from auth.forms import CodeForm, ConfirmForm, LoginForm, RecoveryCodeForm, ResendForm
from auth.login import PENDING_KEY, begin_pending_login, end_sessions, end_sockets, pending_login
from auth.models import RecoveryCode, User
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


def _second_step(template: str, form, check, counted: set[str]):
    """The code step of a login, with a 6-digit code or a recovery code: throttled per address.

    check(db, user) accepts the code or raises AuthError; errors whose code is in counted count as
    failed attempts. Returns (user, result) once logged in, or a response to send back.
    """
    user = pending_login("code", now())
    if user is None:
        return None, _expired()
    if not form.validate_on_submit():
        return None, (render_template(template, form=form, user=user), 400 if form.errors else 200)
    db = get_db()
    refused = throttle.refusal(db, user.email, now())
    if refused:
        form.code.errors.append(refused[1])
        return None, (render_template(template, form=form, user=user), 429)
    try:
        result = check(db, user)
    except services.AuthError as exc:
        if exc.code in counted:
            _count_failure(db, user.email)
        form.code.errors.append(exc.message)
        return None, (render_template(template, form=form, user=user), 401)
    throttle.succeeded(db, user.email)
    db.commit()
    return user, result


@bp.route("/login/code", methods=["GET", "POST"])
def code():
    form = CodeForm()
    window = current_app.config["TOTP_VALID_WINDOW"]
    user, answer = _second_step(
        "auth/code.html",
        form,
        lambda db, user: services.verify_code(db, user, form.code.data, now(), window),
        COUNTED_CODE_ERRORS,
    )
    return redirect(_finish_login(user)) if user is not None else answer


@bp.route("/login/recovery", methods=["GET", "POST"])
def recovery_login():
    """Step 2 with a recovery code instead of the authenticator's code: each code works once."""
    form = RecoveryCodeForm()
    user, answer = _second_step(
        "auth/recovery_login.html",
        form,
        lambda db, user: recovery.use(db, user, form.code.data, now()),
        {"bad_recovery_code"},
    )
    if user is None:
        return answer
    next_url = _finish_login(user)
    flash(*_recovery_code_used_message(answer))  # after the login, which starts a new session
    return redirect(next_url)


def _recovery_code_used_message(left: int) -> tuple[str, str]:
    used = "You logged in with a recovery code; it cannot be used again."
    lost = "If you lost your phone, ask the secretariat to reset your authenticator."
    if left == 0:
        return (
            f"{used} It was your last one: make new codes now on your account page, or losing your phone "
            f"would lock you out. {lost}",
            "warning",
        )
    if left <= recovery.FEW:
        return f"{used} Only {left} remain: make new ones on your account page. {lost}", "warning"
    return f"{used} {left} remain. {lost}", "info"


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
            db.commit()  # the enrolment stands; hashing the codes then holds no lock (recovery.issue)
            codes = recovery.issue(db, user, now(), current_app.config["PASSWORD_HASH_METHOD"], reason="enrolment")
            db.commit()
            next_url = _finish_login(user)
            _keep_codes(codes, next_url)
            flash(
                "Your authenticator app is enrolled. From now on, log in with your password and a code. "
                "One more step: save your recovery codes.",
                "success",
            )
            return redirect(url_for("auth.recovery_codes"))
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


# Recovery codes: shown once, right after they are made ----------------------------------------------

CODES_KEY = "recovery_codes"
# New codes in clear wait in the session (encrypted: the cookie is only signed) until the person has saved them.
CODES_SHOWN_FOR = 30 * 60


def _cipher():
    return crypto.cipher(crypto.keys_from_settings(current_app.config))


def _keep_codes(codes: list[str], next_url: str | None) -> None:
    payload = json.dumps({"codes": codes, "at": now().timestamp(), "next": next_url})
    session[CODES_KEY] = crypto.encrypt(_cipher(), payload)


def _kept_codes() -> dict | None:
    """The codes just made ({"codes", "at", "next"}), if they are still to be saved."""
    token = session.get(CODES_KEY)
    if not token:
        return None
    try:
        kept = json.loads(crypto.decrypt(_cipher(), token))
    except ValueError:
        kept = None
    if kept is None or now().timestamp() - kept["at"] > CODES_SHOWN_FOR:
        session.pop(CODES_KEY, None)
        return None
    return kept


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/recovery-codes")
@login_required
def recovery_codes():
    kept = _kept_codes()
    if kept is None:
        flash(
            "Recovery codes are shown only once, when they are made. Make new ones here if you did not save them.",
            "info",
        )
        return redirect(url_for("auth.account"))
    page = render_template(
        "auth/recovery_codes.html", codes=kept["codes"], form=ConfirmForm(), few=recovery.FEW, count=recovery.COUNT
    )
    return _private(Response(page))


@bp.get("/recovery-codes.txt")
@login_required
def recovery_codes_text():
    kept = _kept_codes()
    if kept is None:
        return redirect(url_for("auth.recovery_codes"))
    text = (
        f"{current_app.config['TOTP_ISSUER']}: recovery codes for {current_user.email}\n"
        f"Made on {now():%d %B %Y at %H:%M} UTC\n\n"
        + "".join(f"{code}\n" for code in kept["codes"])
        + "\nEach code logs you in once instead of a code from your authenticator app.\n"
        "Keep them somewhere safe, away from your phone. Making new codes cancels these.\n"
    )
    response = Response(text, mimetype="text/plain")
    response.headers["Content-Disposition"] = 'attachment; filename="recovery-codes.txt"'
    return _private(response)


@bp.post("/recovery-codes/saved")
@login_required
def recovery_codes_saved():
    if not ConfirmForm().validate_on_submit():
        return redirect(url_for("auth.recovery_codes"))
    kept = _kept_codes()
    session.pop(CODES_KEY, None)
    flash("Your recovery codes are saved. Each one works once, if your phone is not at hand.", "success")
    return redirect((kept or {}).get("next") or url_for("auth.account"))


# The account page ----------------------------------------------------------------------------------


def _account_page(form: CodeForm, status: int = 200):
    db = get_db()
    user = db.get(User, current_user.id)
    made_at = db.scalar(sa.select(sa.func.max(RecoveryCode.created_at)).where(RecoveryCode.user_id == user.id))
    page = render_template(
        "auth/account.html",
        user=user,
        role=roles.ROLE_LABELS[user.role],
        form=form,
        remaining=recovery.remaining(db, user),
        made_at=made_at,
        few=recovery.FEW,
        count=recovery.COUNT,
    )
    return page, status


@bp.get("/account")
@login_required
def account():
    return _account_page(CodeForm())


@bp.post("/account/recovery-codes")
@login_required
def regenerate_recovery_codes():
    """New recovery codes, after a fresh code from the authenticator; the old ones stop working."""
    form = CodeForm()
    if not form.validate_on_submit():
        return _account_page(form, 400)
    db = get_db()
    user = db.get(User, current_user.id)
    refused = throttle.refusal(db, user.email, now())
    if refused:
        form.code.errors.append(refused[1])
        return _account_page(form, 429)
    try:
        services.verify_code(db, user, form.code.data, now(), current_app.config["TOTP_VALID_WINDOW"])
    except services.AuthError as exc:
        if exc.code in COUNTED_CODE_ERRORS:
            _count_failure(db, user.email)
        form.code.errors.append(exc.message)
        return _account_page(form, 401)
    throttle.succeeded(db, user.email)
    db.commit()  # the code is used; hashing the new ones then holds no lock (recovery.issue)
    codes = recovery.issue(db, user, now(), current_app.config["PASSWORD_HASH_METHOD"], reason="renewed")
    db.commit()
    _keep_codes(codes, url_for("auth.account"))
    flash("New recovery codes are made; the old ones no longer work.", "success")
    return redirect(url_for("auth.recovery_codes"))


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
