"""Structured logs: one JSON object a line in production, readable text in development, never a secret.

Context travels as `extra=` on the logging call (`log.info("...", extra={"user_id": 7})`) and becomes
keys of the JSON object, or `key=value` pairs after the text message. Lines logged while a request
or socket event is handled also carry its request id and the logged-in account, so that an error
can be traced to the request and the person that met it.

What must never be logged (passwords, TOTP codes and secrets, cookies, CSRF tokens, emailed-link
tokens, badge codes) is kept out by never reading it here: the request line names the method, the
path without its query string and with link tokens replaced, the status, the time taken, the
account id, the client address and the request id; no form, payload, cookie or other header.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from typing import IO

import sqlalchemy as sa
from flask import Request, g, has_request_context

log = logging.getLogger(__name__)

FORMATS = ("text", "json")
# The root handler this module installs; found by name when the app is configured again.
HANDLER_NAME = "app"

# Every LogRecord has these attributes; any other one came from `extra=` and is a context field.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

LINK_PATHS = r"(/(?:auth/confirm|manage-registration|auth/set-password))"
# In a line that quotes a request ("GET /auth/confirm/<token> HTTP/1.1") the token ends at a space or quote;
# in a bare path, at the next slash.
TOKEN_IN_LINE = re.compile(LINK_PATHS + r"/[^/\s?\"]+")
TOKEN_IN_PATH = re.compile(LINK_PATHS + r"/[^/]+")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# A request id from the proxy (nginx's $request_id, a UUID) is kept if it is a short plain token;
# anything else could forge or break log lines and is replaced.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_PATH_LENGTH = 1000


def redact_path(path: str) -> str:
    """A path fit for a log line: tokens of emailed links replaced, control characters too, and bounded."""
    path = TOKEN_IN_PATH.sub(r"\1/[token]", path)
    return CONTROL_CHARACTERS.sub("?", path[:MAX_PATH_LENGTH])


class RedactLinkTokens(logging.Filter):
    """Keep the tokens of emailed links (confirm, manage, set password) out of lines that quote a request.

    Werkzeug's request lines do, and so does Flask's "Exception on <path> [GET]".
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                TOKEN_IN_LINE.sub(r"\1/[token]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        record.msg = TOKEN_IN_LINE.sub(r"\1/[token]", str(record.msg))
        return True


def redact_link_tokens(logger: logging.Logger) -> None:
    """Give a logger the RedactLinkTokens filter, once however many apps are built."""
    if not any(isinstance(existing, RedactLinkTokens) for existing in logger.filters):
        logger.addFilter(RedactLinkTokens())


def request_id(header: str | None) -> str:
    """The X-Request-ID the proxy or client sent when it is a plain token, else a new random one."""
    if header and SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def user_id_of(user: object) -> int | None:
    """The id of a loaded account, read from its identity: no query, even once a rollback has expired it."""
    state = sa.inspect(user, raiseerr=False) if user is not None else None
    return state.identity[0] if state is not None and state.identity else None


def context_of(record: logging.LogRecord) -> dict:
    """The context fields of a record: what the call passed as `extra=` or a filter added."""
    return {key: value for key, value in vars(record).items() if key not in STANDARD_ATTRIBUTES and key[0] != "_"}


class RequestFields(logging.Filter):
    """Adds the request id and the logged-in account to lines logged while a request or socket event runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if not hasattr(record, "request_id") and "request_id" in g:
                record.request_id = g.request_id
            if not hasattr(record, "user_id"):
                # Flask-Login keeps the account here once something asked for it; asking here would query.
                user_id = user_id_of(g.get("_login_user"))
                if user_id is not None:
                    record.user_id = user_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, then the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in context_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a context value JSON cannot hold (a datetime, an enum) is written as text.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """A line for people: time, level, logger and message, then the context fields that have a value, as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{key}={value}" for key, value in context_of(record).items() if value is not None)
        if context:
            line += " " + context
        return line


def configure(fmt: str, level: str, stream: IO[str] | None = None) -> logging.Handler:
    """Send every logger's lines, Flask's and the libraries' included, through one handler on the root logger.

    Calling it again (another app in the same process) replaces the handler it installed before and
    leaves any other handler alone. Lines go to stderr unless a stream is given.
    """
    if fmt not in FORMATS:
        raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    numeric_level = logging.getLevelName(str(level).upper())
    if not isinstance(numeric_level, int):
        raise RuntimeError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}.")
    handler = logging.StreamHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestFields())
    root = logging.getLogger()
    for old in [old for old in root.handlers if old.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # Alembic lists its plugins at INFO whenever it loads (at start, at the first readiness probe).
    logging.getLogger("alembic.runtime.plugins").setLevel(max(numeric_level, logging.WARNING))
    # The app writes one line per request; Werkzeug's own request line (development server) would repeat it.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(max(numeric_level, logging.WARNING))
    redact_link_tokens(werkzeug)
    return handler


def log_request(
    request: Request, status: int, duration_ms: float, user: object, request_id: str, *, level: int = logging.INFO
) -> None:
    """The line of one HTTP request: who asked what, the answer and how long it took."""
    if not log.isEnabledFor(level):
        return
    path = redact_path(request.path)
    log.log(
        level,
        "%s %s %s %.1fms",
        request.method,
        path,
        status,
        duration_ms,
        extra={
            "method": request.method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "user_id": user_id_of(user),
            "remote_addr": request.remote_addr,
            "request_id": request_id,
        },
    )
