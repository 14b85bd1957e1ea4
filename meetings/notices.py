"""The emails the app writes to participants, composed in one place. Callers pass the links."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from auth import mail
from auth.models import User
from meetings.models import Registration, RegistrationStatus


def registration_decided(db: Session, registration: Registration, login_url: str, now: dt.datetime) -> None:
    user = registration.user
    code = registration.meeting.code
    if registration.status == RegistrationStatus.APPROVED:
        subject = f"{code}: your registration is approved"
        text = (
            f"Your registration for {code} is approved.\n\n"
            f"Log in at {login_url} with your email and password. At the first login you will set up an "
            "authenticator app on your phone (a QR code to scan); every later login and every check-in at the "
            "gate asks for a code from it."
        )
    else:
        subject = f"{code}: your registration was not approved"
        text = (
            f"Your registration for {code} was not approved, for this reason:\n\n{registration.decision_reason}\n\n"
            "Contact the secretariat if you think this is a mistake."
        )
    mail.queue(db, user.email, subject, f"Dear {user.full_name},\n\n{text}{mail.SIGNATURE}", now)


def member_invited(
    db: Session, registration: Registration, focal_point: User, set_password_url: str, now: dt.datetime
) -> None:
    user = registration.user
    code = registration.meeting.code
    mail.queue(
        db,
        user.email,
        f"{code}: you are registered in the delegation of {registration.represents}",
        f"Dear {user.full_name},\n\n"
        f"{focal_point.full_name}, national focal point, has registered you in the delegation of "
        f"{registration.represents} to {code}.\n\n"
        f"Choose your password here (the link works once and expires in three days):\n\n{set_password_url}\n\n"
        "Once the secretariat approves the registration, log in and set up an authenticator app on your phone."
        + mail.SIGNATURE,
        now,
    )


def focal_point_designated(db: Session, registration: Registration, delegation_url: str, now: dt.datetime) -> None:
    user = registration.user
    code = registration.meeting.code
    mail.queue(
        db,
        user.email,
        f"{code}: you are the national focal point of {registration.represents}",
        f"Dear {user.full_name},\n\n"
        f"The secretariat has designated you as national focal point of {registration.represents} for {code}.\n\n"
        f"On the page of your delegation you can register its members, choose its designated speaker for the "
        f"online segment and upload the delegation's note verbale:\n\n{delegation_url}" + mail.SIGNATURE,
        now,
    )


def manage_link(
    db: Session, registration: Registration, url: str, valid_days: int, now: dt.datetime, *, received: bool = False
) -> None:
    """Queue the message carrying the manage link: on registering (received=True), or when asked for again."""
    user = registration.user
    meeting = registration.meeting
    if received:
        subject = f"{meeting.code}: registration received"
        opening = (
            f"We received your registration for {meeting.code}, {meeting.title}. Once you confirm your email address "
            "(a separate message has the link), it goes to the secretariat for review."
        )
    else:
        subject = f"{meeting.code}: the link to your registration"
        opening = f"Here is the link to your registration for {meeting.code}, as you asked."
    mail.queue(
        db,
        user.email,
        subject,
        f"Dear {user.full_name},\n\n{opening}\n\n"
        "Open it to see where your registration stands. Until the secretariat decides, you can also correct your "
        f"details, add your nomination letter or withdraw the registration there:\n\n{url}\n\n"
        f"The link works for {valid_days} days and until the registration is decided; you can ask for a new one on "
        "the registration page. Keep it to yourself: whoever has it can change your registration." + mail.SIGNATURE,
        now,
    )
