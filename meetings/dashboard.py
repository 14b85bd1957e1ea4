"""What the officers' quorum dashboard shows: the session's quorum and who is present, as JSON-ready values.

state() is what every dashboard gets many times a second (`quorum_updated`), so it stays compact:
Party codes only. initial() adds what a dashboard needs once, when the page is rendered and on
each `watch_session` (opening, reconnecting, resyncing): every Party in force with its name,
regional group and credentials, and the number of Parties present over the session so far.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import threading
import time
import unicodedata
import weakref

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from meetings import services, timeline
from meetings.models import (
    AttendanceEvent,
    Category,
    Credentials,
    CredentialsStatus,
    MeetingSession,
    Party,
    Registration,
    RegistrationStatus,
    SessionState,
)
from meetings.quorum import in_force_on

BOTH = "both"


def _channel_label(channels: frozenset[str]) -> str:
    return BOTH if len(channels) > 1 else next(iter(channels))


def state(db: Session, meeting_session: MeetingSession, now: dt.datetime, parties: list | None = None) -> dict:
    """The session's quorum now. Parties in `present` map to how they are present: online, in_person or both.

    `in_grace` lists the Parties counted present only through online presences in their grace
    period (services.in_grace): what a quorum record keeps, to show why the statistics, which date a
    lapse back to the last contact, may count fewer at the same instant.

    parties: party_rows(), if the caller has read them already.
    """
    # One read of the presences for all of it: a delegate may leave between two reads.
    participants, by_party, grace = services.presence_summary(db, meeting_session, quiet_before(now))
    if parties is None:
        parties = party_rows(db, meeting_session)
    q = services.session_quorum(
        db, meeting_session, set(by_party), ((row.code, row.entry_into_force_on) for row in parties)
    )
    present = {code: _channel_label(by_party[code]) for code in q.present_codes}
    counted = set(q.present_codes)
    # Credentials are one per Party and meeting: those accepted among the Parties counted present.
    accepted = sum(1 for row in parties if row.code in counted and row.status == CredentialsStatus.ACCEPTED)
    return {
        "session_id": meeting_session.id,
        "state": meeting_session.state.value,
        "as_of": now.isoformat(),
        "parties_in_force": q.in_force,
        "parties_present": q.present,
        "needed_to_open": q.needed_to_open,
        "needed_to_decide": q.needed_to_decide,
        "can_open": q.can_open,
        "can_decide": q.can_decide,
        "credentials_accepted": accepted,
        "participants_present": sum(participants.values()),
        "participants_by_channel": participants,
        "present": present,
        # Counted among the Parties present, though only through pages gone quiet: if none comes back
        # within the grace period, the statistics will end their presence at the last contact.
        "in_grace": sorted(grace & counted),
    }


def quiet_before(now: dt.datetime) -> dt.datetime:
    """A page not heard from since before this has missed a heartbeat and a half: frozen, or cut off."""
    seconds = current_app.config["PRESENCE_HEARTBEAT_SECONDS"] if has_app_context() else 20
    return now - dt.timedelta(seconds=1.5 * float(seconds))


def party_rows(db: Session, meeting_session: MeetingSession) -> list[sa.Row]:
    """The Parties of the session's convention, each with its credentials for the meeting (status or None)."""
    meeting = meeting_session.segment.meeting
    return db.execute(
        sa.select(Party.code, Party.name, Party.regional_group, Party.entry_into_force_on, Credentials.status)
        .outerjoin(Credentials, sa.and_(Credentials.party_id == Party.id, Credentials.meeting_id == meeting.id))
        .where(Party.convention == meeting.convention)
    ).all()


@functools.lru_cache(maxsize=4096)
def _name_key(name: str) -> str:
    # "Côte d'Ivoire" sorts with the Cs on every database and locale.
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()


def parties_in_force(db: Session, meeting_session: MeetingSession, parties: list | None = None) -> list[dict]:
    """Every Party in force on the session's date, by name, with its credentials for the meeting (or None).

    parties: party_rows(), if the caller has read them already.
    """
    rows = party_rows(db, meeting_session) if parties is None else parties
    in_force = in_force_on(((row.code, row.entry_into_force_on) for row in rows), meeting_session.local_date)
    return [
        {
            "code": row.code,
            "name": row.name,
            "regional_group": row.regional_group.value if row.regional_group else None,
            "credentials": row.status.value if row.status else None,
        }
        for row in sorted(rows, key=lambda row: (_name_key(row.name), row.code))
        if row.code in in_force
    ]


def timeline_points(db: Session, meeting_session: MeetingSession, counted: set[str], now: dt.datetime) -> list[list]:
    """Parties present over the session as [[ISO time, count], ...], from its opening (or first event) to now.

    Counted as the quorum counts them: Parties in `counted` (those in force), through delegates
    whose registration is approved, each event for the Party it was logged for; to the second
    (several changes within a second make one point). A closed session's timeline ends at its
    close. No opening and no event: an empty timeline.

    The log is folded as it grows (meetings.timeline.Running, kept per session): each call reads
    only the events logged since the last, unless the approved delegates or the Parties in force
    changed, or an event came too late or out of order for the fold kept; then the whole log again.
    """
    approved = db.execute(_APPROVED_FINGERPRINT, {"meeting_id": meeting_session.segment.meeting_id}).one()
    key = (frozenset(counted), tuple(approved))
    with _running.kept(db.get_bind().engine, meeting_session.id) as kept:
        # An event committed late with a lower id than one already read: the count of events up to
        # the last id read tells (events committed since, with higher ids, are left to the next call).
        if not (
            kept.key == key
            and _fold_since(db, kept, meeting_session.id, counted)
            and kept.fold.events == db.scalar(_LOGGED, {"session_id": meeting_session.id, "upto": kept.last_id})
        ):
            kept.start_over(key)
            _fold_all(db, kept, meeting_session.id, counted)
        starts = [at for at in (meeting_session.opened_at, kept.fold.first) if at]
        if not starts:
            return []
        start = min(starts)
        end = now
        if meeting_session.state == SessionState.CLOSED and meeting_session.closed_at:
            end = min(end, meeting_session.closed_at)
        points = kept.fold.points(start, max(start, end))
    return [[at.isoformat(), count] for at, count in points]


def keep_up(db: Session, session_id: int) -> None:
    """Fold what was logged since the last read into the session's kept timeline, if it has one.

    Called with each broadcast (meetings/live.py), a tenth of a second of events each time, so
    that the folding is spread evenly: a resync finds little left to read, where it would otherwise
    fold the last few seconds at once (15,000 events at 3,000 check-ins a second) while every
    socket of the process waits its turn. The fold keeps the Parties and approvals it was made for;
    the next timeline_points() checks them, and the count of events, as always.
    """
    with _running.existing(db.get_bind().engine, session_id) as kept:
        if kept is not None and kept.key is not None and not _fold_since(db, kept, session_id, set(kept.key[0])):
            kept.key = None  # an event too late for the fold: the next timeline starts over


# Events read at a time. A dashboard resyncing after a few busy seconds, or the first after a
# restart, reads thousands: between chunks the process's other sockets get their turn.
FOLD_CHUNK = 1000


def _chunks(db: Session, session_id: int, after: int, counted: set[str]):
    """The session's events logged after the id `after`, in id order, as lists of FOLD_CHUNK or fewer."""
    conn = db.connection()  # Core rows, without the ORM's handling of each
    while True:
        rows = conn.execute(_LOG_SINCE, {"session_id": session_id, "after": after, "chunk": FOLD_CHUNK}).all()
        if rows:
            after = rows[-1].id
            yield _events(rows, counted)
        if len(rows) < FOLD_CHUNK:
            return
        _give_way()


def _give_way() -> None:
    time.sleep(0)  # a turn for the process's other greenlets (gevent patches time.sleep), or threads


def _fold_since(db: Session, kept: _Kept, session_id: int, counted: set[str]) -> bool:
    """Fold the events logged since kept.last_id, chunk by chunk; False if the fold refused one as too late."""
    for events in _chunks(db, session_id, kept.last_id, counted):
        if not kept.fold.add(events):
            return False
        kept.last_id = events[-1].seq
    return True


def _fold_all(db: Session, kept: _Kept, session_id: int, counted: set[str]) -> None:
    """Fold the whole log into a fold started over: read by chunks, folded at once, in time order (none too late)."""
    events = [event for chunk in _chunks(db, session_id, 0, counted) for event in chunk]
    kept.fold.add(events)
    kept.last_id = events[-1].seq if events else 0


_APPROVED_FINGERPRINT = sa.select(
    sa.func.count(Registration.id), sa.func.coalesce(sa.func.sum(Registration.id), 0)
).where(
    Registration.meeting_id == sa.bindparam("meeting_id"),
    Registration.status == RegistrationStatus.APPROVED,
    Registration.category == Category.PARTY,
)
_LOG_SINCE = (
    sa.select(
        AttendanceEvent.id,
        AttendanceEvent.user_id,
        Party.code,
        # As the stored strings ("entry", "online"): what the fold compares, without making enums of them.
        sa.type_coerce(AttendanceEvent.kind, sa.String),
        sa.type_coerce(AttendanceEvent.channel, sa.String),
        AttendanceEvent.at,
        sa.and_(
            Registration.status == RegistrationStatus.APPROVED,
            Registration.category == Category.PARTY,
        ).label("counts"),
        services.actor_column(),
    )
    .join(Registration, Registration.id == AttendanceEvent.registration_id)
    .outerjoin(Party, Party.id == AttendanceEvent.party_id)
    .where(AttendanceEvent.session_id == sa.bindparam("session_id"), AttendanceEvent.id > sa.bindparam("after"))
    .order_by(AttendanceEvent.id)  # along ix_attendance_events_session_id
    .limit(sa.bindparam("chunk"))
)
_LOGGED = sa.select(sa.func.count()).where(
    AttendanceEvent.session_id == sa.bindparam("session_id"), AttendanceEvent.id <= sa.bindparam("upto")
)


def _events(rows, counted: set[str]) -> list[timeline.Event]:
    event = timeline.Event
    return [
        event(user_id, code if counts and code in counted else None, kind, channel, at, event_id, by)
        for event_id, user_id, code, kind, channel, at, counts, by in rows
    ]


def _late_window() -> dt.timedelta:
    """How late an event may come and still be folded in place: a lapse's exit is dated back by up to
    the grace period and the sweep's interval; a kiosk's queued scans later still refold the log."""
    if not has_app_context():
        return timeline.LATE_WINDOW
    config = current_app.config
    grace = float(config["PRESENCE_GRACE_SECONDS"]) + float(config["PRESENCE_SWEEP_SECONDS"])
    return max(timeline.LATE_WINDOW, dt.timedelta(seconds=2 * grace))


class _Kept:
    """A session's running fold, the key it was folded for and the last event id read."""

    __slots__ = ("fold", "key", "last_id", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple | None = None
        self.fold = timeline.Running()
        self.last_id = 0

    def start_over(self, key: tuple) -> None:
        self.key, self.fold, self.last_id = key, timeline.Running(_late_window()), 0


class _RunningTimelines:
    """The running folds of the sessions watched lately, per database engine (at most `limit` sessions each)."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._by_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def kept(self, engine, session_id: int):
        """The session's fold, held by the caller alone until it is done."""
        with self._lock:
            folds = self._by_engine.setdefault(engine, collections.OrderedDict())
            kept = folds.pop(session_id, None) or _Kept()
            folds[session_id] = kept
            while len(folds) > self.limit:
                folds.popitem(last=False)
        with kept.lock:
            yield kept

    @contextlib.contextmanager
    def existing(self, engine, session_id: int):
        """The session's fold if one is kept (held by the caller alone until it is done), else None."""
        with self._lock:
            kept = self._by_engine.get(engine, {}).get(session_id)
        if kept is None:
            yield None
            return
        with kept.lock:
            yield kept


_running = _RunningTimelines()


class _Timelines:
    """Timelines recently folded, per database engine and session, for a few seconds.

    A timeline reads the log (what was logged since the last read, or all of it after a restart),
    and a hundred dashboards ask for it together (the opening of a plenary, a process restarting,
    the resync every 30 s): within DASHBOARD_TIMELINE_SECONDS they share one read. A timeline up to
    a few seconds old is complete once drawn: the state beside it is current, and each broadcast
    after it adds its point.
    """

    def __init__(self) -> None:
        self._by_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, engine, key: tuple) -> list | None:
        with self._lock:
            found = self._by_engine.get(engine, {}).get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, engine, key: tuple, points: list, seconds: float) -> None:
        with self._lock:
            entries = self._by_engine.setdefault(engine, {})
            now = time.monotonic()
            for stale in [k for k, (expires, _) in entries.items() if expires < now]:
                del entries[stale]
            entries[key] = (now + seconds, points)


_timelines = _Timelines()


def _timeline(db: Session, meeting_session: MeetingSession, counted: set[str], now: dt.datetime) -> list[list]:
    seconds = float(current_app.config.get("DASHBOARD_TIMELINE_SECONDS", 0)) if has_app_context() else 0.0
    if seconds <= 0:
        return timeline_points(db, meeting_session, counted, now)
    engine = db.get_bind().engine
    key = (meeting_session.id, meeting_session.state, meeting_session.closed_at, frozenset(counted))
    points = _timelines.get(engine, key)
    if points is None:
        points = timeline_points(db, meeting_session, counted, now)
        _timelines.put(engine, key, points, seconds)
    return points


def initial(db: Session, meeting_session: MeetingSession, now: dt.datetime) -> dict:
    """state() plus what a dashboard needs once: the Parties in force and the Parties present so far."""
    rows = party_rows(db, meeting_session)
    parties = parties_in_force(db, meeting_session, rows)
    return {
        **state(db, meeting_session, now, rows),
        "parties": parties,
        "timeline": _timeline(db, meeting_session, {party["code"] for party in parties}, now),
    }
