"""Delegations: focal points, members they pre-register, set-password links, the note verbale, credentials."""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, mailed_link, post_password, registration_of
from sqlalchemy.orm import Session

import auth.invite_views  # noqa: F401  (adds /auth/set-password to the auth blueprint before the app is built)
from auth import tokens, totp
from auth.models import AuditEntry, Gender, OutboxMessage, Role, User
from meetings import delegations
from meetings import services as meeting_services
from meetings.models import (
    Credentials,
    CredentialsStatus,
    Document,
    DocumentKind,
    Function,
    OnlineRole,
    Registration,
    RegistrationStatus,
)

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
FP_PASSWORD = "focal point passphrase"


@pytest.fixture(autouse=True)
def uploads(app, tmp_path):
    """Uploads go to a folder of this test, so that what is left behind can be counted."""
    folder = tmp_path / "uploads"
    app.config["UPLOAD_FOLDER"] = str(folder)
    return folder


def stored_files(folder) -> list:
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def desk(app, make_user, clock):
    """A logged-in secretariat member's browser."""
    _, secret = make_user(Role.SECRETARIAT, email="desk@example.org", password="secretariat pass")
    client = app.test_client()
    login(client, "desk@example.org", "secretariat pass", secret, clock)
    return client


@pytest.fixture
def make_focal_point(app, db, cop4, make_delegate, make_user, clock):
    """Factory: an approved delegate of a Party designated as its focal point, logged in; returns (client, user)."""
    desk_user, _ = make_user(Role.SECRETARIAT, email="designator@example.org")

    def make(party_code: str = "CHE", email: str = "fp@example.org"):
        user, secret = make_delegate(party_code, email=email, password=FP_PASSWORD)
        delegations.designate_focal_point(db, registration_of(db, user), desk_user, clock())
        db.commit()
        client = app.test_client()
        login(client, email, FP_PASSWORD, secret, clock)
        return client, user

    return make


def member_form(cop4, **changes) -> dict:
    data = {
        "title": "Ms.",
        "given_name": "Lena",
        "family_name": "Keller",
        "gender": "female",
        "email": "lena.keller@example.org",
        "function": "adviser",
        "segments": [str(segment.id) for segment in cop4.segments],
        "online_role": "viewer",
    }
    data.update(changes)
    return data


def add_member(client, cop4, **changes):
    data = member_form(cop4, **changes)
    data["csrf_token"] = csrf_token(client, "/delegation")
    return client.post("/delegation", data=data)


def member(db: Session, email: str) -> Registration:
    db.expire_all()
    return db.scalar(sa.select(Registration).join(Registration.user).where(User.email == email))


def upload(client, content: bytes, name: str = "note-verbale.pdf"):
    import io

    return client.post(
        "/delegation/note-verbale",
        data={"letter": (io.BytesIO(content), name), "csrf_token": csrf_token(client, "/delegation")},
        content_type="multipart/form-data",
    )


# The secretariat designates the focal point --------------------------------------------------


def test_the_secretariat_designates_one_focal_point_per_party(app, db, cop4, desk, make_delegate, clock):
    first, first_secret = make_delegate("CHE", email="first@example.org", password=FP_PASSWORD)
    second, _ = make_delegate("CHE", email="second@example.org")
    pending, _ = make_delegate("CHE", email="pending@example.org", approve=False)

    page = desk.get("/secretariat/meetings/COP-4/delegations/CHE").get_data(as_text=True)
    assert "Delegation of Switzerland" in page and "none designated" in page

    response = desk.post(
        f"/secretariat/registrations/{registration_of(db, first).id}/focal-point", data={"csrf_token": csrf_token(desk)}
    )
    assert response.headers["Location"].endswith("/secretariat/meetings/COP-4/delegations/CHE")
    assert "is now the focal point of Switzerland" in desk.get(response.headers["Location"]).get_data(as_text=True)
    assert member(db, "first@example.org").focal_point
    assert "/delegation" in mailed_link(db, "first@example.org")
    overview = desk.get("/secretariat/meetings/COP-4/delegations").get_data(as_text=True)
    assert overview.split("Switzerland")[1].split("</tr>")[0].count("Test Person") == 2  # head and focal point

    # Only approved delegates can be designated.
    response = desk.post(
        f"/secretariat/registrations/{registration_of(db, pending).id}/focal-point",
        data={"csrf_token": csrf_token(desk)},
    )
    assert "approve it before designating them" in desk.get(response.headers["Location"]).get_data(as_text=True)

    # Designating another delegate of the same Party replaces the first: one focal point per Party and meeting.
    desk.post(
        f"/secretariat/registrations/{registration_of(db, second).id}/focal-point",
        data={"csrf_token": csrf_token(desk)},
    )
    assert not member(db, "first@example.org").focal_point and member(db, "second@example.org").focal_point
    actions = list(
        db.scalars(sa.select(AuditEntry.action).where(AuditEntry.action.like("focal_point.%")).order_by(AuditEntry.id))
    )
    assert actions == ["focal_point.designated", "focal_point.removed", "focal_point.designated"]

    # The replaced delegate no longer manages the delegation.
    client = app.test_client()
    login(client, "first@example.org", FP_PASSWORD, first_secret, clock)
    assert client.get("/delegation").status_code == 403

    desk.post(
        f"/secretariat/registrations/{registration_of(db, second).id}/focal-point/remove",
        data={"csrf_token": csrf_token(desk)},
    )
    assert not member(db, "second@example.org").focal_point


# The focal point pre-registers members -----------------------------------------------------


def test_the_focal_point_pre_registers_a_member_who_is_invited_by_email(db, cop4, make_focal_point):
    client, fp = make_focal_point()
    page = client.get("/delegation").get_data(as_text=True)
    assert "Delegation of Switzerland" in page and "Register a member" in page

    response = add_member(client, cop4)
    assert response.status_code == 302
    assert "We sent lena.keller@example.org a link" in client.get(response.headers["Location"]).get_data(as_text=True)

    registration = member(db, "lena.keller@example.org")
    assert registration.status == RegistrationStatus.PENDING and registration.party.code == "CHE"
    assert registration.submitted_by_id == fp.id and registration.online_role == OnlineRole.VIEWER
    assert registration.user.password_hash is None and registration.user.email_confirmed_at is not None
    assert registration.function == Function.ADVISER and len(registration.segments) == 2
    link = mailed_link(db, "lena.keller@example.org")
    assert link.startswith("/auth/set-password/")
    body = db.scalar(sa.select(OutboxMessage.body).where(OutboxMessage.to_address == "lena.keller@example.org"))
    assert "Test Person, national focal point" in body and "delegation of Switzerland" in body
    assert "Lena Keller" in client.get("/delegation").get_data(as_text=True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"email": "not-an-email"}, "Invalid email address"),
        ({"given_name": "<b>Lena</b>"}, "no &lt; or &gt;"),
        ({"segments": []}, "Choose at least one segment"),
        ({"online_role": "chair"}, "Not a valid choice"),
        ({"gender": ""}, "Prefer not to say"),
    ],
)
def test_bad_member_input_is_refused_next_to_the_field(db, cop4, make_focal_point, changes, message):
    client, _ = make_focal_point()
    response = add_member(client, cop4, **changes)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert member(db, "lena.keller@example.org") is None


def test_an_address_that_already_has_an_account_is_refused_without_saying_more(db, cop4, make_focal_point):
    client, _ = make_focal_point()
    mails = db.scalar(sa.select(sa.func.count(OutboxMessage.id)))
    response = add_member(client, cop4, email="Delegate@Example.org")
    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "already has an account" in page and "should register for the meeting themselves" in page
    # The existing account is an approved delegate of Indonesia: the refusal reveals nothing about that.
    [error] = re.findall(r'<p class="error" role="alert">([^<]*)</p>', page)
    assert "Indonesia" not in error and "Lestari" not in error and "approved" not in error
    assert db.scalar(sa.select(sa.func.count(OutboxMessage.id))) == mails
    assert db.scalar(sa.select(sa.func.count(Registration.id)).where(Registration.party_id.is_not(None))) == 2


def test_members_are_registered_for_the_focal_points_own_party_only(db, cop4, make_focal_point, clock):
    make_focal_point("CHE")
    focal = member(db, "fp@example.org")
    france = meeting_services.find_party(db, cop4, "FRA")
    with pytest.raises(meeting_services.MeetingError) as refused:
        delegations.pre_register_member(
            db,
            focal=focal,
            party=france,
            email="someone@example.org",
            given_name="Jean",
            family_name="Martin",
            gender=Gender.MALE,
            title=None,
            function=Function.ADVISER,
            segment_ids=[cop4.segments[0].id],
            online_role=OnlineRole.VIEWER,
            now=clock(),
        )
    assert refused.value.code == "other_party" and "Switzerland only" in refused.value.message


# Set password ------------------------------------------------------------------------------


def test_the_set_password_link_works_once(app, db, cop4, make_focal_point):
    client, _ = make_focal_point()
    add_member(client, cop4)
    link = mailed_link(db, "lena.keller@example.org")
    person = app.test_client()

    page = person.get(link).get_data(as_text=True)
    assert "Choose your password" in page and "Ms. Lena Keller" in page
    token = csrf_token(person, link)
    response = person.post(link, data={"password": "short", "confirm": "short", "csrf_token": token})
    assert response.status_code == 400 and "Use 8 to 128 characters" in response.get_data(as_text=True)
    response = person.post(link, data={"password": "a long passphrase", "confirm": "another", "csrf_token": token})
    assert "The passwords differ" in response.get_data(as_text=True)
    assert member(db, "lena.keller@example.org").user.password_hash is None

    response = person.post(
        link, data={"password": "lena's long passphrase", "confirm": "lena's long passphrase", "csrf_token": token}
    )
    assert response.headers["Location"].endswith("/auth/login")
    page = person.get("/auth/login").get_data(as_text=True)
    assert "Your password is set" in page and "awaiting approval by the secretariat" in page
    assert "authenticator app" in page
    user = member(db, "lena.keller@example.org").user
    assert user.password_hash.startswith("scrypt:1024:8:1")
    assert db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "user.password_set")).actor_id == user.id

    # Used once: the link is spent, and says so.
    response = person.get(link)
    assert response.status_code == 400 and "already used" in response.get_data(as_text=True)
    response = person.post(link, data={"password": "x" * 20, "confirm": "x" * 20, "csrf_token": token})
    assert response.status_code == 400
    assert member(db, "lena.keller@example.org").user.password_hash == user.password_hash


def test_forged_and_expired_links_are_refused(app, db, cop4, make_focal_point, monkeypatch):
    from itsdangerous.timed import TimestampSigner

    client, _ = make_focal_point()
    person = app.test_client()
    add_member(client, cop4)
    link = mailed_link(db, "lena.keller@example.org")
    for forged in (link[:-4] + "AAAA", "/auth/set-password/not-a-token"):
        response = person.get(forged)
        assert response.status_code == 400 and "This link does not work" in response.get_data(as_text=True)

    # A link made four days ago has expired (they last three).
    add_member(client, cop4, email="old.link@example.org")
    user = member(db, "old.link@example.org").user
    four_days_ago = int(time.time()) - 4 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: four_days_ago)
    old_token = tokens.make_token(app.secret_key, tokens.SET_PASSWORD, user.id, user.password_hash)
    monkeypatch.undo()
    response = person.get(f"/auth/set-password/{old_token}")
    assert response.status_code == 400 and "has expired" in response.get_data(as_text=True)

    # The focal point sends a new link, which works.
    registration = member(db, "old.link@example.org")
    client.post(
        f"/delegation/members/{registration.id}/invitation", data={"csrf_token": csrf_token(client, "/delegation")}
    )
    assert person.get(mailed_link(db, "old.link@example.org")).status_code == 200


def test_a_member_logs_in_once_approved_then_enrols(app, db, cop4, desk, make_focal_point, clock):
    client, _ = make_focal_point()
    add_member(client, cop4)
    person = app.test_client()
    password = "lena's long passphrase"
    assert post_password(person, "lena.keller@example.org", password).status_code == 401  # no password yet

    link = mailed_link(db, "lena.keller@example.org")
    person.post(link, data={"password": password, "confirm": password, "csrf_token": csrf_token(person, link)})
    response = post_password(person, "lena.keller@example.org", password)
    assert response.status_code == 403 and "awaiting approval" in response.get_data(as_text=True)

    registration = member(db, "lena.keller@example.org")
    desk.post(f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(desk)})
    assert member(db, "lena.keller@example.org").status == RegistrationStatus.APPROVED

    response = post_password(person, "lena.keller@example.org", password)
    assert response.headers["Location"].endswith("/auth/enrol")
    person.get("/auth/enrol")
    db.expire_all()
    secret = member(db, "lena.keller@example.org").user.authenticator.secret
    response = person.post(
        "/auth/enrol", data={"code": totp.code_at(secret, clock()), "csrf_token": csrf_token(person, "/auth/enrol")}
    )
    assert response.status_code == 302
    assert "Lena Keller" in person.get("/").get_data(as_text=True)


# One designated speaker per delegation -----------------------------------------------------


def test_one_designated_speaker_per_delegation(db, cop4, make_focal_point):
    client, _ = make_focal_point()
    assert add_member(client, cop4, online_role="speaker").status_code == 302
    response = add_member(client, cop4, email="second@example.org", given_name="Marco", online_role="speaker")
    assert response.status_code == 409
    assert "Ms. Lena Keller is already the designated speaker" in response.get_data(as_text=True)
    assert member(db, "second@example.org") is None

    # Registered as a viewer, Marco cannot become speaker while Lena is one...
    add_member(client, cop4, email="second@example.org", given_name="Marco")
    marco = member(db, "second@example.org")
    lena = member(db, "lena.keller@example.org")
    token = csrf_token(client, "/delegation")
    response = client.post(
        f"/delegation/members/{marco.id}/online-role", data={"online_role": "speaker", "csrf_token": token}
    )
    assert "Lena Keller is already the designated speaker" in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert member(db, "second@example.org").online_role == OnlineRole.VIEWER

    # ...but can once she is a viewer.
    client.post(f"/delegation/members/{lena.id}/online-role", data={"online_role": "viewer", "csrf_token": token})
    client.post(f"/delegation/members/{marco.id}/online-role", data={"online_role": "speaker", "csrf_token": token})
    assert member(db, "second@example.org").online_role == OnlineRole.SPEAKER
    assert member(db, "lena.keller@example.org").online_role == OnlineRole.VIEWER
    changes = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "delegation.online_role_changed"))
    assert [(e.detail["old"], e.detail["new"]) for e in changes] == [("speaker", "viewer"), ("viewer", "speaker")]


def test_a_speaker_must_attend_the_online_segment(db, cop4, make_focal_point):
    client, _ = make_focal_point()
    in_person = [str(cop4.segments[1].id)]
    response = add_member(client, cop4, segments=in_person, online_role="speaker")
    assert response.status_code == 409 and "must attend the online segment" in response.get_data(as_text=True)
    add_member(client, cop4, segments=in_person)
    assert member(db, "lena.keller@example.org").online_role is None


# The note verbale --------------------------------------------------------------------------


def test_the_note_verbale_is_stored_outside_the_web_root_and_linked_to_the_members(
    app, db, cop4, make_focal_point, desk, uploads
):
    client, _ = make_focal_point()
    add_member(client, cop4)
    response = upload(client, PDF, "NV 2021-117 Switzerland.pdf")
    assert response.status_code == 302
    assert "is uploaded and linked" in client.get(response.headers["Location"]).get_data(as_text=True)

    document = db.scalar(sa.select(Document))
    assert document.kind == DocumentKind.NOTE_VERBALE and document.party_id == member(db, "fp@example.org").party_id
    assert document.original_name == "NV 2021-117 Switzerland.pdf" and document.size == len(PDF)
    [path] = stored_files(uploads)
    assert path.name == document.stored_name and "Switzerland" not in path.name and path.read_bytes() == PDF
    assert member(db, "lena.keller@example.org").letter_id == document.id
    assert member(db, "fp@example.org").letter_id == document.id

    # Members added later are covered by the same letter.
    add_member(client, cop4, email="later@example.org")
    assert member(db, "later@example.org").letter_id == document.id

    for reader in (client, desk):
        response = reader.get(f"/delegation/letters/{document.id}")
        assert response.status_code == 200 and response.data == PDF
        assert response.mimetype == "application/pdf" and "attachment" in response.headers["Content-Disposition"]
    assert "NV 2021-117 Switzerland.pdf" in desk.get("/secretariat/meetings/COP-4/delegations/CHE").get_data(
        as_text=True
    )

    # A second upload replaces the first, file and row.
    upload(client, PDF + b"% revised\n", "revised.pdf")
    documents = list(db.scalars(sa.select(Document)))
    assert [d.original_name for d in documents] == ["revised.pdf"]
    assert [p.name for p in stored_files(uploads)] == [documents[0].stored_name]
    assert member(db, "lena.keller@example.org").letter_id == documents[0].id


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"<html><script>alert(1)</script></html>", "letter.pdf", "This file is not a PDF"),
        (b"PK\x03\x04 a word document", "letter.docx", "This file is not a PDF"),
        (b"", "letter.pdf", "Choose the PDF"),
        (PDF + b"0" * 2048, "big.pdf", "larger than"),
    ],
)
def test_a_bad_letter_is_refused_and_leaves_nothing_behind(
    app, db, cop4, make_focal_point, uploads, content, name, message
):
    app.config["LETTER_MAX_BYTES"] = 1024
    client, _ = make_focal_point()
    response = upload(client, content, name)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 0
    assert stored_files(uploads) == []


def test_a_failed_save_leaves_no_orphan_file(app, db, cop4, make_focal_point, uploads, monkeypatch):
    client, _ = make_focal_point()
    token = csrf_token(client, "/delegation")

    def fail(self):
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    import io

    monkeypatch.setattr(Session, "commit", fail)
    response = client.post(
        "/delegation/note-verbale",
        data={"letter": (io.BytesIO(PDF), "nv.pdf"), "csrf_token": token},
        content_type="multipart/form-data",
    )
    monkeypatch.undo()
    assert response.status_code == 503
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 0
    assert stored_files(uploads) == []


def test_only_the_secretariat_and_the_partys_focal_point_may_download_the_letter(
    app, db, cop4, make_focal_point, make_delegate, make_user, clock
):
    swiss, _ = make_focal_point("CHE")
    upload(swiss, PDF)
    document = db.scalar(sa.select(Document))
    path = f"/delegation/letters/{document.id}"

    french, _ = make_focal_point("FRA", email="fp.fra@example.org")
    assert french.get(path).status_code == 403

    _, secret = make_delegate("CHE", email="plain@example.org", password="plain delegate pass")
    plain = app.test_client()
    login(plain, "plain@example.org", "plain delegate pass", secret, clock)
    assert plain.get(path).status_code == 403

    _, secret = make_user(Role.OFFICER, email="officer2@example.org", password="officer pass")
    officer = app.test_client()
    login(officer, "officer2@example.org", "officer pass", secret, clock)
    assert officer.get(path).status_code == 403

    response = app.test_client().get(path)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# Credentials -------------------------------------------------------------------------------


def test_the_secretariat_records_credentials_with_their_history(db, cop4, desk, make_delegate):
    swiss, _ = make_delegate("CHE")
    path = "/secretariat/meetings/COP-4/delegations/CHE"
    for status in ("copy", "original", "accepted"):
        response = desk.post(path + "/credentials", data={"status": status, "csrf_token": csrf_token(desk, path)})
        assert response.headers["Location"].endswith(path)
    page = desk.get(path).get_data(as_text=True)
    assert "Accepted by the Bureau" in page
    history = page.split("History")[1]
    assert history.index("Original received → <strong>Accepted by the Bureau") < history.index(
        "None received → <strong>Copy received"
    )
    assert "Test Person" in history

    db.expire_all()
    credentials = db.scalar(sa.select(Credentials).where(Credentials.party_id == registration_of(db, swiss).party_id))
    assert credentials.status == CredentialsStatus.ACCEPTED and credentials.updated_by_id is not None
    entries = list(db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "credentials.changed")))
    assert [(e.detail["old"], e.detail["new"]) for e in entries] == [
        ("none", "copy"),
        ("copy", "original"),
        ("original", "accepted"),
    ]

    response = desk.post(path + "/credentials", data={"status": "accepted", "csrf_token": csrf_token(desk, path)})
    assert "already marked" in desk.get(response.headers["Location"]).get_data(as_text=True)
    response = desk.post(path + "/credentials", data={"status": "lost", "csrf_token": csrf_token(desk, path)})
    assert "Not a valid choice" in desk.get(response.headers["Location"]).get_data(as_text=True)
    assert db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.action == "credentials.changed")) == 3


def test_the_overview_lists_delegations_and_filters_them(db, cop4, desk, make_delegate, make_user, clock):
    make_delegate("CHE")
    make_delegate("BEN")
    make_delegate("BEN", approve=False)
    actor, _ = make_user(Role.SECRETARIAT)
    delegations.set_credentials(
        db, cop4, meeting_services.find_party(db, cop4, "BEN"), CredentialsStatus.ORIGINAL, actor, clock()
    )
    db.commit()

    page = desk.get("/secretariat/meetings/COP-4/delegations").get_data(as_text=True)
    for name in ("Switzerland", "Benin", "Indonesia"):
        assert name in page
    assert "<strong>3</strong> delegations" in page and "1 pending" in page

    page = desk.get("/secretariat/meetings/COP-4/delegations?group=African").get_data(as_text=True)
    assert "Benin" in page and "Switzerland" not in page and "Indonesia" not in page
    page = desk.get("/secretariat/meetings/COP-4/delegations?credentials=original").get_data(as_text=True)
    assert "Benin" in page and "Switzerland" not in page
    page = desk.get("/secretariat/meetings/COP-4/delegations?credentials=accepted").get_data(as_text=True)
    assert "No delegation matches" in page


# Who may do what ---------------------------------------------------------------------------


def test_permissions(app, db, cop4, make_focal_point, make_delegate, make_user, clock):
    swiss, _ = make_focal_point("CHE")
    add_member(swiss, cop4)
    french, _ = make_focal_point("FRA", email="fp.fra@example.org")
    lena = member(db, "lena.keller@example.org")

    # Anonymous: to the login.
    anonymous = app.test_client()
    for path in ("/delegation", "/secretariat/meetings/COP-4/delegations"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]

    # A delegate who is not a focal point.
    _, secret = make_delegate("CHE", email="plain@example.org", password="plain delegate pass")
    plain = app.test_client()
    login(plain, "plain@example.org", "plain delegate pass", secret, clock)
    assert plain.get("/delegation").status_code == 403
    token = csrf_token(plain)
    assert plain.post("/delegation", data={**member_form(cop4), "csrf_token": token}).status_code == 403

    # France's focal point sees only France, and cannot touch Switzerland's members.
    page = french.get("/delegation").get_data(as_text=True)
    assert "Delegation of France" in page and "Lena" not in page
    token = csrf_token(french, "/delegation")
    response = french.post(
        f"/delegation/members/{lena.id}/online-role", data={"online_role": "speaker", "csrf_token": token}
    )
    assert response.status_code == 403
    assert french.post(f"/delegation/members/{lena.id}/invitation", data={"csrf_token": token}).status_code == 403
    assert member(db, "lena.keller@example.org").online_role == OnlineRole.VIEWER
    assert french.get("/secretariat/meetings/COP-4/delegations/CHE").status_code == 403

    # Officers see neither the delegations nor change credentials: that is the secretariat's.
    _, secret = make_user(Role.OFFICER, email="officer2@example.org", password="officer pass")
    officer = app.test_client()
    login(officer, "officer2@example.org", "officer pass", secret, clock)
    token = csrf_token(officer)
    assert officer.get("/secretariat/meetings/COP-4/delegations").status_code == 403
    assert officer.get("/secretariat/meetings/COP-4/delegations/CHE").status_code == 403
    response = officer.post(
        "/secretariat/meetings/COP-4/delegations/CHE/credentials", data={"status": "accepted", "csrf_token": token}
    )
    assert response.status_code == 403
    assert (
        officer.post(f"/secretariat/registrations/{lena.id}/focal-point", data={"csrf_token": token}).status_code == 403
    )
    assert (
        db.scalar(sa.select(sa.func.count(Credentials.id)).where(Credentials.status == CredentialsStatus.ACCEPTED)) == 0
    )


def test_forms_without_a_csrf_token_are_refused(db, cop4, make_focal_point):
    client, _ = make_focal_point()
    client.get("/delegation")
    response = client.post("/delegation", data=member_form(cop4))
    assert response.status_code == 400 and "Form expired" in response.get_data(as_text=True)
    assert member(db, "lena.keller@example.org") is None
