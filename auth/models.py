"""Accounts, their authenticators and recovery codes, and the audit log."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from auth.crypto import EncryptedString
from db import Base, UTCDateTime, utcnow


def enum_column(enum_cls: type[enum.Enum], **kwargs) -> sa.Enum:
    """A portable enum column: a checked VARCHAR holding the members' values."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda members: [m.value for m in members],
        name=enum_cls.__name__.lower(),
        **kwargs,
    )


class Role(enum.StrEnum):
    PARTICIPANT = "participant"
    OFFICER = "officer"
    SECRETARIAT = "secretariat"


class Gender(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNDISCLOSED = "undisclosed"


GENDER_LABELS = {
    Gender.FEMALE: "Female",
    Gender.MALE: "Male",
    Gender.OTHER: "Other",
    Gender.UNDISCLOSED: "Prefer not to say",
}


class User(UserMixin, Base):
    """A person with an account: delegate, observer, meeting officer or secretariat member."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    # None until the person sets a password (members pre-registered by their focal point).
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    # None until the person follows the link mailed to the address.
    email_confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    title: Mapped[str | None] = mapped_column(sa.String(20))
    given_name: Mapped[str] = mapped_column(sa.String(100))
    family_name: Mapped[str] = mapped_column(sa.String(100))
    gender: Mapped[Gender] = mapped_column(enum_column(Gender))
    role: Mapped[Role] = mapped_column(enum_column(Role), default=Role.PARTICIPANT)
    is_enabled: Mapped[bool] = mapped_column(default=True)
    # Raised to end every session and socket of the account (logout, authenticator reset, role change).
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    authenticator: Mapped[Authenticator | None] = relationship(back_populates="user", uselist=False)

    @property
    def is_active(self) -> bool:
        return self.is_enabled

    def get_id(self) -> str:
        """The login cookie names the account and its session epoch: raising the epoch ends every session."""
        return f"{self.id}:{self.session_epoch}"

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.title, self.given_name, self.family_name) if part)

    @property
    def is_officer(self) -> bool:
        return self.role in (Role.OFFICER, Role.SECRETARIAT)

    @property
    def is_secretariat(self) -> bool:
        return self.role == Role.SECRETARIAT

    @property
    def has_authenticator(self) -> bool:
        return self.authenticator is not None and self.authenticator.confirmed_at is not None


class Authenticator(Base):
    """A TOTP secret (RFC 6238) enrolled by one account, and the last time step it accepted."""

    __tablename__ = "authenticators"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # Encrypted at rest with TOTP_ENCRYPTION_KEY (auth/crypto.py); plain base32 in Python.
    secret: Mapped[str] = mapped_column(EncryptedString(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A code is accepted only for a step above this one, so each code works once.
    last_used_step: Mapped[int | None] = mapped_column(sa.BigInteger)

    user: Mapped[User] = relationship(back_populates="authenticator")


class RecoveryCode(Base):
    """A single-use recovery code, stored hashed."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who decided what and when: approvals, rejections, session changes, roles, credentials."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(sa.String(50))
    target_type: Mapped[str] = mapped_column(sa.String(50))
    target_id: Mapped[str] = mapped_column(sa.String(50))
    detail: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    actor: Mapped[User | None] = relationship()


class OutboxMessage(Base):
    """An email the app sent or will send; without SMTP settings the outbox is where mail stays."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(sa.String(254), index=True)
    subject: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.String(500))


class LoginThrottle(Base):
    """Failed logins and codes per email address, whether or not an account has it (so refusals reveal nothing)."""

    __tablename__ = "login_throttles"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of the normalised email: the table names no one.
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set after too many consecutive failures: only the secretariat lifts it.
    locked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
