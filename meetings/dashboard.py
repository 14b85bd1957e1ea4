"""What the officers' quorum dashboard shows: the session's quorum and who is present, as JSON-ready values."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from meetings import services
from meetings.models import Credentials, CredentialsStatus, MeetingSession, Party

BOTH = "both"


def _channel_label(channels: frozenset[str]) -> str:
    return BOTH if len(channels) > 1 else next(iter(channels))


def state(db: Session, meeting_session: MeetingSession, now: dt.datetime) -> dict:
    """The session's quorum now. Parties in `present` map to how they are present: online, in_person or both."""
    q = services.session_quorum(db, meeting_session)
    meeting = meeting_session.segment.meeting
    users = services.present_users(db, meeting_session)
    by_party = services.present_parties_channels(db, meeting_session, users)
    present = {code: _channel_label(by_party[code]) for code in q.present_codes}
    accepted = 0
    if q.present_codes:
        accepted = db.scalar(
            sa.select(sa.func.count(Credentials.id))
            .join(Party)
            .where(
                Credentials.meeting_id == meeting.id,
                Credentials.status == CredentialsStatus.ACCEPTED,
                Party.code.in_(q.present_codes),
            )
        )
    participants_by_channel = {"online": 0, "in_person": 0, BOTH: 0}
    for channels in users.values():
        participants_by_channel[_channel_label(channels)] += 1
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
        "participants_present": len(users),
        "participants_by_channel": participants_by_channel,
        "present": present,
    }
