"""Registration through the form, and the secretariat's decisions."""

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, mailed_link

from auth.models import AuditEntry, OutboxMessage, Role, User
from meetings.models import Badge, Registration, RegistrationStatus

FORM = {
    "title": "Dr.",
    "given_name": "Ana",
    "family_name": "Souza",
    "email": "ana.souza@example.org",
    "password": "a long enough passphrase",
    "confirm": "a long enough passphrase",
    "gender": "female",
    "category": "party",
    "party": "BRA",
    "organization": "",
    "function": "adviser",
}


def submit(client, cop4, **changes):
    data = {**FORM, "segments": [str(cop4.segments[0].id)], **changes}
    data["csrf_token"] = csrf_token(client, "/meetings/COP-4/register")
    return client.post("/meetings/COP-4/register", data=data)


def confirmed(client, db):
    """Follow the confirmation link mailed to the registrant."""
    assert client.get(mailed_link(db, FORM["email"])).status_code == 302


def test_a_registration_is_pending_until_decided(client, db, cop4):
    response = submit(client, cop4)
    assert response.status_code == 302
    assert "We sent a link to ana.souza@example.org" in client.get("/").get_data(as_text=True)
    registration = db.scalar(sa.select(Registration).join(Registration.user).where(User.email == FORM["email"]))
    assert registration.status == RegistrationStatus.PENDING and registration.party.code == "BRA"
    assert registration.user.email_confirmed_at is None


def test_the_address_must_be_confirmed_before_a_decision(app, client, db, cop4, make_user, clock):
    submit(client, cop4)
    registration = db.scalar(sa.select(Registration).join(Registration.user).where(User.email == FORM["email"]))
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    desk = app.test_client()
    login(desk, "s@example.org", "secretariat pass", secret, clock)
    response = desk.post(f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(desk)})
    assert "has not confirmed the address yet" in desk.get(response.headers["Location"]).get_data(as_text=True)
    confirmed(client, db)
    desk.post(f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(desk)})
    db.expire_all()
    assert db.get(Registration, registration.id).status == RegistrationStatus.APPROVED


def test_confirmation_links_cannot_be_forged_and_can_be_resent(client, db, cop4):
    submit(client, cop4)
    link = mailed_link(db, FORM["email"])
    response = client.get(link[:-3] + "abc")
    assert response.headers["Location"].endswith("/auth/confirm")
    assert "not valid or has expired" in client.get("/auth/confirm").get_data(as_text=True)
    for email in (FORM["email"], "nobody@example.org"):
        response = client.post(
            "/auth/confirm", data={"email": email, "csrf_token": csrf_token(client, "/auth/confirm")}
        )
        assert "If that address has an account waiting" in client.get(response.headers["Location"]).get_data(
            as_text=True
        )
    assert client.get(mailed_link(db, FORM["email"])).status_code == 302
    assert db.scalar(sa.select(User.email_confirmed_at).where(User.email == FORM["email"])) is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"email": "not-an-email"}, "Invalid email address"),
        ({"password": "short", "confirm": "short"}, "Use 8 to 128 characters"),
        ({"confirm": "something else entirely"}, "The passwords differ"),
        ({"party": ""}, "Choose the Party you represent"),
        ({"party": "XXX"}, "Choose the Party you represent from the list"),
        ({"category": "ngo", "party": ""}, "Name the State or organization you represent"),
        ({"given_name": "<script>alert(1)</script>"}, "no &lt; or &gt;"),
        ({"gender": "robot"}, "Not a valid choice"),
        ({"gender": ""}, "Prefer not to say"),
        ({"segments": []}, "Choose at least one segment"),
        ({"given_name": "x" * 101}, "Field cannot be longer than 100 characters"),
    ],
)
def test_bad_input_is_refused_next_to_the_field_and_nothing_is_saved(client, db, cop4, changes, message):
    response = submit(client, cop4, **changes)
    assert response.status_code in (400, 409)
    assert message in response.get_data(as_text=True)
    assert db.scalar(sa.select(sa.func.count(User.id)).where(User.email == FORM["email"])) == 0


def test_one_account_per_email(client, db, cop4):
    assert submit(client, cop4).status_code == 302
    response = submit(client, cop4, email="ANA.SOUZA@example.org")
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    assert db.scalar(sa.select(sa.func.count(User.id))) == 4  # three demo accounts and Ana


def test_the_secretariat_rejects_with_a_reason_the_delegate_reads(app, client, db, cop4, make_user, clock):
    submit(client, cop4)
    confirmed(client, db)
    registration = db.scalar(sa.select(Registration).join(Registration.user).where(User.email == FORM["email"]))
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    desk = app.test_client()
    login(desk, "s@example.org", "secretariat pass", secret, clock)

    response = desk.post(
        f"/secretariat/registrations/{registration.id}/reject", data={"reason": "", "csrf_token": csrf_token(desk)}
    )
    assert "Not rejected" in desk.get(response.headers["Location"]).get_data(as_text=True)
    desk.post(
        f"/secretariat/registrations/{registration.id}/reject",
        data={"reason": "No nomination letter was received.", "csrf_token": csrf_token(desk)},
    )
    db.expire_all()
    assert db.get(Registration, registration.id).status == RegistrationStatus.REJECTED
    audit = db.scalar(
        sa.select(AuditEntry).where(
            AuditEntry.action == "registration.rejected", AuditEntry.target_id == str(registration.id)
        )
    )
    assert audit.detail == {"reason": "No nomination letter was received."}

    # A decided registration cannot be approved afterwards.
    desk.post(f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(desk)})
    assert db.scalar(sa.select(sa.func.count(Badge.id)).where(Badge.registration_id == registration.id)) == 0

    response = client.post(
        "/auth/login",
        data={"email": FORM["email"], "password": FORM["password"], "csrf_token": csrf_token(client, "/auth/login")},
    )
    assert response.status_code == 403
    assert "No nomination letter was received." in response.get_data(as_text=True)
    assert "No nomination letter was received." in db.scalar(
        sa.select(OutboxMessage.body).where(OutboxMessage.to_address == FORM["email"]).order_by(OutboxMessage.id.desc())
    )


def test_approval_issues_a_badge_and_is_audited(app, client, db, cop4, make_user, clock):
    submit(client, cop4)
    confirmed(client, db)
    registration = db.scalar(sa.select(Registration).join(Registration.user).where(User.email == FORM["email"]))
    _, secret = make_user(Role.SECRETARIAT, email="s@example.org", password="secretariat pass")
    desk = app.test_client()
    login(desk, "s@example.org", "secretariat pass", secret, clock)
    desk.post(f"/secretariat/registrations/{registration.id}/approve", data={"csrf_token": csrf_token(desk)})
    badge = db.scalar(sa.select(Badge).where(Badge.registration_id == registration.id))
    assert badge.number.startswith("COP4-") and badge.version == 1 and badge.revoked_at is None
    audit = db.scalar(
        sa.select(AuditEntry).where(
            AuditEntry.action == "registration.approved", AuditEntry.target_id == str(registration.id)
        )
    )
    assert audit.detail == {"badge": badge.number} and audit.actor.email == "s@example.org"
