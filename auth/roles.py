"""Accounts and their roles: finding accounts, and changing a role without ever losing the last secretariat.

Services flush but never commit; a refusal is a RoleError with a stable code.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth.login import end_sessions
from auth.models import AuditEntry, Role, User

ROLE_LABELS = {
    Role.PARTICIPANT: "Participant",
    Role.OFFICER: "Meeting officer",
    Role.SECRETARIAT: "Secretariat",
}


class RoleError(Exception):
    """A refused role change, with a stable code and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def account_query(search: str = "", role: Role | None = None) -> sa.Select:
    """Accounts whose name or email contains every word searched, with the role given, sorted by name."""
    query = sa.select(User)
    for word in search.split():
        word = word.lower()
        query = query.where(
            sa.or_(
                *(
                    sa.func.lower(column).contains(word, autoescape=True)
                    for column in (User.email, User.given_name, User.family_name)
                )
            )
        )
    if role is not None:
        query = query.where(User.role == role)
    return query.order_by(sa.func.lower(User.family_name), sa.func.lower(User.given_name), User.id)


def _other_secretariat_ids(db: Session, user: User) -> list[int]:
    # FOR UPDATE makes two secretariat members demoting each other at the same moment wait for
    # one another on PostgreSQL, so the second sees the first's change (SQLite omits the clause
    # and serialises writers anyway).
    return list(
        db.scalars(
            sa.select(User.id)
            .where(User.role == Role.SECRETARIAT, User.is_enabled.is_(True), User.id != user.id)
            .with_for_update()
        )
    )


def set_role(db: Session, user: User, role: Role, actor: User | None, now: dt.datetime) -> bool:
    """Make the account a participant, an officer or a secretariat member, ending its sessions; False if it already was.

    After the commit, the caller closes the account's live connections (auth.login.end_sockets).
    """
    try:
        role = Role(role)
    except ValueError:
        raise RoleError("unknown_role", "Choose participant, meeting officer or secretariat.") from None
    old = user.role
    if role == old:
        return False
    if old == Role.SECRETARIAT:
        if actor is not None and actor.id == user.id:
            raise RoleError(
                "own_secretariat_role",
                "You cannot remove your own secretariat role. Another secretariat member can do it, "
                "so that the secretariat always keeps an account.",
            )
        if not _other_secretariat_ids(db, user):
            raise RoleError(
                "last_secretariat",
                f"{user.full_name} holds the last secretariat account: give another account the secretariat "
                "role first.",
            )
    user.role = role
    # Sessions opened under the old role end with it: the person logs in again (the caller closes their sockets).
    end_sessions(user)
    db.flush()
    if old == Role.SECRETARIAT and not _other_secretariat_ids(db, user):
        # A concurrent demotion was committed between the check and this change.
        raise RoleError(
            "last_secretariat",
            "Another change left no other secretariat account; nothing was changed. Reload the page.",
        )
    db.add(
        AuditEntry(
            at=now,
            actor_id=actor.id if actor else None,
            action="user.role_changed",
            target_type=User.__tablename__,
            target_id=str(user.id),
            detail={"role": {"old": old.value, "new": role.value}},
        )
    )
    db.flush()
    return True
