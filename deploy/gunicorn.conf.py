"""Gunicorn settings for one server process: one gevent worker on an address from the environment.

Run several of these, one per port, behind nginx with sticky sessions (deploy/nginx.conf);
deploy/run-production and the units in deploy/systemd start them, and docs/production.md explains
the whole setup. Environment (besides the app's own settings):

  PORT (8001) or BIND (127.0.0.1:$PORT)   where this process listens
  GRACEFUL_TIMEOUT (10)                   seconds a stopping worker gives its open connections
  WORKER_TIMEOUT (60)                     seconds the event loop may stay blocked before the worker is replaced
  LOG_LEVEL (INFO)                        gunicorn's level; the app reads the same variable
  FORWARDED_ALLOW_IPS (127.0.0.1,::1)     proxies whose X-Forwarded-Proto gunicorn believes (read by gunicorn)

This file imports nothing of the app. The worker loads the app after gevent has patched the
standard library (preload_app stays off), and psycopg needs that order: when first imported it
chooses its wait function, the one written in C (which blocks the whole process while a query
runs) unless gevent has already patched `select`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

import capacity  # noqa: E402

# The app factory, called in the worker; the project root is the working directory.
wsgi_app = "app:create_app('production')"
chdir = str(DEPLOY_DIR.parent)

PORT = os.environ.get("PORT", "8001")
bind = [os.environ.get("BIND", f"127.0.0.1:{PORT}")]
proc_name = f"cop-web:{PORT}"

# One worker per process: Socket.IO keeps each connection's state in the process that accepted it,
# and nginx can stick a client to a port, not to one of several workers behind it. Scale with more
# processes on more ports.
workers = 1
worker_class = "gevent"
preload_app = False

# A stopping worker stops accepting, then waits this long for its open connections. WebSockets do
# not end on their own, so a worker with live pages always waits the whole time; their clients then
# reconnect, through nginx to another process while this one restarts.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
# The worker reports to the arbiter once a second from a greenlet, so this fires only when something
# holds the event loop (CPU-bound work such as a large PDF export); the replacement drops every socket.
timeout = int(os.environ.get("WORKER_TIMEOUT", "60"))
# nginx opens a connection per request (no upstream keepalive: see nginx.conf).
keepalive = 5
# gunicorn's control socket (for gunicornc) defaults to one path per user, which several processes
# on one host would fight over; nothing here needs it.
control_socket_disable = True

# Descriptors: raise the soft limit to the hard one, then cap the connections at what it allows, so
# that a full worker stops accepting (new connections wait in the backlog) instead of running out of
# descriptors. The app refuses Socket.IO connections above SOCKETIO_MAX_CONNECTIONS, a lower cap
# that leaves room for pages; an explicit setting in the environment wins.
OPEN_FILES = capacity.raise_open_file_limit()
worker_connections = max(1, capacity.connection_capacity(OPEN_FILES))
os.environ.setdefault("SOCKETIO_MAX_CONNECTIONS", str(capacity.socketio_capacity(worker_connections)))

# gevent records, for every greenlet it starts, the stack and the greenlet that started it (for
# debugging tools). A WebSocket holds four greenlets for as long as it is open: off, each idle socket
# takes 5 KiB less (bench/README.md), and starting a greenlet is quicker. An explicit setting in the
# environment wins. gevent reads it when the worker starts its first greenlet.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")

# Only X-Forwarded-Proto, which nginx always sets: gunicorn's default list also believes
# X-Forwarded-Ssl and X-Forwarded-Protocol, which nginx would pass through from the client.
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# The heartbeat file is touched every second: keep it off the disk where there is a RAM disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
errorlog = "-"
# No access log: the app logs one line per request (meetings/logs.py, with request id, account and
# emailed-link tokens removed) and nginx logs the rest.
accesslog = None


def post_worker_init(worker) -> None:
    """Start the process's background work as the worker starts, not at its first socket connection:
    the presence sweep and broadcasts, and warming the statistics (app.start_background)."""
    from app import start_background

    start_background(worker.wsgi)
