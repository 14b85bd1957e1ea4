"""Liveness and readiness probes for the proxy and the orchestrator: GET /healthz and GET /readyz.

/healthz answers while the process does and touches nothing else. /readyz answers 200 only when
this process can serve: the database answers a trivial query within READINESS_TIMEOUT_SECONDS, its
schema is at the newest migration of this code, and Redis answers a PING when Socket.IO uses it as
message queue. Both are polled every few seconds, so each check costs one or two round trips; only
the schema comparison is remembered, for a few seconds. A failed check is named by a fixed phrase
and an exception class, never by its message, a host or a URL (which could hold a password).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, jsonify
from flask.blueprints import BlueprintSetupState

from db import MIGRATIONS_DIR

bp = Blueprint("health", __name__)

log = logging.getLogger(__name__)

OK = "ok"
# The schema changes only when someone migrates; a readiness poll may repeat the last answer this long.
SCHEMA_CACHE_SECONDS = 5.0
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@functools.cache
def migration_heads() -> frozenset[str]:
    """The newest revision(s) in migrations/, read once: a running process's code does not change."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def failure(exc: BaseException) -> str:
    """A check's failure in a few words: the exception's class (the driver's own, if wrapped), not its text."""
    cause = getattr(exc, "orig", None) or exc
    return f"failed ({type(cause).__name__})"


def schema_state(current: frozenset[str], heads: frozenset[str]) -> str:
    """The word ok when the database is at the newest migration; otherwise where it is and where it should be."""
    if current == heads:
        return OK
    if not current:
        return "not migrated"
    return f"at {', '.join(sorted(current))}, expected {', '.join(sorted(heads))}"


def probe_engine(app: Flask, timeout: float) -> sa.Engine:
    """The engine the database check uses.

    SQLite answers or fails at once, so the app's own engine serves. A server (PostgreSQL) that
    stops answering would hold the app's engine for minutes, so the probe keeps its own small pool
    whose connections give up after the timeout: on connecting and on every statement.
    """
    engine = app.extensions["db_engine"]
    if engine.dialect.name != "postgresql":
        return engine
    probe = sa.create_engine(
        engine.url,
        pool_size=1,
        max_overflow=2,
        pool_timeout=timeout,
        pool_pre_ping=True,
        # libpq counts whole seconds and takes 2 as its smallest timeout.
        connect_args={"connect_timeout": max(2, math.ceil(timeout))},
    )

    @sa.event.listens_for(probe, "connect")
    def _statement_timeout(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {int(timeout * 1000)}")
        cursor.close()
        # A rollback would undo the SET: commit it, so that it holds for the life of the connection.
        dbapi_connection.commit()

    return probe


def redis_client(url: str | None, timeout: float):
    """A client for the message queue when it is Redis, giving up after the timeout without retrying; else None."""
    if not url or not url.startswith(REDIS_SCHEMES):
        return None
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


class Readiness:
    """The checks of /readyz for one app, with the schema answer it remembers and the last outcome it logged."""

    def __init__(self, app: Flask) -> None:
        timeout = float(app.config["READINESS_TIMEOUT_SECONDS"])
        self.engine = probe_engine(app, timeout)
        self.redis = redis_client(app.config.get("SOCKETIO_MESSAGE_QUEUE"), timeout)
        self._schema: tuple[float, str] | None = None
        self._last: dict[str, str] | None = None
        self._lock = threading.Lock()

    def checks(self) -> dict[str, str]:
        """Each check's name and "ok" or why not."""
        checks = {"database": "not checked", "schema": "not checked"}
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
                checks["database"] = OK
                checks["schema"] = self.schema(connection)
        except Exception as exc:
            checks["schema" if checks["database"] == OK else "database"] = failure(exc)
        if self.redis is not None:
            try:
                self.redis.ping()
                checks["redis"] = OK
            except Exception as exc:
                checks["redis"] = failure(exc)
        self.remember(checks)
        return checks

    def schema(self, connection: sa.Connection) -> str:
        """Whether the database is at the newest migration, as found at most SCHEMA_CACHE_SECONDS ago."""
        cached = self._schema
        if cached is not None and time.monotonic() - cached[0] < SCHEMA_CACHE_SECONDS:
            return cached[1]
        current = frozenset()
        if sa.inspect(connection).has_table("alembic_version"):
            current = frozenset(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))
        state = schema_state(current, migration_heads())
        self._schema = (time.monotonic(), state)
        return state

    def remember(self, checks: dict[str, str]) -> None:
        """Log when readiness changes, not at every poll: an outage then reads as two lines, not thousands."""
        with self._lock:
            if checks == self._last:
                return
            first, self._last = self._last is None, checks
        failing = {name: state for name, state in checks.items() if state != OK}
        if failing:
            log.warning("not ready: %s", ", ".join(f"{name} {state}" for name, state in failing.items()))
        elif not first:
            log.info("ready again")


@bp.record_once
def _set_up(state: BlueprintSetupState) -> None:
    state.app.extensions["readiness"] = Readiness(state.app)


def answer(body: dict, status: int):
    response = jsonify(body)
    response.status_code = status
    # A probe's answer is about this moment and this process: no proxy or browser may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Nothing else is checked, so a database outage restarts nothing."""
    return answer({"status": "ok"}, 200)


@bp.get("/readyz")
def readyz():
    """Readiness: the database, its schema and the message queue answer; 503 says which do not."""
    checks = current_app.extensions["readiness"].checks()
    if all(state == OK for state in checks.values()):
        return answer({"status": "ready", "checks": checks}, 200)
    return answer({"status": "unavailable", "checks": checks}, 503)
