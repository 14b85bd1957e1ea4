"""Outgoing mail: every message is written to the outbox first, then sent over SMTP when configured.

Without MAIL_SERVER (the default, and in tests) messages stay in the outbox, which the
secretariat can read, so nothing needs a mail server to work.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from email.message import EmailMessage

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth.models import OutboxMessage

log = logging.getLogger(__name__)

SIGNATURE = "\n\n-- \nThe Secretariat\n(This message was sent by the registration system. Replies are not read.)"


def queue(db: Session, to: str, subject: str, body: str, now: dt.datetime) -> OutboxMessage:
    """Write a message to the outbox; deliver() sends it after the transaction commits."""
    message = OutboxMessage(to_address=to, subject=subject[:200], body=body, created_at=now)
    db.add(message)
    return message


def deliver_now() -> int:
    """From a view or command, after its commit: send what the outbox holds, if SMTP is configured."""
    from flask import current_app

    from db import get_db, now

    return deliver(get_db(), current_app.config, now())


def deliver(db: Session, settings: dict, now: dt.datetime, limit: int = 50) -> int:
    """Send unsent outbox messages over SMTP if a server is configured; return how many were sent."""
    if not settings.get("MAIL_SERVER"):
        return 0
    pending = list(
        db.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.error.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
    )
    if not pending:
        return 0
    sent = 0
    try:
        with smtplib.SMTP(settings["MAIL_SERVER"], settings["MAIL_PORT"], timeout=10) as smtp:
            if settings.get("MAIL_USE_TLS"):
                smtp.starttls()
            if settings.get("MAIL_USERNAME"):
                smtp.login(settings["MAIL_USERNAME"], settings["MAIL_PASSWORD"])
            for message in pending:
                email = EmailMessage()
                email["From"] = settings["MAIL_SENDER"]
                email["To"] = message.to_address
                email["Subject"] = message.subject
                email.set_content(message.body)
                try:
                    smtp.send_message(email)
                except smtplib.SMTPException as exc:
                    message.error = f"{type(exc).__name__}: {exc}"[:500]
                else:
                    message.sent_at = now
                    sent += 1
    except (OSError, smtplib.SMTPException) as exc:
        # The server is unreachable: the messages stay unsent in the outbox for the next try.
        log.warning("mail server unavailable: %s", type(exc).__name__)
    db.commit()
    return sent
