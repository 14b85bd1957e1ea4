"""How many connections one server process can hold, given its open-file limit.

Every open connection costs the worker a descriptor. When they run out, accept() fails with EMFILE:
the worker stops accepting, logs a traceback per attempt and retries with a back-off, and every new
page load on that process hangs until connections close. deploy/gunicorn.conf.py therefore raises
the soft limit to the hard one, caps gunicorn's worker_connections at what the descriptors allow (a
full pool makes gevent stop accepting cleanly, leaving new connections in the listen backlog), and
hands the app a lower cap for Socket.IO connections, so that pages still load when sockets are at
their cap.
"""

from __future__ import annotations

import resource

# Descriptors per connection in the `gevent` worker: 1, for HTTP requests, long-polling requests and
# WebSockets alike (measured: 200 WebSockets, +200 descriptors). simple-websocket uses the socket
# gunicorn hands over in environ["gunicorn.socket"]. The `gevent_pywsgi` worker would cost 2 per
# WebSocket: there simple-websocket dup()s the socket it digs out of gevent's pywsgi (measured: +400).
FDS_PER_CONNECTION = 1

# Descriptors the process needs besides its connections: standard streams, the listening socket,
# gunicorn's heartbeat file, gevent's event loop, the database pool (SQLAlchemy's default: 5 + 10
# overflow, and the readiness probe's own small pool), Redis (message queue, rate limits, readiness),
# templates, fonts and uploads being read. An idle worker on SQLite holds 16 (measured); the
# database and Redis connections add up to about 30 more; the rest is margin.
RESERVED_FDS = 100

# Connections kept free of Socket.IO for page loads, logins and exports: a tenth of the capacity,
# at least this many.
MIN_HTTP_HEADROOM = 64

# Linux refuses a soft limit above fs.nr_open even when the hard limit says "unlimited".
NR_OPEN_PATH = "/proc/sys/fs/nr_open"
FALLBACK_NR_OPEN = 1024 * 1024


def _nr_open() -> int:
    try:
        with open(NR_OPEN_PATH) as file:
            return int(file.read())
    except (OSError, ValueError):
        return FALLBACK_NR_OPEN


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the soft limit now in force.

    Forked workers inherit it. Only the soft limit moves: raising the hard one needs privileges
    (LimitNOFILE= in the systemd unit, or `ulimit -Hn` before starting).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        # Some systems (macOS) cap the soft limit below the hard one: keep what we have.
        return soft
    return target


def connection_capacity(
    open_files: int, *, reserved: int = RESERVED_FDS, per_connection: int = FDS_PER_CONNECTION
) -> int:
    """The connections (HTTP requests and WebSockets together) a process with this many descriptors can hold."""
    return max(0, (open_files - reserved) // per_connection)


def socketio_capacity(connections: int) -> int:
    """The Socket.IO connections to accept out of a connection capacity, leaving room for page requests."""
    return max(0, connections - max(MIN_HTTP_HEADROOM, connections // 10))
