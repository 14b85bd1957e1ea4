"""The presences table as what it is, a cache of the presence rule: compared with the log, and rebuilt from it.

The check-in paths keep `presences` in step with the attendance log in the same transactions
(meetings.services), so that a check-in costs a primary-key lookup. Whether they did is a question
the log answers: folded by the rule (meetings.presence), the stretches still open are exactly
the rows the table must hold, with the same start, and held (no lapse ends it) exactly where the
row has no last_seen_at. `flask meetings verify-attendance` reports any difference, and with
`--rebuild` rewrites the differing sessions' rows from the log.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from meetings import presence
from meetings.models import Channel, MeetingSession, Presence
from meetings.services import log_events


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the presences table and the log disagree about a participant's channel in a session."""

    session_id: int
    user_id: int
    channel: str
    problem: str  # "missing", "extra", "since", "held"
    table: str  # what the table says
    log: str  # what the log says

    def __str__(self) -> str:
        return (
            f"session {self.session_id}, participant {self.user_id}, {self.channel}: {self.problem} "
            f"(table: {self.table}; log: {self.log})"
        )


def _held_in_table(channel: Channel, last_seen_at: dt.datetime | None) -> bool:
    # In the room, a presence is always held; online, a row without last_seen_at is.
    return channel == Channel.IN_PERSON or last_seen_at is None


def _rows(db: Session, session_id: int) -> dict[tuple[int, str], tuple[dt.datetime, dt.datetime | None]]:
    return {
        (user_id, channel.value): (since, last_seen_at)
        for user_id, channel, since, last_seen_at in db.execute(
            sa.select(Presence.user_id, Presence.channel, Presence.since, Presence.last_seen_at).where(
                Presence.session_id == session_id
            )
        )
    }


def differences(db: Session, meeting_session: MeetingSession) -> list[Difference]:
    """How the session's presences differ from its log folded by the rule; empty when they agree.

    Read both in one snapshot of the database (the caller's transaction; on PostgreSQL, make it
    REPEATABLE READ), or a check-in committed between the two reads shows as a difference.
    """
    expected = presence.open_stretches(log_events(db, meeting_session.id))
    actual = _rows(db, meeting_session.id)
    found: list[Difference] = []

    def differ(key: tuple[int, str], problem: str, table: str, log: str) -> None:
        found.append(Difference(meeting_session.id, key[0], key[1], problem, table, log))

    for key in sorted(expected.keys() | actual.keys()):
        stretch, row = expected.get(key), actual.get(key)
        if row is None:
            differ(key, "missing", "absent", f"inside since {stretch.start.isoformat()}")
        elif stretch is None:
            differ(key, "extra", f"inside since {row[0].isoformat()}", "absent")
        elif row[0] != stretch.start:
            differ(key, "since", row[0].isoformat(), stretch.start.isoformat())
        elif _held_in_table(Channel(key[1]), row[1]) != stretch.held:
            differ(
                key,
                "held",
                "held" if row[1] is None else f"resting on the browser, last seen {row[1].isoformat()}",
                "held by a person" if stretch.held else "resting on the browser",
            )
    return found


def rebuild(db: Session, meeting_session: MeetingSession, now: dt.datetime) -> int:
    """Rewrite the session's presences from its log; the number of rows written. Flushed, not committed.

    An online presence resting on the browser keeps the last_seen_at its row had; one the table
    lacked is taken as seen now, so that it lapses a grace period from now unless its page is heard
    from (the log does not say when a page was last heard from).
    """
    previous = _rows(db, meeting_session.id)
    db.execute(sa.delete(Presence).where(Presence.session_id == meeting_session.id))
    rows = []
    for (user_id, channel), stretch in presence.open_stretches(log_events(db, meeting_session.id)).items():
        last_seen_at = None
        if channel == Channel.ONLINE.value and not stretch.held:
            kept = previous.get((user_id, channel))
            last_seen_at = kept[1] if kept is not None and kept[1] is not None else max(now, stretch.start)
        rows.append(
            {
                "session_id": meeting_session.id,
                "user_id": user_id,
                "channel": Channel(channel),
                "since": stretch.start,
                "last_seen_at": last_seen_at,
            }
        )
    if rows:
        db.execute(sa.insert(Presence), rows)
    db.flush()
    return len(rows)
