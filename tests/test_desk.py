"""The registration desk: search, filters, sorting, paging, duplicates, bulk decisions, statistics, permissions."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from conftest import TEST_HASH, csrf_token, login

from auth import services as auth_services
from auth.models import AuditEntry, Gender, OutboxMessage, Role, User
from meetings import desk, services
from meetings.models import (
    Badge,
    Category,
    Function,
    Party,
    Registration,
    RegistrationStatus,
    registration_segments,
)

LIST = "/secretariat/meetings/COP-4/registrations"
BULK = "/secretariat/meetings/COP-4/registrations/bulk"
STATS = "/secretariat/meetings/COP-4/registrations/stats"


@pytest.fixture
def add(db, cop4, clock):
    """Factory: a registration for COP-4 made through the services (not the form); returns it."""
    counter = itertools.count(1)

    def make(
        given: str = "Test",
        family: str | None = None,
        *,
        party: str | None = "CHE",
        organization: str | None = None,
        category: Category = Category.PARTY,
        gender: Gender = Gender.FEMALE,
        confirmed: bool = True,
        segments: str = "both",
        email: str | None = None,
        minutes: int = 0,
        commit: bool = True,
    ) -> Registration:
        n = next(counter)
        user = auth_services.create_user(
            db,
            email=email or f"reg{n}@example.org",
            password="a long enough passphrase",
            given_name=given,
            family_name=family or f"Person{n:03d}",
            gender=gender,
            hash_method=TEST_HASH,
        )
        user.email_confirmed_at = clock() if confirmed else None
        online, in_person = cop4.segments
        segment_ids = {"both": [online.id, in_person.id], "online": [online.id], "in_person": [in_person.id]}
        registration = services.register(
            db,
            meeting=cop4,
            user=user,
            category=category,
            function=Function.ADVISER,
            segment_ids=segment_ids[segments],
            party_code=party if category == Category.PARTY else None,
            organization=organization,
            now=clock() + dt.timedelta(minutes=minutes),
        )
        if commit:
            db.commit()
        return registration

    return make


@pytest.fixture
def desk_client(app, make_user, clock):
    """A test client logged in as a secretariat member."""
    _, secret = make_user(Role.SECRETARIAT, email="desk@example.org", password="secretariat pass")
    client = app.test_client()
    login(client, "desk@example.org", "secretariat pass", secret, clock)
    return client


def shown(client, query: str = "") -> tuple[list[int], str]:
    """The registration ids the list shows, in order, and the page."""
    response = client.get(LIST + query)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return [int(i) for i in re.findall(r'data-registration="(\d+)"', html)], html


def follow(client, response) -> str:
    assert response.status_code == 302
    return client.get(response.headers["Location"]).get_data(as_text=True)


def outbox(db, to: str) -> list[OutboxMessage]:
    return list(db.scalars(sa.select(OutboxMessage).where(OutboxMessage.to_address == to)))


# The list ------------------------------------------------------------------------------------


def test_unconfirmed_addresses_are_not_pending_review_and_have_their_own_filter(desk_client, add):
    ready = add("Ready", "Reviewer")
    waiting = add("Waiting", "Confirmer", confirmed=False)

    ids, html = shown(desk_client)
    assert ids == [ready.id]
    assert re.search(r"Pending review <span class=\"tally\">1</span>", html)
    assert re.search(r"Awaiting email confirmation <span class=\"tally\">1</span>", html)

    ids, html = shown(desk_client, "?status=unconfirmed")
    assert ids == [waiting.id]
    assert "email not confirmed" in html and "Waiting for the address to be confirmed" in html
    # Nothing to tick: an unconfirmed registration cannot be decided yet.
    assert 'name="ids"' not in html

    ids, _ = shown(desk_client, "?status=all")
    assert {ready.id, waiting.id} <= set(ids)


def test_search_finds_name_email_organization_and_party_ignoring_case(desk_client, add):
    ana = add("Ana", "Souza", party="BRA", email="ana.souza@itamaraty.example")
    ocean = add("Kai", "Moana", category=Category.NGO, organization="Ocean Care International")
    swiss = add("Lea", "Meier", party="CHE")

    assert shown(desk_client, "?q=SOUZA")[0] == [ana.id]
    assert shown(desk_client, "?q=souza+ana")[0] == [ana.id]
    assert shown(desk_client, "?q=ITAMARATY")[0] == [ana.id]
    assert shown(desk_client, "?q=ocean+care")[0] == [ocean.id]
    assert shown(desk_client, "?q=brazil")[0] == [ana.id]
    assert shown(desk_client, "?q=switzerland")[0] == [swiss.id]
    # LIKE wildcards typed by the secretariat are searched for literally.
    assert shown(desk_client, "?q=%25")[0] == []
    assert shown(desk_client, "?q=nobody-called-this")[0] == []


def test_filters_by_category_party_regional_group_and_segment(desk_client, add, cop4):
    brazil = add(party="BRA", segments="online")
    eu = add(party="EUR", segments="in_person")
    ngo = add(category=Category.NGO, organization="Ocean Care", segments="online")
    swiss = add(party="CHE")
    online, in_person = cop4.segments

    assert shown(desk_client, "?category=ngo")[0] == [ngo.id]
    assert shown(desk_client, "?party=bra")[0] == [brazil.id]
    assert shown(desk_client, "?group=GRULAC")[0] == [brazil.id]
    assert shown(desk_client, "?group=WEOG")[0] == [swiss.id]
    assert shown(desk_client, "?group=none")[0] == [eu.id, ngo.id]
    assert shown(desk_client, f"?segment={online.id}")[0] == [brazil.id, ngo.id, swiss.id]
    assert shown(desk_client, f"?segment={in_person.id}&category=party")[0] == [eu.id, swiss.id]
    # Nonsense in the query string is ignored, not an error.
    assert shown(desk_client, "?category=robot&group=Mars&page=abc&sort=x")[0] == [brazil.id, eu.id, ngo.id, swiss.id]


def test_sorting_and_paging_120_registrations_in_pages_of_50(desk_client, add, db):
    parties = ["BRA", "CHE", "NGA", "JPN"]
    created = [add(party=parties[i % 4], minutes=i, commit=False) for i in range(120)]
    db.commit()
    by_submission = [r.id for r in created]

    ids, html = shown(desk_client)
    assert ids == by_submission[:50]
    assert "Showing <strong>1–50</strong> of <strong>120</strong>" in html
    assert shown(desk_client, "?page=3")[0] == by_submission[100:]
    # A page beyond the end shows the last one.
    assert shown(desk_client, "?page=99")[0] == by_submission[100:]
    assert shown(desk_client, "?order=desc")[0] == by_submission[::-1][:50]
    assert shown(desk_client, "?per_page=100&page=2")[0] == by_submission[100:]

    by_name_desc = sorted(created, key=lambda r: r.user.family_name, reverse=True)
    ids, html = shown(desk_client, "?q=person&sort=name&order=desc&page=2")
    assert ids == [r.id for r in by_name_desc[50:100]]
    assert 'aria-sort="descending"' in html

    by_party = sorted(created, key=lambda r: (r.party.name, r.id))
    assert shown(desk_client, "?sort=represents")[0] == [r.id for r in by_party[:50]]

    # Page links and the filter form carry the search and the sort along.
    links = re.findall(r'href="(/secretariat/meetings/COP-4/registrations\?[^"]+)"', html)
    page_three = next(link for link in links if "page=3" in link)
    args = parse_qs(urlsplit(page_three.replace("&amp;", "&")).query)
    assert args["q"] == ["person"] and args["sort"] == ["name"] and args["order"] == ["desc"]
    assert '<input type="hidden" name="sort" value="name">' in html
    ids, _ = shown(desk_client, "?q=PERSON01&sort=name")
    assert ids == [r.id for r in created if r.user.family_name.startswith("Person01")]


def test_likely_duplicates_are_flagged_and_can_be_listed(desk_client, add):
    first = add("Ana", "Souza", party="BRA")
    again = add("ana", "SOUZA", party="BRA")
    other_party = add("Ana", "Souza", party="ARG")
    ngo = add("Li", "Wei", category=Category.NGO, organization="WWF")
    ngo_again = add("Li", "Wei", category=Category.NGO, organization="wwf ")
    single = add("Lea", "Meier")

    ids, html = shown(desk_client)
    assert len(ids) == 6
    assert f"Likely duplicate of #{again.id}" in html and f"Likely duplicate of #{first.id}" in html
    assert f"Likely duplicate of #{ngo_again.id}" in html
    flagged = {int(i) for i in re.findall(r'data-registration="(\d+)" class="is-duplicate"', html)}
    assert flagged == {first.id, again.id, ngo.id, ngo_again.id}
    assert other_party.id not in flagged and single.id not in flagged

    ids, html = shown(desk_client, "?duplicates=1&status=all")
    assert ids == [first.id, again.id, ngo.id, ngo_again.id]
    assert 'Likely duplicates <span class="tally">4</span>' in html


# Decisions -----------------------------------------------------------------------------------


def test_bulk_approval_issues_badges_mails_and_audits_each_one(desk_client, add, db):
    chosen = [add(party="BRA"), add(party="NGA"), add(category=Category.IGO, organization="UNEP")]
    untouched = add(party="JPN")

    response = desk_client.post(
        BULK + "?q=e&sort=name&page=1",
        data={"ids": [r.id for r in chosen], "action": "approve", "csrf_token": csrf_token(desk_client, LIST)},
    )
    assert parse_qs(urlsplit(response.headers["Location"]).query)["sort"] == ["name"]
    assert "Approved 3 registrations and issued the badges" in follow(desk_client, response)

    db.expire_all()
    for registration in chosen:
        registration = db.get(Registration, registration.id)
        assert registration.status == RegistrationStatus.APPROVED
        assert [b.number for b in registration.badges] == [f"COP4-{registration.id:05d}"]
        [message] = outbox(db, registration.user.email)
        assert message.subject == "COP-4: your registration is approved"
    approvals = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "registration.approved")).all()
    assert {a.target_id for a in approvals if a.actor and a.actor.email == "desk@example.org"} == {
        str(r.id) for r in chosen
    }
    assert db.get(Registration, untouched.id).status == RegistrationStatus.PENDING
    assert outbox(db, untouched.user.email) == []


def test_bulk_rejection_needs_a_reason_that_each_delegate_reads(desk_client, add, db):
    chosen = [add(), add()]
    data = {"ids": [r.id for r in chosen], "action": "reject", "csrf_token": csrf_token(desk_client, LIST)}

    page = follow(desk_client, desk_client.post(BULK, data={**data, "reason": "  "}))
    assert "Nothing was changed: Give the reason for the rejection" in page
    db.expire_all()
    assert all(db.get(Registration, r.id).status == RegistrationStatus.PENDING for r in chosen)

    page = follow(desk_client, desk_client.post(BULK, data={**data, "reason": "No nomination letter was received."}))
    assert "Rejected 2 registrations; each delegate was emailed the reason." in page
    db.expire_all()
    for registration in chosen:
        registration = db.get(Registration, registration.id)
        assert registration.status == RegistrationStatus.REJECTED
        assert registration.decision_reason == "No nomination letter was received."
        [message] = outbox(db, registration.user.email)
        assert "No nomination letter was received." in message.body


def test_a_batch_with_one_refusal_changes_nothing_and_says_which_and_why(desk_client, add, db, cop4, clock):
    fine = add("Fine", "Pending")
    decided = add("Already", "Decided")
    unconfirmed = add("Not", "Confirmed", confirmed=False)
    desk_user = db.scalar(sa.select(User).where(User.email == "desk@example.org"))
    services.approve(db, decided, desk_user, clock())
    db.commit()
    badges, mails, audits = (
        db.scalar(sa.select(sa.func.count(model.id))) for model in (Badge, OutboxMessage, AuditEntry)
    )

    response = desk_client.post(
        BULK,
        data={
            "ids": [fine.id, decided.id, unconfirmed.id, 987654],
            "action": "approve",
            "csrf_token": csrf_token(desk_client, LIST),
        },
    )
    page = follow(desk_client, response)
    assert "Nothing was changed: 3 of the 4 selected registrations cannot be decided." in page
    assert f"Already Decided (#{decided.id}): This registration is already approved" in page
    assert f"Not Confirmed (#{unconfirmed.id}): {unconfirmed.user.email} has not confirmed the address yet" in page
    assert "(#987654): There is no such COP-4 registration." in page

    db.expire_all()
    assert db.get(Registration, fine.id).status == RegistrationStatus.PENDING
    assert db.get(Registration, fine.id).badges == []
    assert (badges, mails, audits) == tuple(
        db.scalar(sa.select(sa.func.count(model.id))) for model in (Badge, OutboxMessage, AuditEntry)
    )


def test_nothing_ticked_and_a_missing_csrf_token_are_refused(desk_client, add, db):
    registration = add()
    page = follow(
        desk_client, desk_client.post(BULK, data={"action": "approve", "csrf_token": csrf_token(desk_client)})
    )
    assert "Nothing was changed: Tick the registrations to decide first." in page
    assert desk_client.post(BULK, data={"ids": [registration.id], "action": "approve"}).status_code == 400
    db.expire_all()
    assert db.get(Registration, registration.id).status == RegistrationStatus.PENDING


def test_single_approval_still_works_and_returns_to_the_same_list(desk_client, add, db):
    registration = add("Solo", "Delegate")
    response = desk_client.post(
        f"/secretariat/registrations/{registration.id}/approve?q=solo&sort=name&order=desc&page=2",
        data={"csrf_token": csrf_token(desk_client, LIST)},
    )
    args = parse_qs(urlsplit(response.headers["Location"]).query)
    assert args["q"] == ["solo"] and args["order"] == ["desc"] and args["page"] == ["2"]
    assert f"badge COP4-{registration.id:05d} issued" in follow(desk_client, response)
    assert outbox(db, registration.user.email)[0].subject == "COP-4: your registration is approved"


# Statistics ----------------------------------------------------------------------------------


def stat_lines(html: str, table: str) -> dict[str, tuple[int, float]]:
    """Count and percentage per line of one statistics table, as the page shows them."""
    section = re.search(rf'id="by-{table}">(.*?)</section>', html, re.S).group(1)
    lines = re.findall(
        r'data-stat="\d+:([^"]+)".*?<td class="num count">\s*(?:<a [^>]*>)?([\d,]+).*?<td class="num pct">([\d.]+)%',
        section,
        re.S,
    )
    return {key: (int(count.replace(",", "")), float(percent)) for key, count, percent in lines}


def test_statistics_match_hand_counted_numbers(desk_client, add, db, cop4, clock):
    # The demo already has Ayu Lestari: Indonesia (Asia-Pacific), female, approved, both segments.
    desk_user = db.scalar(sa.select(User).where(User.email == "desk@example.org"))
    services.approve(db, add(party="BRA", segments="online"), desk_user, clock())
    add(party="BRA", gender=Gender.MALE)
    add(party="EUR", gender=Gender.MALE, segments="in_person")
    add(category=Category.NGO, organization="Ocean Care", gender=Gender.MALE, segments="online", confirmed=False)
    services.reject(
        db, add(category=Category.IGO, organization="UNEP", gender=Gender.UNDISCLOSED), desk_user, "x", clock()
    )
    db.commit()

    html = desk_client.get(STATS).get_data(as_text=True)
    assert stat_lines(html, "status") == {
        "pending": (2, 33.3),
        "unconfirmed": (1, 16.7),
        "approved": (2, 33.3),
        "rejected": (1, 16.7),
        "withdrawn": (0, 0.0),
    }
    category = stat_lines(html, "category")
    assert category["party"] == (4, 66.7) and category["ngo"] == (1, 16.7) and category["igo"] == (1, 16.7)
    assert category["media"] == (0, 0.0)
    group = stat_lines(html, "group")
    assert group["Asia-Pacific"] == (1, 16.7) and group["GRULAC"] == (2, 33.3) and group["none"] == (3, 50.0)
    assert group["African"] == (0, 0.0) and sum(count for count, _ in group.values()) == 6
    assert stat_lines(html, "gender") == {
        "female": (2, 33.3),
        "male": (3, 50.0),
        "other": (0, 0.0),
        "undisclosed": (1, 16.7),
    }
    online, in_person = cop4.segments
    assert stat_lines(html, "segment") == {str(online.id): (5, 83.3), str(in_person.id): (4, 66.7)}
    assert "No regional group" in html and "The European Union belongs to no UN regional group" in html

    # Counting approved registrations only: Ayu and the approved Brazilian delegate.
    html = desk_client.get(STATS + "?status=approved").get_data(as_text=True)
    assert stat_lines(html, "category")["party"] == (2, 100.0)
    assert stat_lines(html, "gender")["female"] == (2, 100.0)
    assert stat_lines(html, "group")["GRULAC"] == (1, 50.0)
    assert stat_lines(html, "status")["pending"] == (2, 33.3)  # the status table always counts everyone


# Permissions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["anonymous", "delegate", "officer"])
def test_only_the_secretariat_uses_the_desk(app, cop4, make_user, make_delegate, clock, role):
    client = app.test_client()
    if role == "delegate":
        user, secret = make_delegate()
        login(client, user.email, "correct horse battery", secret, clock)
    elif role == "officer":
        user, secret = make_user(Role.OFFICER)
        login(client, user.email, "correct horse battery", secret, clock)
    registration_id = 1
    token = csrf_token(client)
    requests = [
        client.get(LIST),
        client.get(STATS),
        client.post(BULK, data={"ids": [registration_id], "action": "approve", "csrf_token": token}),
        client.post(f"/secretariat/registrations/{registration_id}/approve", data={"csrf_token": token}),
        client.post(f"/secretariat/registrations/{registration_id}/reject", data={"reason": "x", "csrf_token": token}),
    ]
    for response in requests:
        if role == "anonymous":
            assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
        else:
            assert response.status_code == 403


# At scale ------------------------------------------------------------------------------------


def twin(i: int) -> int:
    """Every 500th person registers twice (same name and Party): ten pairs of likely duplicates."""
    return i - 1 if i % 500 == 1 else i


def test_the_list_query_pages_5000_registrations_in_a_few_statements(app, db, cop4, clock):
    now = clock()
    db.execute(
        sa.insert(User),
        [
            {
                "email": f"bulk{i}@example.org",
                "given_name": f"Given{twin(i) % 7}",
                "family_name": f"Family{twin(i):04d}",
                "gender": Gender.MALE if i % 2 else Gender.FEMALE,
                "email_confirmed_at": None if i % 10 == 0 else now,
                "created_at": now,
            }
            for i in range(5000)
        ],
    )
    users = dict(db.execute(sa.select(User.email, User.id).where(User.email.like("bulk%"))).all())
    parties = list(db.scalars(sa.select(Party.id).order_by(Party.code)))
    db.execute(
        sa.insert(Registration),
        [
            {
                "meeting_id": cop4.id,
                "user_id": users[f"bulk{i}@example.org"],
                "category": Category.PARTY,
                "party_id": parties[twin(i) % len(parties)],
                "function": Function.ADVISER,
                "status": RegistrationStatus.APPROVED if i % 3 == 0 else RegistrationStatus.PENDING,
                "submitted_at": now + dt.timedelta(seconds=i),
            }
            for i in range(5000)
        ],
    )
    registration_ids = list(
        db.scalars(sa.select(Registration.id).join(Registration.user).where(User.email.like("bulk%")))
    )
    online = cop4.segments[0].id
    db.execute(
        sa.insert(registration_segments), [{"registration_id": r, "segment_id": online} for r in registration_ids]
    )
    db.commit()

    statements: list[str] = []

    def count(connection, cursor, statement, *args) -> None:
        statements.append(statement)

    engine = app.extensions["db_engine"]
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = desk.list_registrations(db, cop4, desk.ListQuery(status="all", sort="name", page=7))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert page.total == 5001 and page.pages == 101 and len(page.rows) == 50
    names = [(r.user.family_name.lower(), r.user.given_name.lower()) for r in page.rows]
    assert names == sorted(names)
    assert all(r.segments for r in page.rows if r.user.email.startswith("bulk"))
    # Count, page, segments, badges, duplicates: never one statement per row.
    assert len(statements) <= 5

    pending = desk.list_registrations(db, cop4, desk.ListQuery(status="pending", page=2))
    expected_pending = sum(1 for i in range(5000) if i % 3 and i % 10)
    assert pending.total == expected_pending and len(pending.rows) == 50
    assert all(r.status == RegistrationStatus.PENDING and r.user.email_confirmed_at for r in pending.rows)

    duplicates = desk.list_registrations(db, cop4, desk.ListQuery(status="all", duplicates=True))
    assert duplicates.total == 20 and all(duplicates.duplicates[r.id] for r in duplicates.rows)
    assert desk.registration_stats(db, cop4)[0].total == 5001
