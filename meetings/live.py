"""Live updates to dashboards and delegates' pages: coalesced broadcasts and the sweep of lapsed presences.

A burst of check-ins at the opening of a plenary must not become a burst of broadcasts: each
change marks its session, and a background task sends each marked session's state at most once
per LIVE_BROADCAST_SECONDS, recounted from the committed presences; a session watched by more
dashboards than LIVE_BROADCAST_FANOUT messages a second allow is broadcast less often, down to
once every LIVE_BROADCAST_MAX_SECONDS, so that a crowd of watchers cannot starve the check-ins
that the broadcasts report. The same task ends online
presences whose connections have been silent for the grace period. Both only read and write the
database, so any number of server processes can run them side by side.

Each broadcast reaches every dashboard of the session, whichever process holds its socket (through
the message queue). With several processes, they take turns: a process broadcasts a session only
once it has claimed the session's next turn in Redis (SET NX with the spacing as expiry), so that
dashboards get at most one broadcast per spacing however many processes serve them, and the state
is recounted once per broadcast rather than once per process. A process that finds the turn taken
keeps the session marked and tries again in its next round: the broadcast it then sends is
recounted after its own commits. Should Redis not answer, each process broadcasts on its own.

Messages to one delegate's pages (tell(): another tab checked out) would each be a message on the
queue, sent and waited for, and read by every process, to reach a room that is most often empty.
With several processes they are relayed in batches instead: each round publishes the round's
messages as one Redis message, which every process (this one included) hands to the pages it
holds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time

import redis
from flask import Flask
from flask_socketio import SocketIO

from db import get_db, now
from meetings import dashboard, services
from meetings.health import redis_client
from meetings.models import MeetingSession

NAMESPACE = "/live"
# How long a process waits for Redis to grant a broadcast's turn before it broadcasts on its own,
# and, once Redis has failed, how long it goes on alone before it asks Redis again.
TURN_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 5.0
# The Redis channel of the messages to delegates' pages, relayed in batches (tell()).
NOTICES_CHANNEL = "live:notices"

log = logging.getLogger(__name__)


def officers_room(session_id: int) -> str:
    return f"officers:{session_id}"


def attendees_room(session_id: int) -> str:
    return f"attendees:{session_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class Live:
    """The broadcaster and presence sweeper of one server process."""

    def __init__(self, app: Flask, socketio: SocketIO) -> None:
        self.app = app
        self.socketio = socketio
        self.broadcast_every = float(app.config["LIVE_BROADCAST_SECONDS"])
        self.fanout = float(app.config["LIVE_BROADCAST_FANOUT"])
        self.slowest = max(self.broadcast_every, float(app.config["LIVE_BROADCAST_MAX_SECONDS"]))
        self.resync_every = float(app.config["DASHBOARD_RESYNC_SECONDS"])
        self.resync_rate = float(app.config["DASHBOARD_RESYNC_RATE"])
        self.sweep_every = float(app.config["PRESENCE_SWEEP_SECONDS"])
        self.grace = dt.timedelta(seconds=app.config["PRESENCE_GRACE_SECONDS"])
        self._dirty: set[int] = set()
        self._told: dict[int, str] = {}  # the state each session's attendees were last told, by this process
        self._not_before: dict[int, float] = {}  # when each session's next broadcast may go (time.monotonic)
        self._lock = threading.Lock()
        # Redis, when it is the message queue (else None: one process): turns, relayed messages.
        self.redis = redis_client(app.config.get("SOCKETIO_MESSAGE_QUEUE"), TURN_TIMEOUT_SECONDS)
        self._redis_failing = False
        self._redis_retry_at = 0.0  # time.monotonic() before which Redis, having failed, is not asked
        # With several processes and the rounds running, tell() relays its messages in batches.
        self.relaying = self.redis is not None and (self.broadcast_every > 0 or self.sweep_every > 0)
        self._notices: list[list] = []
        self._running = False
        self._stopping = False

    def lapse_cutoff(self) -> dt.datetime:
        """Online presences last seen before this moment have lapsed."""
        return now() - self.grace

    def changed(self, session_id: int) -> None:
        """A session's presences or state changed (and were committed): its watchers must hear of it."""
        if self.broadcast_every <= 0:
            self.send(session_id)
            return
        with self._lock:
            self._dirty.add(session_id)
        self.start()

    def start(self) -> None:
        """Run the background task in this process, once; nothing to run if both intervals are zero."""
        if self._running or (self.broadcast_every <= 0 and self.sweep_every <= 0):
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        self.socketio.start_background_task(self._run)
        if self.relaying:
            self.socketio.start_background_task(self._listen)

    def stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        tick = min(t for t in (self.broadcast_every, self.sweep_every) if t > 0)
        next_sweep = 0.0
        while not self._stopping:
            self.socketio.sleep(tick)
            try:
                with self.app.app_context():
                    self.relay()
                    if self.sweep_every > 0 and time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + self.sweep_every
                        self.sweep()
                    self.flush()
            except Exception:
                # A database that is briefly down must not end live updates for good.
                log.exception("live updates: a round failed; retrying")

    def tell(self, user_id: int, event: str, data: dict, skip_sid: str | None = None) -> None:
        """Send an event to every page of the delegate's, in every process, but the socket skip_sid.

        With one process, at once. With several, in this process's next round (within
        LIVE_BROADCAST_SECONDS), one Redis message for the round's all.
        """
        if not self.relaying:
            self.socketio.emit(event, data, to=user_room(user_id), skip_sid=skip_sid, namespace=NAMESPACE)
            return
        with self._lock:
            self._notices.append([user_id, event, data, skip_sid])

    def relay(self) -> None:
        """Publish the messages tell() kept since the last round, as one (if Redis fails: to this process's pages)."""
        with self._lock:
            notices, self._notices = self._notices, []
        if not notices:
            return
        if time.monotonic() < self._redis_retry_at:
            self.deliver(notices)
            return
        try:
            self.redis.publish(NOTICES_CHANNEL, json.dumps(notices))
        except redis.RedisError as exc:
            self._redis_failed(exc)
            self.deliver(notices)
            return
        self._redis_answered()

    def deliver(self, notices: list) -> None:
        """Hand relayed messages to the pages this process holds (never back to the queue)."""
        for user_id, event, data, skip_sid in notices:
            self.socketio.emit(
                event, data, to=user_room(user_id), skip_sid=skip_sid, namespace=NAMESPACE, ignore_queue=True
            )

    def _listen(self) -> None:
        """Deliver what every process relays (this one included) to this process's pages, for as long as it runs."""
        failing = False
        while not self._stopping:
            try:
                with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(NOTICES_CHANNEL)
                    if failing:
                        log.info("live updates: listening to the pages' messages again")
                        failing = False
                    while not self._stopping:
                        message = pubsub.get_message(timeout=1.0)
                        if message is not None:
                            with self.app.app_context():
                                self.deliver(json.loads(message["data"]))
            except redis.RedisError as exc:
                if not failing:
                    log.warning("live updates: cannot listen to the pages' messages (%s); trying again", exc)
                    failing = True
                self.socketio.sleep(1)
            except Exception:
                log.exception("live updates: a relayed message could not be delivered")
                self.socketio.sleep(1)

    def sweep(self) -> set[int]:
        """End lapsed online presences (at their last moment seen) and mark their sessions changed."""
        db = get_db()
        try:
            changed = services.end_lapsed_presences(db, self.lapse_cutoff())
            db.commit()
        except Exception:
            db.rollback()
            raise
        for session_id in changed:
            self.changed(session_id)
        return changed

    def flush(self) -> None:
        """Send the state of every session changed since the last flush and due for a broadcast, once each.

        A session not yet due (its watchers got its state less than spacing() ago) stays marked
        for a later round.
        """
        with self._lock:
            pending, self._dirty = self._dirty, set()
        due = time.monotonic()
        sent: set[int] = set()
        try:
            for session_id in sorted(pending):
                if self._not_before.get(session_id, 0.0) > due:
                    continue
                spacing = self.spacing(session_id)
                if self.take_turn(session_id, spacing):
                    self.send(session_id)
                    sent.add(session_id)
                    self._not_before[session_id] = due + spacing
        finally:
            with self._lock:  # those not due yet, and after a failure those not sent, wait for a later round
                self._dirty |= pending - sent

    def take_turn(self, session_id: int, spacing: float) -> bool:
        """Whether this process may broadcast the session now: no other has for the last spacing seconds.

        Always with one process. With Redis down, yes, logged once until it answers again: the
        dashboards then get up to one broadcast per process per spacing. Once Redis has failed, it
        is asked again only after REDIS_RETRY_SECONDS, so that a Redis that does not answer costs a
        round one timeout, not one per session.
        """
        if self.redis is None or time.monotonic() < self._redis_retry_at:
            return True
        try:
            taken = self.redis.set(f"live:turn:{session_id}", os.getpid(), nx=True, px=max(1, round(spacing * 1000)))
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return True
        self._redis_answered()
        return bool(taken)

    def _redis_failed(self, exc: redis.RedisError) -> None:
        """Go on alone for REDIS_RETRY_SECONDS; say so once per outage."""
        self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        if not self._redis_failing:
            log.warning(
                "live updates: Redis failed (%s); broadcasting alone, telling this process's pages only, asking again"
                " every %g s",
                exc,
                REDIS_RETRY_SECONDS,
            )
            self._redis_failing = True

    def _redis_answered(self) -> None:
        if self._redis_failing:
            log.info("live updates: Redis answers again; broadcasts take turns and messages are relayed")
            self._redis_failing = False

    def spacing(self, session_id: int) -> float:
        """The time between two broadcasts of a session: LIVE_BROADCAST_SECONDS, longer for a crowd of watchers.

        Each broadcast is one message per dashboard connected to this process. Past
        LIVE_BROADCAST_FANOUT messages a second, broadcasts are spaced out so that the crowd gets
        that many, up to LIVE_BROADCAST_MAX_SECONDS apart: with the defaults, 100 dashboards get ten a
        second, 1,000 two a second.
        """
        if self.fanout <= 0:
            return self.broadcast_every
        return min(self.slowest, max(self.broadcast_every, self.watchers(session_id) / self.fanout))

    def resync_seconds(self, session_id: int) -> float:
        """How long a dashboard waits before it asks again for the session's full state (watch_session).

        DASHBOARD_RESYNC_SECONDS; longer for a crowd of dashboards, so that those connected to this
        process ask it at most DASHBOARD_RESYNC_RATE times a second on average: with the defaults,
        every 30 s up to 300 dashboards, every 100 s for 1,000. Each resync reads the session's
        state, Parties and timeline; broadcasts keep dashboards current meanwhile.
        """
        if self.resync_rate <= 0:
            return self.resync_every
        return max(self.resync_every, self.watchers(session_id) / self.resync_rate)

    def watchers(self, session_id: int) -> int:
        """The dashboards watching the session from this process."""
        return sum(1 for _ in self.socketio.server.manager.get_participants(NAMESPACE, officers_room(session_id)))

    def send(self, session_id: int) -> None:
        """Broadcast a session's committed state to its officers' dashboards and its attendees' pages."""
        db = get_db()
        meeting_session = db.get(MeetingSession, session_id, options=services.WITH_MEETING)
        if meeting_session is None:
            return
        state = dashboard.state(db, meeting_session, now())
        self.socketio.emit("quorum_updated", state, to=officers_room(session_id), namespace=NAMESPACE)
        # Delegates' pages only need the session's state (a page checks in again when it opens): told
        # when it changes, not ten times a second to thousands of pages while check-ins flow.
        with self._lock:
            told, self._told[session_id] = self._told.get(session_id), meeting_session.state.value
        if told != meeting_session.state.value:
            self.socketio.emit(
                "session_updated",
                {"session_id": session_id, "state": meeting_session.state.value},
                to=attendees_room(session_id),
                namespace=NAMESPACE,
            )
        # The dashboards' timeline, folded a broadcast's worth of events at a time rather than all at the next resync.
        dashboard.keep_up(db, session_id)
