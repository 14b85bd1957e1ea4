"""The meeting domain: meetings, segments, sessions, Parties, registrations, credentials,
badges, the append-only attendance log and quorum snapshots."""

from __future__ import annotations

import datetime as dt
import enum
from fractions import Fraction
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auth.models import User, enum_column
from db import Base, UTCDateTime, utcnow


class Convention(enum.StrEnum):
    MINAMATA = "minamata"
    BASEL = "basel"
    ROTTERDAM = "rotterdam"
    STOCKHOLM = "stockholm"


class RegionalGroup(enum.StrEnum):
    AFRICAN = "African"
    ASIA_PACIFIC = "Asia-Pacific"
    EASTERN_EUROPEAN = "Eastern European"
    GRULAC = "GRULAC"
    WEOG = "WEOG"


class Category(enum.StrEnum):
    PARTY = "party"
    NON_PARTY_STATE = "non_party_state"
    IGO = "igo"
    NGO = "ngo"
    UN_BODY = "un_body"
    MEDIA = "media"
    SECRETARIAT = "secretariat"


CATEGORY_LABELS = {
    Category.PARTY: "Party",
    Category.NON_PARTY_STATE: "Non-Party State",
    Category.IGO: "Intergovernmental organization",
    Category.NGO: "Non-governmental organization",
    Category.UN_BODY: "UN body or specialized agency",
    Category.MEDIA: "Media",
    Category.SECRETARIAT: "Secretariat",
}


class Function(enum.StrEnum):
    HEAD = "head"
    ALTERNATE = "alternate"
    ADVISER = "adviser"


FUNCTION_LABELS = {
    Function.HEAD: "Head of delegation",
    Function.ALTERNATE: "Alternate representative",
    Function.ADVISER: "Adviser",
}


class SegmentKind(enum.StrEnum):
    ONLINE = "online"
    IN_PERSON = "in_person"
    HYBRID = "hybrid"


class SessionKind(enum.StrEnum):
    PLENARY = "plenary"
    COMMITTEE = "committee"
    CONTACT_GROUP = "contact_group"
    REGIONAL = "regional"


class SessionState(enum.StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class RegistrationStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class OnlineRole(enum.StrEnum):
    """A delegate's role in online sessions: COP-4 allowed one designated speaker per delegation."""

    SPEAKER = "speaker"
    VIEWER = "viewer"


class DocumentKind(enum.StrEnum):
    NOMINATION_LETTER = "nomination_letter"
    NOTE_VERBALE = "note_verbale"


class CredentialsStatus(enum.StrEnum):
    NONE = "none"
    COPY = "copy"
    ORIGINAL = "original"
    ACCEPTED = "accepted"


class EventKind(enum.StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


class Channel(enum.StrEnum):
    ONLINE = "online"
    IN_PERSON = "in_person"


class Source(enum.StrEnum):
    BROWSER = "browser"
    KIOSK = "kiosk"
    OFFICER = "officer"
    SYSTEM = "system"


class Party(Base):
    """A State or regional economic integration organization bound by a convention."""

    __tablename__ = "parties"
    __table_args__ = (sa.UniqueConstraint("convention", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    convention: Mapped[Convention] = mapped_column(enum_column(Convention))
    # ISO 3166 alpha-3; the European Union is EUR.
    code: Mapped[str] = mapped_column(sa.String(3))
    name: Mapped[str] = mapped_column(sa.String(100))
    # None for the European Union, which belongs to no UN regional group.
    regional_group: Mapped[RegionalGroup | None] = mapped_column(enum_column(RegionalGroup))
    entry_into_force_on: Mapped[dt.date | None] = mapped_column(sa.Date)


class Meeting(Base):
    """A meeting of the Parties, such as COP-4, with its quorum rules."""

    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(20), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    convention: Mapped[Convention] = mapped_column(enum_column(Convention))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    # Fractions as "numerator/denominator": computed exactly, never as floats.
    quorum_to_open: Mapped[str] = mapped_column(sa.String(10), default="1/3")
    quorum_to_decide: Mapped[str] = mapped_column(sa.String(10), default="2/3")

    segments: Mapped[list[Segment]] = relationship(
        back_populates="meeting",
        order_by="Segment.starts_on",
        cascade="all, delete-orphan",
    )

    @property
    def open_fraction(self) -> Fraction:
        return Fraction(self.quorum_to_open)

    @property
    def decide_fraction(self) -> Fraction:
        return Fraction(self.quorum_to_decide)


class Segment(Base):
    """Part of a meeting: online, in person or hybrid, with its dates, venue and time zone."""

    ONLINE_KINDS = frozenset({SegmentKind.ONLINE, SegmentKind.HYBRID})  # the kinds that take online check-ins

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[SegmentKind] = mapped_column(enum_column(SegmentKind))
    starts_on: Mapped[dt.date] = mapped_column(sa.Date)
    ends_on: Mapped[dt.date] = mapped_column(sa.Date)
    venue: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64))

    meeting: Mapped[Meeting] = relationship(back_populates="segments")
    sessions: Mapped[list[MeetingSession]] = relationship(
        back_populates="segment",
        order_by="MeetingSession.scheduled_start_at",
        cascade="all, delete-orphan",
    )

    @property
    def online_check_in(self) -> bool:
        return self.kind in self.ONLINE_KINDS

    @property
    def gate_check_in(self) -> bool:
        return self.kind in (SegmentKind.IN_PERSON, SegmentKind.HYBRID)


class MeetingSession(Base):
    """A plenary, committee, contact group or regional consultation inside a segment."""

    __tablename__ = "meeting_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[SessionKind] = mapped_column(enum_column(SessionKind))
    scheduled_start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    scheduled_end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[SessionState] = mapped_column(enum_column(SessionState), default=SessionState.SCHEDULED)
    opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    segment: Mapped[Segment] = relationship(back_populates="sessions")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.segment.timezone)

    @property
    def local_date(self) -> dt.date:
        """The session's date where it meets: the date on which Parties in force are counted."""
        return self.scheduled_start_at.astimezone(self.tz).date()


registration_segments = sa.Table(
    "registration_segments",
    Base.metadata,
    sa.Column(
        "registration_id",
        sa.ForeignKey("registrations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("segment_id", sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True),
)


class Registration(Base):
    """A participant registered for a meeting: whom they represent, which segments, and the decision."""

    __tablename__ = "registrations"
    __table_args__ = (
        sa.UniqueConstraint("meeting_id", "user_id"),
        sa.Index("ix_registrations_meeting_status", "meeting_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    category: Mapped[Category] = mapped_column(enum_column(Category))
    # The Party represented (category party), or None with the organization or State named instead.
    party_id: Mapped[int | None] = mapped_column(sa.ForeignKey("parties.id"), index=True)
    organization: Mapped[str | None] = mapped_column(sa.String(200))
    function: Mapped[Function] = mapped_column(enum_column(Function))
    status: Mapped[RegistrationStatus] = mapped_column(
        enum_column(RegistrationStatus), default=RegistrationStatus.PENDING, index=True
    )
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(sa.String(500))
    # The reference of the nomination letter (e.g. a note verbale's number), and/or the uploaded PDF.
    nomination_ref: Mapped[str | None] = mapped_column(sa.String(200))
    letter_id: Mapped[int | None] = mapped_column(sa.ForeignKey("documents.id", ondelete="SET NULL"))
    # The Party's national focal point, designated by the secretariat, registers its delegation.
    focal_point: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    online_role: Mapped[OnlineRole | None] = mapped_column(enum_column(OnlineRole))
    # Who submitted it when not the participant: the focal point who pre-registered them.
    submitted_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    meeting: Mapped[Meeting] = relationship()
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])
    letter: Mapped[Document | None] = relationship(foreign_keys=[letter_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    party: Mapped[Party | None] = relationship()
    segments: Mapped[list[Segment]] = relationship(secondary=registration_segments, order_by="Segment.starts_on")
    badges: Mapped[list[Badge]] = relationship(back_populates="registration", order_by="Badge.version")

    @property
    def represents(self) -> str:
        return self.party.name if self.party else (self.organization or "")


class Document(Base):
    """An uploaded PDF (nomination letter or note verbale), stored outside the web root."""

    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    # The Party whose delegation a note verbale covers; None for a personal nomination letter.
    party_id: Mapped[int | None] = mapped_column(sa.ForeignKey("parties.id"))
    kind: Mapped[DocumentKind] = mapped_column(enum_column(DocumentKind))
    uploaded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    original_name: Mapped[str] = mapped_column(sa.String(200))
    # A random name under the upload folder: never derived from what the uploader typed.
    stored_name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(sa.String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    uploaded_by: Mapped[User] = relationship()


class Credentials(Base):
    """The credentials of one Party's delegation to one meeting."""

    __tablename__ = "credentials"
    __table_args__ = (sa.UniqueConstraint("meeting_id", "party_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[int] = mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"))
    party_id: Mapped[int] = mapped_column(sa.ForeignKey("parties.id"))
    status: Mapped[CredentialsStatus] = mapped_column(enum_column(CredentialsStatus), default=CredentialsStatus.NONE)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    party: Mapped[Party] = relationship()


class Badge(Base):
    """A badge issued on approval; a reissue gets a new version and the old one stops working."""

    __tablename__ = "badges"
    __table_args__ = (sa.UniqueConstraint("registration_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(sa.ForeignKey("registrations.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(sa.String(20), unique=True)
    version: Mapped[int] = mapped_column(default=1)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(200))

    registration: Mapped[Registration] = relationship(back_populates="badges")


class AttendanceEvent(Base):
    """One entry or exit: the append-only log from which presence and quorum are derived."""

    __tablename__ = "attendance_events"
    __table_args__ = (
        sa.UniqueConstraint("session_id", "nonce"),
        sa.Index("ix_attendance_events_session_at", "session_id", "at"),
        # A session's events in the order they were logged, from an id on: the dashboards' timeline
        # reads what was logged since its last read, a chunk at a time.
        sa.Index("ix_attendance_events_session_id", "session_id", "id"),
        # A delegate's last event through a channel, read at each check-in: one index entry, however
        # long the log.
        sa.Index("ix_attendance_events_session_user_channel_at", "session_id", "user_id", "channel", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("meeting_sessions.id", ondelete="CASCADE"))
    # No index of its own: every read of the log is by session, and accounts are never deleted. (One
    # more index on a column in no order is one more B-tree page written at every check-in.)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    registration_id: Mapped[int] = mapped_column(sa.ForeignKey("registrations.id"))
    # The Party represented at the time, kept so that the log alone gives the quorum.
    party_id: Mapped[int | None] = mapped_column(sa.ForeignKey("parties.id"))
    kind: Mapped[EventKind] = mapped_column(enum_column(EventKind))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel))
    source: Mapped[Source] = mapped_column(enum_column(Source))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    nonce: Mapped[str] = mapped_column(sa.String(64))
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(sa.String(200))


class Presence(Base):
    """Who is inside a session now, and through which channel: a cache of the presence rule.

    One row per participant and channel, written in the same transaction as the entry or exit
    that opens or ends it, so that it says what the attendance log says folded by the one rule
    (meetings.presence); `flask meetings verify-attendance` compares the two and can rebuild this
    table from the log. The primary key makes a second arrival through the same channel
    impossible, even from two processes at once.
    """

    __tablename__ = "presences"
    __table_args__ = (sa.Index("ix_presences_channel_last_seen", "channel", "last_seen_at"),)

    session_id: Mapped[int] = mapped_column(sa.ForeignKey("meeting_sessions.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    channel: Mapped[Channel] = mapped_column(enum_column(Channel), primary_key=True)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Online presences resting on the browser only: the last moment the participant was known
    # connected (a check-in or heartbeat, or a page closing). A presence whose last_seen_at is older
    # than the grace period has lapsed. None: held by a person (an officer, a kiosk, or any presence
    # in the room), which no lapse ends.
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the delegate's last page connected to a server process went (closed, or silent past the
    # ping timeout); None while a page of theirs is heard from. The presence is then in its grace
    # period: counted, but ending at last_seen_at unless a page comes back within the grace.
    disconnected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class FoldedLog(Base):
    """A closed session's attendance log, folded once for statistics (meetings.statistics).

    Derived data, never a record: it stands only while the log is as it was when folded (the same
    number of events, the same highest event id: the log is append-only) and the session closed at
    the same moment; otherwise statistics fold the log again and replace it. Kept so that the first
    statistics page after a restart, or in another server process, need not read the whole log.
    """

    __tablename__ = "folded_logs"

    session_id: Mapped[int] = mapped_column(sa.ForeignKey("meeting_sessions.id", ondelete="CASCADE"), primary_key=True)
    events: Mapped[int] = mapped_column(sa.BigInteger)
    last_event_id: Mapped[int] = mapped_column(sa.BigInteger)
    # Where presence stopped counting, in microseconds since the epoch (the session's close).
    end_us: Mapped[int] = mapped_column(sa.BigInteger)
    # The encoding's version: a fold written in another encoding is folded again.
    encoding: Mapped[int]
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    folded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuorumSnapshot(Base):
    """The quorum as it stood when an officer recorded it, e.g. as a decision was adopted."""

    __tablename__ = "quorum_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("meeting_sessions.id", ondelete="CASCADE"), index=True)
    taken_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    label: Mapped[str] = mapped_column(sa.String(200))
    parties_in_force: Mapped[int]
    parties_present: Mapped[int]
    needed_to_open: Mapped[int]
    needed_to_decide: Mapped[int]
    credentials_accepted: Mapped[int]
    present_party_codes: Mapped[list[str]] = mapped_column(sa.JSON)
    # The Parties among those present that were present only through online presences in their
    # grace period (their pages gone quiet): counted, as the dashboard counted them, though the
    # statistics will date their delegates' exits back if no page came back within the grace.
    grace_party_codes: Mapped[list[str]] = mapped_column(sa.JSON, default=list, server_default="[]")
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
