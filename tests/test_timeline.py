"""The running timeline (meetings.timeline.Running) says what parties_present says of the same log."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from meetings.timeline import ENTRY, EXIT, SETTLE, Event, Running, parties_present

T0 = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=3)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def to_the_second(events: list[Event]) -> list[Event]:
    """The events at their whole second, still in the order they happened (their rank in it as seq)."""
    in_order = sorted(events, key=lambda e: (e.at, e.seq))
    return [
        Event(e.participant, e.party, e.kind, e.channel, e.at.replace(microsecond=0), n, e.by)
        for n, e in enumerate(in_order)
    ]


def running(batches: list[list[Event]], settle: dt.timedelta = SETTLE) -> Running:
    """Batches added in turn, as the dashboard does: starting over from the whole log when one comes too late."""
    fold, seen = Running(WINDOW, settle), []
    for batch in batches:
        seen += batch
        if not fold.add(batch):
            fold = Running(WINDOW, settle)
            assert fold.add(seen)
    return fold


def event(participant, party, kind, seconds, seq, channel="online"):
    return Event(participant, party, kind, channel, at(seconds), seq)


def test_events_within_one_second_make_one_point_and_a_dip_within_it_none():
    log = [
        event("ana", "CHE", ENTRY, 10.2, 1),
        event("kofi", "GHA", ENTRY, 10.7, 2),
        event("ana", "CHE", EXIT, 20.1, 3),
        event("ana", "CHE", ENTRY, 20.9, 4),  # back within the second: no dip
        event("kofi", "GHA", EXIT, 30.5, 5),
    ]
    fold = running([log])
    assert fold.points(at(0), at(60)) == [(at(0), 0), (at(10), 2), (at(30), 1), (at(60), 1)]
    assert fold.first == at(10.2) and fold.events == 5


def test_an_exit_dated_back_within_the_window_is_folded_in_its_place():
    fold = running(
        [
            [event("ana", "CHE", ENTRY, 0, 1)],
            [event("kofi", "GHA", ENTRY, 100, 2), event("lena", "DEU", ENTRY, 150, 3)],
            # Ana's page went quiet at 60 s; her lapse is logged later, dated then.
            [event("ana", "CHE", EXIT, 60, 4)],
        ]
    )
    assert fold.points(at(0), at(200)) == [(at(0), 1), (at(60), 0), (at(100), 1), (at(150), 2), (at(200), 2)]


def test_an_event_older_than_the_window_is_refused_and_changes_nothing():
    fold = Running(WINDOW)
    assert fold.add([event("ana", "CHE", ENTRY, 0, 1), event("kofi", "GHA", ENTRY, 600, 2)])
    before = fold.points(at(0), at(700))
    assert not fold.add([event("ana", "CHE", EXIT, 300, 3)])
    assert fold.points(at(0), at(700)) == before and fold.events == 2


LOG = st.lists(
    st.tuples(
        st.sampled_from(["ana", "kofi", "lena", "omar"]),
        st.sampled_from(["CHE", "GHA", "CHE", None]),  # two delegates of Switzerland; None: an observer
        st.sampled_from([ENTRY, EXIT]),
        st.sampled_from(["online", "in_person"]),
        st.floats(0, 1200, allow_nan=False).map(lambda s: round(s, 1)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(LOG, st.data())
def test_however_the_log_arrives_the_running_fold_says_what_a_fold_of_the_whole_log_says(rows, data):
    log = [
        Event(who, party, kind, channel, at(seconds), seq)
        for seq, (who, party, kind, channel, seconds) in enumerate(rows)
    ]
    # Arrival: mostly in time order, some a moment late (another process's commit), some late (lapses
    # dated back, kiosks catching up), in batches.
    delays = st.sampled_from([0, 0, 0, 0.5, 3, 30, 400])
    order = sorted(range(len(log)), key=lambda i: log[i].at + dt.timedelta(seconds=data.draw(delays)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=8)))
    batches = [[log[i] for i in order[a:b]] for a, b in zip([0, *cuts], [*cuts, len(log)], strict=True)]
    start = at(data.draw(st.integers(0, 600)))
    end = max(start, at(data.draw(st.integers(0, 1300))))

    settle = dt.timedelta(seconds=data.draw(st.sampled_from([0, 1, 2, 60])))

    assert running(batches, settle).points(start, end) == parties_present(to_the_second(log), start, end)


def test_an_event_a_moment_late_takes_its_place_among_the_settling_ones():
    """Written by another process just after later ones: nothing folded again, the same points."""
    fold = Running(WINDOW, dt.timedelta(seconds=2))
    assert fold.add([event("ana", "CHE", ENTRY, 10.0, 1), event("kofi", "GHA", ENTRY, 19.5, 2)])
    assert fold.add([event("lena", "DEU", ENTRY, 21.0, 4)])
    folded = fold._head
    assert fold.add([event("kofi", "GHA", EXIT, 20.5, 3)])  # before Lena's entry, after what is folded
    assert fold._head is folded  # taken in among the settling events, not folded again from the base
    assert fold.points(at(0), at(30)) == [(at(0), 0), (at(10), 1), (at(19), 2), (at(20), 1), (at(21), 2), (at(30), 2)]
