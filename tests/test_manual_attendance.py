"""Officers check participants in and out by hand, with a reason: logged, audited, shown and broadcast."""

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, registration_of, socket_client

import meetings.attendance_views  # noqa: F401  (adds the attendance routes to the blueprint before the app is built)
from auth.models import AuditEntry, Role
from meetings import badges, services
from meetings.models import (
    AttendanceEvent,
    Category,
    Channel,
    EventKind,
    Function,
    SegmentKind,
    Source,
)

PASSWORD = "officer pass phrase"


@pytest.fixture
def officer(app, make_user, clock):
    """An officer logged in through the real views; returns (user, client)."""
    user, secret = make_user(Role.OFFICER, email="o@example.org", password=PASSWORD)
    client = app.test_client()
    login(client, "o@example.org", PASSWORD, secret, clock)
    return user, client


@pytest.fixture
def opened(db, online_session, officer, clock):
    """The online segment's opening plenary, open."""
    services.change_state(db, online_session, "open", officer[0], clock())
    db.commit()
    return online_session


@pytest.fixture
def plenary(db, cop4, officer, clock):
    """The in-person segment's opening plenary, open."""
    meeting_session = cop4.segments[1].sessions[0]
    services.change_state(db, meeting_session, "open", officer[0], clock())
    db.commit()
    return meeting_session


@pytest.fixture
def swiss(db, make_delegate):
    """An approved Swiss delegate: (user, badge number)."""
    user, _ = make_delegate("CHE", email="ana.souza@example.org")
    user.given_name, user.family_name = "Ana", "Souza"
    db.commit()
    return user, registration_of(db, user).badges[0].number


def page_of(client, meeting_session, **params):
    return client.get(f"/sessions/{meeting_session.id}/attendance", query_string=params)


def check_in_fields(html: str) -> dict:
    """The hidden fields of the check-in form as the page rendered it (CSRF token and nonce)."""
    form = re.search(r'<form[^>]*action="[^"]*/attendance/check-in[^"]*".*?</form>', html, re.S).group(0)
    return dict(re.findall(r'name="(csrf_token|nonce)" type="hidden" value="([^"]+)"', form))


def check_out_nonce(html: str, user_id: int) -> str:
    form = re.search(rf'<form[^>]*action="[^"]*/attendance/{user_id}/check-out[^"]*".*?</form>', html, re.S).group(0)
    return re.search(r'name="nonce" value="([^"]+)"', form).group(1)


def check_in(client, meeting_session, who, *, channel="online", reason="Badge forgotten; passport checked", **over):
    fields = check_in_fields(page_of(client, meeting_session).get_data(as_text=True))
    data = {**fields, "who": who, "channel": channel, "reason": reason, **over}
    return client.post(f"/sessions/{meeting_session.id}/attendance/check-in", data=data)


def check_out(client, meeting_session, user, *, channel="online", reason="Left without the platform noticing", **over):
    html = page_of(client, meeting_session).get_data(as_text=True)
    data = {
        "csrf_token": csrf_token(client, f"/sessions/{meeting_session.id}/attendance"),
        "nonce": check_out_nonce(html, user.id),
        "channel": channel,
        "reason": reason,
        **over,
    }
    return client.post(f"/sessions/{meeting_session.id}/attendance/{user.id}/check-out", data=data)


def events(db, meeting_session) -> list[AttendanceEvent]:
    db.expire_all()
    return list(
        db.scalars(
            sa.select(AttendanceEvent)
            .where(AttendanceEvent.session_id == meeting_session.id)
            .order_by(AttendanceEvent.id)
        )
    )


def audits(db, action: str) -> list[AuditEntry]:
    db.expire_all()
    return list(db.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def at_local(meeting_session, at) -> str:
    local = at.astimezone(meeting_session.tz)
    return f"{local:%H:%M} on {local:%-d %b %Y} ({meeting_session.segment.timezone} time)"


def enter(db, meeting_session, user, clock, channel=Channel.ONLINE):
    """A participant checks in by themselves (their session page or the gate)."""
    clock.advance(1)
    services.record_attendance(
        db,
        meeting_session,
        user,
        kind=EventKind.ENTRY,
        channel=channel,
        source=Source.BROWSER if channel == Channel.ONLINE else Source.KIOSK,
        nonce=f"self-{user.id}-{channel.value}-{clock().timestamp():.0f}",
        now=clock(),
    )
    db.commit()


# Checking in -------------------------------------------------------------------------------


def test_an_officer_checks_a_delegate_in_by_badge_number(db, opened, officer, swiss, clock):
    user, client = officer
    delegate, number = swiss

    response = check_in(client, opened, f"  {number.lower()} ", reason="Platform  failed to   load")

    assert response.status_code == 302
    [event] = events(db, opened)
    assert (event.user_id, event.kind, event.channel) == (delegate.id, EventKind.ENTRY, Channel.ONLINE)
    assert (event.source, event.recorded_by_id, event.reason) == (Source.OFFICER, user.id, "Platform failed to load")
    assert event.at == clock()
    [entry] = audits(db, "attendance.manual_entry")
    assert entry.actor_id == user.id and entry.at == clock()
    assert (entry.target_type, entry.target_id) == ("meeting_sessions", str(opened.id))
    assert entry.detail["user"] == delegate.id
    assert (entry.detail["channel"], entry.detail["reason"]) == ("online", "Platform failed to load")
    assert services.present_users(db, opened) == {delegate.id: frozenset({"online"})}
    assert services.session_quorum(db, opened).present_codes == ("CHE",)

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Checked in: Ana Souza (Switzerland), online, at {at_local(opened, clock())}." in page
    present = page.split('id="present"')[1]
    assert "Ana Souza" in present and "Switzerland" in present and number in present
    assert clock().astimezone(opened.tz).strftime("%H:%M") in present


def test_an_officer_checks_a_delegate_in_by_email(db, opened, officer, swiss):
    _, client = officer
    delegate, _ = swiss

    response = check_in(client, opened, "Ana.Souza@Example.org")

    assert response.status_code == 302
    [event] = events(db, opened)
    assert event.user_id == delegate.id and event.source == Source.OFFICER
    assert len(audits(db, "attendance.manual_entry")) == 1


def test_at_an_in_person_session_the_check_in_is_in_the_room(db, plenary, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss

    page = page_of(client, plenary).get_data(as_text=True)
    assert 'name="channel" value="in_person"' in page and 'value="online"' not in page.split('id="present"')[0]
    response = check_in(client, plenary, number, channel="in_person")

    assert response.status_code == 302
    assert services.present_users(db, plenary) == {delegate.id: frozenset({"in_person"})}
    followed = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Checked in: Ana Souza (Switzerland), in the room, at {at_local(plenary, clock())}." in followed


def test_a_channel_the_segment_does_not_take_is_refused(db, plenary, officer, swiss):
    _, client = officer
    response = check_in(client, plenary, swiss[1], channel="online")

    assert response.status_code == 400
    assert "This session takes check-ins in the room only." in response.get_data(as_text=True)
    assert events(db, plenary) == []


def test_observers_can_be_checked_in_and_stay_out_of_the_quorum(db, cop4, opened, officer, make_user, clock):
    _, client = officer
    observer, _ = make_user(email="ngo@example.org")
    registration = services.register(
        db,
        meeting=cop4,
        user=observer,
        category=Category.NGO,
        function=Function.ADVISER,
        segment_ids=[cop4.segments[0].id],
        organization="Zero Mercury Working Group",
        now=clock(),
    )
    services.approve(db, registration, officer[0], clock())
    db.commit()

    assert check_in(client, opened, "ngo@example.org").status_code == 302

    assert services.present_users(db, opened) == {observer.id: frozenset({"online"})}
    assert services.session_quorum(db, opened).present == 0
    page = page_of(client, opened).get_data(as_text=True)
    assert "Zero Mercury Working Group" in page and "not in the quorum" in page


# Checking out ------------------------------------------------------------------------------


def test_an_officer_checks_a_present_delegate_out(db, opened, officer, swiss, clock):
    user, client = officer
    delegate, _ = swiss
    enter(db, opened, delegate, clock)
    clock.advance(30)  # within the grace period of the delegate's last heartbeat

    response = check_out(client, opened, delegate, reason="Connection dropped; confirmed by phone")

    assert response.status_code == 302
    assert services.present_users(db, opened) == {}
    exit_event = events(db, opened)[-1]
    assert (exit_event.kind, exit_event.source, exit_event.recorded_by_id) == (EventKind.EXIT, Source.OFFICER, user.id)
    assert exit_event.reason == "Connection dropped; confirmed by phone" and exit_event.at == clock()
    [entry] = audits(db, "attendance.manual_exit")
    assert entry.detail["user"] == delegate.id and entry.detail["channel"] == "online"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Checked out: Ana Souza (Switzerland), online, at {at_local(opened, clock())}." in page
    assert "Nobody is present yet." in page


def test_at_a_hybrid_session_one_channel_is_checked_out_and_the_other_stays(db, cop4, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss
    segment = cop4.segments[0]
    segment.kind = SegmentKind.HYBRID
    meeting_session = segment.sessions[0]
    services.change_state(db, meeting_session, "open", officer[0], clock())
    db.commit()
    enter(db, meeting_session, delegate, clock, Channel.ONLINE)
    assert check_in(client, meeting_session, number, channel="in_person").status_code == 302

    page = page_of(client, meeting_session).get_data(as_text=True)
    assert '<span class="att-channel-tag both">Both</span>' in page
    assert f'id="out-channel-{delegate.id}"' in page

    assert check_out(client, meeting_session, delegate, channel="online").status_code == 302
    assert services.present_users(db, meeting_session) == {delegate.id: frozenset({"in_person"})}


def test_checking_out_someone_who_already_left_records_nothing(db, opened, officer, swiss, clock):
    _, client = officer
    delegate, _ = swiss
    enter(db, opened, delegate, clock)
    html = page_of(client, opened).get_data(as_text=True)
    nonce = check_out_nonce(html, delegate.id)
    services.record_attendance(
        db,
        opened,
        delegate,
        kind=EventKind.EXIT,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce="left-by-themselves",
        now=clock(),
    )
    db.commit()

    # The officer's page was loaded before the delegate left.
    data = {"csrf_token": csrf_token(client, "/"), "nonce": nonce, "channel": "online", "reason": "Seen leaving"}
    response = client.post(f"/sessions/{opened.id}/attendance/{delegate.id}/check-out", data=data)

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ana Souza (Switzerland) is not present online any more: nothing to check out." in page
    assert [e.source for e in events(db, opened)] == [Source.BROWSER, Source.BROWSER]
    assert audits(db, "attendance.manual_exit") == []


# A presence recorded by a person lasts until a person (or the close) ends it ----------------


def sweep(app, db, clock):
    """The presence sweeper's round (meetings/live.py), at the clock's time."""
    grace = dt.timedelta(seconds=app.config["PRESENCE_GRACE_SECONDS"])
    services.end_lapsed_presences(db, clock() - grace)
    db.commit()


def test_an_officers_online_check_in_outlasts_the_grace_period(app, db, opened, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss
    assert check_in(client, opened, number, channel="online").status_code == 302
    checked_in_at = clock()
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] + 1)
    sweep(app, db, clock)
    clock.advance(600)
    sweep(app, db, clock)

    # Nothing sends heartbeats for it, and nothing needs to: the delegate is still present.
    assert services.present_users(db, opened) == {delegate.id: frozenset({"online"})}
    assert services.session_quorum(db, opened).present_codes == ("CHE",)
    response = check_out(client, opened, delegate, reason="Left the call; confirmed by phone")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Checked out: Ana Souza (Switzerland), online" in page
    logged = [(e.kind, e.source, e.at) for e in events(db, opened)]
    assert logged == [
        (EventKind.ENTRY, Source.OFFICER, checked_in_at),
        (EventKind.EXIT, Source.OFFICER, clock()),
    ]


def test_an_officer_confirming_a_browser_presence_holds_it(app, db, opened, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss
    enter(db, opened, delegate, clock)  # the delegate's page
    assert check_in(client, opened, number, channel="online", reason="Confirmed on the call").status_code == 302
    confirmed_at = clock()
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] * 3)  # the page went quiet
    sweep(app, db, clock)

    assert services.present_users(db, opened) == {delegate.id: frozenset({"online"})}
    assert [(e.kind, e.source) for e in events(db, opened)] == [
        (EventKind.ENTRY, Source.BROWSER),
        (EventKind.ENTRY, Source.OFFICER),
    ]
    assert events(db, opened)[-1].at == confirmed_at
    # A delegate leaving from their page still ends it: a person ends a held presence.
    services.online_check_out(
        db, opened, delegate, nonce="left-myself", now=clock(), lapsed_before=clock() - dt.timedelta(seconds=60)
    )
    db.commit()
    assert services.present_users(db, opened) == {}


def test_an_officer_acting_on_a_lapsed_presence_acts_on_what_the_log_will_say(app, db, opened, officer, swiss, clock):
    """The page went quiet long ago, the sweep has not run yet: the officer's check-in starts a new presence."""
    _, client = officer
    delegate, number = swiss
    enter(db, opened, delegate, clock)
    last_seen = clock()
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] + 30)

    assert check_in(client, opened, number, channel="online").status_code == 302
    logged = [(e.kind, e.source, e.at) for e in events(db, opened)]
    assert logged == [
        (EventKind.ENTRY, Source.BROWSER, last_seen),
        (EventKind.EXIT, Source.SYSTEM, last_seen),
        (EventKind.ENTRY, Source.OFFICER, clock()),
    ]
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] + 1)
    sweep(app, db, clock)
    assert services.present_users(db, opened) == {delegate.id: frozenset({"online"})}


# Refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message"),
    [("", "Give the reason"), ("   ", "Give the reason"), ("ok", "3 to 200 characters"), ("x" * 201, "3 to 200")],
)
def test_a_check_in_needs_a_reason(db, opened, officer, swiss, reason, message):
    _, client = officer
    response = check_in(client, opened, swiss[1], reason=reason)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert f'value="{swiss[1]}"' in page  # what the officer typed is kept
    assert events(db, opened) == [] and audits(db, "attendance.manual_entry") == []


def test_a_reason_with_markup_is_refused(db, opened, officer, swiss):
    _, client = officer
    response = check_in(client, opened, swiss[1], reason="<script>alert(1)</script>")

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "no &lt; or &gt;" in page and "<script>alert(1)</script>" not in page
    assert events(db, opened) == []


def test_a_check_out_needs_a_reason(db, opened, officer, swiss, clock):
    _, client = officer
    delegate, _ = swiss
    enter(db, opened, delegate, clock)

    response = check_out(client, opened, delegate, reason="")

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ana Souza was not checked out: Give the reason" in page
    assert services.present_users(db, opened) == {delegate.id: frozenset({"online"})}
    assert audits(db, "attendance.manual_exit") == []


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("COP4-99999", "No badge COP4-99999 was issued for COP-4."),
        ("nobody@example.org", "No one with the email address nobody@example.org is registered for COP-4."),
    ],
)
def test_an_unknown_person_gets_a_clear_message(db, opened, officer, swiss, who, message):
    _, client = officer
    response = check_in(client, opened, who)

    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert events(db, opened) == []


def test_a_revoked_badge_does_not_identify_anyone(db, opened, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss
    badges.revoke(db, registration_of(db, delegate).badges[0], officer[0], "Reported lost", clock())
    db.commit()

    response = check_in(client, opened, number)

    assert response.status_code == 400
    assert f"Badge {number} was revoked" in response.get_data(as_text=True)
    assert events(db, opened) == []
    assert check_in(client, opened, "ana.souza@example.org").status_code == 302


def test_a_session_not_open_refuses_with_the_services_message(db, online_session, officer, swiss):
    _, client = officer
    page = page_of(client, online_session).get_data(as_text=True)
    assert "nobody can be checked in" in page

    response = check_in(client, online_session, swiss[1])

    assert response.status_code == 409
    assert "This session has not been opened yet." in response.get_data(as_text=True)
    assert events(db, online_session) == [] and audits(db, "attendance.manual_entry") == []


def test_an_unapproved_registration_is_refused_in_the_officers_words(db, opened, officer, make_delegate):
    _, client = officer
    make_delegate("FRA", email="pending@example.org", approve=False)

    response = check_in(client, opened, "pending@example.org")

    assert response.status_code == 409
    assert "The registration of Test Person is pending, not approved" in response.get_data(as_text=True)
    assert events(db, opened) == []


def test_a_delegate_not_registered_for_the_segment_is_refused_by_name(db, cop4, plenary, officer, make_user, clock):
    _, client = officer
    online_only, _ = make_user(email="online.only@example.org")
    registration = services.register(
        db,
        meeting=cop4,
        user=online_only,
        category=Category.PARTY,
        function=Function.ADVISER,
        segment_ids=[cop4.segments[0].id],
        party_code="NGA",
        now=clock(),
    )
    services.approve(db, registration, officer[0], clock())
    db.commit()

    response = check_in(client, plenary, "online.only@example.org", channel="in_person")

    assert response.status_code == 409
    assert "Test Person is not registered for the in-person segment." in response.get_data(as_text=True)
    assert events(db, plenary) == []


def test_the_same_form_sent_twice_records_once(db, opened, officer, swiss):
    _, client = officer
    fields = check_in_fields(page_of(client, opened).get_data(as_text=True))
    data = {**fields, "who": swiss[1], "channel": "online", "reason": "Badge forgotten"}

    first = client.post(f"/sessions/{opened.id}/attendance/check-in", data=data)
    again = client.post(f"/sessions/{opened.id}/attendance/check-in", data=data)

    assert first.status_code == again.status_code == 302
    assert len(events(db, opened)) == 1 and len(audits(db, "attendance.manual_entry")) == 1
    assert "Already recorded: checked in Ana Souza (Switzerland), online" in client.get(
        again.headers["Location"]
    ).get_data(as_text=True)


def test_a_used_form_cannot_check_in_someone_else(db, opened, officer, swiss, make_delegate):
    _, client = officer
    make_delegate("FRA", email="other@example.org")
    fields = check_in_fields(page_of(client, opened).get_data(as_text=True))
    data = {**fields, "channel": "online", "reason": "Badge forgotten"}
    client.post(f"/sessions/{opened.id}/attendance/check-in", data={**data, "who": swiss[1]})

    response = client.post(f"/sessions/{opened.id}/attendance/check-in", data={**data, "who": "other@example.org"})

    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert "This form was already used to record something else" in page
    assert check_in_fields(page)["nonce"] != fields["nonce"]
    assert len(events(db, opened)) == 1


def test_each_rendering_carries_a_new_nonce(opened, officer):
    _, client = officer
    first = check_in_fields(page_of(client, opened).get_data(as_text=True))["nonce"]
    second = check_in_fields(page_of(client, opened).get_data(as_text=True))["nonce"]
    assert services.NONCE_RE.match(first) and first != second


# Who may ------------------------------------------------------------------------------------


def test_delegates_get_403(app, db, opened, make_delegate, swiss, clock):
    delegate, number = swiss
    _, secret = make_delegate("FRA", email="d@example.org")
    client = app.test_client()
    login(client, "d@example.org", "correct horse battery", secret, clock)
    token = csrf_token(client, "/")

    assert page_of(client, opened).status_code == 403
    data = {"csrf_token": token, "nonce": "n" * 32, "who": number, "channel": "online", "reason": "Let me in"}
    assert client.post(f"/sessions/{opened.id}/attendance/check-in", data=data).status_code == 403
    enter(db, opened, delegate, clock)
    response = client.post(f"/sessions/{opened.id}/attendance/{delegate.id}/check-out", data=data)
    assert response.status_code == 403
    assert len(events(db, opened)) == 1


def test_anonymous_visitors_are_sent_to_log_in(client, db, opened, swiss):
    response = page_of(client, opened)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    data = {"csrf_token": csrf_token(client, "/"), "nonce": "n" * 32, "who": swiss[1], "reason": "Let them in"}
    response = client.post(f"/sessions/{opened.id}/attendance/check-in", data={**data, "channel": "online"})
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert events(db, opened) == []


def test_a_form_without_its_csrf_token_is_refused(db, opened, officer, swiss, clock):
    _, client = officer
    delegate, number = swiss
    fields = check_in_fields(page_of(client, opened).get_data(as_text=True))
    data = {"nonce": fields["nonce"], "who": number, "channel": "online", "reason": "Badge forgotten"}

    response = client.post(f"/sessions/{opened.id}/attendance/check-in", data=data)
    assert response.status_code == 400 and "Form expired" in response.get_data(as_text=True)

    enter(db, opened, delegate, clock)
    response = client.post(f"/sessions/{opened.id}/attendance/{delegate.id}/check-out", data=data)
    assert response.status_code == 400
    assert [e.source for e in events(db, opened)] == [Source.BROWSER]


def test_an_unknown_session_is_404(officer):
    _, client = officer
    assert client.get("/sessions/999999/attendance").status_code == 404


# The list and the dashboards ---------------------------------------------------------------


def test_a_watching_dashboard_hears_of_a_manual_check_in(app, db, opened, officer, swiss):
    _, client = officer
    dashboard = socket_client(app, client)
    ack = dashboard.emit("watch_session", {"session_id": opened.id}, namespace="/live", callback=True)
    assert ack["state"]["parties_present"] == 0
    dashboard.get_received("/live")

    assert check_in(client, opened, swiss[1]).status_code == 302

    updates = [p["args"][0] for p in dashboard.get_received("/live") if p["name"] == "quorum_updated"]
    assert updates and updates[-1]["parties_present"] == 1 and updates[-1]["present"] == {"CHE": "online"}


def test_the_list_is_paged_and_searched_in_a_bounded_number_of_queries(app, db, opened, officer, make_delegate, clock):
    _, client = officer
    delegates = []
    for n in range(60):
        user, _ = make_delegate("CHE" if n % 2 else "FRA")
        user.family_name = f"Member{n:02d}"
        delegates.append(user)
    db.commit()
    engine = app.extensions["db_engine"]
    statements: list[str] = []

    def count(*args):
        statements.append(args[2])

    def queries_for_the_page() -> int:
        statements.clear()
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert page_of(client, opened).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    for user in delegates[:3]:
        enter(db, opened, user, clock)
    with_three = queries_for_the_page()
    for user in delegates[3:]:
        enter(db, opened, user, clock)
    with_sixty = queries_for_the_page()
    assert with_sixty == with_three, (with_three, with_sixty)

    first = page_of(client, opened).get_data(as_text=True)
    assert "Showing 1–50 of 60" in first and "Member00" in first and "Member49" in first
    assert "Member50" not in first and "page=2" in first
    second = page_of(client, opened, page=2).get_data(as_text=True)
    assert "Showing 51–60 of 60" in second and "Member59" in second and "Member00" not in second
    found = page_of(client, opened, q="member07").get_data(as_text=True)
    assert "Showing 1–1 of 1 matching “member07”" in found and "Member07" in found and "Member08" not in found
    badge = registration_of(db, delegates[12]).badges[0].number
    assert "Member12" in page_of(client, opened, q=badge).get_data(as_text=True)

    # A check-out from page 2 comes back to page 2.
    html = second
    nonce = check_out_nonce(html, delegates[55].id)
    response = client.post(
        f"/sessions/{opened.id}/attendance/{delegates[55].id}/check-out?page=2",
        data={"csrf_token": csrf_token(client, "/"), "nonce": nonce, "channel": "online", "reason": "Left early"},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("page=2")
    assert delegates[55].id not in services.present_users(db, opened)
