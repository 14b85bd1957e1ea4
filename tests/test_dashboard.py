"""The officers' quorum dashboard: the timeline folded from the log, the page, and what its socket receives."""

import datetime as dt
import html
import json
import re

import pytest
import sqlalchemy as sa
from conftest import csrf_token, login, socket_client

from auth.models import Role
from meetings import dashboard, delegations, services
from meetings.models import (
    AttendanceEvent,
    Channel,
    CredentialsStatus,
    EventKind,
    Party,
    RegionalGroup,
    Registration,
    RegistrationStatus,
    SegmentKind,
    Source,
)
from meetings.quorum import in_force_on
from meetings.timeline import Event, parties_present

T0 = dt.datetime(2021, 11, 1, 12, 0, tzinfo=dt.UTC)


def t(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def ev(seq, who, party, kind, minutes, channel="online"):
    return Event(participant=who, party=party, kind=kind, channel=channel, at=t(minutes), seq=seq)


# The fold, with plain values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], [(0, 0), (30, 0)], id="nobody came"),
        pytest.param(
            [ev(1, "ana", "CHE", "entry", 5), ev(2, "ana", "CHE", "exit", 20)],
            [(0, 0), (5, 1), (20, 0), (30, 0)],
            id="one delegate in and out",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "ben", "CHE", "entry", 10),
                ev(3, "ana", "CHE", "exit", 15),
                ev(4, "ben", "CHE", "exit", 25),
            ],
            [(0, 0), (5, 1), (25, 0), (30, 0)],
            id="a Party with two delegates stays present while either is inside",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5, "online"),
                ev(2, "ana", "CHE", "entry", 10, "in_person"),
                ev(3, "ana", "CHE", "exit", 20, "online"),
                ev(4, "ana", "CHE", "exit", 25, "in_person"),
            ],
            [(0, 0), (5, 1), (25, 0), (30, 0)],
            id="hybrid: present through either channel, counted once",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "ana", "CHE", "exit", 10),
                ev(3, "ana", "CHE", "entry", 15),
            ],
            [(0, 0), (5, 1), (10, 0), (15, 1), (30, 1)],
            id="re-entry",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "kofi", "GHA", "entry", 10, "in_person"),
                ev(3, "ana", "CHE", "exit", 20),
                ev(4, "kofi", "GHA", "exit", 30, "in_person"),
            ],
            [(0, 0), (5, 1), (10, 2), (20, 1), (30, 0)],
            id="overlapping Parties; a change at the end makes the last point",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "ana", "CHE", "entry", 8),
                ev(3, "ana", "CHE", "exit", 10),
                ev(4, "ana", "CHE", "exit", 12),
            ],
            [(0, 0), (5, 1), (10, 0), (30, 0)],
            id="a second entry while inside and an exit while outside change nothing",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "ana", "CHE", "exit", 10),
                ev(3, "ben", "CHE", "entry", 10, "in_person"),
                ev(4, "ben", "CHE", "exit", 20, "in_person"),
            ],
            [(0, 0), (5, 1), (20, 0), (30, 0)],
            id="a hand-over at the same instant leaves no dip",
        ),
        pytest.param(
            [
                ev(1, "ana", "CHE", "entry", 5),
                ev(2, "kofi", "GHA", "entry", 15),
                # Logged last, dated back: ana's connection lapsed and was last seen at minute 8.
                ev(3, "ana", "CHE", "exit", 8),
            ],
            [(0, 0), (5, 1), (8, 0), (15, 1), (30, 1)],
            id="an exit logged late but dated back is folded at its time",
        ),
        pytest.param(
            [ev(1, "obs", None, "entry", 5), ev(2, "ana", "CHE", "entry", 10)],
            [(0, 0), (10, 1), (30, 1)],
            id="observers do not count",
        ),
        pytest.param(
            [ev(1, "ana", "CHE", "entry", -5), ev(2, "kofi", "GHA", "entry", 0), ev(3, "ana", "CHE", "exit", 40)],
            [(0, 2), (30, 2)],
            id="events up to the start make the first point; events after the end are left out",
        ),
    ],
)
def test_parties_present_over_time(events, expected):
    assert parties_present(events, t(0), t(30)) == [(t(minutes), count) for minutes, count in expected]


def test_the_fold_follows_the_log_not_the_order_it_is_given_in():
    events = [
        ev(1, "ana", "CHE", "entry", 5),
        ev(2, "ben", "FRA", "entry", 5),
        ev(3, "ana", "CHE", "exit", 12),
        ev(4, "ana", "CHE", "entry", 12),
        ev(5, "ben", "FRA", "exit", 18),
    ]
    expected = [(t(0), 0), (t(5), 2), (t(18), 1), (t(30), 1)]
    assert parties_present(events, t(0), t(30)) == expected
    assert parties_present(list(reversed(events)), t(0), t(30)) == expected
    # At the same instant the log's order decides: here the entry was written first (ana was still
    # inside, so it changes nothing) and the exit after it, so ana has left at minute 12.
    swapped = [ev(4, "ana", "CHE", "exit", 12), ev(3, "ana", "CHE", "entry", 12)]
    assert parties_present([*events[:2], *swapped, events[4]], t(0), t(30)) == [
        (t(0), 0),
        (t(5), 2),
        (t(12), 1),
        (t(18), 0),
        (t(30), 0),
    ]


# Through the services, the page and the socket -------------------------------------------------


@pytest.fixture
def officer(make_user):
    return make_user(Role.OFFICER, email="chair@example.org", password="officer password")


@pytest.fixture
def officer_client(app, officer, clock):
    client = app.test_client()
    login(client, "chair@example.org", "officer password", officer[1], clock)
    return client


def move(db, meeting_session, user, clock, kind=EventKind.ENTRY, channel=Channel.ONLINE, source=Source.BROWSER):
    result = services.record_attendance(
        db,
        meeting_session,
        user,
        kind=kind,
        channel=channel,
        source=source,
        nonce=f"n-{user.id}-{kind.value}-{channel.value}-{clock().timestamp():.0f}",
        now=clock(),
    )
    db.commit()
    assert result.recorded
    return result


def opened(db, meeting_session, officer, clock):
    services.change_state(db, meeting_session, "open", officer[0], clock())
    db.commit()
    return clock()


def watch(app, officer_client, meeting_session):
    sio = socket_client(app, officer_client)
    ack = sio.emit("watch_session", {"session_id": meeting_session.id}, namespace="/live", callback=True)
    assert ack["ok"], ack
    assert ack["resync_seconds"] == app.config["DASHBOARD_RESYNC_SECONDS"]  # a few dashboards: the usual pace
    return sio, ack["state"]


def in_force_codes(db, meeting_session, group=...):
    query = sa.select(Party.code, Party.entry_into_force_on).where(
        Party.convention == meeting_session.segment.meeting.convention
    )
    if group is not ...:
        query = query.where(Party.regional_group.is_(None) if group is None else Party.regional_group == group)
    return in_force_on(db.execute(query).all(), meeting_session.local_date)


def iso(points):
    return [[at.isoformat(), count] for at, count in points]


def test_a_dashboard_opened_late_gets_every_party_in_force_and_the_timeline_so_far(
    app, db, officer, officer_client, online_session, make_delegate, clock
):
    ana, _ = make_delegate("CHE")
    ben, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    first = clock()
    clock.advance(300)
    move(db, online_session, ben, clock)  # Switzerland was already present
    clock.advance(300)
    move(db, online_session, kofi, clock)
    both = clock()
    clock.advance(300)
    move(db, online_session, ana, clock, EventKind.EXIT)  # ben still represents Switzerland
    clock.advance(300)
    move(db, online_session, kofi, clock, EventKind.EXIT)
    ghana_left = clock()
    clock.advance(120)

    _, state = watch(app, officer_client, online_session)

    assert state["parties_present"] == 1 and state["present"] == {"CHE": "online"}
    assert state["timeline"] == iso([(start, 0), (first, 1), (both, 2), (ghana_left, 1), (clock(), 1)])
    codes = [party["code"] for party in state["parties"]]
    assert set(codes) == in_force_codes(db, online_session) and len(codes) == state["parties_in_force"]
    # Belgium joined on 24 November 2021, after this session: not listed, not counted.
    assert "BEL" not in codes
    names = [party["name"] for party in state["parties"]]
    assert names == sorted(names, key=str.casefold)
    swiss = next(party for party in state["parties"] if party["code"] == "CHE")
    assert swiss == {"code": "CHE", "name": "Switzerland", "regional_group": "WEOG", "credentials": "none"}
    eu = next(party for party in state["parties"] if party["code"] == "EUR")
    assert eu["regional_group"] is None and eu["credentials"] is None


def test_a_lapsed_connection_ends_on_the_timeline_when_it_was_last_seen(
    app, db, officer, officer_client, online_session, make_delegate, clock
):
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    last_seen = clock.advance(60)
    services.online_seen(db, online_session.id, ana.id, last_seen)
    db.commit()
    clock.advance(30)
    move(db, online_session, kofi, clock)
    kofi_in = clock()
    # Ana's page went silent; the sweep ends her presence later, dated back to when she was last seen.
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"] + 10)
    services.online_seen(db, online_session.id, kofi.id, clock())  # Kofi's page is still connected
    services.end_lapsed_presences(db, clock() - dt.timedelta(seconds=app.config["PRESENCE_GRACE_SECONDS"]))
    db.commit()
    log = db.scalars(sa.select(AttendanceEvent).order_by(AttendanceEvent.id)).all()
    assert log[-1].kind == EventKind.EXIT and log[-1].at == last_seen < log[-2].at

    state = dashboard.initial(db, online_session, clock())

    # Never two Parties at once: Ana had gone before Kofi came, although her exit was written after.
    assert state["timeline"] == iso([(start, 0), (ana_in, 1), (last_seen, 0), (kofi_in, 1), (clock(), 1)])


def test_hybrid_presence_counts_a_party_once_and_shows_both_channels(
    app, db, officer, officer_client, online_session, make_delegate, clock
):
    online_session.segment.kind = SegmentKind.HYBRID
    db.commit()
    ana, _ = make_delegate("CHE")
    ben, _ = make_delegate("CHE")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    clock.advance(60)
    move(db, online_session, ana, clock, channel=Channel.IN_PERSON, source=Source.KIOSK)
    clock.advance(60)
    move(db, online_session, ben, clock, channel=Channel.IN_PERSON, source=Source.KIOSK)
    clock.advance(60)
    move(db, online_session, ana, clock, EventKind.EXIT)

    _, state = watch(app, officer_client, online_session)

    assert state["parties_present"] == 1 and state["present"] == {"CHE": "in_person"}
    assert state["participants_by_channel"] == {"online": 0, "in_person": 2, "both": 0}
    assert state["timeline"] == iso([(start, 0), (ana_in, 1), (clock(), 1)])

    move(db, online_session, ben, clock)  # ben now follows from his laptop as well
    state = dashboard.initial(db, online_session, clock())
    assert state["present"] == {"CHE": "both"}
    assert state["participants_by_channel"] == {"online": 0, "in_person": 1, "both": 1}


def test_in_person_gate_entries_make_the_timeline(db, cop4, officer, make_delegate, clock):
    plenary = cop4.segments[1].sessions[0]
    ana, _ = make_delegate("CHE")
    start = opened(db, plenary, officer, clock)
    clock.advance(90)
    move(db, plenary, ana, clock, channel=Channel.IN_PERSON, source=Source.KIOSK)
    ana_in = clock()
    clock.advance(90)
    move(db, plenary, ana, clock, EventKind.EXIT, channel=Channel.IN_PERSON, source=Source.KIOSK)
    ana_out = clock()

    state = dashboard.initial(db, plenary, clock.advance(30))

    assert state["timeline"] == iso([(start, 0), (ana_in, 1), (ana_out, 0), (clock(), 0)])
    # Australia is in force for the in-person segment (7 March 2022), not for the online one.
    assert "AUS" in {party["code"] for party in state["parties"]}


def test_a_closed_session_timeline_ends_at_its_close(db, online_session, officer, make_delegate, clock):
    ana, _ = make_delegate("CHE")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    clock.advance(600)
    services.change_state(db, online_session, "close", officer[0], clock())
    db.commit()
    closed = clock()

    state = dashboard.initial(db, online_session, clock.advance(3600))

    assert state["timeline"] == iso([(start, 0), (ana_in, 1), (closed, 0)])


def test_a_session_not_opened_has_no_timeline(db, online_session, clock):
    assert dashboard.initial(db, online_session, clock())["timeline"] == []


def test_live_updates_carry_the_compact_state_only(app, officer_client, online_session, make_delegate, clock):
    _, secret = make_delegate("CHE", email="d@example.org", password="delegate password")
    officer_client.post(f"/sessions/{online_session.id}/open", data={"csrf_token": csrf_token(officer_client)})
    sio, _ = watch(app, officer_client, online_session)
    delegate = app.test_client()
    login(delegate, "d@example.org", "delegate password", secret, clock)
    browser = socket_client(app, delegate)
    ack = browser.emit(
        "check_in", {"session_id": online_session.id, "nonce": "x" * 20}, namespace="/live", callback=True
    )
    assert ack["ok"]

    update = [p["args"][0] for p in sio.get_received("/live") if p["name"] == "quorum_updated"][-1]
    assert update["parties_present"] == 1 and update["present"] == {"CHE": "online"}
    assert "parties" not in update and "timeline" not in update
    assert "Switzerland" not in json.dumps(update)


# The page ----------------------------------------------------------------------------------------


def group_section(page: str, label: str) -> str:
    match = re.search(rf'<section class="group"[^>]*aria-label="{re.escape(label)}">(.*?)</section>', page, re.S)
    assert match, f"no group {label}"
    return match.group(1)


def party_row(page: str, code: str) -> tuple[str, str]:
    """A Party's status class and the text of its row."""
    match = re.search(rf'<li class="st-(\w+)" data-code="{code}">(.*?)</li>', page, re.S)
    assert match, f"no row for {code}"
    return match.group(1), " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


def test_the_page_shows_the_thresholds_and_every_party_by_group(
    app, db, cop4, officer, officer_client, online_session, make_delegate, clock
):
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    delegations.set_credentials(
        db,
        cop4,
        db.scalar(sa.select(Party).where(Party.code == "GHA")),
        CredentialsStatus.ACCEPTED,
        officer[0],
        clock(),
    )
    db.commit()
    opened(db, online_session, officer, clock)
    move(db, online_session, ana, clock)
    move(db, online_session, kofi, clock)

    response = officer_client.get(f"/sessions/{online_session.id}/dashboard")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    state = dashboard.state(db, online_session, clock())

    # Both thresholds as progress bars with their numbers.
    for key, needed in (("open", state["needed_to_open"]), ("decide", state["needed_to_decide"])):
        bar = re.search(rf'<progress id="{key}-progress" max="(\d+)" value="(\d+)"', page)
        assert bar and bar.groups() == (str(needed), "2")
        assert f'<span id="{key}-needed">{needed}</span>' in page
    assert "Not reached: " + str(state["needed_to_open"] - 2) + " more needed" in page

    # Every regional group, with Parties present against Parties in force.
    for group in RegionalGroup:
        in_group = in_force_codes(db, online_session, group)
        present = {"CHE", "GHA"} & in_group
        assert f"<strong>{len(present)}</strong> / {len(in_group)}" in group_section(page, group.value)
    assert "European Union" in group_section(page, "No group")

    # Each Party: how it is present, in words (not colour alone); absent ones too.
    assert party_row(page, "CHE") == ("online", "Switzerland Online")
    assert party_row(page, "GHA") == ("online", "Ghana Online credentials accepted")
    assert party_row(page, "FRA") == ("absent", "France Absent")
    assert 'data-code="BEL"' not in page  # not yet in force on the session's date

    # The chart and the live script start from the same full state.
    data = re.search(r'<script type="application/json" id="dashboard-state">(.*?)</script>', page, re.S)
    boot = json.loads(html.unescape(data.group(1)))
    assert (
        boot["parties_present"] == 2
        and boot["timeline"][-1][1] == 2
        and len(boot["parties"]) == len(in_force_codes(db, online_session))
    )
    assert f"/sessions/{online_session.id}/attendance" in page


def test_the_page_serves_the_chart_library_locally(officer_client, online_session):
    page = officer_client.get(f"/sessions/{online_session.id}/dashboard").get_data(as_text=True)
    assert '<script src="/static/vendor/chartjs/chart.umd.min.js">' in page
    assert "cdn" not in page.lower()
    script = officer_client.get("/static/vendor/chartjs/chart.umd.min.js")
    assert script.status_code == 200 and b"Chart.js v4" in script.data


def test_dashboards_opening_together_share_one_fold_of_the_timeline(
    app, db, online_session, officer, make_delegate, clock, monkeypatch
):
    """A hundred dashboards resyncing at once fold the session's log once; a change of state is a new fold."""
    folds = []
    real = dashboard.timeline_points

    def counting(*args):
        folds.append(1)
        return real(*args)

    monkeypatch.setattr(dashboard, "timeline_points", counting)
    monkeypatch.setitem(app.config, "DASHBOARD_TIMELINE_SECONDS", 60)
    ana, _ = make_delegate("CHE")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    with app.app_context():
        timelines = [dashboard.initial(db, online_session, clock())["timeline"] for _ in range(100)]
        assert len(folds) == 1
        assert all(points == iso([(start, 0), (ana_in, 1)]) for points in timelines)

        clock.advance(600)
        services.change_state(db, online_session, "close", officer[0], clock())
        db.commit()
        closed = clock()
        # Closed a moment later: its timeline ends at the close at once, not a minute later.
        assert dashboard.initial(db, online_session, clock())["timeline"] == iso([(start, 0), (ana_in, 1), (closed, 0)])
        assert len(folds) == 2


def test_the_timeline_kept_between_dashboards_follows_the_log_as_a_fold_of_the_whole_log_would(
    app, db, officer, online_session, make_delegate, clock, monkeypatch
):
    """Each dashboard reads only what was logged since the last; late exits and withdrawals are folded right."""
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    lena, _ = make_delegate("DEU")
    start = opened(db, online_session, officer, clock)

    def timeline():
        kept = dashboard.initial(db, online_session, clock())["timeline"]
        monkeypatch.setattr(dashboard, "_running", dashboard._RunningTimelines())  # forget the fold
        whole = dashboard.initial(db, online_session, clock())["timeline"]
        monkeypatch.undo()
        assert kept == whole
        return kept

    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    assert timeline() == iso([(start, 0), (ana_in, 1)])
    last_seen = clock.advance(30)
    services.online_seen(db, online_session.id, ana.id, last_seen)
    db.commit()
    clock.advance(30)
    move(db, online_session, kofi, clock)
    kofi_in = clock()
    clock.advance(10)
    move(db, online_session, lena, clock)
    lena_in = clock()
    assert timeline() == iso([(start, 0), (ana_in, 1), (kofi_in, 2), (lena_in, 3)])

    # Ana's lapse, logged now, dated back to when she was last seen: before Kofi and Lena came.
    clock.advance(app.config["PRESENCE_GRACE_SECONDS"])
    for user in (kofi, lena):
        services.online_seen(db, online_session.id, user.id, clock())
    services.end_lapsed_presences(db, clock() - dt.timedelta(seconds=app.config["PRESENCE_GRACE_SECONDS"]))
    db.commit()
    assert timeline() == iso([(start, 0), (ana_in, 1), (last_seen, 0), (kofi_in, 1), (lena_in, 2), (clock(), 2)])

    # Kofi's registration no longer approved (withdrawn): he no longer counts, back to his arrival.
    registration = db.scalar(sa.select(Registration).where(Registration.user_id == kofi.id))
    registration.status = RegistrationStatus.WITHDRAWN
    db.commit()
    assert timeline() == iso([(start, 0), (ana_in, 1), (last_seen, 0), (lena_in, 1), (clock(), 1)])


def test_a_check_in_committed_while_a_dashboard_reads_the_log_waits_for_the_next_read_without_a_whole_fold(
    app, db, officer, online_session, make_delegate, clock, monkeypatch
):
    """Check-ins commit all the time: one landing between the read of new events and their count is no reason
    to fold the whole log again (on a long session, seconds of a process's time)."""
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    start = opened(db, online_session, officer, clock)
    clock.advance(60)
    move(db, online_session, ana, clock)
    ana_in = clock()
    assert dashboard.initial(db, online_session, clock())["timeline"] == iso([(start, 0), (ana_in, 1)])
    folds_again = []
    start_over = dashboard._Kept.start_over
    monkeypatch.setattr(
        dashboard._Kept, "start_over", lambda kept, key: (folds_again.append(key), start_over(kept, key))
    )
    clock.advance(60)
    kofi_in = clock()

    def kofi_checks_in_meanwhile(conn, cursor, statement, *args):
        if "attendance_events.id >" in statement and not folds_again and not meanwhile:
            meanwhile.append(1)
            elsewhere = app.extensions["db_sessionmaker"]()
            move(
                elsewhere,
                elsewhere.get(type(online_session), online_session.id),
                elsewhere.get(type(kofi), kofi.id),
                clock,
            )
            elsewhere.close()

    meanwhile = []
    engine = db.get_bind().engine
    sa.event.listen(engine, "after_cursor_execute", kofi_checks_in_meanwhile)
    try:
        first = dashboard.initial(db, online_session, clock())["timeline"]
    finally:
        sa.event.remove(engine, "after_cursor_execute", kofi_checks_in_meanwhile)

    assert meanwhile and first == iso([(start, 0), (ana_in, 1), (clock(), 1)])
    assert dashboard.initial(db, online_session, clock())["timeline"] == iso([(start, 0), (ana_in, 1), (kofi_in, 2)])
    assert folds_again == []


def test_a_long_log_is_read_by_chunks_with_the_other_sockets_served_between_them(
    app, db, officer, online_session, make_delegate, clock, monkeypatch
):
    """A resync after a few busy seconds, or the first dashboard after a restart, reads thousands of events: a
    chunk at a time, giving the process's other sockets their turn between chunks, for the timeline one read
    of the whole log gives."""
    monkeypatch.setattr(dashboard, "FOLD_CHUNK", 2)
    turns = []
    monkeypatch.setattr(dashboard, "_give_way", lambda: turns.append(1))
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    lena, _ = make_delegate("DEU")
    start = opened(db, online_session, officer, clock)
    times = []
    for user in (ana, kofi, lena):
        clock.advance(10)
        move(db, online_session, user, clock)
        times.append(clock())

    # The whole log, as after a restart: two chunks, one turn between them.
    first = dashboard.initial(db, online_session, clock())["timeline"]
    assert first == iso([(start, 0), (times[0], 1), (times[1], 2), (times[2], 3)])
    assert len(turns) == 1

    for user, kind in ((ana, EventKind.EXIT), (kofi, EventKind.EXIT), (ana, EventKind.ENTRY), (lena, EventKind.EXIT)):
        clock.advance(10)
        move(db, online_session, user, clock, kind=kind)
        times.append(clock())
    # What was logged since: two full chunks, a turn after each, and the empty read that ends it.
    turns.clear()
    kept = dashboard.initial(db, online_session, clock())["timeline"]
    assert len(turns) == 2
    counts = [1, 2, 3, 2, 1, 2, 1]
    assert kept == iso([(start, 0), *zip(times, counts, strict=True)])
    monkeypatch.setattr(dashboard, "_running", dashboard._RunningTimelines())  # forget the fold
    assert dashboard.initial(db, online_session, clock())["timeline"] == kept


def test_each_broadcast_folds_what_was_logged_so_that_a_resync_reads_little(
    app, db, officer, online_session, make_delegate, clock, monkeypatch
):
    """At thousands of check-ins a second, a resync folding the last few seconds at once stalls the process."""
    ana, _ = make_delegate("CHE")
    kofi, _ = make_delegate("GHA")
    start = opened(db, online_session, officer, clock)
    clock.advance(10)
    move(db, online_session, ana, clock)
    ana_in = clock()
    assert dashboard.initial(db, online_session, clock())["timeline"] == iso([(start, 0), (ana_in, 1)])

    clock.advance(10)
    kofi_in = clock()
    move(db, online_session, kofi, clock)
    with app.app_context():
        app.extensions["live"].send(online_session.id)  # a broadcast, as after the commit

    # The resync after it finds nothing new to read, and the timeline is whole.
    monkeypatch.setattr(dashboard, "FOLD_CHUNK", 1)
    read = []
    real_events = dashboard._events
    monkeypatch.setattr(dashboard, "_events", lambda rows, counted: read.extend(rows) or real_events(rows, counted))
    assert dashboard.initial(db, online_session, clock())["timeline"] == iso([(start, 0), (ana_in, 1), (kofi_in, 2)])
    assert read == []


def test_a_broadcast_of_a_session_whose_timeline_nobody_keeps_folds_nothing(app, db, officer, online_session, clock):
    opened(db, online_session, officer, clock)
    with app.app_context():
        app.extensions["live"].send(online_session.id)
    engine = app.extensions["db_engine"]
    assert online_session.id not in dashboard._running._by_engine.get(engine, {})
