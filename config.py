"""Configuration: defaults, testing and production settings, overridable from the environment."""

from __future__ import annotations

import json
import os

DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me"


class Config:
    """Defaults for the embedded setup: SQLite in the instance folder, one process."""

    DEBUG = False
    TESTING = False
    SECRET_KEY = DEFAULT_SECRET_KEY
    # None means SQLite in the instance folder (resolved by the app factory).
    DATABASE_URL: str | None = None
    DATABASE_ECHO = False
    # Connections each process keeps open, and how many more it may open for a while under load
    # (closed once returned: on PostgreSQL each costs a new backend process). At most
    # processes x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) against the server's max_connections.
    DATABASE_POOL_SIZE = 10
    DATABASE_MAX_OVERFLOW = 10
    # SQLite waits this long for a lock before giving up (milliseconds).
    SQLITE_BUSY_TIMEOUT_MS = 5000

    # Socket.IO: threading suits the embedded SQLite default; production sets gevent.
    SOCKETIO_ASYNC_MODE = "threading"
    SOCKETIO_MESSAGE_QUEUE: str | None = None
    # None keeps sockets same-origin only.
    SOCKETIO_CORS_ALLOWED_ORIGINS: str | list[str] | None = None
    # The largest Socket.IO message accepted; every event's payload is far smaller.
    SOCKETIO_MAX_MESSAGE_BYTES = 16 * 1024
    # Socket.IO connections one process accepts before refusing new ones with "server_busy" (0: no cap).
    # deploy/gunicorn.conf.py sets it from the open-file limit, leaving descriptors for page requests.
    SOCKETIO_MAX_CONNECTIONS = 0
    # Proxies in front of the app that set X-Forwarded-For (nginx: 1). The app then sees the
    # client's address, for rate limits and logs, instead of the proxy's.
    PROXY_FIX_X_FOR = 0

    # Python's cyclic garbage collector, in a server process (not under tests): a young collection
    # after this many new objects instead of 700 (0: Python's default). At thousands of socket events a
    # second, 700 new objects pass in well under a millisecond, so every object held across a
    # database round trip was promoted to the oldest generation, whose collections (a whole pass
    # over the heap, over 100 ms) then came several times a minute. The objects of the built app
    # are frozen out of those passes (gc.freeze).
    GC_YOUNG_THRESHOLD = 50_000

    # Online presence: pages send a heartbeat this often (seconds); a delegate whose every
    # connection is silent for the grace period is checked out as of the last moment they were
    # seen. Lapsed presences are swept this often (seconds; 0 turns the sweep off).
    PRESENCE_HEARTBEAT_SECONDS = 20
    PRESENCE_GRACE_SECONDS = 60
    PRESENCE_SWEEP_SECONDS = 1.0
    # Quorum broadcasts are coalesced: at most one per session per this many seconds (0: one per change).
    LIVE_BROADCAST_SECONDS = 0.1
    # A session's broadcasts take at most this many messages a second in each process (one per
    # dashboard connected to it): a larger crowd of watchers gets them less often, but at least once
    # every LIVE_BROADCAST_MAX_SECONDS (0: no limit).
    LIVE_BROADCAST_FANOUT = 2000
    LIVE_BROADCAST_MAX_SECONDS = 0.5
    # Dashboards opening or resyncing within this many seconds share one fold of the session's log
    # for the timeline of Parties present (0: each folds it).
    DASHBOARD_TIMELINE_SECONDS = 5.0
    # Dashboards ask for the session's full state again (watch_session) this often, to correct what
    # live updates cannot (late exits dated back); less often for a crowd, so that the dashboards of
    # a session ask one process at most DASHBOARD_RESYNC_RATE times a second (0: no limit).
    DASHBOARD_RESYNC_SECONDS = 30.0
    DASHBOARD_RESYNC_RATE = 10.0
    # Check-ins, check-outs and heartbeats of many sockets share one transaction and one commit
    # (meetings/commits.py): a group takes every unit waiting, up to GROUP_COMMIT_MAX, gathering for at
    # most GROUP_COMMIT_SECONDS (0: only those already waiting). A socket event is acknowledged after its
    # group's commit; one that waited GROUP_COMMIT_WAIT_SECONDS is answered "unavailable".
    GROUP_COMMIT = True
    GROUP_COMMIT_SECONDS = 0.0
    GROUP_COMMIT_MAX = 256
    GROUP_COMMIT_WAIT_SECONDS = 10.0

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    PERMANENT_SESSION_LIFETIME = 12 * 3600

    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = 3600
    # A whole request: the largest letter plus the form around it.
    MAX_CONTENT_LENGTH = 6 * 1024 * 1024

    # Mail: without MAIL_SERVER, messages stay in the outbox that the secretariat reads.
    MAIL_SERVER = ""
    MAIL_PORT = 587
    MAIL_USE_TLS = True
    MAIL_USERNAME = ""
    MAIL_PASSWORD = ""
    MAIL_SENDER = "COP Registration <no-reply@example.org>"
    # Links sent by email stay valid this long (seconds).
    EMAIL_LINK_MAX_AGE = 3 * 24 * 3600

    # Uploaded nomination letters: PDF only, kept outside the web root. Empty means instance/uploads.
    UPLOAD_FOLDER = ""
    LETTER_MAX_BYTES = 5 * 1024 * 1024

    # Per-address limits on login and other unauthenticated forms (Flask-Limiter); redis:// in production.
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = "memory://"

    # Logs: "text" lines for people, or "json" (one object a line, for a log collector); the lowest level kept.
    LOG_FORMAT = "text"
    LOG_LEVEL = "INFO"
    # /readyz reports the database or Redis as failing when it has not answered within this many seconds.
    READINESS_TIMEOUT_SECONDS = 2.0

    # werkzeug.security method string; scrypt costs about 100 ms per hash by default.
    PASSWORD_HASH_METHOD = "scrypt"
    TOTP_ISSUER = "COP Registration"
    # Fernet key(s) for TOTP secrets at rest, comma-separated, newest first. Empty: derived from SECRET_KEY
    # (development only). README says how to make one.
    TOTP_ENCRYPTION_KEY = ""
    # Steps accepted either side of the current one, for clock drift (30 s each).
    TOTP_VALID_WINDOW = 1
    # A password accepted at login must be followed by a code within this many seconds.
    LOGIN_CODE_TIMEOUT = 300

    @classmethod
    def validate(cls, settings: dict) -> None:
        """Refuse settings that cannot work; the base configuration accepts anything."""


class TestingConfig(Config):
    TESTING = True
    # One limiter serves every app the suite creates: tests that check the limits turn them on.
    RATELIMIT_ENABLED = False
    # A cheaper hash keeps the suite fast; the algorithm is the same.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"
    # Tests drive the clock and the sweep themselves, and see each broadcast as it is sent.
    PRESENCE_SWEEP_SECONDS = 0.0
    LIVE_BROADCAST_SECONDS = 0.0
    # Each socket event commits in its own request; tests of the group committer turn it on.
    GROUP_COMMIT = False
    DASHBOARD_TIMELINE_SECONDS = 0.0


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    PROXY_FIX_X_FOR = 1
    SOCKETIO_ASYNC_MODE = "gevent"
    LOG_FORMAT = "json"

    @classmethod
    def validate(cls, settings: dict) -> None:
        if not settings.get("SECRET_KEY") or settings["SECRET_KEY"] == DEFAULT_SECRET_KEY:
            raise RuntimeError("Production refuses to start without SECRET_KEY set in the environment.")
        if settings.get("DEBUG"):
            raise RuntimeError("Production refuses to start with DEBUG on.")
        if not settings.get("DATABASE_URL"):
            raise RuntimeError("Production needs DATABASE_URL (for example postgresql+psycopg://...).")
        if not settings.get("TOTP_ENCRYPTION_KEY"):
            raise RuntimeError("Production needs TOTP_ENCRYPTION_KEY (Fernet keys) to encrypt TOTP secrets at rest.")


CONFIGS = {
    "development": Config,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def _parse(value: str, default: object) -> object:
    """Read an environment string as the type of the default it replaces."""
    if isinstance(default, bool):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, list) or value.startswith("["):
        return json.loads(value)
    return value


def load(name: str | None = None, environ: dict[str, str] | None = None) -> dict:
    """Settings of the named configuration, each overridden by an environment variable of its name."""
    environ = os.environ if environ is None else environ
    name = name or environ.get("APP_CONFIG", "development")
    try:
        cls = CONFIGS[name]
    except KeyError:
        raise RuntimeError(f"Unknown APP_CONFIG {name!r}; choose one of {', '.join(CONFIGS)}.") from None
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    for key, default in settings.items():
        if key in environ:
            try:
                settings[key] = _parse(environ[key], default)
            except ValueError as exc:
                raise RuntimeError(f"Environment variable {key}: {exc}") from None
    settings["CONFIG_NAME"] = name
    cls.validate(settings)
    return settings
