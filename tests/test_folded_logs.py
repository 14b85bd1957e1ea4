"""Closed sessions' folds kept in the database: a restarted server (or another process) reads them instead of
the log, and folds the log again whenever the log, the close or the Party delegates counted have changed."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from test_statistics import C0, NOW, _log, rows_by, small  # noqa: F401  (small is a fixture)

from meetings import statistics
from meetings.models import FoldedLog, RegistrationStatus


@pytest.fixture
def folds(monkeypatch):
    """The number of events of each log folded from the log, in order."""
    folded: list[int] = []
    original = statistics.fold

    def counting(rows, end, counted):
        folded.append(len(rows))
        return original(rows, end, counted)

    monkeypatch.setattr(statistics, "fold", counting)
    return folded


def restart() -> None:
    """What a new server process starts with: nothing in memory."""
    statistics.clear_cache()


def kept(db) -> dict[int, tuple[int, int]]:
    return {row.session_id: (row.events, row.end_us) for row in db.scalars(sa.select(FoldedLog)).all()}


def test_a_fold_survives_encoding_exactly(db, small):  # noqa: F811
    rows = [
        (0, 1 * 4 + 1, 7, "browser"),
        (5, 2 * 4 + 2 + 1, 7, "kiosk"),
        (10, 1 * 4, 7, "browser"),
        (30, 3 * 4 + 1, None, "officer"),
    ]
    for f in (statistics.fold(rows, 60, counted={1, 2}), statistics.fold([], 60, counted=set())):
        f.counted = frozenset(f.present.keys() & {1, 2})
        again = statistics.decode_fold(statistics.encode_fold(f))
        assert (again.events, again.present, again.time, again.peak, again.peak_at) == (
            f.events,
            f.present,
            f.time,
            f.peak,
            f.peak_at,
        )
        assert (list(again.spans), again.parties, again.first, again.last, again.counted) == (
            list(f.spans),
            f.parties,
            f.first,
            f.last,
            f.counted,
        )


def test_a_restarted_server_reads_closed_sessions_from_their_kept_folds(db, small, folds):  # noqa: F811
    first = statistics.report(db, small.meeting, now=NOW)
    assert sorted(folds) == [4, 5, 18]  # C, B (open), A
    # Only the closed sessions A and C are kept, with the moment each closed.
    assert kept(db) == {
        small.a.id: (18, statistics.to_us(small.a.closed_at)),
        small.c.id: (4, statistics.to_us(small.c.closed_at)),
    }

    restart()
    folds.clear()
    second = statistics.report(db, small.meeting, now=NOW)
    assert folds == [5]  # only B, still open
    for key in ("overview", "sessions", "by_party", "by_channel", "segments_compared"):
        assert list(rows_by(second, key).items()) == list(rows_by(first, key).items()), key


def test_a_kept_fold_is_folded_again_when_the_log_changes(db, small, folds):  # noqa: F811
    statistics.report(db, small.meeting, now=NOW)
    _log(db, small, small.c, C0, [(30, "fay", "entry", "online"), (40, "fay", "exit", "online")])
    restart()
    folds.clear()
    report = statistics.report(db, small.meeting, now=NOW)
    assert sorted(folds) == [5, 6]  # B (open), and C, whose log has two more events
    assert rows_by(report, "sessions")["Session C"]["time_attended"] == (60 + 20) * 60
    assert kept(db)[small.c.id] == (6, statistics.to_us(small.c.closed_at))


def test_a_kept_fold_is_folded_again_when_a_present_delegate_is_approved(db, small, folds):  # noqa: F811
    _log(db, small, small.c, C0, [(30, "pen", "entry", "online"), (40, "pen", "exit", "online")])
    report = statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert rows_by(report, "sessions")["Session C"]["parties"] == 1  # pen's Party BBB: pending
    small.registrations["pen"].status = RegistrationStatus.APPROVED
    db.commit()
    restart()
    folds.clear()
    report = statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert folds == [6]
    assert rows_by(report, "sessions")["Session C"]["parties"] == 2


def test_a_kept_fold_that_cannot_be_read_is_folded_again(db, small, folds, caplog):  # noqa: F811
    statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    db.execute(sa.update(FoldedLog).where(FoldedLog.session_id == small.c.id).values(data=b"not a fold"))
    db.commit()
    restart()
    folds.clear()
    with caplog.at_level(logging.WARNING, logger="meetings.statistics"):
        report = statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert folds == [4]
    assert "cannot be read" in caplog.text
    assert rows_by(report, "sessions")["Session C"]["participants"] == 2
    # And it is kept again, readable.
    restart()
    folds.clear()
    statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert folds == []


def test_a_report_inside_a_writing_transaction_neither_waits_nor_fails(db, small, folds):  # noqa: F811
    # The caller has written and not committed: keeping the fold from another connection would wait
    # for this transaction on SQLite, so the fold is simply not kept this time.
    small.meeting.title = "Renamed, not yet committed"
    db.flush()
    report = statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert rows_by(report, "sessions")["Session C"]["participants"] == 2
    db.rollback()
    if db.get_bind().dialect.name == "sqlite":
        assert small.c.id not in kept(db)
    restart()
    statistics.report(db, small.meeting, session_id=small.c.id, now=NOW)
    assert small.c.id in kept(db)
