"""Attendance and quorum statistics of a meeting, a segment or a session, folded from the attendance log.

Every figure comes from the log (meetings.models.AttendanceEvent), never from counters; docs/statistics.md
defines each one. The log is read one session at a time in (at, id) order, with a Core statement run
on the DBAPI cursor, as integers: the time in microseconds since the epoch, a code packing the
participant, the channel and the kind, and the Party. Each session is folded once for every participant
(SessionFold); a category filter is a view of the same folds. A closed session's fold is kept in process
memory and in the database (meetings.models.FoldedLog), checked against its log on every report; open,
suspended and scheduled sessions are folded on every report.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import sys
import threading
import weakref
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth.models import GENDER_LABELS, Gender, User
from meetings import presence
from meetings.models import (
    CATEGORY_LABELS,
    AttendanceEvent,
    Category,
    Channel,
    EventKind,
    FoldedLog,
    Meeting,
    MeetingSession,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
    Segment,
    SessionState,
    registration_segments,
)
from meetings.quorum import in_force_on, required
from meetings.report import Chart, Column, Report, Series, Table
from meetings.services import MeetingError, actor_column

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_US = dt.timedelta(microseconds=1)
US = 1_000_000

ONLINE_BIT = 1
IN_PERSON_BIT = 2
CHANNEL_LABELS = {ONLINE_BIT: "Online only", IN_PERSON_BIT: "In the room only", ONLINE_BIT | IN_PERSON_BIT: "Both"}
INTERVAL_CHANNELS = {0: "Online", 1: "In the room"}
NO_GROUP_LABEL = "No regional group"
WHOLE_MEETING = "Whole meeting"
STATUSES = tuple(RegistrationStatus)


def to_us(moment: dt.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch."""
    return (moment - EPOCH) // ONE_US


def from_us(us: int) -> dt.datetime:
    """Integer microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=us)


def seconds(us: int) -> int:
    """Microseconds as whole seconds, rounded half up."""
    return (us + US // 2) // US


# The fold ------------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionFold:
    """What one session's log says, for the participants folded.

    present: participant -> the channels they were ever inside through (ONLINE_BIT | IN_PERSON_BIT);
    time: participant -> microseconds inside through any channel; peak / peak_at: the most
    participants inside at once and the first moment it was reached; spans: person-level stretches
    of presence, flattened (participant, start, end, participant, start, end, ...); parties: the
    stretches during which each Party had an approved delegate inside, as (party, start, end).
    """

    events: int = 0
    present: dict[int, int] = field(default_factory=dict)
    time: dict[int, int] = field(default_factory=dict)
    peak: int = 0
    peak_at: int | None = None
    spans: array = field(default_factory=lambda: array("q"))
    parties: list[tuple[int, int, int]] = field(default_factory=list)
    first: int | None = None
    last: int | None = None
    # The approved Party delegates among those present when folded: the fold stands while they are the same.
    counted: frozenset[int] = frozenset()
    # Figures derived from this fold alone (peaks of Parties and of a category, quorum), computed once per fold.
    memo: dict = field(default_factory=dict, compare=False)


def fold(rows: Sequence[tuple[int, int, int | None, str]], end: int, counted: frozenset[int] | set[int]) -> SessionFold:
    """Fold one session's log, given rows (at, code, party, by) in (at, id) order and none after end (microseconds).

    code = participant * 4 + 2 if in the room (0 online) + 1 if an entry (0 an exit); by: who logged
    the event (meetings.presence.actor). Per participant and channel, the presence rule
    (meetings.presence.Inside) says whether an event opens or ends a stretch. A person is present
    while inside through at least one channel; a Party is present while at least one of its
    delegates in `counted` (approved Party delegates) is inside. Presence still open at end ends at
    end. The peak is taken after all the events of a moment, so an exit and an entry at the same
    instant leave no dip and make no spike.
    """
    # Keys are participant * 2 + channel; key ^ 1 is the same participant's other channel.
    rule = presence.Inside()
    inside = rule.open  # key -> (since, started_by, held, party)
    enter, leave = rule.enter, rule.leave
    inside_party: dict[int, int] = {}  # key -> Party, for counted delegates
    since: dict[int, int] = {}  # participant -> start of the current person-level presence
    party_ways: dict[int, int] = {}  # Party -> keys inside
    party_since: dict[int, int] = {}
    seen: set[int] = set()
    time: dict[int, int] = {}
    spans = array("q")
    parties: list[tuple[int, int, int]] = []
    n = peak = 0
    peak_at = last = None
    for at, code, party, by in rows:
        if at != last:
            if n > peak:
                peak, peak_at = n, last
            last = at
        key = code >> 1
        if code & 1:
            if not enter(key, at, by):
                continue
            seen.add(key)
            if key ^ 1 not in inside:
                since[key >> 1] = at
                n += 1
            if party is not None and key >> 1 in counted:
                inside_party[key] = party
                pw = party_ways.get(party, 0)
                party_ways[party] = pw + 1
                if not pw:
                    party_since[party] = at
        elif leave(key, by) is not None:
            if key ^ 1 not in inside:
                user = key >> 1
                start = since.pop(user)
                n -= 1
                time[user] = time.get(user, 0) + at - start
                spans.extend((user, start, at))
            if inside_party:
                party = inside_party.pop(key, None)
                if party is not None:
                    pw = party_ways[party] - 1
                    if pw:
                        party_ways[party] = pw
                    else:
                        del party_ways[party]
                        parties.append((party, party_since.pop(party), at))
    # The count after the last moment holds only if some time is left before the end: a stretch that
    # starts at the end lasts no time, like an entry and an exit at one instant (and as in sweep_peak()).
    if n > peak and last is not None and last < end:
        peak, peak_at = n, last
    for user, start in since.items():
        time[user] = time.get(user, 0) + max(end - start, 0)
        spans.extend((user, start, max(end, start)))
    for party, start in party_since.items():
        parties.append((party, start, max(end, start)))
    present: dict[int, int] = {}
    for key in seen:
        user = key >> 1
        present[user] = present.get(user, 0) | (IN_PERSON_BIT if key & 1 else ONLINE_BIT)
    first = min(spans[1::3], default=None)
    last_end = max(spans[2::3], default=None)
    return SessionFold(len(rows), present, time, peak, peak_at, spans, parties, first, last_end)


Point = tuple[int, int]


def _marks(keys: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> tuple[list[int], int, int, int]:
    """Each start and end as one integer (time since the first start, then end-or-start, then key), sorted.

    A list of integers sorts several times faster than a list of tuples; ends sort before starts.
    Returns the marks, the base time, the shift to the time and the start bit.
    """
    base = min(starts)
    key_bits = max(max(keys).bit_length(), 1)
    shift = key_bits + 1
    start_bit = 1 << key_bits
    marks = [((start - base) << shift) | start_bit | key for key, start in zip(keys, starts, strict=True)]
    marks += [((end - base) << shift) | key for key, end in zip(keys, ends, strict=True)]
    marks.sort()
    return marks, base, shift, start_bit


def steps(keys: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> list[Point]:
    """How many keys are inside over time, (moment, count) at each change; keys[i] is inside from starts[i] to ends[i].

    A key inside through several overlapping stretches (a person in two sessions at once) counts
    once. The count is taken after all the starts and ends of a moment. Keys are non-negative integers.
    """
    if not keys:
        return []
    marks, base, shift, start_bit = _marks(keys, starts, ends)
    key_mask = start_bit - 1
    depth: dict[int, int] = {}
    points: list[Point] = []
    n = 0
    last = -1
    for mark in marks:
        at = mark >> shift
        if at != last:
            if last >= 0 and (not points or points[-1][1] != n):
                points.append((last + base, n))
            last = at
        key = mark & key_mask
        if mark & start_bit:
            d = depth.get(key, 0)
            depth[key] = d + 1
            if not d:
                n += 1
        else:
            d = depth.get(key, 0) - 1
            depth[key] = d
            if not d:
                n -= 1
    if not points or points[-1][1] != n:
        points.append((last + base, n))
    return points


def sweep_peak(keys: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> tuple[int, int | None]:
    """peak_of(steps(keys, starts, ends)), without building the steps."""
    if not keys:
        return 0, None
    marks, base, shift, start_bit = _marks(keys, starts, ends)
    key_mask = start_bit - 1
    depth: dict[int, int] = {}
    n = peak = 0
    peak_at = None
    last = -1
    for mark in marks:
        at = mark >> shift
        if at != last:
            if n > peak:
                peak, peak_at = n, last
            last = at
        key = mark & key_mask
        if mark & start_bit:
            d = depth.get(key, 0)
            depth[key] = d + 1
            if not d:
                n += 1
        else:
            d = depth.get(key, 0) - 1
            depth[key] = d
            if not d:
                n -= 1
    if n > peak:
        peak, peak_at = n, last
    return peak, (peak_at + base if peak_at is not None else None)


def span_steps(spans: Sequence[tuple[int, int, int]]) -> list[Point]:
    """steps() of (key, start, end) triples."""
    if not spans:
        return []
    keys, starts, ends = zip(*spans, strict=True)
    return steps(keys, starts, ends)


def peak_of(points: Sequence[Point]) -> tuple[int, int | None]:
    """The highest count and the first moment it was reached."""
    best, when = 0, None
    for at, count in points:
        if count > best:
            best, when = count, at
    return best, when


def threshold(points: Sequence[Point], needed: int, end: int) -> tuple[int | None, int]:
    """When count first reached needed, and for how long (microseconds) it stayed at or above it up to end."""
    first = None
    held = 0
    for i, (at, count) in enumerate(points):
        if at >= end:
            break
        if count >= needed:
            if first is None:
                first = at
            following = points[i + 1][0] if i + 1 < len(points) else end
            held += min(following, end) - at
    return first, held


# The cache of closed sessions ------------------------------------------------------------------


class _Cache:
    """Folds of closed sessions (their logs cannot change), least recently used first out."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.entries: OrderedDict[tuple, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> object | None:
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key: tuple, value: object) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)


# One cache per engine: a database (and its ids) belongs to its engine.
_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_for(db: Session) -> _Cache | None:
    """The cache of the session's engine (None if the bind cannot be referenced weakly)."""
    bind = db.get_bind()
    engine = getattr(bind, "engine", bind)
    try:
        with _caches_lock:
            cache = _caches.get(engine)
            if cache is None:
                cache = _caches[engine] = _Cache()
            return cache
    except TypeError:
        return None


def warm(db: Session, now: dt.datetime) -> None:
    """Fold every meeting's closed sessions into the cache (and keep those not yet kept), so that the first
    statistics page is fast."""
    for meeting in db.scalars(sa.select(Meeting)).all():
        report(db, meeting, now=now)


def clear_cache() -> None:
    """Forget every cached fold (for benchmarks that time the cold computation)."""
    with _caches_lock:
        _caches.clear()


# Loading ---------------------------------------------------------------------------------------


class Participant(NamedTuple):
    """A registration of the meeting, with what the statistics group participants by.

    A named tuple rather than a frozen dataclass: thousands are built for every report.
    """

    user_id: int
    registration_id: int
    name: str
    category: Category
    status: RegistrationStatus
    party_id: int | None
    gender: Gender
    organization: str | None


@dataclass(frozen=True, slots=True)
class PartyInfo:
    id: int
    code: str
    name: str
    regional_group: RegionalGroup | None
    entry_into_force_on: dt.date | None


def _micros(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement[int]:
    """The column's time as integer microseconds since the epoch, computed by the database."""
    if dialect == "sqlite":
        # Stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC. SQLite's date functions keep milliseconds and
        # round (".999999" becomes the next second), so the whole seconds are taken from the text
        # without its fraction, and the microseconds from the fraction. unixepoch() (SQLite 3.38) is
        # much cheaper than strftime("%s").
        text = sa.func.substr(column, 1, 19)
        whole = sa.func.unixepoch(text) if sqlite3.sqlite_version_info >= (3, 38) else sa.func.strftime("%s", text)
        return sa.cast(whole, sa.Integer) * US + sa.cast(sa.func.substr(column, 21, 6), sa.Integer)
    return sa.cast(sa.extract("epoch", column) * US, sa.BigInteger)


def _log_query(dialect: str, session_id: int, end: dt.datetime, users: sa.Select | None) -> sa.Select:
    """A session's log up to end as (at in microseconds, code, Party, by), in (at, id) order: see fold()."""
    code = (
        AttendanceEvent.user_id * 4
        + sa.case((AttendanceEvent.channel == Channel.IN_PERSON, 2), else_=0)
        + sa.case((AttendanceEvent.kind == EventKind.ENTRY, 1), else_=0)
    )
    query = (
        sa.select(_micros(AttendanceEvent.at, dialect), code, AttendanceEvent.party_id, actor_column())
        .where(AttendanceEvent.session_id == session_id, AttendanceEvent.at <= end)
        .order_by(AttendanceEvent.at, AttendanceEvent.id)
    )
    if users is not None:
        query = query.where(AttendanceEvent.user_id.in_(users))
    return query


def _fetch(db: Session, query: sa.Select) -> list[tuple]:
    """A Core query's rows as plain tuples, on the session's own connection (and transaction).

    Row objects for a million events cost more than the fold itself, so the statement, built with
    Core, is rendered with its values inline (integers, enum members and a time, none from users)
    and run on the connection's DBAPI cursor.
    """
    connection = db.connection()
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name


@dataclass(slots=True)
class Scope:
    """The sessions a report covers, and everything the figures are computed from."""

    meeting: Meeting
    segments: list[Segment]
    sessions: list[MeetingSession]
    segment: Segment | None
    session: MeetingSession | None
    category: Category | None
    now: dt.datetime
    tz: ZoneInfo
    participants: dict[int, Participant]  # by user id
    registration_segments: dict[int, set[int]]  # registration id -> segment ids
    parties: dict[int, PartyInfo]
    cache: _Cache | None = None
    # Every participant's fold of each session, and the cache keys of the closed sessions' folds.
    folds: dict[int, SessionFold] = field(default_factory=dict)
    keys: dict[int, tuple] = field(default_factory=dict)
    # The participants of the category filtered (None: no filter).
    who: frozenset[int] | None = None
    approved: dict[bool, list[Participant]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.session is not None:
            return self.session.title
        if self.segment is not None:
            return self.segment.name
        return WHOLE_MEETING

    @property
    def segment_ids(self) -> set[int]:
        if self.session is not None:
            return {self.session.segment_id}
        if self.segment is not None:
            return {self.segment.id}
        return {segment.id for segment in self.segments}


def _end_us(meeting_session: MeetingSession, now: dt.datetime) -> int:
    """Where presence stops counting: the close of a closed session, now for the others."""
    if meeting_session.state == SessionState.CLOSED and meeting_session.closed_at is not None:
        return to_us(min(meeting_session.closed_at, now))
    return to_us(now)


def _start_us(meeting_session: MeetingSession, fold: SessionFold) -> int | None:
    """Where the session's timeline starts: its opening, or its first presence if earlier."""
    starts = [to_us(meeting_session.opened_at)] if meeting_session.opened_at else []
    if fold.first is not None:
        starts.append(fold.first)
    return min(starts, default=None)


def load_scope(
    db: Session,
    meeting: Meeting,
    *,
    segment_id: int | None,
    session_id: int | None,
    category: Category | None,
    now: dt.datetime,
) -> Scope:
    """The scope's sessions, the meeting's registrations and Parties, and every session's fold."""
    segments = list(
        db.scalars(sa.select(Segment).where(Segment.meeting_id == meeting.id).order_by(Segment.starts_on, Segment.id))
    )
    sessions = list(
        db.scalars(
            sa.select(MeetingSession)
            .join(Segment)
            .where(Segment.meeting_id == meeting.id)
            .order_by(MeetingSession.scheduled_start_at, MeetingSession.id)
        )
    )
    segment = meeting_session = None
    if segment_id is not None:
        segment = next((s for s in segments if s.id == segment_id), None)
        if segment is None:
            raise MeetingError("not_found", f"{meeting.code} has no such segment.")
    if session_id is not None:
        meeting_session = next((s for s in sessions if s.id == session_id), None)
        if meeting_session is None or (segment is not None and meeting_session.segment_id != segment.id):
            raise MeetingError("not_found", f"{meeting.code} has no such session in that segment.")
    if meeting_session is not None:
        in_scope = [meeting_session]
    elif segment is not None:
        in_scope = [s for s in sessions if s.segment_id == segment.id]
    else:
        in_scope = sessions
    # Times show in the scope's segment's zone; for the whole meeting, in its first segment's.
    zone_segment = meeting_session.segment if meeting_session else segment or next(iter(segments), None)
    tz = ZoneInfo(zone_segment.timezone if zone_segment is not None else meeting.timezone)

    # Plain tuples through _fetch: Row objects and enum processing for thousands of rows cost more
    # than the rest of a warm report.
    categories = {c.value: c for c in Category}
    statuses = {s.value: s for s in RegistrationStatus}
    genders = {g.value: g for g in Gender}
    registrations = _fetch(
        db,
        sa.select(
            Registration.user_id,
            Registration.id,
            User.title,
            User.given_name,
            User.family_name,
            Registration.category,
            Registration.status,
            Registration.party_id,
            User.gender,
            Registration.organization,
        )
        .join(User, User.id == Registration.user_id)
        .where(Registration.meeting_id == meeting.id),
    )
    participants = {
        row[0]: Participant(
            row[0],
            row[1],
            " ".join(part for part in row[2:5] if part),
            categories[row[5]],
            statuses[row[6]],
            row[7],
            genders[row[8]],
            row[9],
        )
        for row in registrations
    }
    covered: dict[int, set[int]] = {}
    for registration_id, covered_segment in _fetch(
        db,
        sa.select(registration_segments.c.registration_id, registration_segments.c.segment_id)
        .join(Registration, Registration.id == registration_segments.c.registration_id)
        .where(Registration.meeting_id == meeting.id),
    ):
        covered.setdefault(registration_id, set()).add(covered_segment)
    parties = {
        row.id: PartyInfo(row.id, row.code, row.name, row.regional_group, row.entry_into_force_on)
        for row in db.connection().execute(
            sa.select(Party.id, Party.code, Party.name, Party.regional_group, Party.entry_into_force_on).where(
                Party.convention == meeting.convention
            )
        )
    }
    scope = Scope(
        meeting,
        segments,
        in_scope,
        segment,
        meeting_session,
        category,
        now,
        tz,
        participants,
        covered,
        parties,
        cache=_cache_for(db),
    )
    if category is not None:
        scope.who = frozenset(p.user_id for p in participants.values() if p.category == category)
    scope.folds, scope.keys = _fold_sessions(db, scope)
    return scope


def _shapes(db: Session, scope: Scope) -> dict[int, tuple[int, int]]:
    """(number of events, highest event id) of each closed session in scope: what kept folds are checked by."""
    closed = [s.id for s in scope.sessions if s.state == SessionState.CLOSED]
    if not closed:
        return {}
    return {
        session_id: (count, max_id)
        for session_id, count, max_id in db.connection().execute(
            sa.select(AttendanceEvent.session_id, sa.func.count(), sa.func.max(AttendanceEvent.id))
            .where(AttendanceEvent.session_id.in_(closed))
            .group_by(AttendanceEvent.session_id)
        )
    }


def _fold_sessions(db: Session, scope: Scope) -> tuple[dict[int, SessionFold], dict[int, tuple]]:
    """Each session's fold of every participant, and the keys of the closed sessions' folds.

    A closed session's fold is taken, in this order, from the process's cache, from the folds kept
    in the database (meetings.models.FoldedLog), or from its log, and then kept in both. A kept fold
    stands while the log is unchanged (the same number of events and the same highest id: the log
    is append-only), the session closed at the same moment, and the Party delegates it counted are
    still the approved ones among those present.
    """
    dialect = _dialect(db)
    counted = frozenset(
        p.user_id
        for p in scope.participants.values()
        if p.status == RegistrationStatus.APPROVED and p.category == Category.PARTY and p.party_id is not None
    )

    def stands(f: SessionFold) -> bool:
        return f.counted == f.present.keys() & counted

    shapes = _shapes(db, scope)
    folds: dict[int, SessionFold] = {}
    keys: dict[int, tuple] = {}
    ends: dict[int, int] = {}
    for meeting_session in scope.sessions:
        end = ends[meeting_session.id] = _end_us(meeting_session, scope.now)
        if meeting_session.id in shapes:
            key = keys[meeting_session.id] = ("fold", meeting_session.id, *shapes[meeting_session.id], end)
            cached = scope.cache.get(key) if scope.cache is not None else None
            if cached is not None and stands(cached):
                folds[meeting_session.id] = cached
    wanted = {session_id: key for session_id, key in keys.items() if session_id not in folds}
    for session_id, f in _kept_folds(db, wanted).items():
        if stands(f):
            folds[session_id] = f
            if scope.cache is not None:
                scope.cache.put(wanted[session_id], f)
    fresh: dict[int, SessionFold] = {}
    for meeting_session in scope.sessions:
        if meeting_session.id in folds:
            continue
        end = ends[meeting_session.id]
        rows = _fetch(db, _log_query(dialect, meeting_session.id, from_us(end), None))
        result = fold(rows, end, counted)
        # The fold depends on who is counted only through those present.
        result.counted = frozenset(result.present.keys() & counted)
        key = keys.get(meeting_session.id)
        if key is not None:
            fresh[meeting_session.id] = result
            if scope.cache is not None:
                scope.cache.put(key, result)
        folds[meeting_session.id] = result
    if fresh:
        _keep_folds(db, {session_id: (keys[session_id], f) for session_id, f in fresh.items()})
    return folds, keys


# Folds kept in the database ------------------------------------------------------------------

# The layout and rules of FoldedLog.data (2: no peak counted at the very end; 3: the presence rule's held
# presences, which no lapse ends); a fold kept under others is folded again from the log.
FOLD_ENCODING = 3
_NONE = -(2**63)  # None in an int64 field


def encode_fold(f: SessionFold) -> bytes:
    """A fold as compressed little-endian int64 arrays: a header of counts and scalars, then the arrays."""
    users = array("q", f.present.keys())
    parties = array("q", (value for span in f.parties for value in span))
    head = array(
        "q",
        [
            f.events,
            f.peak,
            *(_NONE if value is None else value for value in (f.peak_at, f.first, f.last)),
            len(users),
            len(f.spans),
            len(parties),
            len(f.counted),
        ],
    )
    whole = head
    whole += users
    whole += array("q", (f.present[user] for user in users))
    whole += array("q", (f.time.get(user, 0) for user in users))
    whole += f.spans
    whole += parties
    whole += array("q", sorted(f.counted))
    if sys.byteorder != "little":
        whole.byteswap()
    return zlib.compress(whole.tobytes(), 1)


def decode_fold(data: bytes) -> SessionFold:
    """The fold encode_fold() wrote."""
    whole = array("q")
    whole.frombytes(zlib.decompress(data))
    if sys.byteorder != "little":
        whole.byteswap()
    events, peak, peak_at, first, last, n_users, n_spans, n_parties, n_counted = whole[:9]
    at = 9
    users = whole[at : at + n_users]
    bits = whole[at + n_users : at + 2 * n_users]
    time = whole[at + 2 * n_users : at + 3 * n_users]
    at += 3 * n_users
    spans = whole[at : at + n_spans]
    parties = whole[at + n_spans : at + n_spans + n_parties]
    at += n_spans + n_parties
    counted = whole[at : at + n_counted]
    if at + n_counted != len(whole):
        raise ValueError("a kept fold of the wrong length")
    return SessionFold(
        events,
        dict(zip(users, bits, strict=True)),
        dict(zip(users, time, strict=True)),
        peak,
        None if peak_at == _NONE else peak_at,
        spans,
        list(zip(parties[0::3], parties[1::3], parties[2::3], strict=True)),
        None if first == _NONE else first,
        None if last == _NONE else last,
        frozenset(counted),
    )


def _kept_folds(db: Session, keys: dict[int, tuple]) -> dict[int, SessionFold]:
    """The folds kept in the database for these sessions that match their keys ("fold", id, events, last id, end)."""
    if not keys:
        return {}
    found: dict[int, SessionFold] = {}
    rows = db.connection().execute(
        sa.select(
            FoldedLog.session_id, FoldedLog.events, FoldedLog.last_event_id, FoldedLog.end_us, FoldedLog.data
        ).where(FoldedLog.session_id.in_(keys), FoldedLog.encoding == FOLD_ENCODING)
    )
    for session_id, events, last_event_id, end_us, data in rows:
        if keys[session_id][2:] != (events, last_event_id, end_us):
            continue
        try:
            found[session_id] = decode_fold(data)
        except (ValueError, zlib.error):
            log.warning("The kept fold of session %s cannot be read; folding its log again.", session_id)
    return found


def _keep_folds(db: Session, folds: dict[int, tuple[tuple, SessionFold]]) -> None:
    """Keep closed sessions' folds in the database, in a transaction of their own; best effort.

    A fold not kept is folded again by the next report, so a failure here is logged, never raised.
    The write takes its own connection, so it must not wait on a transaction of the caller's: on
    SQLite, where a writer waits for the caller's pending writes, nothing is kept while there are
    any; on PostgreSQL, a lock held by the caller makes the write give up after a moment.
    """
    connection = db.connection()
    if connection.dialect.name == "sqlite" and connection.connection.dbapi_connection.in_transaction:
        return
    rows = [
        {
            "session_id": session_id,
            "events": key[2],
            "last_event_id": key[3],
            "end_us": key[4],
            "encoding": FOLD_ENCODING,
            "data": encode_fold(f),
            "folded_at": dt.datetime.now(dt.UTC),
        }
        for session_id, (key, f) in folds.items()
    ]
    try:
        with connection.engine.begin() as writer:
            if writer.dialect.name == "postgresql":
                writer.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            writer.execute(sa.delete(FoldedLog).where(FoldedLog.session_id.in_(folds)))
            writer.execute(sa.insert(FoldedLog), rows)
    except sa.exc.SQLAlchemyError as error:
        # Another process keeping the same folds at the same moment, a locked or unavailable database.
        log.warning("Could not keep the folds of %d closed sessions: %s", len(rows), type(error).__name__)


# Figures of several sessions -------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """The figures of a set of sessions, taken together."""

    sessions: int
    events: int
    present: dict[int, int]  # participant -> channels
    time: dict[int, int]  # participant -> microseconds
    parties: set[int]
    peak: int
    peak_at: int | None
    party_peak: int
    party_peak_at: int | None

    @property
    def total_time(self) -> int:
        return sum(self.time.values())

    @property
    def median_time(self) -> int | None:
        return median([self.time.get(user, 0) for user in self.present])


def median(values: list[int]) -> int | None:
    """The middle value (for an even count, the mean of the two middle ones, rounded down); None for no values.

    Rounded down, not half up: seconds() then rounds the exact mean to the second, as rounding it twice would not.
    """
    if not values:
        return None
    values = sorted(values)
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) // 2


Peak = tuple[int, int | None]


def _later(a: Peak, b: Peak) -> Peak:
    """The higher peak; the earlier one when they are equal."""
    if b[0] > a[0] or (b[0] == a[0] and b[0] and b[1] < a[1]):
        return b
    return a


def _party_peak(f: SessionFold) -> Peak:
    if "party_peak" not in f.memo:
        f.memo["party_peak"] = peak_of(span_steps(f.parties))
    return f.memo["party_peak"]


def _parties_of(f: SessionFold) -> frozenset[int]:
    if "parties" not in f.memo:
        f.memo["parties"] = frozenset(party for party, _, _ in f.parties)
    return f.memo["parties"]


@dataclass(frozen=True, slots=True)
class _View:
    """One session's fold seen through the category filter; its person-level stretches as three arrays."""

    present: dict[int, int]
    time: dict[int, int]
    peak: int
    peak_at: int | None
    keys: array
    starts: array
    ends: array


def _whole_view(f: SessionFold) -> _View:
    if "view" not in f.memo:
        f.memo["view"] = _View(f.present, f.time, f.peak, f.peak_at, f.spans[0::3], f.spans[1::3], f.spans[2::3])
    return f.memo["view"]


def _view(scope: Scope, meeting_session: MeetingSession) -> _View:
    """The session's participants, time and peak for the category filtered: the fold restricted to them."""
    f = scope.folds[meeting_session.id]
    if scope.who is None:
        return _whole_view(f)
    kept = frozenset(f.present.keys() & scope.who)
    memo_key = ("view", kept)
    if memo_key not in f.memo:
        every = _whole_view(f)
        chosen = [key in kept for key in every.keys]
        keys, starts, ends = (array("q", compress(values, chosen)) for values in (every.keys, every.starts, every.ends))
        f.memo[memo_key] = _View(
            {user: bits for user, bits in f.present.items() if user in kept},
            {user: spent for user, spent in f.time.items() if user in kept},
            *sweep_peak(keys, starts, ends),
            keys,
            starts,
            ends,
        )
    return f.memo[memo_key]


def _peaks(scope: Scope, sessions: Sequence[MeetingSession]) -> tuple[Peak, Peak]:
    """The most people and the most Parties inside at once across the sessions, and when.

    A person (or Party) inside two sessions at once counts once. Sessions whose stretches of
    presence do not overlap in time cannot add up, so only groups of overlapping sessions are
    swept together; a lone session's own peaks stand.
    """
    folds = scope.folds
    active = sorted((s for s in sessions if folds[s.id].first is not None), key=lambda s: folds[s.id].first)
    groups: list[list[MeetingSession]] = []
    reach = 0
    for s in active:
        f = folds[s.id]
        if groups and f.first < reach:
            groups[-1].append(s)
            reach = max(reach, f.last)
        else:
            groups.append([s])
            reach = f.last
    people: Peak = (0, None)
    parties: Peak = (0, None)
    for group in groups:
        if len(group) == 1:
            v = _view(scope, group[0])
            group_people, group_parties = (v.peak, v.peak_at), _party_peak(folds[group[0].id])
        else:
            group_people, group_parties = _group_peaks(scope, group)
        people, parties = _later(people, group_people), _later(parties, group_parties)
    return people, parties


def _group_peaks(scope: Scope, group: list[MeetingSession]) -> tuple[Peak, Peak]:
    """The peaks of overlapping sessions swept together; kept in the cache when they are all closed."""
    keys = [scope.keys.get(s.id) for s in group]
    key = None
    if scope.cache is not None and all(keys):
        key = ("peaks", *keys, *(f.counted for f in (scope.folds[s.id] for s in group)), scope.who)
        cached = scope.cache.get(key)
        if cached is not None:
            return cached
    keys, starts, ends = array("q"), array("q"), array("q")
    for s in group:
        v = _view(scope, s)
        keys += v.keys
        starts += v.starts
        ends += v.ends
    people = sweep_peak(keys, starts, ends)
    parties = peak_of(span_steps([span for s in group for span in scope.folds[s.id].parties]))
    if key is not None:
        scope.cache.put(key, (people, parties))
    return people, parties


Merged = tuple[dict[int, int], dict[int, int]]


def _merge(parts: Iterable[_View | Figures], into: Merged | None = None) -> Merged:
    """Participants' channels and time of several sessions (or sets of sessions) together."""
    present, time = ({}, {}) if into is None else (dict(into[0]), dict(into[1]))
    for part in parts:
        if not present:
            present, time = dict(part.present), dict(part.time)
            continue
        for user, bits in part.present.items():
            present[user] = present.get(user, 0) | bits
        for user, spent in part.time.items():
            time[user] = time.get(user, 0) + spent
    return present, time


def figures(scope: Scope, sessions: Sequence[MeetingSession], parts: Sequence[Figures] | None = None) -> Figures:
    """The figures of the sessions taken together (from parts, the figures of a partition of them, if given)."""
    events = sum(scope.folds[s.id].events for s in sessions)
    if len(sessions) == 1:
        f, v = scope.folds[sessions[0].id], _view(scope, sessions[0])
        return Figures(1, events, v.present, v.time, set(_parties_of(f)), v.peak, v.peak_at, *_party_peak(f))
    parties: set[int] = set()
    for s in sessions:
        parties.update(_parties_of(scope.folds[s.id]))
    if parts is not None:
        present, time = _merge(parts)
    else:
        # The closed sessions' part is merged once and kept; the others' are added to it each time.
        closed = [s for s in sessions if s.id in scope.keys]
        if len(closed) > 1 and scope.cache is not None:
            key = ("merged", *(scope.keys[s.id] for s in closed), scope.who)
            base = scope.cache.get(key)
            if base is None:
                base = _merge(_view(scope, s) for s in closed)
                scope.cache.put(key, base)
            rest = [_view(scope, s) for s in sessions if s.id not in scope.keys]
            present, time = _merge(rest, base) if rest else base
        else:
            present, time = _merge(_view(scope, s) for s in sessions)
    (peak, peak_at), (party_peak, party_peak_at) = _peaks(scope, sessions)
    return Figures(len(sessions), events, present, time, parties, peak, peak_at, party_peak, party_peak_at)


@dataclass(frozen=True, slots=True)
class Quorum:
    """A session's quorum over time: Parties in force, the thresholds, when each was first reached and how long held."""

    in_force: int
    needed_to_open: int
    needed_to_decide: int
    open_first: int | None
    open_held: int
    decide_first: int | None
    decide_held: int
    points: list[Point]
    start: int | None
    end: int


def session_quorum(scope: Scope, meeting_session: MeetingSession) -> Quorum:
    """The session's quorum over time, counting Parties in force on its date through approved delegates.

    Independent of the category filter: only Party delegates make a Party present.
    """
    meeting = scope.meeting
    f = scope.folds[meeting_session.id]
    # The session's date where it meets (its segment's zone) says which Parties are in force.
    codes = in_force_on(
        ((p.code, p.entry_into_force_on) for p in scope.parties.values()),
        meeting_session.scheduled_start_at.astimezone(ZoneInfo(meeting_session.segment.timezone)).date(),
    )
    in_force = frozenset(p.id for p in scope.parties.values() if p.code in codes)
    end = _end_us(meeting_session, scope.now)
    start = _start_us(meeting_session, f)
    to_open = required(len(in_force), meeting.open_fraction)
    to_decide = required(len(in_force), meeting.decide_fraction)
    # Unless the session closed by then, presence still open at the end is cut there, not ended.
    closed_at = meeting_session.closed_at if meeting_session.state == SessionState.CLOSED else None
    cut = closed_at is None or to_us(closed_at) > end
    memo_key = ("quorum", in_force, to_open, to_decide, start, end, cut)
    if memo_key not in f.memo:
        f.memo[memo_key] = _quorum(f, in_force, to_open, to_decide, start, end, cut)
    return f.memo[memo_key]


def _quorum(
    f: SessionFold,
    in_force: frozenset[int],
    to_open: int,
    to_decide: int,
    start: int | None,
    end: int,
    cut: bool = False,
) -> Quorum:
    """The quorum's timeline from start to end; cut: the stretches still open at end go on (the session is open)."""
    if start is None:
        return Quorum(len(in_force), to_open, to_decide, None, 0, None, 0, [], None, end)
    raw = span_steps([span for span in f.parties if span[0] in in_force])
    # From the start on: what happened up to the start is the first point.
    points: list[Point] = [(start, 0)]
    for at, count in raw:
        if at <= start:
            points[0] = (start, count)
        elif (at < end if cut else at <= end) and count != points[-1][1]:
            # Where the stretches are cut at the end, their ends there are no change: the last point keeps them.
            points.append((at, count))
    if end > points[-1][0]:
        points.append((end, points[-1][1]))
    open_first = decide_first = None
    open_held = decide_held = 0
    if in_force:
        open_first, open_held = threshold(points, to_open, end)
        decide_first, decide_held = threshold(points, to_decide, end)
    return Quorum(
        len(in_force), to_open, to_decide, open_first, open_held, decide_first, decide_held, points, start, end
    )


# The report ------------------------------------------------------------------------------------


def _when(us: int | None) -> dt.datetime | None:
    return from_us(us) if us is not None else None


def _local(scope: Scope, us: int | None) -> str:
    if us is None:
        return "—"
    return from_us(us).astimezone(scope.tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def hms(total_seconds: int | None) -> str:
    """A duration as hours:minutes:seconds (hours may exceed 24)."""
    if total_seconds is None:
        return "—"
    hours, rest = divmod(int(total_seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _group_of(scope: Scope, participant: Participant) -> RegionalGroup | None:
    if participant.category != Category.PARTY or participant.party_id is None:
        return None
    party = scope.parties.get(participant.party_id)
    return party.regional_group if party else None


def _approved_in_scope(scope: Scope, *, every_category: bool = False) -> list[Participant]:
    """Approved registrations covering a segment of the scope, in the category filtered (unless every_category)."""
    if every_category not in scope.approved:
        scope.approved[every_category] = _approved(scope, every_category)
    return scope.approved[every_category]


def _approved(scope: Scope, every_category: bool) -> list[Participant]:
    segment_ids = scope.segment_ids
    category = None if every_category else scope.category
    return [
        p
        for p in scope.participants.values()
        if p.status == RegistrationStatus.APPROVED
        and (category is None or p.category == category)
        and not scope.registration_segments.get(p.registration_id, set()).isdisjoint(segment_ids)
    ]


def _overview(scope: Scope, c: Computed) -> Table:
    total, quorums = c.total, c.quorums
    rows: list[tuple[str, str]] = []
    if scope.session is not None:
        s = scope.session
        rows += [
            ("Segment", s.segment.name),
            ("Scheduled start", _local(scope, to_us(s.scheduled_start_at))),
            ("State", s.state.value),
        ]
    else:
        rows.append(("Sessions", str(total.sessions)))
    approved = _approved_in_scope(scope)
    represented = {
        p.party_id
        for p in _approved_in_scope(scope, every_category=True)
        if p.category == Category.PARTY and p.party_id is not None
    }
    rows += [
        ("Participants registered (approved)", str(len(approved))),
        ("Participants present", str(len(total.present))),
        ("Parties with an approved delegate registered", str(len(represented))),
        (
            "Parties present at some time" if scope.session is not None else "Parties represented at some time",
            str(len(total.parties)),
        ),
        ("Peak concurrent participants", str(total.peak)),
        ("Peak concurrent participants reached at", _local(scope, total.peak_at)),
        ("Peak concurrent Parties", str(total.party_peak)),
        ("Peak concurrent Parties reached at", _local(scope, total.party_peak_at)),
        ("Total time attended", hms(seconds(total.total_time))),
        ("Median time attended per participant present", hms(_opt_seconds(total.median_time))),
        ("Attendance events logged (all participants)", str(total.events)),
    ]
    if scope.session is not None:
        q = quorums[scope.session.id]
        rows += [
            ("Parties in force on the session's date", str(q.in_force)),
            ("Parties needed to open / to decide", f"{q.needed_to_open} / {q.needed_to_decide}"),
            ("Quorum to open first reached", _local(scope, q.open_first)),
            ("Quorum to open held", hms(seconds(q.open_held))),
            ("Quorum to decide first reached", _local(scope, q.decide_first)),
            ("Quorum to decide held", hms(seconds(q.decide_held))),
        ]
    else:
        opened = sum(1 for q in quorums.values() if q.open_first is not None)
        decided = sum(1 for q in quorums.values() if q.decide_first is not None)
        rows.append(("Sessions that reached the quorum to open", str(opened)))
        rows.append(("Sessions that reached the quorum to decide", str(decided)))
    note = (
        f"Times in {scope.tz.key}. Durations as hours:minutes:seconds. A participant is present once inside "
        "through any channel; a Party, while an approved delegate of it is inside."
    )
    return Table("overview", "Overview", (Column("figure", "Figure"), Column("value", "Value")), rows, note)


def _opt_seconds(us: int | None) -> int | None:
    return seconds(us) if us is not None else None


SESSION_COLUMNS = (
    Column("session", "Session"),
    Column("segment", "Segment"),
    Column("starts", "Starts", "datetime"),
    Column("state", "State"),
    Column("participants", "Participants present", "int"),
    Column("parties", "Parties present", "int"),
    Column("peak_participants", "Peak participants", "int"),
    Column("peak_participants_at", "Peak participants at", "datetime"),
    Column("peak_parties", "Peak Parties", "int"),
    Column("peak_parties_at", "Peak Parties at", "datetime"),
    Column("open_first_reached", "Quorum to open first reached", "datetime"),
    Column("open_held", "Quorum to open held", "duration"),
    Column("decide_first_reached", "Quorum to decide first reached", "datetime"),
    Column("decide_held", "Quorum to decide held", "duration"),
    Column("parties_in_force", "Parties in force", "int"),
    Column("needed_to_open", "Needed to open", "int"),
    Column("needed_to_decide", "Needed to decide", "int"),
    Column("time_attended", "Time attended", "duration"),
)


def _sessions_table(scope: Scope, c: Computed) -> Table:
    per_session, quorums = c.per_session, c.quorums
    rows = []
    for s in scope.sessions:
        f = per_session[s.id]
        q = quorums[s.id]
        rows.append(
            (
                s.title,
                s.segment.name,
                s.scheduled_start_at,
                s.state.value,
                len(f.present),
                len(f.parties),
                f.peak,
                _when(f.peak_at),
                f.party_peak,
                _when(f.party_peak_at),
                _when(q.open_first),
                seconds(q.open_held),
                _when(q.decide_first),
                seconds(q.decide_held),
                q.in_force,
                q.needed_to_open,
                q.needed_to_decide,
                seconds(f.total_time),
            )
        )
    note = (
        "Quorum: Parties in force on the session's date with an approved delegate inside, whatever the category "
        "filter. Open and suspended sessions are counted up to the time the report was produced."
    )
    return Table("sessions", "Sessions", SESSION_COLUMNS, rows, note)


def _count_rows(
    scope: Scope,
    total: Figures,
    key: Callable[[Participant], object],
    values: Sequence[tuple[object, str]],
    *,
    registered: bool = True,
) -> list[tuple]:
    present: dict[object, int] = {}
    time: dict[object, int] = {}
    for user in total.present:
        participant = scope.participants.get(user)
        if participant is None:  # logged under a registration of no participant of this meeting
            continue
        value = key(participant)
        present[value] = present.get(value, 0) + 1
        time[value] = time.get(value, 0) + total.time.get(user, 0)
    approved: dict[object, int] = {}
    for p in _approved_in_scope(scope):
        value = key(p)
        approved[value] = approved.get(value, 0) + 1
    whole = len(total.present)
    rows = []
    for value, label in values:
        row = [label]
        if registered:
            row.append(approved.get(value, 0))
        row += [present.get(value, 0), _share(present.get(value, 0), whole), seconds(time.get(value, 0))]
        rows.append(tuple(row))
    return rows


COUNT_COLUMNS = (
    Column("registered", "Registered (approved)", "int"),
    Column("present", "Present", "int"),
    Column("share", "Share of participants present", "percent"),
    Column("time_attended", "Time attended", "duration"),
)


def _categories(scope: Scope) -> list[Category]:
    return [scope.category] if scope.category is not None else list(Category)


def _by_category(scope: Scope, c: Computed) -> Table:
    total = c.total
    values = [(c, CATEGORY_LABELS[c]) for c in _categories(scope)]
    rows = _count_rows(scope, total, lambda p: p.category, values)
    return Table("by_category", "Participants by category", (Column("category", "Category"), *COUNT_COLUMNS), rows)


def _by_channel(scope: Scope, c: Computed) -> Table:
    total = c.total
    counts = dict.fromkeys(CHANNEL_LABELS, 0)
    time = dict.fromkeys(CHANNEL_LABELS, 0)
    for user, bits in total.present.items():
        counts[bits] += 1
        time[bits] += total.time.get(user, 0)
    whole = len(total.present)
    rows = [
        (label, counts[bits], _share(counts[bits], whole), seconds(time[bits]))
        for bits, label in CHANNEL_LABELS.items()
    ]
    columns = (
        Column("channel", "Channel"),
        Column("present", "Present", "int"),
        Column("share", "Share of participants present", "percent"),
        Column("time_attended", "Time attended", "duration"),
    )
    note = "Both: present online at some time and in the room at some time in the scope (not necessarily at once)."
    return Table("by_channel", "Participants by channel", columns, rows, note)


def _by_gender(scope: Scope, c: Computed) -> Table:
    total = c.total
    values = [(g, GENDER_LABELS[g]) for g in Gender]
    rows = _count_rows(scope, total, lambda p: p.gender, values)
    return Table("by_gender", "Participants by gender", (Column("gender", "Gender"), *COUNT_COLUMNS), rows)


def _by_regional_group(scope: Scope, c: Computed) -> Table:
    total = c.total
    values = [(g, g.value) for g in RegionalGroup] + [(None, NO_GROUP_LABEL)]
    rows = _count_rows(scope, total, lambda p: _group_of(scope, p), values)
    parties_by_group: dict[object, int] = {}
    for party_id in total.parties:
        group = scope.parties[party_id].regional_group
        parties_by_group[group] = parties_by_group.get(group, 0) + 1
    rows = [(*row, parties_by_group.get(value, 0)) for row, (value, _) in zip(rows, values, strict=True)]
    columns = (
        Column("regional_group", "Regional group"),
        *COUNT_COLUMNS,
        Column("parties", "Parties present", "int"),
    )
    note = "Regional group of the Party represented; observers and the European Union have none."
    return Table("by_regional_group", "Participants by regional group", columns, rows, note)


def _by_party(scope: Scope, c: Computed) -> Table:
    total = c.total
    registered: dict[int, int] = {}
    for p in _approved_in_scope(scope):
        if p.category == Category.PARTY and p.party_id is not None:
            registered[p.party_id] = registered.get(p.party_id, 0) + 1
    present: dict[int, int] = {}
    time: dict[int, int] = {}
    for user in total.present:
        p = scope.participants.get(user)
        if p is not None and p.category == Category.PARTY and p.party_id is not None:
            present[p.party_id] = present.get(p.party_id, 0) + 1
            time[p.party_id] = time.get(p.party_id, 0) + total.time.get(user, 0)
    sessions_present: dict[int, int] = {}
    for s in scope.sessions:
        for party_id in _parties_of(scope.folds[s.id]):
            sessions_present[party_id] = sessions_present.get(party_id, 0) + 1
    rows = [
        (
            party.name,
            party.code,
            party.regional_group.value if party.regional_group else NO_GROUP_LABEL,
            registered.get(party.id, 0),
            present.get(party.id, 0),
            sessions_present.get(party.id, 0),
            seconds(time.get(party.id, 0)),
        )
        for party in sorted(scope.parties.values(), key=lambda p: (p.name.casefold(), p.code))
    ]
    columns = (
        Column("party", "Party"),
        Column("code", "Code"),
        Column("regional_group", "Regional group"),
        Column("registered", "Delegates registered (approved)", "int"),
        Column("present", "Delegates present", "int"),
        Column("sessions", f"Sessions present (of {len(scope.sessions)})", "int"),
        Column("time_attended", "Time attended", "duration"),
    )
    note = "Every Party of the convention. Sessions present: sessions where an approved delegate was inside."
    return Table("by_party", "Participants by Party", columns, rows, note)


def _registrations(scope: Scope, c: Computed) -> Table:
    segment_ids = scope.segment_ids
    chosen = [
        p
        for p in scope.participants.values()
        if (scope.category is None or p.category == scope.category)
        and scope.registration_segments.get(p.registration_id, set()) & segment_ids
    ]
    dimensions: list[tuple[str, Callable[[Participant], object], list[tuple[object, str]]]] = [
        ("All", lambda p: None, [(None, "All registrations")]),
        ("Category", lambda p: p.category, [(c, CATEGORY_LABELS[c]) for c in _categories(scope)]),
        (
            "Regional group",
            lambda p: _group_of(scope, p),
            [(g, g.value) for g in RegionalGroup] + [(None, NO_GROUP_LABEL)],
        ),
        ("Gender", lambda p: p.gender, [(g, GENDER_LABELS[g]) for g in Gender]),
    ]
    rows = []
    for dimension, key, values in dimensions:
        counts: dict[tuple[object, RegistrationStatus], int] = {}
        for p in chosen:
            k = (key(p), p.status)
            counts[k] = counts.get(k, 0) + 1
        for value, label in values:
            per_status = [counts.get((value, status), 0) for status in STATUSES]
            rows.append((dimension, label, *per_status, sum(per_status)))
    for segment in scope.segments:
        if segment.id not in segment_ids:
            continue
        per_status = [
            sum(
                1
                for p in chosen
                if p.status == status and segment.id in scope.registration_segments.get(p.registration_id, ())
            )
            for status in STATUSES
        ]
        rows.append(("Segment", segment.name, *per_status, sum(per_status)))
    columns = (
        Column("dimension", "Dimension"),
        Column("value", "Value"),
        *(Column(status.value, status.value.capitalize(), "int") for status in STATUSES),
        Column("total", "Total", "int"),
    )
    note = (
        "Registrations covering the scope's segments, in every status. A registration may cover several "
        "segments; pending includes those whose email address is not yet confirmed."
    )
    return Table("registrations", "Registrations", columns, rows, note)


SEGMENT_FIGURES = (
    "Kind",
    "Sessions",
    "Participants registered (approved)",
    "Participants present",
    "Online only",
    "In the room only",
    "Both",
    "Parties represented at some time",
    "Peak concurrent participants",
    "Peak concurrent participants reached at",
    "Peak concurrent Parties",
    "Peak concurrent Parties reached at",
    "Total time attended",
    "Median time attended per participant present",
    "Sessions that reached the quorum to open",
    "Sessions that reached the quorum to decide",
)


def _segments_compared(scope: Scope, c: Computed) -> Table:
    per_segment, quorums = c.per_segment, c.quorums
    columns = [Column("figure", "Figure")]
    values: list[list[str]] = []
    for segment in scope.segments:
        sessions = [s for s in scope.sessions if s.segment_id == segment.id]
        f = per_segment[segment.id]
        channels = dict.fromkeys(CHANNEL_LABELS, 0)
        for bits in f.present.values():
            channels[bits] += 1
        approved = sum(
            1
            for p in scope.participants.values()
            if p.status == RegistrationStatus.APPROVED
            and (scope.category is None or p.category == scope.category)
            and segment.id in scope.registration_segments.get(p.registration_id, ())
        )
        columns.append(Column(f"segment_{segment.id}", segment.name))
        values.append(
            [
                segment.kind.value.replace("_", " "),
                str(len(sessions)),
                str(approved),
                str(len(f.present)),
                str(channels[ONLINE_BIT]),
                str(channels[IN_PERSON_BIT]),
                str(channels[ONLINE_BIT | IN_PERSON_BIT]),
                str(len(f.parties)),
                str(f.peak),
                _local(scope, f.peak_at),
                str(f.party_peak),
                _local(scope, f.party_peak_at),
                hms(seconds(f.total_time)),
                hms(_opt_seconds(f.median_time)),
                str(sum(1 for s in sessions if quorums[s.id].open_first is not None)),
                str(sum(1 for s in sessions if quorums[s.id].decide_first is not None)),
            ]
        )
    rows = [(figure, *(column[i] for column in values)) for i, figure in enumerate(SEGMENT_FIGURES)]
    note = f"Times in {scope.tz.key}. Durations as hours:minutes:seconds."
    return Table("segments_compared", "Segments compared", tuple(columns), rows, note)


ATTENDANCE_COLUMNS = (
    Column("session", "Session"),
    Column("participant", "Participant"),
    Column("category", "Category"),
    Column("party", "Party"),
    Column("represents", "Represents"),
    Column("channel", "Channel"),
    Column("in", "In", "datetime"),
    Column("out", "Out", "datetime"),
    Column("duration", "Duration", "duration"),
)


ATTENDANCE_NOTE = "One row per stretch of presence through one channel. Out is empty for someone still inside."


def attendance_rows(db: Session, scope: Scope) -> Iterator[tuple]:
    """One row per stretch of presence through one channel, session by session, in order of arrival.

    Streams the log one session at a time: the whole meeting's intervals are never held at once.
    Out is empty for someone still inside an open session.
    """
    dialect = _dialect(db)
    users_filter = None
    if scope.category is not None:
        users_filter = sa.select(Registration.user_id).where(
            Registration.meeting_id == scope.meeting.id, Registration.category == scope.category
        )
    for meeting_session in scope.sessions:
        end = _end_us(meeting_session, scope.now)
        closed = meeting_session.state == SessionState.CLOSED
        rule = presence.Inside()
        done: list[tuple[int, int, int | None]] = []
        for at, code, _party, by in _fetch(db, _log_query(dialect, meeting_session.id, from_us(end), users_filter)):
            key = code >> 1
            if code & 1:
                rule.enter(key, at, by)
            else:
                ended = rule.leave(key, by)
                if ended is not None:
                    done.append((ended[0], key, at))
        done.extend((start, key, end if closed else None) for key, (start, *_) in rule.open.items())
        # By arrival, then participant and channel; a stretch of no length keeps its place before a re-entry at
        # the same instant (out may be None, which does not compare with a time).
        done.sort(key=lambda stretch: (stretch[0], stretch[1]))
        for start, key, out in done:
            p = scope.participants.get(key >> 1)
            party = scope.parties.get(p.party_id) if p and p.party_id else None
            yield (
                meeting_session.title,
                p.name if p else "",
                CATEGORY_LABELS[p.category] if p else "",
                party.code if party else "",
                party.name if party else (p.organization or "" if p else ""),
                INTERVAL_CHANNELS[key & 1],
                from_us(start),
                _when(out),
                seconds(out - start) if out is not None else seconds(end - start),
            )


def _charts(scope: Scope, tables: dict[str, Table], c: Computed) -> list[Chart]:
    per_session, quorums = c.per_session, c.quorums

    def bar(key: str, title: str, table: str, present_index: int) -> Chart:
        rows = list(tables[table].rows)
        return Chart(
            key,
            title,
            "bar",
            tuple(row[0] for row in rows),
            (Series("Participants present", tuple(row[present_index] for row in rows)),),
        )

    charts = [
        bar("participants_by_category", "Participants by category", "by_category", 2),
        bar("participants_by_regional_group", "Participants by regional group", "by_regional_group", 2),
        bar("participants_by_channel", "Participants by channel", "by_channel", 1),
    ]
    if scope.session is not None:
        q = quorums[scope.session.id]
        labels = tuple(from_us(at).astimezone(scope.tz).isoformat(timespec="seconds") for at, _ in q.points)
        charts.append(
            Chart(
                "parties_over_time",
                "Parties present over time",
                "step",
                labels,
                (
                    Series("Parties present (in force)", tuple(count for _, count in q.points)),
                    Series("Needed to open", tuple(q.needed_to_open for _ in q.points)),
                    Series("Needed to decide", tuple(q.needed_to_decide for _ in q.points)),
                ),
            )
        )
    else:
        sessions = scope.sessions
        charts.append(
            Chart(
                "participants_per_session",
                "Participants per session",
                "bar",
                tuple(
                    f"{s.scheduled_start_at.astimezone(ZoneInfo(s.segment.timezone)):%d %b} {s.title}" for s in sessions
                ),
                (
                    Series("Participants present", tuple(len(per_session[s.id].present) for s in sessions)),
                    Series("Peak participants", tuple(per_session[s.id].peak for s in sessions)),
                    Series("Parties present", tuple(len(per_session[s.id].parties) for s in sessions)),
                ),
            )
        )
    return charts


@dataclass(slots=True)
class Computed:
    """The figures of every session, segment and the scope, and each session's quorum."""

    per_session: dict[int, Figures]
    quorums: dict[int, Quorum]
    per_segment: dict[int, Figures]  # for the whole meeting only
    total: Figures


def compute(scope: Scope) -> Computed:
    """Figures of the scope from its sessions' folds."""
    per_session = {s.id: figures(scope, [s]) for s in scope.sessions}
    quorums = {s.id: session_quorum(scope, s) for s in scope.sessions}
    per_segment: dict[int, Figures] = {}
    if scope.session is not None:
        total = per_session[scope.session.id]
    elif scope.segment is not None:
        total = figures(scope, scope.sessions)
    else:
        for segment in scope.segments:
            per_segment[segment.id] = figures(scope, [s for s in scope.sessions if s.segment_id == segment.id])
        total = figures(scope, scope.sessions, list(per_segment.values()))
    return Computed(per_session, quorums, per_segment, total)


# Every table but the attendance log, in the report's order. segments_compared is for the whole meeting only.
TABLE_BUILDERS: tuple[tuple[str, Callable[[Scope, Computed], Table]], ...] = (
    ("overview", _overview),
    ("sessions", _sessions_table),
    ("by_category", _by_category),
    ("by_channel", _by_channel),
    ("by_gender", _by_gender),
    ("by_regional_group", _by_regional_group),
    ("by_party", _by_party),
    ("registrations", _registrations),
    ("segments_compared", _segments_compared),
)


def builders_for(scope: Scope) -> list[tuple[str, Callable[[Scope, Computed], Table]]]:
    """The tables of the scope (all but the attendance log), by key."""
    whole = scope.session is None and scope.segment is None
    return [(key, build) for key, build in TABLE_BUILDERS if whole or key != "segments_compared"]


def report(
    db: Session,
    meeting: Meeting,
    *,
    segment_id: int | None = None,
    session_id: int | None = None,
    category: Category | None = None,
    now: dt.datetime,
) -> Report:
    """The statistics of the whole meeting, a segment or a session, for all participants or one category.

    Raises MeetingError("not_found") if the segment or session is not the meeting's. Every table
    is computed at once, except the attendance log's rows: a generator that reads the log when
    consumed (once), so the database session must still be open then.
    """
    scope = load_scope(db, meeting, segment_id=segment_id, session_id=session_id, category=category, now=now)
    computed = compute(scope)
    tables = [build(scope, computed) for _, build in builders_for(scope)]
    tables.append(Table("attendance", "Attendance", ATTENDANCE_COLUMNS, attendance_rows(db, scope), ATTENDANCE_NOTE))
    charts = _charts(scope, {t.key: t for t in tables}, computed)
    return Report(
        meeting_code=meeting.code,
        meeting_title=meeting.title,
        scope=scope.label,
        filters={"category": category.value} if category is not None else {},
        timezone=scope.tz.key,
        produced_at=now,
        tables=tables,
        charts=charts,
    )
