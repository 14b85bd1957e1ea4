"""Demonstration data: COP-4 of the Minamata Convention, its Parties, sessions and one account per role."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from auth import services as auth_services
from auth import totp
from auth.models import Authenticator, Gender, Role, User
from meetings import parties, services
from meetings.models import (
    Category,
    Convention,
    Function,
    Meeting,
    MeetingSession,
    Party,
    Segment,
    SegmentKind,
    SessionKind,
)

PARTIES_CSV = Path(__file__).resolve().parent / "data" / "parties.csv"
MEETING_CODE = "COP-4"


@dataclass(frozen=True, slots=True)
class DemoAccount:
    role: Role
    email: str
    password: str
    given_name: str
    family_name: str
    gender: Gender


DEMO_ACCOUNTS = (
    DemoAccount(
        Role.PARTICIPANT,
        "delegate@example.org",
        "demo-delegate-passphrase",
        "Ayu",
        "Lestari",
        Gender.FEMALE,
    ),
    DemoAccount(
        Role.OFFICER,
        "officer@example.org",
        "demo-officer-passphrase",
        "Tomás",
        "Herrera",
        Gender.MALE,
    ),
    DemoAccount(
        Role.SECRETARIAT,
        "secretariat@example.org",
        "demo-secretariat-passphrase",
        "Nadia",
        "Okafor",
        Gender.FEMALE,
    ),
)


def load_parties(db: Session, convention: Convention, now: dt.datetime, path: Path = PARTIES_CSV) -> int:
    """Import the Parties of the CSV through the secretariat's import (checked, audited); return how many were added."""
    result = parties.apply(db, convention, parties.parse_csv(path.read_bytes()), None, now, source="demo")
    return len(result.added)


def _at(day: str, time: str, tz: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)


ONLINE_SESSIONS = [
    ("Opening plenary", SessionKind.PLENARY, "2021-11-01", "13:00", "16:00"),
    ("Second plenary meeting", SessionKind.PLENARY, "2021-11-02", "13:00", "16:00"),
    (
        "Regional consultations: African Group",
        SessionKind.REGIONAL,
        "2021-11-03",
        "11:00",
        "12:30",
    ),
    (
        "Closing plenary of the online segment",
        SessionKind.PLENARY,
        "2021-11-05",
        "13:00",
        "16:00",
    ),
]
IN_PERSON_SESSIONS = [
    ("Opening plenary", SessionKind.PLENARY, "2022-03-21", "10:00", "13:00"),
    ("Committee of the Whole", SessionKind.COMMITTEE, "2022-03-22", "10:00", "13:00"),
    (
        "Contact group on the budget",
        SessionKind.CONTACT_GROUP,
        "2022-03-23",
        "15:00",
        "18:00",
    ),
    ("Closing plenary", SessionKind.PLENARY, "2022-03-25", "15:00", "18:00"),
]


def seed(db: Session, now: dt.datetime, hash_method: str = "scrypt") -> bool:
    """Create the COP-4 demonstration meeting and accounts unless they exist; True if created."""
    if db.scalar(sa.select(Meeting.id).where(Meeting.code == MEETING_CODE)) is not None:
        return False
    load_parties(db, Convention.MINAMATA, now)
    meeting = Meeting(
        code=MEETING_CODE,
        title="Fourth meeting of the Conference of the Parties to the Minamata Convention on Mercury",
        convention=Convention.MINAMATA,
        timezone="Europe/Zurich",
    )
    online = Segment(
        name="online segment",
        kind=SegmentKind.ONLINE,
        starts_on=dt.date(2021, 11, 1),
        ends_on=dt.date(2021, 11, 5),
        venue="Online, from Geneva",
        timezone="Europe/Zurich",
    )
    in_person = Segment(
        name="in-person segment",
        kind=SegmentKind.IN_PERSON,
        starts_on=dt.date(2022, 3, 21),
        ends_on=dt.date(2022, 3, 25),
        venue="Bali, Indonesia",
        timezone="Asia/Makassar",
    )
    meeting.segments = [online, in_person]
    for segment, plan in ((online, ONLINE_SESSIONS), (in_person, IN_PERSON_SESSIONS)):
        segment.sessions = [
            MeetingSession(
                title=title,
                kind=kind,
                scheduled_start_at=_at(day, start, segment.timezone),
                scheduled_end_at=_at(day, end, segment.timezone),
            )
            for title, kind, day, start, end in plan
        ]
    db.add(meeting)
    db.flush()

    accounts = {}
    for account in DEMO_ACCOUNTS:
        user = auth_services.create_user(
            db,
            email=account.email,
            password=account.password,
            given_name=account.given_name,
            family_name=account.family_name,
            gender=account.gender,
            role=account.role,
            hash_method=hash_method,
        )
        user.email_confirmed_at = now
        db.add(Authenticator(user=user, secret=totp.new_secret(), created_at=now, confirmed_at=now))
        accounts[account.role] = user
    registration = services.register(
        db,
        meeting=meeting,
        user=accounts[Role.PARTICIPANT],
        category=Category.PARTY,
        function=Function.HEAD,
        segment_ids=[online.id, in_person.id],
        party_code="IDN",
        now=now,
    )
    services.approve(db, registration, accounts[Role.SECRETARIAT], now)
    db.flush()
    return True


SAMPLE_GIVEN = ["Amina", "Kwame", "Sofía", "Mateo", "Olena", "Piotr", "Mei", "Arjun", "Léa", "Lars", "Fatima", "Tomás"]
SAMPLE_FAMILY = ["Diallo", "Mensah", "García", "Silva", "Kovalenko", "Nowak", "Chen", "Sharma", "Dubois", "Berg"]
SAMPLE_OBSERVERS = [
    (Category.NGO, "Zero Mercury Working Group"),
    (Category.IGO, "Global Environment Facility"),
    (Category.UN_BODY, "World Health Organization"),
    (Category.MEDIA, "Earth Negotiations Bulletin"),
]


def seed_sample_registrations(db: Session, now: dt.datetime, count: int = 40) -> int:
    """Fictional registrations in every state, so that the desk, statistics and delegations have something to show.

    The accounts have no password: they cannot log in. Only for the demonstration run, never in tests.
    """
    meeting = db.scalar(sa.select(Meeting).where(Meeting.code == MEETING_CODE))
    if meeting is None or db.scalar(sa.select(User.id).where(User.email.like("sample%@example.org")).limit(1)):
        return 0
    secretariat = db.scalar(sa.select(User).where(User.role == Role.SECRETARIAT).order_by(User.id).limit(1))
    party_codes = list(
        db.scalars(sa.select(Party.code).where(Party.convention == meeting.convention).order_by(Party.code))
    )
    rng = random.Random(4)
    genders = [Gender.FEMALE, Gender.MALE, Gender.FEMALE, Gender.MALE, Gender.UNDISCLOSED]
    for n in range(count):
        given, family = rng.choice(SAMPLE_GIVEN), rng.choice(SAMPLE_FAMILY)
        user = User(
            email=f"sample{n + 1:03d}@example.org",
            password_hash=None,
            given_name=given,
            family_name=family,
            gender=genders[n % len(genders)],
            role=Role.PARTICIPANT,
            email_confirmed_at=None if n % 9 == 8 else now,
        )
        db.add(user)
        db.flush()
        observer = n % 6 == 5
        category, organization = rng.choice(SAMPLE_OBSERVERS) if observer else (Category.PARTY, None)
        registration = services.register(
            db,
            meeting=meeting,
            user=user,
            category=category,
            function=rng.choice(list(Function)),
            segment_ids=rng.choice([[s.id for s in meeting.segments], [meeting.segments[0].id]]),
            party_code=None if observer else rng.choice(party_codes),
            organization=organization,
            now=now - dt.timedelta(hours=count - n),
        )
        if user.email_confirmed_at is not None and n % 3 == 0:
            services.approve(db, registration, secretariat, now)
        elif user.email_confirmed_at is not None and n % 10 == 7:
            services.reject(db, registration, secretariat, "No nomination letter was received.", now)
    db.flush()
    return count


def describe_accounts(db: Session, issuer: str) -> str:
    """The demo accounts with their passwords and TOTP secrets, for the terminal."""
    lines = ["Demo accounts (add the TOTP secret to any authenticator app, or open the otpauth URI):"]
    for account in DEMO_ACCOUNTS:
        user = db.scalar(sa.select(User).where(User.email == account.email))
        if user is None or user.authenticator is None:
            continue
        secret = user.authenticator.secret
        lines += [
            f"  {account.role.value:<12} {account.email}  password: {account.password}",
            f"  {'':<12} TOTP secret: {secret}",
            f"  {'':<12} {totp.provisioning_uri(secret, account.email, issuer)}",
        ]
    return "\n".join(lines)
