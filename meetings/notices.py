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
