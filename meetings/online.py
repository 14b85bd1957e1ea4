"""Delegates' online check-ins, heartbeats and check-outs, as units of a group commit.

one() runs an event alone, through meetings.services: a check-in then runs about a dozen
statements (its login, its lapse, its nonce, its registration, its presence, the last event, then
its writes). At the opening of a plenary a group commit holds a couple of hundred of them, and on
PostgreSQL each statement is also a round trip. many() runs a whole group with one statement of
each kind: every login, presence, nonce, registration and last event of the group read at once,
then the presences ended and opened, the events written and the connections stamped in one
statement each.

Only the plain cases take the fast path: a login that holds, a session that takes the event, a new
nonce, an approved registration, a presence neither lapsed nor doubled in the group. Anything else
(a refusal, a retried nonce, a lapsed presence, two events of one delegate in one group) is left to
one(), which has the answers and the error messages; so is the whole group if a write finds the
database otherwise than it was read (another process got there first). Both paths give the same
results and leave the same rows: tests/test_online.py runs them side by side.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections import Counter
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from auth.models import User
from meetings import services
from meetings.commits import Stale
from meetings.models import (
    AttendanceEvent,
    Category,
    Channel,
    EventKind,
    MeetingSession,
    Presence,
    Registration,
    RegistrationStatus,
    SessionState,
    Source,
    registration_segments,
)
from meetings.services import _INSERT_PRESENCE, _SEEN_ONLINE, NONCE_RE, CheckInResult

CHECK_IN, HEARTBEAT, CHECK_OUT = "check_in", "heartbeat", "check_out"


class Online(NamedTuple):
    """One delegate's online event, as its socket handler saw it."""

    kind: str  # CHECK_IN, HEARTBEAT or CHECK_OUT
    session_id: int
    user_id: int
    epoch: int  # the session epoch of the login that sent it
    nonce: str | None  # check-ins and check-outs
    at: dt.datetime
    lapsed_before: dt.datetime


class _Who(NamedTuple):
    """The participant, as the presence services need them (by id), without loading the account."""

    id: int


LOGIN_ENDED = "Your login has ended. Reload the page and log in again."
_LOGIN = sa.select(User.session_epoch, User.is_enabled).where(User.id == sa.bindparam("uid"))


def _login_holds(login, item: Online) -> bool:
    return login is not None and login.session_epoch == item.epoch and login.is_enabled


def one(db: Session, item: Online) -> tuple[object, bool, dt.datetime | None]:
    """Run one event alone: (outcome, whether the session's presences changed, since), or its refusal.

    The outcome is the service's; since, for a check-in, when the delegate's online presence began
    (None if absent).
    """
    if not _login_holds(db.connection().execute(_LOGIN, {"uid": item.user_id}).first(), item):
        raise services.MeetingError("login_required", LOGIN_ENDED)
    meeting_session = db.get(MeetingSession, item.session_id)
    if meeting_session is None:
        raise services.MeetingError("not_found", "There is no such session.")
    nonce = {"nonce": item.nonce} if item.kind != HEARTBEAT else {}
    service = getattr(services, f"online_{item.kind}")  # online_check_in, online_heartbeat, online_check_out
    outcome, changed = service(
        db, meeting_session, _Who(item.user_id), now=item.at, lapsed_before=item.lapsed_before, **nonce
    )
    since = services.online_since(db, item.session_id, item.user_id) if item.kind == CHECK_IN else None
    return outcome, changed, since


# The events logged with these (session, nonce) pairs, given as two arrays of the same length: one
# lookup each in the unique index on (session_id, nonce). Asked for as `session_id = ANY(...) AND
# nonce = ANY(...)`, PostgreSQL may instead read every event of the session (a bitmap scan of the
# session's index, filtered on the nonce) while its statistics still take the log for short, as in a
# meeting's first minute: 3 ms for 30,000 events, growing with the log.
_NONCE_PAIRS = sa.text(
    "SELECT e.session_id, e.nonce FROM unnest(CAST(:sids AS INTEGER[]), CAST(:nonces AS VARCHAR[])) AS k(sid, nonce) "
    "JOIN attendance_events AS e ON e.session_id = k.sid AND e.nonce = k.nonce"
)


class _Reads(NamedTuple):
    """What many() reads for a group, in one statement each, by lists of ids and nonces."""

    logins: sa.Select
    presences: sa.Select
    nonces: sa.Select | sa.TextClause
    registrations: sa.Select
    last_events: sa.Select


@functools.cache
def _reads(arrays: bool) -> _Reads:
    """The group's reads, with each list as one array (PostgreSQL) or as IN (?, ?, ...) (SQLite).

    On PostgreSQL, `= ANY(array)` keeps each statement's text the same whatever the group's size,
    so the driver converts it once and keeps it prepared; a list of two hundred placeholders would
    be a new statement to convert, and to prepare, for every size of group.
    """

    def one_of(column, name: str):
        if arrays:
            return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
        return column.in_(sa.bindparam(name, expanding=True))

    return _Reads(
        logins=sa.select(User.id, User.session_epoch, User.is_enabled).where(one_of(User.id, "uids")),
        presences=sa.select(Presence.session_id, Presence.user_id, Presence.since, Presence.last_seen_at).where(
            Presence.channel == Channel.ONLINE,
            one_of(Presence.session_id, "sids"),
            one_of(Presence.user_id, "uids"),
        ),
        nonces=_NONCE_PAIRS
        if arrays
        else sa.select(AttendanceEvent.session_id, AttendanceEvent.nonce).where(
            one_of(AttendanceEvent.session_id, "sids"), one_of(AttendanceEvent.nonce, "nonces")
        ),
        registrations=sa.select(
            Registration.meeting_id,
            Registration.user_id,
            Registration.id,
            Registration.category,
            Registration.party_id,
            Registration.status,
            registration_segments.c.segment_id,
        )
        .outerjoin(registration_segments, registration_segments.c.registration_id == Registration.id)
        .where(one_of(Registration.meeting_id, "mids"), one_of(Registration.user_id, "uids")),
        # One max() per delegate, each read from the end of an index (a GROUP BY would read the
        # delegate's every event, and a busy session logs hundreds per delegate).
        last_events=sa.select(
            MeetingSession.id,
            User.id,
            sa.select(sa.func.max(AttendanceEvent.at))
            .where(
                AttendanceEvent.session_id == MeetingSession.id,
                AttendanceEvent.user_id == User.id,
                AttendanceEvent.channel == Channel.ONLINE,
            )
            .scalar_subquery(),
        )
        .join_from(MeetingSession, User, sa.true())  # every session of the group with every delegate
        .where(one_of(MeetingSession.id, "sids"), one_of(User.id, "uids")),
    )


_END_PRESENCES = sa.delete(Presence.__table__).where(
    Presence.session_id == sa.bindparam("sid"),
    Presence.user_id == sa.bindparam("uid"),
    Presence.channel == Channel.ONLINE,
    Presence.since == sa.bindparam("since_at"),
)
# The new rows' ids come back in no particular order (asking for the order of the rows makes
# SQLAlchemy insert them one by one on SQLite): each is matched to its row by session and nonce.
_INSERT_EVENTS = sa.insert(AttendanceEvent.__table__).returning(
    AttendanceEvent.id, AttendanceEvent.session_id, AttendanceEvent.nonce
)
# On PostgreSQL, one array per column: a statement as short for two hundred rows as for one. (The
# driver rewrites a statement's placeholders each time it runs a long one: a multi-row insert of a
# couple of hundred rows costs more in that than on the server.)
_EVENT_COLUMNS = ("session_id", "user_id", "registration_id", "party_id", "kind", "channel", "source", "at", "nonce")
_UNNEST_EVENTS = sa.text(
    f"INSERT INTO attendance_events ({', '.join(_EVENT_COLUMNS)}) "
    "SELECT * FROM unnest(CAST(:session_id AS INTEGER[]), CAST(:user_id AS INTEGER[]), "
    "CAST(:registration_id AS INTEGER[]), CAST(:party_id AS INTEGER[]), CAST(:kind AS VARCHAR[]), "
    "CAST(:channel AS VARCHAR[]), CAST(:source AS VARCHAR[]), CAST(:at AS TIMESTAMPTZ[]), CAST(:nonce AS VARCHAR[])) "
    "RETURNING id, session_id, nonce"
)
_PRESENCE_COLUMNS = ("session_id", "user_id", "channel", "since", "last_seen_at")
_UNNEST_PRESENCES = sa.text(
    f"INSERT INTO presences ({', '.join(_PRESENCE_COLUMNS)}) "
    "SELECT * FROM unnest(CAST(:session_id AS INTEGER[]), CAST(:user_id AS INTEGER[]), CAST(:channel AS VARCHAR[]), "
    "CAST(:since AS TIMESTAMPTZ[]), CAST(:last_seen_at AS TIMESTAMPTZ[]))"
)


class _Registration(NamedTuple):
    id: int
    category: Category
    party_id: int | None
    status: RegistrationStatus
    segments: frozenset[int]


def many(db: Session, items: list[Online]) -> dict[int, tuple[object, bool, dt.datetime | None]]:
    """Run the plain ones of items together: {index: (outcome, changed, since)}, as one() would give.

    The items left out must run one at a time, after these (in the same transaction). Raises
    meetings.commits.Stale, or the database's error, if the writes found the database changed since
    the reads: the caller rolls back this call's savepoint and runs every item one at a time.
    """
    pairs = Counter((item.session_id, item.user_id) for item in items)
    nonces = Counter((item.session_id, item.nonce) for item in items if isinstance(item.nonce, str))
    todo = {
        n: item
        for n, item in enumerate(items)
        if pairs[item.session_id, item.user_id] == 1
        and (
            item.kind == HEARTBEAT
            or (isinstance(item.nonce, str) and NONCE_RE.match(item.nonce) and nonces[item.session_id, item.nonce] == 1)
        )
    }
    if not todo:
        return {}
    conn = db.connection()
    reads = _reads(conn.dialect.name == "postgresql")
    uids = sorted({item.user_id for item in todo.values()})
    sids = sorted({item.session_id for item in todo.values()})

    logins = {row.id: row for row in conn.execute(reads.logins, {"uids": uids})}
    # Each with its segment and meeting, in one statement.
    sessions = {sid: db.get(MeetingSession, sid, options=services.WITH_MEETING) for sid in sids}
    presences = {
        (row.session_id, row.user_id): row for row in conn.execute(reads.presences, {"sids": sids, "uids": uids})
    }

    def plain(item: Online) -> bool:
        if not _login_holds(logins.get(item.user_id), item):
            return False  # login_required
        meeting_session = sessions[item.session_id]
        if meeting_session is None:
            return False  # not_found
        present = presences.get((item.session_id, item.user_id))
        if present is not None and present.last_seen_at is not None and present.last_seen_at < item.lapsed_before:
            return False  # lapsed: its exit is dated back first
        if item.kind == CHECK_IN:
            return meeting_session.state == SessionState.OPEN and meeting_session.segment.online_check_in
        return True

    todo = {n: item for n, item in todo.items() if plain(item)}
    nonced = [item for item in todo.values() if item.kind != HEARTBEAT]
    if nonced:
        # A nonce seen before: a retry, answered with what it recorded then (or nonce_reused).
        pairs = sorted((i.session_id, i.nonce) for i in nonced)
        seen = set(
            conn.execute(reads.nonces, {"sids": [sid for sid, _ in pairs], "nonces": [n for _, n in pairs]}).tuples()
        )
        todo = {n: item for n, item in todo.items() if (item.session_id, item.nonce) not in seen}

    # Registrations: a check-in needs an approved one covering the segment; an exit names one.
    needing = {
        n for n, item in todo.items() if item.kind == CHECK_IN or (item.kind == CHECK_OUT and _inside(presences, item))
    }
    meetings = {item.session_id: sessions[item.session_id].segment.meeting_id for item in todo.values()}
    registrations: dict[tuple[int, int], _Registration] = {}
    if needing:
        rows_of: dict[tuple[int, int], list] = {}
        params = {"mids": sorted(set(meetings.values())), "uids": sorted({todo[n].user_id for n in needing})}
        for row in conn.execute(reads.registrations, params):
            rows_of.setdefault((row.meeting_id, row.user_id), []).append(row)
        registrations = {
            key: _Registration(
                rows[0].id,
                rows[0].category,
                rows[0].party_id,
                rows[0].status,
                frozenset(row.segment_id for row in rows if row.segment_id is not None),
            )
            for key, rows in rows_of.items()
        }

        def registered(item: Online) -> bool:
            registration = registrations.get((meetings[item.session_id], item.user_id))
            if registration is None:
                return False  # not_registered
            if item.kind == CHECK_IN:
                return (
                    registration.status == RegistrationStatus.APPROVED
                    and sessions[item.session_id].segment_id in registration.segments
                )
            return True

        todo = {n: item for n, item in todo.items() if n not in needing or registered(item)}

    if not todo:
        return {}
    entering = [item for item in todo.values() if item.kind == CHECK_IN and not _inside(presences, item)]
    last: dict[tuple[int, int], dt.datetime] = {}
    if entering:
        params = {"sids": sorted({i.session_id for i in entering}), "uids": sorted({i.user_id for i in entering})}
        last = {(sid, uid): at for sid, uid, at in conn.execute(reads.last_events, params) if at is not None}

    # The writes. Every row read above is taken as it was: a write that finds otherwise raises, and
    # the caller runs the group one at a time.
    results: dict[int, tuple[object, bool, dt.datetime | None]] = {}
    events, logged, ended, opened, stamped = [], [], [], [], []
    for n, item in todo.items():
        key = (item.session_id, item.user_id)
        present = presences.get(key)
        if item.kind == HEARTBEAT:
            if present is None:
                results[n] = (False, False, None)
            else:
                stamped.append({"sid": item.session_id, "uid": item.user_id, "seen_at": item.at})
                results[n] = (True, False, None)
        elif item.kind == CHECK_IN and present is not None:
            # Another tab or device of theirs: the same presence, stamped.
            stamped.append({"sid": item.session_id, "uid": item.user_id, "seen_at": item.at})
            results[n] = (CheckInResult(None, EventKind.ENTRY.value, item.at, recorded=False), False, present.since)
        elif item.kind == CHECK_OUT and present is None:
            results[n] = (CheckInResult(None, EventKind.EXIT.value, item.at, recorded=False), False, None)
        else:
            registration = registrations[meetings[item.session_id], item.user_id]
            if item.kind == CHECK_IN:
                # Never before their last exit through this channel: the log, folded in time order,
                # must say what the presences table says.
                at = max(item.at, last[key]) if key in last else item.at
                kind = EventKind.ENTRY
                opened.append({**_presence_key(item), "since": at, "last_seen_at": at})
            else:
                at = max(item.at, present.since)
                kind = EventKind.EXIT
                ended.append({"sid": item.session_id, "uid": item.user_id, "since_at": present.since})
            events.append(
                {
                    **_presence_key(item),
                    "registration_id": registration.id,
                    "party_id": registration.party_id if registration.category == Category.PARTY else None,
                    "kind": kind,
                    "source": Source.BROWSER,
                    "at": at,
                    "nonce": item.nonce,
                    "recorded_by_id": None,
                    "reason": None,
                }
            )
            logged.append((n, kind, at))

    if ended and conn.execute(_END_PRESENCES, ended).rowcount != len(ended):
        raise Stale("a presence to end was gone")
    if opened:
        _open_presences(conn, opened)  # a presence opened meanwhile: IntegrityError
    if stamped and conn.execute(_SEEN_ONLINE, stamped).rowcount != len(stamped):
        raise Stale("a presence to stamp was gone")
    if events:
        ids = _log_events(conn, events)
        for (n, kind, at), event_id in zip(logged, ids, strict=True):
            result = CheckInResult(event_id, kind.value, at, recorded=True)
            results[n] = (result, True, at if kind == EventKind.ENTRY else None)
    return results


def _columns(rows: list[dict], columns: tuple[str, ...]) -> dict[str, list]:
    return {column: [_plain(row[column]) for row in rows] for column in columns}


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _open_presences(conn: sa.Connection, rows: list[dict]) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(_UNNEST_PRESENCES, _columns(rows, _PRESENCE_COLUMNS))
    else:
        conn.execute(_INSERT_PRESENCE, rows)


def _log_events(conn: sa.Connection, rows: list[dict]) -> list[int]:
    """Insert the events; their ids, in the order of rows."""
    if conn.dialect.name == "postgresql":
        inserted = conn.execute(_UNNEST_EVENTS, _columns(rows, _EVENT_COLUMNS))
    else:
        inserted = conn.execute(_INSERT_EVENTS, rows)
    ids = {(session_id, nonce): id_ for id_, session_id, nonce in inserted}
    return [ids[row["session_id"], row["nonce"]] for row in rows]  # a nonce is once per session


def _presence_key(item: Online) -> dict:
    return {"session_id": item.session_id, "user_id": item.user_id, "channel": Channel.ONLINE}


def _inside(presences: dict, item: Online) -> bool:
    return (item.session_id, item.user_id) in presences
