"""The baseline of the live benchmarks: a bare Socket.IO server that only acknowledges.

It speaks the `/live` namespace as the app does (same events, same acknowledgement shape) but does
no work at all: no login, no database, no broadcast. Served the same way as the app, by one gunicorn
gevent worker, it is the most a Socket.IO server on this machine can do, so that each figure of
bench/live.py is also given as a ratio to what the transport alone costs:

    gunicorn -k gevent -w 1 --bind 127.0.0.1:PORT --chdir bench bare_server:app
"""

from __future__ import annotations

import socketio

NAMESPACE = "/live"

# The same limits as the app's server: same origin only, messages of at most 16 KiB.
sio = socketio.Server(async_mode="gevent", cors_allowed_origins=None, max_http_buffer_size=16 * 1024)
app = socketio.WSGIApp(sio)


def _ok(sid, data=None):
    return {"ok": True}


@sio.on("connect", namespace=NAMESPACE)
def connect(sid, environ, auth=None):
    return True


for _event in ("check_in", "check_out", "heartbeat", "kiosk_scan"):
    sio.on(_event, namespace=NAMESPACE)(_ok)


@sio.on("watch_session", namespace=NAMESPACE)
def watch_session(sid, data=None):
    return {"ok": True, "state": {}}
