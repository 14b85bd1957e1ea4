"""Database plumbing: declarative base, aware UTC datetimes, engine and per-request sessions."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import sys
import time
import weakref
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores aware datetimes as UTC and gives them back aware, on SQLite as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(dt.UTC)
        # SQLite keeps no offset; store naive UTC there and restore it on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def default_sqlite_url(instance_path: str) -> str:
    return f"sqlite:///{Path(instance_path) / 'cop.sqlite3'}"


def make_engine(
    url: str,
    *,
    echo: bool = False,
    busy_timeout_ms: int = 5000,
    pool_size: int = 5,
    max_overflow: int = 10,
    ping_idle_seconds: float = 10.0,
) -> sa.Engine:
    """An engine for SQLite or PostgreSQL, with SQLite set up for concurrent use (WAL, busy timeout).

    The pool keeps pool_size connections open; up to max_overflow more are opened when needed and
    closed once returned, which costs PostgreSQL a new backend process each time.

    A PostgreSQL connection that waited in the pool longer than ping_idle_seconds is pinged before
    use, and replaced if the server dropped it (a restart, an idle timeout). One used moments ago is
    not: under load, a ping on every checkout is a round trip for every request and every socket
    event. Should the server go away within those seconds, the first statement fails, the whole pool
    is discarded (SQLAlchemy's rule for a disconnect) and the next checkout connects afresh.
    """
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.startswith("sqlite"):
        if url.rstrip("/") in ("sqlite:", "sqlite:///:memory:") or "mode=memory" in url:
            pool = {}  # one connection per thread: no queue to size
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": busy_timeout_ms / 1000}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        if on_gevent() and pool:  # a file, in a server process on gevent
            _checkpoint_off_the_loop(engine, engine.url.database)

        @event.listens_for(engine, "savepoint")
        def _begin_before_savepoint(connection, _name) -> None:
            # pysqlite opens a transaction only before the first INSERT/UPDATE/DELETE, so a SAVEPOINT
            # issued before any write would run outside one, and releasing it would commit for good: a
            # later rollback could not undo it. Open the transaction first. (Reads stay outside
            # transactions until the first write, which keeps concurrent writers from failing on stale
            # read snapshots.)
            dbapi_connection = connection.connection.dbapi_connection
            if not dbapi_connection.in_transaction:
                dbapi_connection.execute("BEGIN")

        return engine
    engine = sa.create_engine(url, echo=echo, **pool)
    _ping_when_idle(engine, ping_idle_seconds)
    return engine


def on_gevent() -> bool:
    """Whether this process runs on gevent's event loop (a gunicorn gevent worker patches the standard library)."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return monkey.is_module_patched("socket")


class Checkpoints:
    """SQLite's checkpoints in a thread of their own, for a server process on gevent (checkpoints_of(engine)).

    A checkpoint copies the write-ahead log back into the database file. SQLite runs one by default
    in whichever connection commits as the log passes 1,000 pages: milliseconds of writing and an
    fsync, during which a gevent process serves none of its sockets, every dozen group commits or
    so under load. Here no connection of the engine checkpoints (wal_autocheckpoint=0): after a
    commit, at most every `seconds`, a passive checkpoint (it never waits for readers or writers)
    runs in a native thread on a connection of its own, and sqlite3 lets the event loop go on
    meanwhile. The checkpoint is passed again (up to `passes` times) until a pass finds nothing
    logged since the one before; a checkpoint that cannot finish (a reader still on older pages) is
    taken up by the next. The log is reused from its start once one has copied it to its end.
    """

    def __init__(self, path: str, seconds: float = 0.5, passes: int = 10) -> None:
        self.path = path
        self.seconds = seconds
        self.passes = passes
        self.runs = 0  # checkpoints run, for tests and benchmarks
        self._due = 0.0
        self._running = False
        self._threads = None

    def after_commit(self) -> None:
        now = time.monotonic()
        if self._running or now < self._due:
            return
        self._running, self._due = True, now + self.seconds
        try:
            if self._threads is None:  # made in the process that uses it, never before a fork
                from gevent.threadpool import ThreadPool

                self._threads = ThreadPool(maxsize=1)
            self._threads.spawn(self._run)
        except Exception:
            self._running = False  # the next commit tries again
            log.exception("database: could not start a checkpoint")

    def _run(self) -> None:  # in the pool's thread
        try:
            connection = sqlite3.connect(self.path, uri=self.path.startswith("file:"))
            try:
                # Again until a pass finds no frame logged since the one before: a pass copies the
                # log as it was when it began, and a writer that begins before the log is copied to
                # its end appends to it instead of writing it again from its start, so that under a
                # steady stream of commits the log would grow as long as the writing goes on.
                logged_before = None
                for _ in range(self.passes):
                    _busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if logged == logged_before and copied >= logged:
                        break
                    logged_before = logged
            finally:
                connection.close()
            self.runs += 1
        except sqlite3.Error as exc:
            log.warning("database: a checkpoint failed: %s", exc)
        finally:
            self._running = False


_checkpoints: weakref.WeakKeyDictionary[sa.Engine, Checkpoints] = weakref.WeakKeyDictionary()


def checkpoints_of(engine: sa.Engine) -> Checkpoints | None:
    """The engine's checkpointer, if its checkpoints run off the event loop."""
    return _checkpoints.get(engine)


def _checkpoint_off_the_loop(engine: sa.Engine, path: str) -> None:
    checkpoints = _checkpoints[engine] = Checkpoints(path)

    @event.listens_for(engine, "connect")
    def _no_checkpoints(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    @event.listens_for(engine, "commit")
    def _checkpoint_soon(_connection) -> None:
        checkpoints.after_commit()


def _ping_when_idle(engine: sa.Engine, seconds: float) -> None:
    """Ping a connection before use if it has waited in the pool longer than seconds (see make_engine)."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.DisconnectionError() from exc  # the pool connects afresh and tries again
            raise


def init_app(app: Flask) -> None:
    """Create the engine for the app's DATABASE_URL and close each request's session at teardown."""
    url = app.config.get("DATABASE_URL") or default_sqlite_url(app.instance_path)
    if url.startswith("sqlite"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["DATABASE_URL"] = url
    engine = make_engine(
        url,
        echo=app.config.get("DATABASE_ECHO", False),
        busy_timeout_ms=app.config["SQLITE_BUSY_TIMEOUT_MS"],
        pool_size=app.config["DATABASE_POOL_SIZE"],
        max_overflow=app.config["DATABASE_MAX_OVERFLOW"],
    )
    app.extensions["db_engine"] = engine
    # The same pool, each statement committed on its own: a lone read on PostgreSQL is then one round
    # trip, not three (BEGIN, the read, and the ROLLBACK as the connection returns to the pool).
    app.extensions["db_autocommit"] = engine.execution_options(isolation_level="AUTOCOMMIT")
    app.extensions["db_sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)
    app.extensions.setdefault("clock", utcnow)
    app.teardown_appcontext(_close_db)


def get_db() -> Session:
    """The database session of the current request or socket event, opened on first use."""
    if "db" not in g:
        g.db = current_app.extensions["db_sessionmaker"]()
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def now() -> dt.datetime:
    """The app's clock: aware UTC, replaceable in tests through app.extensions['clock']."""
    return current_app.extensions["clock"]()


def upgrade(url: str) -> None:
    """Bring the schema at url to the latest migration."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")
