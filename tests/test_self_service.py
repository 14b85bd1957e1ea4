"""A participant's own registration: the manage link, corrections, withdrawal, nomination letters; the outbox."""

from __future__ import annotations

import hashlib
import io
import re
import time
from pathlib import Path

import itsdangerous.timed
import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, mailed_link, registration_of

from auth import tokens
from auth.models import AuditEntry, OutboxMessage, Role, User
from meetings import letters
from meetings.models import Document, Registration, RegistrationStatus
from meetings.services import approve, reject

EMAIL = "ana.souza@example.org"
FORM = {
    "title": "Dr.",
    "given_name": "Ana",
    "family_name": "Souza",
    "email": EMAIL,
    "password": "a long enough passphrase",
    "confirm": "a long enough passphrase",
    "gender": "female",
    "category": "party",
    "party": "BRA",
    "organization": "",
    "function": "adviser",
    "nomination_ref": "",
}


def small_pdf(padding: int = 0) -> bytes:
    """A small but well-formed one-page PDF, with optional padding inside a comment to make it larger."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n%" + b"x" * padding + b"\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


PDF = small_pdf()


@pytest.fixture
def uploads(app, tmp_path) -> Path:
    """Letters go to a folder of the test's own (every test that stores a letter asks for it)."""
    folder = tmp_path / "uploads"
    app.config["UPLOAD_FOLDER"] = str(folder)
    return folder


def files_in(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def submit(client, cop4, letter: tuple[bytes, str] | None = None, **changes):
    """The registration form as a browser sends it, with a file if given."""
    data = {**FORM, "segments": [str(cop4.segments[0].id)], **changes}
    data["csrf_token"] = csrf_token(client, "/meetings/COP-4/register")
    if letter is not None:
        data["letter"] = (io.BytesIO(letter[0]), letter[1], "application/pdf")
    return client.post("/meetings/COP-4/register", data=data, content_type="multipart/form-data")


def manage_link(db, to: str = EMAIL) -> str:
    """The last manage link mailed to an address (path only)."""
    body = db.scalar(
        sa.select(OutboxMessage.body)
        .where(OutboxMessage.to_address == to, OutboxMessage.body.contains("/manage-registration/"))
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    assert body, f"no manage link mailed to {to}"
    return re.search(r"http://localhost(/manage-registration/\S+)", body).group(1)


def registered(client, db, cop4, **changes) -> tuple[Registration, str]:
    """Register through the form and confirm the address; returns the registration and its manage link."""
    assert submit(client, cop4, **changes).status_code == 302
    assert client.get(mailed_link(db, EMAIL)).status_code == 302
    return ana(db), manage_link(db)


def ana(db) -> Registration:
    db.expire_all()
    return db.scalar(sa.select(Registration).join(Registration.user).where(User.email == EMAIL))


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def followed(client, response) -> str:
    """The page a redirect leads to, with its flashed message."""
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


@pytest.fixture
def desk(app, make_user, clock):
    """A logged-in secretariat member's browser."""
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    browser = app.test_client()
    login(browser, "s@example.org", "secretariat pass", secret, clock)
    return browser


# Status ---------------------------------------------------------------------------------------


def test_registering_mails_a_link_to_the_registration_and_its_status(client, db, cop4):
    assert submit(client, cop4).status_code == 302
    subjects = list(db.scalars(sa.select(OutboxMessage.subject).where(OutboxMessage.to_address == EMAIL)))
    assert subjects == ["COP-4: registration received", "Confirm your email address"]

    link = manage_link(db)
    response = client.get(link)
    text = response.get_data(as_text=True)
    assert "Awaiting email confirmation" in text and "Dr. Ana Souza" in text and "Brazil" in text
    assert response.headers["Cache-Control"] == "private, no-store"

    client.get(mailed_link(db, EMAIL))
    text = page(client, link)
    assert "Pending review" in text and "Correct the details" in text and "Withdraw" in text


def test_the_decision_shows_to_the_owner(app, client, db, cop4, make_delegate, make_user, clock):
    registration, _ = registered(client, db, cop4)
    officer, _ = make_user(Role.SECRETARIAT, email="s@example.org")
    reject(db, db.get(Registration, registration.id), officer, "No nomination letter was received.", clock())
    db.commit()
    client.post("/manage-registration", data={"email": EMAIL, "csrf_token": csrf_token(client, "/manage-registration")})
    text = page(client, manage_link(db))
    assert "Not approved" in text and "No nomination letter was received." in text
    assert "Correct the details" not in text

    user, secret = make_delegate("IDN", email="delegate2@example.org")
    delegate = app.test_client()
    login(delegate, "delegate2@example.org", "correct horse battery", secret, clock)
    text = page(delegate, "/meetings/COP-4/my-registration")
    badge = registration_of(db, user).badges[0].number
    assert "Approved" in text and badge in text and "Indonesia" in text
    assert "contact the secretariat" in text and "Correct the details" not in text


def test_the_own_page_needs_a_login_or_the_link(client, cop4):
    response = client.get("/meetings/COP-4/my-registration")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# Corrections ----------------------------------------------------------------------------------


def test_a_pending_registration_is_corrected_and_audited(client, db, cop4, clock):
    registration, link = registered(client, db, cop4)
    form = page(client, link + "/correct")
    assert 'value="Ana"' in form and '<option selected value="BRA">' in form

    clock.advance(3600)
    data = {
        **{k: v for k, v in FORM.items() if k not in ("email", "password", "confirm")},
        "given_name": "Anna",
        "party": "ARG",
        "segments": [str(s.id) for s in cop4.segments],
        "nomination_ref": "Note verbale 12/2026",
        "csrf_token": csrf_token(client, link + "/correct"),
    }
    text = followed(client, client.post(link + "/correct", data=data))
    assert "Your corrections are saved" in text and "Anna" in text and "Argentina" in text
    assert "Note verbale 12/2026" in text

    registration = ana(db)
    assert registration.updated_at == clock() and registration.status == RegistrationStatus.PENDING
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "registration.corrected"))
    assert entry.actor_id == registration.user_id and entry.target_id == str(registration.id)
    assert entry.detail["given_name"] == ["Ana", "Anna"]
    assert entry.detail["party"] == ["BRA", "ARG"]
    assert entry.detail["nomination_ref"] == ["", "Note verbale 12/2026"]
    assert entry.detail["segments"] == [["online segment"], ["online segment", "in-person segment"]]
    assert set(entry.detail) == {"given_name", "party", "segments", "nomination_ref"}

    # Saving the same details again changes nothing and logs nothing.
    data["csrf_token"] = csrf_token(client, link + "/correct")
    assert "Nothing was changed" in followed(client, client.post(link + "/correct", data=data))
    assert db.scalar(sa.select(sa.func.count(AuditEntry.id)).where(AuditEntry.action == "registration.corrected")) == 1


def test_a_bad_correction_is_refused_next_to_the_field(client, db, cop4):
    _, link = registered(client, db, cop4)
    data = {
        **{k: v for k, v in FORM.items() if k not in ("email", "password", "confirm")},
        "category": "ngo",
        "party": "",
        "organization": "",
        "segments": [str(cop4.segments[0].id)],
        "csrf_token": csrf_token(client, link + "/correct"),
    }
    response = client.post(link + "/correct", data=data)
    assert response.status_code in (400, 409)
    assert "Name the State or organization you represent" in response.get_data(as_text=True)
    assert ana(db).category.value == "party" and ana(db).updated_at is None


def test_an_approved_registration_cannot_be_corrected_by_its_owner(app, db, cop4, make_delegate, clock):
    user, secret = make_delegate("IDN", email="delegate2@example.org")
    delegate = app.test_client()
    login(delegate, "delegate2@example.org", "correct horse battery", secret, clock)
    response = delegate.get("/meetings/COP-4/my-registration/correct")
    assert "already approved: contact the secretariat" in followed(delegate, response)
    data = {
        **{k: v for k, v in FORM.items() if k not in ("email", "password", "confirm")},
        "given_name": "Someone else",
        "segments": [str(cop4.segments[0].id)],
        "csrf_token": csrf_token(delegate),
    }
    response = delegate.post("/meetings/COP-4/my-registration/correct", data=data)
    assert "already approved" in followed(delegate, response)
    db.expire_all()
    assert db.get(User, user.id).given_name == "Test"
    assert not db.scalar(sa.select(AuditEntry.id).where(AuditEntry.action == "registration.corrected"))


# Withdrawal -----------------------------------------------------------------------------------


def test_withdrawing_asks_first_then_takes_it_off_the_secretariats_list(client, db, cop4, desk, clock):
    registration, link = registered(client, db, cop4)
    assert "Ana Souza" in page(desk, "/secretariat/meetings/COP-4/registrations")

    confirm = page(client, link + "/withdraw")
    assert "Withdraw your registration?" in confirm and "Keep it" in confirm
    assert ana(db).status == RegistrationStatus.PENDING  # the question alone changes nothing

    response = client.post(link + "/withdraw", data={"csrf_token": csrf_token(client, link + "/withdraw")})
    text = followed(client, response)
    assert "is withdrawn" in text and "Withdrawn" in text and "Correct the details" not in text
    registration = ana(db)
    assert registration.status == RegistrationStatus.WITHDRAWN and registration.updated_at == clock()
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "registration.withdrawn"))
    assert entry.actor_id == registration.user_id and entry.target_id == str(registration.id)
    assert "Ana Souza" not in page(desk, "/secretariat/meetings/COP-4/registrations")

    # The link used for it was bound to the pending registration.
    assert client.get(link).headers["Location"].endswith("/manage-registration")


# The manage link ------------------------------------------------------------------------------


def test_forged_expired_and_outdated_links_are_refused(app, client, db, cop4, make_user, clock, monkeypatch):
    registration, link = registered(client, db, cop4)
    token = link.rsplit("/", 1)[1]
    confirm_token = tokens.make_token(app.secret_key, tokens.CONFIRM_EMAIL, registration.id, f"{registration.id}|x")
    for forged in (link[:-4] + "AAAA", f"/manage-registration/{confirm_token}", "/manage-registration/nonsense"):
        response = client.get(forged)
        assert response.status_code == 302 and response.headers["Location"].endswith("/manage-registration")
    assert "does not work any more" in page(client, "/manage-registration")
    assert client.get(f"/manage-registration/{token[:-4]}AAAA/letter").status_code == 302

    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(
        itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: int(time.time()) + 4 * 24 * 3600
    )
    assert client.get(link).status_code == 302
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    assert client.get(link).status_code == 200

    officer, _ = make_user(Role.SECRETARIAT, email="s@example.org")
    approve(db, db.get(Registration, registration.id), officer, clock())
    db.commit()
    for path in (link, link + "/correct", link + "/withdraw"):
        assert client.get(path).status_code == 302
    response = client.post(link + "/withdraw", data={"csrf_token": csrf_token(client)})
    assert response.headers["Location"].endswith("/manage-registration")
    assert ana(db).status == RegistrationStatus.APPROVED


def test_asking_for_the_link_answers_the_same_whoever_asks(client, db, cop4):
    registered(client, db, cop4)
    before = db.scalar(sa.select(sa.func.count(OutboxMessage.id)))
    answers = []
    for email in (EMAIL, "nobody@example.org"):
        response = client.post(
            "/manage-registration", data={"email": email, "csrf_token": csrf_token(client, "/manage-registration")}
        )
        answers.append(followed(client, response))
    assert all("If that address has a registration, a link to it is on its way" in a for a in answers)
    messages = list(db.scalars(sa.select(OutboxMessage).where(OutboxMessage.id > before)))
    assert [(m.to_address, m.subject) for m in messages] == [(EMAIL, "COP-4: the link to your registration")]
    assert "Pending review" in page(client, manage_link(db))


# Nomination letters ---------------------------------------------------------------------------


def test_a_letter_uploaded_with_the_registration_is_stored_outside_the_web_root(client, db, cop4, uploads):
    response = submit(client, cop4, letter=(PDF, "../scans/<Lettre>\x07 de nomination.pdf"), nomination_ref="NV 7")
    assert response.status_code == 302
    registration = ana(db)
    document = registration.letter
    assert registration.nomination_ref == "NV 7"
    assert document.kind.value == "nomination_letter" and document.size == len(PDF)
    assert document.sha256 == hashlib.sha256(PDF).hexdigest()
    assert document.original_name == "Lettre de nomination.pdf"
    assert re.fullmatch(r"[0-9a-f]{32}", document.stored_name)
    assert files_in(uploads) == [uploads / document.stored_name]
    assert (uploads / document.stored_name).read_bytes() == PDF


def test_the_owner_and_the_secretariat_download_the_letter_and_no_one_else(
    app, client, db, cop4, uploads, desk, make_delegate, make_user, clock
):
    registration, link = registered(client, db, cop4)
    data = {"letter": (io.BytesIO(PDF), "letter.pdf", "application/pdf"), "csrf_token": csrf_token(client, link)}
    text = followed(client, client.post(link + "/letter", data=data, content_type="multipart/form-data"))
    assert "Your nomination letter is uploaded" in text and "letter.pdf" in text

    for browser, path in ((client, link + "/letter"), (desk, f"/secretariat/registrations/{registration.id}/letter")):
        response = browser.get(path)
        assert response.status_code == 200 and response.data == PDF
        assert response.mimetype == "application/pdf"
        assert response.headers["Content-Disposition"].startswith("attachment;")
        assert "letter.pdf" in response.headers["Content-Disposition"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    # The owner, once approved and logged in, from their own page.
    officer, _ = make_user(Role.SECRETARIAT, email="s2@example.org")
    approve(db, db.get(Registration, registration.id), officer, clock())
    user = db.get(User, registration.user_id)
    from auth.models import Authenticator
    from auth.totp import new_secret

    secret = new_secret()
    db.add(Authenticator(user=user, secret=secret, confirmed_at=clock()))
    db.commit()
    owner = app.test_client()
    login(owner, EMAIL, FORM["password"], secret, clock)
    assert "letter.pdf" in page(owner, "/meetings/COP-4/my-registration")
    assert owner.get("/meetings/COP-4/my-registration/letter").data == PDF

    # Another delegate gets a 403 for the secretariat's address, and their own (letterless) registration otherwise.
    _, secret = make_delegate("IDN", email="other@example.org")
    other = app.test_client()
    login(other, "other@example.org", "correct horse battery", secret, clock)
    assert other.get(f"/secretariat/registrations/{registration.id}/letter").status_code == 403
    assert other.get("/meetings/COP-4/my-registration/letter").status_code == 404

    anonymous = app.test_client()
    for path in (f"/secretariat/registrations/{registration.id}/letter", "/meetings/COP-4/my-registration/letter"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_a_new_letter_replaces_the_old_one(client, db, cop4, uploads):
    submit(client, cop4, letter=(PDF, "first.pdf"))
    client.get(mailed_link(db, EMAIL))
    link = manage_link(db)
    second = small_pdf(padding=100)
    data = {"letter": (io.BytesIO(second), "second.pdf", "application/pdf"), "csrf_token": csrf_token(client, link)}
    assert client.post(link + "/letter", data=data, content_type="multipart/form-data").status_code == 302
    registration = ana(db)
    assert registration.letter.original_name == "second.pdf"
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 1
    assert files_in(uploads) == [uploads / registration.letter.stored_name]
    entry = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "registration.letter_uploaded"))
    assert entry.detail["replaced_sha256"] == hashlib.sha256(PDF).hexdigest()
    assert registration.updated_at is not None


BAD_UPLOADS = [
    pytest.param(small_pdf(padding=2000), "big.pdf", "larger than 2 KB", id="oversize"),
    pytest.param(b"MZ\x90\x00 this is a program, not a letter " * 10, "letter.pdf", "is not a PDF", id="not-pdf"),
    pytest.param(b"%PDF-1.4\n" + b"x" * 100, "cut.pdf", "is not a PDF", id="truncated-pdf"),
    pytest.param(b"", "empty.pdf", "The file is empty", id="empty"),
]


@pytest.mark.parametrize(("content", "name", "message"), BAD_UPLOADS)
def test_bad_letters_are_refused_at_registration_and_nothing_is_kept(
    app, client, db, cop4, uploads, content, name, message
):
    app.config["LETTER_MAX_BYTES"] = 2048
    response = submit(client, cop4, letter=(content, name))
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert re.search(r'<p class="error" role="alert">[^<]*' + re.escape(message), text)
    assert db.scalar(sa.select(sa.func.count(User.id)).where(User.email == EMAIL)) == 0
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 0
    assert files_in(uploads) == []


@pytest.mark.parametrize(("content", "name", "message"), BAD_UPLOADS)
def test_bad_letters_are_refused_while_pending_and_nothing_is_kept(
    app, client, db, cop4, uploads, content, name, message
):
    app.config["LETTER_MAX_BYTES"] = 2048
    _, link = registered(client, db, cop4)
    data = {"letter": (io.BytesIO(content), name, "application/pdf"), "csrf_token": csrf_token(client, link)}
    response = client.post(link + "/letter", data=data, content_type="multipart/form-data")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert ana(db).letter_id is None and ana(db).updated_at is None
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 0
    assert files_in(uploads) == []


def test_uploading_without_a_file_says_so(client, db, cop4):
    _, link = registered(client, db, cop4)
    response = client.post(link + "/letter", data={"csrf_token": csrf_token(client, link)})
    assert response.status_code == 400 and "Choose the PDF file of the letter" in response.get_data(as_text=True)


def test_a_failed_commit_leaves_no_file_behind(client, db, cop4, uploads, monkeypatch):
    _, link = registered(client, db, cop4)
    token = csrf_token(client, link)

    def failing_commit(self):
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(sa.orm.Session, "commit", failing_commit)
    data = {"letter": (io.BytesIO(PDF), "letter.pdf", "application/pdf"), "csrf_token": token}
    response = client.post(link + "/letter", data=data, content_type="multipart/form-data")
    monkeypatch.undo()
    assert response.status_code == 503
    assert files_in(uploads) == []
    assert db.scalar(sa.select(sa.func.count(Document.id))) == 0


def test_a_stored_letter_is_removed_when_the_block_fails_and_kept_when_it_succeeds(tmp_path):
    letter = letters.Letter(PDF, "letter.pdf")
    with pytest.raises(RuntimeError), letters.kept_if_committed(tmp_path, letter) as name:
        assert (tmp_path / name).read_bytes() == PDF
        raise RuntimeError("the commit failed")
    assert files_in(tmp_path) == []
    with letters.kept_if_committed(tmp_path, letter) as name:
        pass
    assert files_in(tmp_path) == [tmp_path / name]
    with letters.kept_if_committed(tmp_path / "unused", None) as nothing:
        assert nothing is None
    assert not (tmp_path / "unused").exists()


def test_letter_checks_read_the_content_not_the_name():
    assert letters.is_pdf(PDF)
    assert not letters.is_pdf(b"%PDF-1.7\n" + b"\x00" * 5000)  # no end marker: cut short
    assert not letters.is_pdf(b"<html>%%EOF")
    assert letters.clean_name("../../etc/passwd") == "passwd.pdf"
    assert letters.clean_name("") == "nomination-letter.pdf"
    assert letters.clean_name("Ordre\u202egnp.pdf") == "Ordregnp.pdf"
    assert len(letters.clean_name("a" * 300 + ".pdf")) <= 120


# The outbox -----------------------------------------------------------------------------------


def test_the_secretariat_reads_the_outbox_newest_first(app, client, db, cop4, desk, clock):
    from auth import mail

    for number in range(30):
        mail.queue(db, f"person{number}@example.org", f"Message {number}", f"Body of message {number}", clock())
        clock.advance(60)
    sent = mail.queue(db, "sent@example.org", "Delivered one", "Hello", clock())
    sent.sent_at = clock()
    failed = mail.queue(db, "bounce@example.org", "Failed one", "Hello", clock())
    failed.error = "SMTPRecipientsRefused: no such user"
    db.commit()

    text = page(desk, "/secretariat/outbox")
    assert text.index("Failed one") < text.index("Delivered one") < text.index("Message 29")
    assert "Message 5" not in text and "Page 1 of 2" in text
    assert "SMTPRecipientsRefused" in text and ">sent<" in text and ">in outbox<" in text
    assert "<details" in text and "Body of message 29" in text
    older = page(desk, "/secretariat/outbox?page=2")
    assert "Message 5" in older and "Message 29" not in older

    filtered = page(desk, "/secretariat/outbox?to=PERSON7@")
    assert "Message 7" in filtered and "Message 8" not in filtered


def test_the_outbox_is_for_the_secretariat_only(app, client, cop4, make_delegate, clock):
    response = client.get("/secretariat/outbox")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    _, secret = make_delegate(email="d@example.org")
    login(client, "d@example.org", "correct horse battery", secret, clock)
    assert client.get("/secretariat/outbox").status_code == 403
