"""Delegates' online check-ins, heartbeats and check-outs, as units of a group commit.

one() runs an event alone, through meetings.services: a check-in then runs about a dozen
statements (its login, its lapse, its nonce, its registration, its presence, the last event, then
its writes). At the opening of a plenary a group commit holds a couple of hundred of them, and on
PostgreSQL each statement is also a round trip. many() reads what it needs about the whole group
in one statement (every login, session, presence, nonce, registration and last event), then ends
and opens the presences, writes the events and stamps the connections in one statement each.

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
import json
from collections import Counter
from collections.abc import Iterable
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
    Segment,
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


@functools.cache
def _group_read(arrays: bool) -> sa.Select:
    """Everything the fast path asks about a group, in one statement: a row per (session, delegate).

    Each row holds the delegate's login, the session's state and segment, the delegate's online
    presence, whether the event's nonce is logged already, the delegate's registration for the
    meeting (and whether it covers the segment) and, when they are not inside, their last online
    event. On PostgreSQL each statement is a round trip, after which the worker waits its turn in
    the event loop: one read instead of six.

    The keys come as three arrays on PostgreSQL (unnest), as one JSON array of [session, delegate,
    nonce] on SQLite (json_each): either way the statement's text is the same whatever the group's
    size, so it is converted once and kept prepared. Each lookup is one probe of a primary key or
    unique index per key, and the last event is read from the end of an index. (On PostgreSQL the
    lookups are LATERAL subqueries: as plain joins, a planner whose statistics lag behind a fast
    growing log would hash whole tables instead: 11 ms against 8 for a group of 200, read and rows.)
    """
    if arrays:
        keys = (
            sa.func.unnest(
                sa.bindparam("sids", type_=postgresql.ARRAY(sa.Integer)),
                sa.bindparam("uids", type_=postgresql.ARRAY(sa.Integer)),
                sa.bindparam("nonces", type_=postgresql.ARRAY(sa.String)),
            )
            .table_valued(sa.column("sid", sa.Integer), sa.column("uid", sa.Integer), sa.column("nonce", sa.String))
            .render_derived(name="k")
        )
        sid, uid, nonce = keys.c.sid, keys.c.uid, keys.c.nonce
    else:
        keys = sa.func.json_each(sa.bindparam("keys")).table_valued("value").alias("k")
        sid, uid, nonce = (
            sa.func.json_extract(keys.c.value, sa.literal_column(f"'$[{n}]'"), type_=type_)
            for n, type_ in enumerate((sa.Integer, sa.Integer, sa.String))
        )
    read = sa.select().select_from(keys)

    def lookup(name: str, columns: list, keyed: list[tuple]) -> sa.Subquery:
        """Join the one row (or none) of a table found by keyed [(column, value)]: a LATERAL subquery, or a join."""
        nonlocal read
        if arrays:
            found = sa.select(*columns).where(*(column == value for column, value in keyed)).limit(1).lateral(name)
            read = read.outerjoin(found, sa.true())
        else:
            keying = [column.label(f"key_{n}") for n, (column, _) in enumerate(keyed)]
            found = sa.select(*columns, *keying).subquery(name)
            read = read.outerjoin(found, sa.and_(*(found.c[f"key_{n}"] == v for n, (_, v) in enumerate(keyed))))
        return found

    login = lookup("login", [User.session_epoch, User.is_enabled], [(User.id, uid)])
    session = lookup("session", [MeetingSession.state, MeetingSession.segment_id], [(MeetingSession.id, sid)])
    segment = lookup("segment", [Segment.kind, Segment.meeting_id], [(Segment.id, session.c.segment_id)])
    presence = lookup(
        "presence",
        [Presence.since, Presence.last_seen_at],
        [(Presence.session_id, sid), (Presence.user_id, uid), (Presence.channel, Channel.ONLINE)],
    )
    seen = lookup("seen", [AttendanceEvent.id], [(AttendanceEvent.session_id, sid), (AttendanceEvent.nonce, nonce)])
    registration = lookup(
        "registration",
        [Registration.id, Registration.category, Registration.party_id, Registration.status],
        [(Registration.meeting_id, segment.c.meeting_id), (Registration.user_id, uid)],
    )
    covers = lookup(
        "covers",
        [registration_segments.c.registration_id],
        [
            (registration_segments.c.registration_id, registration.c.id),
            (registration_segments.c.segment_id, session.c.segment_id),
        ],
    )
    last_at = (
        sa.select(sa.func.max(AttendanceEvent.at))
        .where(
            AttendanceEvent.session_id == sid, AttendanceEvent.user_id == uid, AttendanceEvent.channel == Channel.ONLINE
        )
        .scalar_subquery()
    )
    return read.with_only_columns(
        sid.label("session_id"),
        uid.label("user_id"),
        login.c.session_epoch,
        login.c.is_enabled,
        session.c.state,
        session.c.segment_id,
        segment.c.kind.label("segment_kind"),
        presence.c.since,
        presence.c.last_seen_at,
        seen.c.id.is_not(None).label("nonce_seen"),
        sa.case((presence.c.since.is_(None), last_at)).label("last_at"),
        registration.c.id.label("registration_id"),
        registration.c.category,
        registration.c.party_id,
        registration.c.status,
        covers.c.registration_id.is_not(None).label("covers"),
        maintain_column_froms=False,
    )


def _group_keys(arrays: bool, items: Iterable[Online]) -> dict:
    keys = [(item.session_id, item.user_id, item.nonce if item.kind != HEARTBEAT else None) for item in items]
    if arrays:
        return {"sids": [k[0] for k in keys], "uids": [k[1] for k in keys], "nonces": [k[2] for k in keys]}
    return {"keys": json.dumps(keys)}


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
    arrays = conn.dialect.name == "postgresql"
    state = {
        (row.session_id, row.user_id): row
        for row in conn.execute(_group_read(arrays), _group_keys(arrays, todo.values()))
    }

    def fast(item: Online) -> bool:
        """Whether one() would take this event as it comes: anything else is left to one()."""
        row = state[item.session_id, item.user_id]
        if not _login_holds(row, item):
            return False  # login_required
        if row.state is None:
            return False  # not_found
        if row.last_seen_at is not None and row.last_seen_at < item.lapsed_before:
            return False  # lapsed: its exit is dated back first
        if item.kind == HEARTBEAT:
            return True
        if row.nonce_seen:
            return False  # a retry, answered with what it recorded then (or nonce_reused)
        if item.kind == CHECK_IN:
            # The session takes check-ins now, and an approved registration covers its segment.
            return (
                row.state == SessionState.OPEN
                and row.segment_kind in Segment.ONLINE_KINDS
                and row.status == RegistrationStatus.APPROVED
                and bool(row.covers)
            )
        return row.since is None or row.registration_id is not None  # an exit names the registration

    todo = {n: item for n, item in todo.items() if fast(item)}
    if not todo:
        return {}

    # The writes. Every row read above is taken as it was: a write that finds otherwise raises, and
    # the caller runs the group one at a time.
    results: dict[int, tuple[object, bool, dt.datetime | None]] = {}
    events, logged, ended, opened, stamped = [], [], [], [], []
    for n, item in todo.items():
        row = state[item.session_id, item.user_id]
        if item.kind == HEARTBEAT:
            if row.since is None:
                results[n] = (False, False, None)
            else:
                stamped.append({"sid": item.session_id, "uid": item.user_id, "seen_at": item.at})
                results[n] = (True, False, None)
        elif item.kind == CHECK_IN and row.since is not None:
            # Another tab or device of theirs: the same presence, stamped.
            stamped.append({"sid": item.session_id, "uid": item.user_id, "seen_at": item.at})
            results[n] = (CheckInResult(None, EventKind.ENTRY.value, item.at, recorded=False), False, row.since)
        elif item.kind == CHECK_OUT and row.since is None:
            results[n] = (CheckInResult(None, EventKind.EXIT.value, item.at, recorded=False), False, None)
        else:
            if item.kind == CHECK_IN:
                # Never before their last exit through this channel: the log, folded in time order,
                # must say what the presences table says.
                at = max(item.at, row.last_at) if row.last_at is not None else item.at
                kind = EventKind.ENTRY
                opened.append({**_presence_key(item), "since": at, "last_seen_at": at})
            else:
                at = max(item.at, row.since)
                kind = EventKind.EXIT
                ended.append({"sid": item.session_id, "uid": item.user_id, "since_at": row.since})
            events.append(
                {
                    **_presence_key(item),
                    "registration_id": row.registration_id,
                    "party_id": row.party_id if row.category == Category.PARTY else None,
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
