"""The composition root: builds the app, wires extensions, blueprints, sockets and commands, and runs it."""

from __future__ import annotations

import gc
import logging
import os
import time

from flask import Flask, Request, g, render_template, request
from flask.logging import default_handler
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

import config
import db
from auth import (
    crypto,
    invite_views,  # noqa: F401  (adds the set-password page to the auth blueprint)
)
from auth.limits import limiter
from auth.login import login_manager
from auth.views import bp as auth_bp

# The *_views modules add their routes to the meetings blueprint when imported.
from meetings import (  # noqa: F401
    admin_views,
    attendance_views,
    badge_views,
    badges,
    commits,
    delegation_views,
    demo,
    desk_views,
    health,
    kiosk_views,
    live,
    logs,
    self_views,
    services,
    snapshot_views,
    statistics_views,
)
from meetings.cli import db_cli, demo_cli, meetings_cli
from meetings.events import NAMESPACE, LiveNamespace, end_user_sockets
from meetings.logs import RedactLinkTokens  # noqa: F401  (tests/test_pages.py imports it from here)
from meetings.models import CATEGORY_LABELS
from meetings.views import bp as meetings_bp

socketio = SocketIO()
csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def create_app(config_name: str | None = None, overrides: dict | None = None) -> Flask:
    """Build the app for a named configuration (APP_CONFIG by default), with optional overrides."""
    app = App(__name__, instance_relative_config=True)
    settings = config.load(config_name)
    settings.update(overrides or {})
    app.config.update(settings)
    # First, so that the request line's hooks run before the CSRF and rate-limit checks that may refuse it.
    register_logging(app)

    crypto.configure(crypto.keys_from_settings(app.config))
    db.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    # Participants may log in only once a registration of theirs is approved.
    app.extensions["login_gate"] = services.login_refusal

    app.register_blueprint(auth_bp)
    app.register_blueprint(meetings_bp)
    register_health(app)
    register_sockets(app)
    register_proxy(app)
    register_cli(app)
    register_templates(app)
    register_errors(app)
    register_security_headers(app)
    tune_gc(app)
    return app


def tune_gc(app: Flask) -> None:
    """Collect cyclic garbage less often in a server process (GC_YOUNG_THRESHOLD, config.py)."""
    threshold = app.config["GC_YOUNG_THRESHOLD"]
    if app.testing or not threshold:
        return
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
    # What exists now (modules, the app, its mappers and templates) lives as long as the process:
    # the oldest generation's passes skip it.
    gc.freeze()


def register_logging(app: Flask) -> None:
    """Logs in the configured format and level, and one line per HTTP request with its request id.

    Tests leave the logging setup to pytest, which captures every record; the request lines are
    written all the same.
    """
    if not app.testing:
        logs.configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    # app.logger's records reach the root handler like every other logger's; Flask's own would print them twice.
    app.logger.removeHandler(default_handler)
    # Flask logs an unhandled exception as "Exception on <path>": the path may hold an emailed link's token.
    logs.redact_link_tokens(app.logger)

    @app.before_request
    def start_request_line():
        g.request_started = time.perf_counter()
        g.request_id = logs.request_id(request.headers.get("X-Request-ID"))

    @app.after_request
    def write_request_line(response):
        request_id = g.get("request_id") or logs.request_id(None)
        duration_ms = (time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000
        # Probes poll every few seconds: their successes only at DEBUG, so that the log stays readable.
        quiet = request.blueprint == health.bp.name and response.status_code < 400
        logs.log_request(
            request,
            response.status_code,
            duration_ms,
            g.get("_login_user"),
            request_id,
            level=logging.DEBUG if quiet else logging.INFO,
        )
        response.headers["X-Request-ID"] = request_id
        return response


def register_health(app: Flask) -> None:
    """/healthz and /readyz: no login, no CSRF token, no rate limit (probes poll them all day)."""
    app.register_blueprint(health.bp)
    csrf.exempt(health.bp)
    limiter.exempt(health.bp)


# Flask-SocketIO pushes a request context for every socket event, built from the environ of the
# connection's first request. Flask would then match its URL against every route and open the
# session (decode the login cookie, check its signature) each time, for nothing: an event is no
# route, and Flask-SocketIO puts the connection's own copy of the session in place at once. At
# thousands of check-ins a second, both are skipped. Flask-SocketIO keeps that copy in the environ,
# from the connect event on.
SOCKET_SESSION = "saved_session"


class App(Flask):
    def create_url_adapter(self, request: Request | None):
        if request is not None and SOCKET_SESSION in request.environ:
            return None  # a socket event: no route to match (and no url_for in socket handlers)
        return super().create_url_adapter(request)


class SessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if SOCKET_SESSION in request.environ:
            return self.session_class()  # replaced by the connection's own session at once
        return super().open_session(app, request)


class WithoutWebSocketCompression:
    """WSGI middleware: a WebSocket handshake goes ahead without the compression the client offers.

    Every browser offers permessage-deflate, and simple-websocket accepts whatever is offered: each
    socket would then keep a zlib compressor and decompressor for as long as it is open, 100 KiB of
    memory per socket (bench/README.md), to shrink messages of a few hundred bytes. With the offer
    taken out of the request, the handshake answers with no extension, as RFC 6455 lets a server do.
    """

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response):
        environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
        return self.wsgi_app(environ, start_response)


def register_sockets(app: Flask) -> None:
    app.session_interface = SessionInterface()
    socketio.init_app(
        app,
        async_mode=app.config["SOCKETIO_ASYNC_MODE"],
        message_queue=app.config["SOCKETIO_MESSAGE_QUEUE"],
        cors_allowed_origins=app.config["SOCKETIO_CORS_ALLOWED_ORIGINS"],
        max_http_buffer_size=app.config["SOCKETIO_MAX_MESSAGE_BYTES"],
        # Each socket event gets its own request context; the database session closes with it.
        manage_session=True,
        # A connection's events run one after the other, in the greenlet that reads the connection,
        # rather than each in a new one: a page's check-in and check-out are handled in the order sent.
        async_handlers=False,
    )
    app.wsgi_app = WithoutWebSocketCompression(app.wsgi_app)
    socketio.on_namespace(LiveNamespace(NAMESPACE))
    app.extensions["end_user_sockets"] = end_user_sockets
    app.extensions["live"] = live.Live(app, socketio)
    app.extensions["commits"] = commits.GroupCommits(app, socketio)


def register_proxy(app: Flask) -> None:
    """Behind PROXY_FIX_X_FOR proxies (nginx in production), take the client's address from X-Forwarded-For.

    Wrapped around the Socket.IO middleware too, so that socket connections see the client as well.
    """
    if app.config["PROXY_FIX_X_FOR"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["PROXY_FIX_X_FOR"]))


def register_cli(app: Flask) -> None:
    for group in (db_cli, demo_cli, meetings_cli):
        app.cli.add_command(group)


def register_templates(app: Flask) -> None:
    app.jinja_env.globals.update(category_labels=CATEGORY_LABELS, current_badge=badges.current_badge)

    @app.template_filter("local")
    def local_time(value, tz: str, fmt: str = "%-d %b %Y, %H:%M"):
        from zoneinfo import ZoneInfo

        return value.astimezone(ZoneInfo(tz)).strftime(fmt) if value else ""


def register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        message = "The form expired or was sent from another page. Go back, reload the page and try again."
        return render_template("errors/error.html", code=400, title="Form expired", message=message), 400

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):
        app.logger.error("database unavailable: %s", exc.__class__.__name__)
        db.get_db().rollback()
        # Rendering would load the account again from the database that just failed: show the page anonymously.
        g._login_user = login_manager.anonymous_user()
        message = "The database is busy or unreachable. Nothing was saved; please try again in a moment."
        return render_template("errors/error.html", code=503, title="Please try again", message=message), 503

    messages = {
        400: ("Bad request", "The request could not be understood."),
        403: ("Not allowed", "Your account does not have access to this page."),
        404: ("Not found", "There is no such page."),
        413: ("Too large", "What you sent is larger than the server accepts."),
        500: (
            "Server error",
            "Something went wrong on our side. Nothing was half-saved; please try again.",
        ),
    }
    for code, (title, message) in messages.items():
        app.register_error_handler(
            code,
            lambda exc, code=code, title=title, message=message: (
                render_template("errors/error.html", code=code, title=title, message=message),
                code,
            ),
        )


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def warm_statistics(app: Flask) -> None:
    """Fold the closed sessions' attendance logs once at start, so that the first statistics page is fast."""
    from meetings import statistics

    with app.app_context():
        try:
            statistics.warm(db.get_db(), db.now())
        except Exception:
            logging.getLogger(__name__).exception("could not prepare the statistics; pages will compute them")


def start_background(app: Flask) -> None:
    """A server process's background work, from its start: the presence sweep and broadcasts, and
    warming the statistics. Called by main() and by gunicorn's worker (deploy/gunicorn.conf.py)."""
    # Presences that lapsed while the server was down are swept without waiting for a first connection.
    app.extensions["live"].start()
    socketio.start_background_task(warm_statistics, app)


def main() -> None:
    """Run the embedded default: migrate the schema, load the COP-4 demo, print the accounts, serve."""
    app = create_app()
    db.upgrade(app.config["DATABASE_URL"])
    with app.app_context():
        session = db.get_db()
        if demo.seed(session, db.utcnow(), app.config["PASSWORD_HASH_METHOD"]):
            demo.seed_sample_registrations(session, db.utcnow())
            session.commit()
        print(demo.describe_accounts(session, app.config["TOTP_ISSUER"]), flush=True)
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    print(
        f"\nOpen http://{host}:{port}/ (database: {app.config['DATABASE_URL']})",
        flush=True,
    )
    # Sweep presences that lapsed while the server was down, without waiting for a first connection.
    start_background(app)
    # The embedded default is one local process on Werkzeug; production runs gunicorn.
    socketio.run(app, host=host, port=port, allow_unsafe_werkzeug=True)


if __name__ == "__main__":
    main()
