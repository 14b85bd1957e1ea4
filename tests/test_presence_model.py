"""Presence and quorum against a plain reference model, over random check-ins, lapses, scans, restarts and closes."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from auth.models import Role
from meetings import services
from meetings.models import (
    AttendanceEvent,
    Category,
    Channel,
    EventKind,
    Function,
    Presence,
    SegmentKind,
    SessionState,
    Source,
)

# Who takes part, and the Party each one represents: two delegates of the same Party, two of
# others, and an observer, who is never counted in the quorum.
PARTIES = {"che_1": "CHE", "che_2": "CHE", "fra": "FRA", "nga": "NGA", "ngo": None}
PEOPLE = st.sampled_from(sorted(PARTIES))
ONLINE, IN_PERSON = Channel.ONLINE.value, Channel.IN_PERSON.value
ENTRY, EXIT = EventKind.ENTRY.value, EventKind.EXIT.value

MODEL_SETTINGS = settings(
    max_examples=250,
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# The reference model -------------------------------------------------------------------------


@dataclass
class Person:
    """One participant as the model sees them."""

    online: bool = False
    last_seen: dt.datetime | None = None
    in_person: bool = False


class Model:
    """Presence as plain Python: who is inside online (and when last seen), who in person, and the record.

    A presence not seen for the grace period is over at once, at the moment it was last seen:
    the model has no sweeper. Each method returns what the service should answer, None for an
    entry refused because the session is closed.
    """

    def __init__(self, now: dt.datetime, grace: dt.timedelta) -> None:
        self.now = now
        self.grace = grace
        self.people = {name: Person() for name in PARTIES}
        self.open = True
        self.logged_nonces: set[str] = set()
        # The attendance record: (name, kind, channel, source, at).
        self.events: list[tuple[str, str, str, str, dt.datetime]] = []

    def log(self, name: str, kind: str, channel: str, source: Source, at: dt.datetime) -> None:
        self.events.append((name, kind, channel, source.value, at))

    def advance(self, now: dt.datetime) -> None:
        self.now = now
        for name, person in self.people.items():
            if person.online and person.last_seen < now - self.grace:
                person.online = False
                self.log(name, EXIT, ONLINE, Source.SYSTEM, person.last_seen)

    def seen(self, name: str) -> None:
        """A page says its person is connected now."""
        person = self.people[name]
        if person.online:
            person.last_seen = self.now

    def check_in(self, name: str, nonce: str) -> bool | None:
        """recorded, or None if refused."""
        person = self.people[name]
        if nonce in self.logged_nonces:
            # The same check-in again: nothing new, though it still says the page is connected.
            self.seen(name)
            return False
        if not self.open:
            return None
        recorded = not person.online
        if recorded:
            person.online = True
            self.logged_nonces.add(nonce)
            self.log(name, ENTRY, ONLINE, Source.BROWSER, self.now)
        person.last_seen = self.now
        return recorded

    def heartbeat(self, name: str) -> bool:
        """Whether the person is (still) present online."""
        self.seen(name)
        return self.people[name].online

    def check_out(self, name: str) -> bool:
        """recorded; the person leaves from every page."""
        person = self.people[name]
        recorded = person.online
        if recorded:
            person.online = False
            self.log(name, EXIT, ONLINE, Source.BROWSER, self.now)
        return recorded

    def scan(self, name: str, kind: str) -> bool | None:
        """recorded, or None if an entry is refused."""
        person = self.people[name]
        if kind == ENTRY and not self.open:
            return None
        if person.in_person == (kind == ENTRY):
            return False
        person.in_person = kind == ENTRY
        self.log(name, kind, IN_PERSON, Source.KIOSK, self.now)
        return True

    def close(self) -> None:
        """Everyone still inside leaves at the closing time; nobody enters again."""
        for name, person in self.people.items():
            for channel, inside in ((ONLINE, person.online), (IN_PERSON, person.in_person)):
                if inside:
                    self.log(name, EXIT, channel, Source.SYSTEM, self.now)
            person.online = person.in_person = False
        self.open = False

    def presence(self) -> dict[str, frozenset[str]]:
        presence = {}
        for name, person in self.people.items():
            channels = {ONLINE} if person.online else set()
            channels |= {IN_PERSON} if person.in_person else set()
            if channels:
                presence[name] = frozenset(channels)
        return presence


def parties(presence: Iterable[str]) -> tuple[str, ...]:
    """The Parties present: those of the delegates present, once each; observers count for none."""
    return tuple(sorted({PARTIES[name] for name in presence if PARTIES[name]}))


@dataclass(frozen=True)
class Tab:
    """A page of one person, numbered so that two pages of the same person are two tabs."""

    name: str
    number: int


# The test ------------------------------------------------------------------------------------


def test_presence_and_quorum_follow_the_reference_model(app, db, cop4, clock, make_delegate, make_user):
    officer, _ = make_user(Role.OFFICER)
    meeting_session = cop4.segments[0].sessions[0]
    meeting_session.segment.kind = SegmentKind.HYBRID  # both channels: pages online, badges at the gate
    users = {name: make_delegate(party)[0] for name, party in PARTIES.items() if party}
    observer, _ = make_user()
    registration = services.register(
        db,
        meeting=cop4,
        user=observer,
        category=Category.NGO,
        function=Function.ADVISER,
        segment_ids=[meeting_session.segment_id],
        organization="Zero Mercury Working Group",
        now=clock(),
    )
    services.approve(db, registration, officer, clock())
    db.commit()
    users["ngo"] = observer
    names = {user.id: name for name, user in users.items()}
    lapse = app.config["PRESENCE_GRACE_SECONDS"]
    heartbeat_every = app.config["PRESENCE_HEARTBEAT_SECONDS"]
    grace = dt.timedelta(seconds=lapse)
    # Any wait up to 150 s, and often a heartbeat's interval or the edges of the grace period.
    waits = st.sampled_from([heartbeat_every, lapse - 1, lapse, lapse + 1]) | st.integers(0, 150)
    start = clock()
    nonces = itertools.count(1)
    tab_numbers = itertools.count(1)

    def named(presence: dict[int, frozenset[str]]) -> dict[str, frozenset[str]]:
        return {names[user_id]: channels for user_id, channels in presence.items()}

    class PresenceMachine(RuleBasedStateMachine):
        tabs = Bundle("tabs")

        def __init__(self) -> None:
            super().__init__()
            # Fixtures run once for all examples: start each one from an open, empty session.
            db.rollback()
            db.execute(sa.delete(AttendanceEvent).where(AttendanceEvent.session_id == meeting_session.id))
            db.execute(sa.delete(Presence).where(Presence.session_id == meeting_session.id))
            meeting_session.state = SessionState.SCHEDULED
            meeting_session.opened_at = meeting_session.closed_at = None
            clock.now = start
            services.change_state(db, meeting_session, "open", officer, clock())
            db.commit()
            self.model = Model(clock(), grace)
            self.logged = 0  # events in the log after the last step
            self.swept = True
            self.live_tabs: set[Tab] = set()
            self.last_check_in: tuple[Tab, str] | None = None

        def cutoff(self) -> dt.datetime:
            return clock() - grace

        def nonce(self, prefix: str) -> str:
            return f"{prefix}-{next(nonces):06d}"

        def log_grew(self) -> bool:
            """Whether the last call wrote to the attendance log: what "changed" must say."""
            count = db.scalar(sa.select(sa.func.count()).where(AttendanceEvent.session_id == meeting_session.id))
            return count > self.logged

        def check_in(self, name: str, nonce: str) -> bool:
            """Check in through the service as the socket handler does; whether it was accepted."""
            expected = self.model.check_in(name, nonce)
            try:
                result, changed = services.online_check_in(
                    db, meeting_session, users[name], nonce=nonce, now=clock(), lapsed_before=self.cutoff()
                )
            except services.CheckInError as refused:
                db.rollback()
                assert (refused.code, expected) == ("session_closed", None)
                return False
            db.commit()
            assert result.recorded == expected
            assert changed == self.log_grew()
            return True

        @rule(target=tabs, name=PEOPLE)
        def open_tab(self, name):
            """A page opens (or reconnects after a restart) and checks in with a fresh nonce."""
            nonce = self.nonce("tab")
            if not self.check_in(name, nonce):
                return multiple()
            tab = Tab(name, next(tab_numbers))
            self.live_tabs.add(tab)
            self.last_check_in = (tab, nonce)
            return tab

        @precondition(lambda self: self.last_check_in and self.last_check_in[0] in self.live_tabs)
        @rule()
        def retry_last_check_in(self):
            """The page resends its last check-in, same nonce, as when the acknowledgement was lost."""
            tab, nonce = self.last_check_in
            self.check_in(tab.name, nonce)

        @rule(tab=tabs, wait=waits)
        def heartbeat(self, tab, wait):
            """A page's heartbeat, after a wait."""
            if tab not in self.live_tabs:
                return
            self.advance_clock(wait)
            expected = self.model.heartbeat(tab.name)
            present, changed = services.online_heartbeat(
                db, meeting_session, users[tab.name], now=clock(), lapsed_before=self.cutoff()
            )
            db.commit()
            assert present == expected
            assert changed == self.log_grew()

        @rule(tab=consumes(tabs), wait=waits)
        def close_tab(self, tab, wait):
            """A page closes or loses its connection, after a wait: its person was connected until then."""
            if tab not in self.live_tabs:
                return
            self.advance_clock(wait)
            self.live_tabs.remove(tab)
            # A presence that lapsed before the page closed stays ended: the close does not revive it.
            self.model.seen(tab.name)
            others = any(other.name == tab.name for other in self.live_tabs)
            changed = services.online_disconnected(
                db,
                [meeting_session.id],
                users[tab.name],
                now=clock(),
                lapsed_before=self.cutoff(),
                seen_at=clock(),
                last_page=() if others else [meeting_session.id],
            )
            db.commit()
            # Changed: a lapsed presence ended, or the last page's presence entered its grace period.
            in_grace = not others and self.model.people[tab.name].online
            assert bool(changed) == (self.log_grew() or in_grace)

        @rule(tab=tabs, wait=waits)
        def check_out(self, tab, wait):
            """The person leaves from this page after a wait, for all their pages (which stay open)."""
            if tab not in self.live_tabs:
                return
            self.advance_clock(wait)
            expected = self.model.check_out(tab.name)
            result, changed = services.online_check_out(
                db,
                meeting_session,
                users[tab.name],
                nonce=self.nonce("out"),
                now=clock(),
                lapsed_before=self.cutoff(),
            )
            db.commit()
            assert result.recorded == expected
            assert changed == self.log_grew()

        @precondition(lambda self: self.live_tabs)
        @rule()
        def restart(self):
            """The server restarts: every page's connection is gone, with no disconnect to say when."""
            self.live_tabs.clear()

        @rule(name=PEOPLE, kind=st.sampled_from([ENTRY, EXIT]))
        def kiosk_scan(self, name, kind):
            """A badge scanned at the gate, on the way in or out."""
            expected = self.model.scan(name, kind)
            try:
                result = services.record_attendance(
                    db,
                    meeting_session,
                    users[name],
                    kind=EventKind(kind),
                    channel=Channel.IN_PERSON,
                    source=Source.KIOSK,
                    nonce=self.nonce("gate"),
                    now=clock(),
                    recorded_by=officer,
                )
            except services.CheckInError as refused:
                db.rollback()
                assert (refused.code, expected) == ("session_closed", None)
                return
            db.commit()
            assert result.recorded == expected

        @rule(seconds=waits)
        def advance_clock(self, seconds):
            self.model.advance(clock.advance(seconds))
            self.swept = False

        @precondition(lambda self: not self.swept)
        @rule()
        def sweep(self):
            """The sweeper's round, as in meetings/live.py: afterwards the presences are exactly the model's."""
            services.end_lapsed_presences(db, self.cutoff())
            db.commit()
            self.swept = True
            assert named(services.present_users(db, meeting_session)) == self.model.presence()
            assert services.session_quorum(db, meeting_session).present_codes == parties(self.model.presence())

        @precondition(lambda self: self.model.open and self.model.events)
        @rule()
        def close_session(self):
            """Closing ends every presence, and is final."""
            self.model.close()
            services.change_state(db, meeting_session, "close", officer, clock(), lapsed_before=self.cutoff())
            db.commit()
            assert services.present_users(db, meeting_session) == {}
            assert services.session_quorum(db, meeting_session).present_codes == ()
            try:
                services.change_state(db, meeting_session, "open", officer, clock())
            except services.MeetingError as refused:
                assert refused.code == "bad_transition"
            else:
                raise AssertionError("a closed session was opened again")
            finally:
                db.rollback()

        @invariant()
        def agrees_with_the_model(self):
            """After every step: the presences table is the fold of the log, and both say what the model says.

            Lapsed online presences are ended by whichever comes first (the sweeper, the person's
            next check-in, heartbeat or check-out, the close), so the database is compared as it
            will stand once they are: without them, and with their exits at their last moment seen.
            """
            table = named(services.present_users(db, meeting_session))
            assert table == named(services.logged_presence(db, meeting_session)), "presences table against the log"
            lapsed = {
                names[user_id]: last_seen_at
                for user_id, last_seen_at in db.execute(
                    sa.select(Presence.user_id, Presence.last_seen_at).where(
                        Presence.session_id == meeting_session.id,
                        Presence.channel == Channel.ONLINE,
                        Presence.last_seen_at < self.cutoff(),
                    )
                )
            }
            present = {name: channels - {ONLINE} if name in lapsed else channels for name, channels in table.items()}
            present = {name: channels for name, channels in present.items() if channels}
            assert present == self.model.presence(), "who is present"
            logged = db.execute(
                sa.select(
                    AttendanceEvent.user_id,
                    AttendanceEvent.kind,
                    AttendanceEvent.channel,
                    AttendanceEvent.source,
                    AttendanceEvent.at,
                ).where(AttendanceEvent.session_id == meeting_session.id)
            ).all()
            record = [
                (names[user_id], kind.value, channel.value, source.value, at)
                for user_id, kind, channel, source, at in logged
            ]
            record += [(name, EXIT, ONLINE, Source.SYSTEM.value, at) for name, at in lapsed.items()]
            assert sorted(record) == sorted(self.model.events), "the attendance record"
            self.logged = len(logged)

    run_state_machine_as_test(PresenceMachine, settings=MODEL_SETTINGS)
