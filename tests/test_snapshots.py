"""Quorum snapshots: officers record the quorum at a named moment from the dashboard and export the records."""

import csv
import datetime as dt
import io

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login

import meetings.snapshot_views  # noqa: F401  (adds the snapshot routes to the blueprint before the app is built)
from auth.models import AuditEntry, Role
from meetings import dashboard, presence, services, snapshots
from meetings.models import Channel, Credentials, CredentialsStatus, EventKind, Party, QuorumSnapshot, Source

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
    services.change_state(db, online_session, "open", officer[0], clock())
    db.commit()
    return online_session


def move(db, meeting_session, user, clock, kind):
    """A delegate enters or leaves the online session, as their session page does."""
    clock.advance(5)
    services.record_attendance(
        db,
        meeting_session,
        user,
        kind=kind,
        channel=Channel.ONLINE,
        source=Source.BROWSER,
        nonce=f"nonce-{user.id}-{kind.value}-{clock().timestamp():.0f}",
        now=clock(),
    )
    db.commit()


@pytest.fixture
def two_present(db, cop4, opened, make_delegate, clock):
    """Delegates of Switzerland and France checked in; Switzerland's credentials accepted."""
    che, _ = make_delegate("CHE")
    fra, _ = make_delegate("FRA")
    accepted = db.scalar(
        sa.select(Credentials).join(Party).where(Credentials.meeting_id == cop4.id, Party.code == "CHE")
    )
    accepted.status = CredentialsStatus.ACCEPTED
    db.commit()
    for delegate in (che, fra):
        move(db, opened, delegate, clock, EventKind.ENTRY)
    return che, fra


def record(client, meeting_session, label):
    dashboard = f"/sessions/{meeting_session.id}/dashboard"
    token = csrf_token(client, dashboard)
    return client.post(f"/sessions/{meeting_session.id}/snapshots", data={"label": label, "csrf_token": token})


def stored(db) -> list[QuorumSnapshot]:
    db.expire_all()
    return list(db.scalars(sa.select(QuorumSnapshot).order_by(QuorumSnapshot.id)))


def test_a_snapshot_keeps_the_quorum_of_its_moment(db, opened, officer, two_present, clock):
    user, client = officer
    at_the_moment = services.session_quorum(db, opened)
    clock.advance(60)
    for delegate in two_present:  # their pages' heartbeats
        services.online_seen(db, opened.id, delegate.id, clock())
    db.commit()

    response = record(client, opened, "Adoption of decision MC-4/1")

    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/sessions/{opened.id}/dashboard#snapshots")
    [snapshot] = stored(db)
    assert snapshot.label == "Adoption of decision MC-4/1"
    assert snapshot.taken_at == clock()
    assert snapshot.recorded_by_id == user.id
    assert snapshot.present_party_codes == ["CHE", "FRA"] == list(at_the_moment.present_codes)
    assert (snapshot.parties_in_force, snapshot.parties_present) == (at_the_moment.in_force, 2)
    assert (snapshot.needed_to_open, snapshot.needed_to_decide) == (
        at_the_moment.needed_to_open,
        at_the_moment.needed_to_decide,
    )
    assert snapshot.credentials_accepted == 1
    audit = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "quorum.snapshot"))
    assert audit.actor_id == user.id and audit.detail["label"] == "Adoption of decision MC-4/1"

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert (
        f"Recorded “Adoption of decision MC-4/1”: 2 of {at_the_moment.in_force} Parties present; "
        f"{at_the_moment.needed_to_open} needed to open (not reached)" in page
    )
    assert "1 with accepted credentials" in page
    assert "Adoption of decision MC-4/1" in page.split('id="snapshots"')[1]

    for delegate in two_present:
        move(db, opened, delegate, clock, EventKind.EXIT)
    assert services.session_quorum(db, opened).present == 0
    [unchanged] = stored(db)
    assert unchanged.parties_present == 2 and unchanged.present_party_codes == ["CHE", "FRA"]


def test_the_dashboard_lists_snapshots_newest_first(db, opened, officer, two_present, clock):
    _, client = officer
    record(client, opened, "Opening of the session")
    clock.advance(600)
    record(client, opened, "Adoption of the agenda")

    assert [s.label for s in snapshots.snapshots_of(db, opened)] == ["Adoption of the agenda", "Opening of the session"]
    page = client.get(f"/sessions/{opened.id}/dashboard").get_data(as_text=True)
    records = page.split('id="snapshots"')[1]
    assert records.index("Adoption of the agenda") < records.index("Opening of the session")
    assert f"/sessions/{opened.id}/snapshots.csv" in records


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("", "Name the moment"),
        ("   ", "Name the moment"),
        ("<script>alert(1)</script>", "no &lt; or &gt;"),
        ("x" * 201, "200 characters"),
    ],
)
def test_a_label_is_required_and_plain(db, opened, officer, label, message):
    _, client = officer
    response = record(client, opened, label)

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert "<script>alert(1)</script>" not in page
    assert 'id="record-snapshot"' in page
    assert stored(db) == []


def test_a_session_not_yet_opened_has_no_quorum_to_record(db, online_session, officer):
    _, client = officer
    response = record(client, online_session, "Too early")

    assert response.status_code == 400
    assert "has not been opened yet" in response.get_data(as_text=True)
    assert stored(db) == []


def test_the_csv_lists_snapshots_with_formula_cells_neutralised(db, opened, officer, two_present, clock):
    _, client = officer
    record(client, opened, '=HYPERLINK("http://example.com","Adoption")')

    response = client.get(f"/sessions/{opened.id}/snapshots.csv")

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "quorum-records.csv" in response.headers["Content-Disposition"]
    [row] = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    q = services.session_quorum(db, opened)
    assert row["label"] == '\'=HYPERLINK("http://example.com","Adoption")'
    assert row["taken_at_utc"] == clock().isoformat(timespec="seconds")
    assert row["taken_at_local"] == clock().astimezone(opened.tz).isoformat(timespec="seconds")
    assert (row["parties_in_force"], row["parties_present"]) == (str(q.in_force), "2")
    assert (row["needed_to_open"], row["needed_to_decide"]) == (str(q.needed_to_open), str(q.needed_to_decide))
    assert (row["open_quorum_met"], row["decision_quorum_met"]) == ("no", "no")
    assert row["credentials_accepted"] == "1"
    assert row["present_parties"] == "CHE FRA"
    assert row["recorded_by"] == "Test Person"


def test_a_record_keeps_the_parties_counted_through_pages_in_their_grace_period(
    app, db, opened, officer, two_present, clock
):
    """A record counts what the dashboard counts, and lists apart what the statistics may later date back."""
    _, client = officer
    che, fra = two_present
    grace = dt.timedelta(seconds=app.config["PRESENCE_GRACE_SECONDS"])
    closed_at = clock()
    # Switzerland's only page closes; France's keeps beating.
    services.online_disconnected(
        db, [opened.id], che, now=clock(), lapsed_before=clock() - grace, seen_at=clock(), last_page=[opened.id]
    )
    db.commit()
    clock.advance(10)
    services.online_seen(db, opened.id, fra.id, clock())
    db.commit()
    assert dashboard.state(db, opened, clock())["in_grace"] == ["CHE"]

    record(client, opened, "Adoption of decision MC-4/2")

    [snapshot] = stored(db)
    assert (snapshot.parties_present, snapshot.present_party_codes) == (2, ["CHE", "FRA"])
    assert snapshot.grace_party_codes == ["CHE"]
    records = client.get(f"/sessions/{opened.id}/dashboard").get_data(as_text=True).split('id="snapshots"')[1]
    assert "1: CHE" in records
    [row] = list(csv.DictReader(io.StringIO(client.get(f"/sessions/{opened.id}/snapshots.csv").get_data(as_text=True))))
    assert (row["present_parties"], row["parties_in_grace"], row["grace_parties"]) == ("CHE FRA", "1", "CHE")

    # No page of Switzerland's came back: its presence ends at the last contact, before the record,
    # and the log (what the statistics count) has one Party at the record's instant: 2 less the 1 listed.
    clock.advance(grace.total_seconds() + 1)
    services.online_seen(db, opened.id, fra.id, clock())
    services.end_lapsed_presences(db, clock() - grace)
    db.commit()
    spans = [(s.party, s.start, s.end) for s in presence.stretches(services.log_events(db, opened.id))]
    assert (
        presence.count_at(spans, snapshot.taken_at) == 1 == snapshot.parties_present - len(snapshot.grace_party_codes)
    )
    assert [s.end for s in presence.stretches(services.log_events(db, opened.id)) if s.participant == che.id] == [
        closed_at
    ]


def test_a_page_that_went_quiet_puts_its_party_in_the_grace_period(db, opened, two_present, clock):
    """A frozen page is not noticed by the transport for up to 45 s: a heartbeat and a half missed says it."""
    che, fra = two_present
    clock.advance(20)
    services.online_seen(db, opened.id, fra.id, clock())
    db.commit()
    assert dashboard.state(db, opened, clock())["in_grace"] == []
    clock.advance(15)  # Switzerland last heard from 35 s ago
    services.online_seen(db, opened.id, fra.id, clock())
    db.commit()
    state = dashboard.state(db, opened, clock())
    assert state["in_grace"] == ["CHE"] and state["parties_present"] == 2
    services.online_seen(db, opened.id, che.id, clock())  # its page is heard from again
    db.commit()
    assert dashboard.state(db, opened, clock())["in_grace"] == []


def test_delegates_may_neither_record_nor_export(app, db, opened, make_delegate, clock):
    _, secret = make_delegate("CHE", email="d@example.org")
    client = app.test_client()
    login(client, "d@example.org", "correct horse battery", secret, clock)
    token = csrf_token(client, "/")

    response = client.post(f"/sessions/{opened.id}/snapshots", data={"label": "Mine", "csrf_token": token})
    assert response.status_code == 403
    assert client.get(f"/sessions/{opened.id}/snapshots.csv").status_code == 403
    assert stored(db) == []


def test_anonymous_visitors_are_sent_to_log_in(client, db, opened):
    token = csrf_token(client, "/")

    response = client.post(f"/sessions/{opened.id}/snapshots", data={"label": "Anyone", "csrf_token": token})
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    response = client.get(f"/sessions/{opened.id}/snapshots.csv")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert stored(db) == []


def test_the_service_refuses_markup_in_labels(db, opened, officer, clock):
    with pytest.raises(services.MeetingError) as refused:
        snapshots.record(db, opened, "Decision <b>1</b>", officer[0], clock())
    assert refused.value.code == "label_markup"
