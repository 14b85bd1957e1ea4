"""Badges: genuine tokens name their badge, forged, altered, revoked and replaced ones are refused; revoking and
reissuing; the participant's badge page and PDF, and the secretariat's badge list and actions."""

import datetime as dt

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login

import meetings.badge_views  # noqa: F401  (adds the badge pages to the meetings blueprint)
from auth.badges import BadgeRef, badge_token
from auth.models import AuditEntry, Role
from meetings import badges, services
from meetings.models import Badge, Category, Function, Registration

KEY = "dev-only-secret-key-change-me"


@pytest.fixture
def badge(db, make_delegate):
    user, _ = make_delegate("CHE")
    return services.registration_of(db, 1, user.id).badges[0]


def test_a_genuine_token_names_its_badge(app, db, badge):
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, badge)) == badge


@pytest.mark.parametrize("token", ["", None, 42, "x" * 500, "not-a-token", "WzEsMV0.tampered"])
def test_unreadable_or_unsigned_tokens_are_forged(app, db, badge, token):
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, token)
    assert refused.value.code == "forged_badge"


def test_a_token_signed_with_another_key_or_altered_is_forged(app, db, badge):
    foreign = badge_token("someone else's key", BadgeRef(badge.id, badge.version))
    genuine = badges.token_for(app.secret_key, badge)
    altered = genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB")
    for token in (foreign, altered):
        with pytest.raises(services.CheckInError) as refused:
            badges.badge_for_token(db, app.secret_key, token)
        assert refused.value.code == "forged_badge"


def test_revoked_and_replaced_badges_stop_working(app, db, badge, clock):
    old_token = badges.token_for(app.secret_key, badge)
    replacement = Badge(registration=badge.registration, number=badge.number + "-2", version=2, issued_at=clock())
    db.add(replacement)
    db.commit()
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, old_token)
    assert refused.value.code == "revoked_badge"
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, replacement)) == replacement
    replacement.revoked_at = clock() + dt.timedelta(seconds=1)
    db.commit()
    with pytest.raises(services.CheckInError) as refused:
        badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, replacement))
    assert refused.value.code == "revoked_badge"
    assert badges.current_badge(badge.registration) is None


# Revoking and reissuing --------------------------------------------------------------------


@pytest.fixture
def secretariat(make_user):
    user, _ = make_user(Role.SECRETARIAT, email="desk@example.org")
    return user


def audit_entries(db, action):
    return list(db.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def refused(code, call, *args):
    with pytest.raises(services.MeetingError) as exc:
        call(*args)
    assert exc.value.code == code
    return exc.value.message


def test_a_revoked_badge_stops_working_at_once_and_is_audited(app, db, badge, secretariat, clock):
    token = badges.token_for(app.secret_key, badge)
    badges.revoke(db, badge, secretariat, "  Reported lost  at the venue ", clock())
    db.commit()
    assert badge.revoked_at == clock() and badge.revoked_by_id == secretariat.id
    assert badge.revoked_reason == "Reported lost at the venue"
    with pytest.raises(services.CheckInError) as exc:
        badges.badge_for_token(db, app.secret_key, token)
    assert exc.value.code == "revoked_badge"
    assert badges.current_badge(badge.registration) is None
    assert badges.status_of(badge) == "revoked"
    [entry] = audit_entries(db, "badge.revoked")
    assert entry.actor_id == secretariat.id and entry.target_type == "badges" and entry.target_id == str(badge.id)
    assert entry.detail["reason"] == "Reported lost at the venue" and entry.detail["number"] == badge.number


def test_revoking_needs_a_reason_and_a_badge_still_in_force(db, badge, secretariat, clock):
    assert "Give the reason" in refused("reason_required", badges.revoke, db, badge, secretariat, "   ", clock())
    refused("reason_too_long", badges.revoke, db, badge, secretariat, "x" * 201, clock())
    badges.revoke(db, badge, secretariat, "Stolen", clock())
    db.commit()
    message = refused("already_revoked", badges.revoke, db, badge, secretariat, "Again", clock())
    assert badge.number in message and "Stolen" in message
    assert len(audit_entries(db, "badge.revoked")) == 1


def test_a_replaced_badge_cannot_be_revoked_again(db, badge, secretariat, clock):
    badges.reissue(db, badge.registration, secretariat, "Damaged", clock())
    db.commit()
    message = refused("badge_replaced", badges.revoke, db, badge, secretariat, "Lost", clock())
    assert "revoke the newer one" in message


def test_a_reissued_badge_replaces_the_old_one_which_stops_working(app, db, badge, secretariat, clock):
    old_token = badges.token_for(app.secret_key, badge)
    clock.advance(60)
    new = badges.reissue(db, badge.registration, secretariat, "Name corrected", clock())
    db.commit()
    assert (new.version, new.number, new.issued_at) == (2, badge.number + "-2", clock())
    assert badges.current_badge(badge.registration) == new
    assert badges.status_of(badge) == "replaced" and badges.status_of(new) == "valid"
    with pytest.raises(services.CheckInError) as exc:
        badges.badge_for_token(db, app.secret_key, old_token)
    assert exc.value.code == "revoked_badge"
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, new)) == new
    [entry] = audit_entries(db, "badge.reissued")
    assert entry.actor_id == secretariat.id and entry.target_id == str(new.id)
    assert entry.detail == {
        "number": new.number,
        "registration": badge.registration_id,
        "replaces": badge.number,
        "reason": "Name corrected",
    }


def test_a_revoked_badge_can_be_reissued(app, db, badge, secretariat, clock):
    badges.revoke(db, badge, secretariat, "Lost", clock())
    new = badges.reissue(db, badge.registration, secretariat, "Replacement for the lost badge", clock())
    third = badges.reissue(db, badge.registration, secretariat, "Lost again", clock())
    db.commit()
    assert (new.version, third.version) == (2, 3)
    assert badges.current_badge(badge.registration) == third
    assert badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, third)) == third


def test_only_approved_registrations_get_a_badge_reissued(db, make_delegate, secretariat, clock):
    user, _ = make_delegate("FRA", approve=False)
    registration = services.registration_of(db, 1, user.id)
    message = refused("not_approved", badges.reissue, db, registration, secretariat, "Please", clock())
    assert "pending" in message and "only approved registrations have badges" in message
    assert registration.badges == []
    services.approve(db, registration, secretariat, clock())
    refused("reason_required", badges.reissue, db, registration, secretariat, "", clock())


# The participant's badge -------------------------------------------------------------------


@pytest.fixture
def people(app, db, make_delegate, make_user, clock):
    """Logged-in clients: the badge's owner, another delegate, an officer, the secretariat, and an anonymous one."""
    clients = {}
    for name, party in (("owner", "CHE"), ("other", "FRA")):
        user, secret = make_delegate(party)
        clients[name] = app.test_client()
        login(clients[name], user.email, "correct horse battery", secret, clock)
        clients[name + "_user"] = user
    for name, role in (("officer", Role.OFFICER), ("secretariat", Role.SECRETARIAT)):
        user, secret = make_user(role, email=f"badge-{name}@example.org")
        clients[name] = app.test_client()
        login(clients[name], user.email, "correct horse battery", secret, clock)
        clients[name + "_user"] = user
    clients["anonymous"] = app.test_client()
    return clients


def owner_badge(db, people) -> Badge:
    return services.registration_of(db, 1, people["owner_user"].id).badges[-1]


def test_a_delegate_sees_their_badge_with_its_qr_code(db, people):
    badge = owner_badge(db, people)
    response = people["owner"].get("/meetings/COP-4/my-badge")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "private, no-store"
    assert "Valid · badge" in page and badge.number in page
    assert "<svg" in page and "QR code of badge" in page
    assert f"/badges/{badge.id}.pdf" in page
    assert "Party" in page and "Switzerland" in page


def test_the_badge_page_explains_a_missing_or_revoked_badge(app, db, make_delegate, people, clock):
    badge = owner_badge(db, people)
    badges.revoke(db, badge, people["secretariat_user"], "Badge reported stolen", clock())
    db.commit()
    page = people["owner"].get("/meetings/COP-4/my-badge").get_data(as_text=True)
    assert "Revoked" in page and "Badge reported stolen" in page and "Contact the secretariat" in page
    assert "<svg" not in page and f"/badges/{badge.id}.pdf" not in page
    response = people["officer"].get("/meetings/COP-4/my-badge")
    assert response.status_code == 302
    assert "You have no registration for COP-4" in people["officer"].get("/").get_data(as_text=True)
    assert people["anonymous"].get("/meetings/COP-4/my-badge").headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize(
    ("who", "status"), [("owner", 200), ("secretariat", 200), ("other", 403), ("officer", 403), ("anonymous", 302)]
)
def test_only_the_owner_and_the_secretariat_download_a_badge(db, people, who, status):
    badge = owner_badge(db, people)
    response = people[who].get(f"/badges/{badge.id}.pdf")
    assert response.status_code == status
    if status == 200:
        assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF-")
        assert response.headers["Content-Disposition"] == f'attachment; filename="badge-{badge.number}.pdf"'
        assert response.headers["Cache-Control"] == "private, no-store"
    if who == "anonymous":
        assert response.headers["Location"].startswith("/auth/login")


def test_a_revoked_or_replaced_badge_is_not_printed(db, people, clock):
    badge = owner_badge(db, people)
    badges.reissue(db, badge.registration, people["secretariat_user"], "Damaged", clock())
    db.commit()
    response = people["owner"].get(f"/badges/{badge.id}.pdf")
    assert response.headers["Location"] == "/meetings/COP-4/my-badge"
    assert f"Badge {badge.number} was replaced by a newer one" in people["owner"].get(
        "/meetings/COP-4/my-badge"
    ).get_data(as_text=True)
    assert people["owner"].get("/badges/99999.pdf").status_code == 404


# The secretariat ---------------------------------------------------------------------------


def post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/"), **data})


def test_the_secretariat_revokes_a_badge_with_a_reason(app, db, people):
    badge = owner_badge(db, people)
    desk = people["secretariat"]
    response = post(desk, f"/secretariat/badges/{badge.id}/revoke?status=valid", reason="")
    assert response.headers["Location"] == "/secretariat/meetings/COP-4/badges?status=valid"
    assert "Not revoked: Give the reason" in desk.get("/").get_data(as_text=True)
    response = post(desk, f"/secretariat/badges/{badge.id}/revoke", reason="Left the delegation")
    assert "is revoked: the gates refuse it" in desk.get(response.headers["Location"]).get_data(as_text=True)
    db.expire_all()
    assert db.get(Badge, badge.id).revoked_reason == "Left the delegation"
    with pytest.raises(services.CheckInError):
        badges.badge_for_token(db, app.secret_key, badges.token_for(app.secret_key, badge))
    post(desk, f"/secretariat/badges/{badge.id}/revoke", reason="Twice")
    assert "Not revoked: Badge" in desk.get("/").get_data(as_text=True)
    page = desk.get("/secretariat/meetings/COP-4/badges?status=revoked").get_data(as_text=True)
    assert badge.number in page and "Left the delegation" in page and "by Test Person" in page


def test_the_secretariat_reissues_a_badge(app, db, people):
    badge = owner_badge(db, people)
    desk = people["secretariat"]
    response = post(desk, f"/secretariat/registrations/{badge.registration_id}/reissue-badge", reason="Lost")
    assert f"Badge {badge.number}-2 issued" in desk.get(response.headers["Location"]).get_data(as_text=True)
    db.expire_all()
    assert [b.version for b in db.get(Registration, badge.registration_id).badges] == [1, 2]
    page = people["owner"].get("/meetings/COP-4/my-badge").get_data(as_text=True)
    assert f"{badge.number}-2" in page and "Valid" in page


@pytest.mark.parametrize("who", ["owner", "officer", "anonymous"])
def test_only_the_secretariat_manages_badges(db, people, who):
    badge = owner_badge(db, people)
    client = people[who]
    expected = 302 if who == "anonymous" else 403
    assert client.get("/secretariat/meetings/COP-4/badges").status_code == expected
    assert post(client, f"/secretariat/badges/{badge.id}/revoke", reason="x").status_code == expected
    assert (
        post(client, f"/secretariat/registrations/{badge.registration_id}/reissue-badge", reason="x").status_code
        == expected
    )
    assert (
        client.get(f"/secretariat/meetings/COP-4/badges/print?segment={badge.registration.segments[0].id}").status_code
        == expected
    )
    db.expire_all()
    assert db.get(Badge, badge.id).revoked_at is None and len(db.get(Registration, badge.registration_id).badges) == 1


def test_badge_actions_need_the_csrf_token(db, people):
    badge = owner_badge(db, people)
    response = people["secretariat"].post(f"/secretariat/badges/{badge.id}/revoke", data={"reason": "Lost"})
    assert response.status_code == 400
    db.expire_all()
    assert db.get(Badge, badge.id).revoked_at is None


def test_the_badge_list_filters_by_status_segment_and_search(db, cop4, people, make_user, clock):
    online, in_person = cop4.segments
    observer, _ = make_user(email="press@example.org")
    observer.given_name, observer.family_name = "Łucja", "Kowalczyk"
    registration = services.register(
        db,
        meeting=cop4,
        user=observer,
        category=Category.MEDIA,
        function=Function.ADVISER,
        segment_ids=[in_person.id],
        organization="Earth Negotiations Bulletin",
        now=clock(),
    )
    services.approve(db, registration, people["secretariat_user"], clock())
    badge = owner_badge(db, people)
    badges.revoke(db, badge, people["secretariat_user"], "Lost", clock())
    db.commit()
    desk = people["secretariat"]

    def numbers(query):
        page = desk.get(f"/secretariat/meetings/COP-4/badges?{query}").get_data(as_text=True)
        return {b.number for b in db.scalars(sa.select(Badge)) if b.number in page}, page

    found, page = numbers("")
    everyone = {b.number for b in db.scalars(sa.select(Badge).join(Registration).where(Registration.meeting_id == 1))}
    assert found == everyone
    assert "Prints “?” for Ł" in page
    found, _ = numbers("status=revoked")
    assert found == {badge.number}
    found, _ = numbers(f"status=valid&segment={online.id}")
    assert badge.number not in found and registration.badges[0].number not in found and found
    found, _ = numbers("q=kowalczyk")
    assert found == {registration.badges[0].number}
    found, page = numbers("status=nonsense&segment=abc&page=-3")
    assert found == everyone
