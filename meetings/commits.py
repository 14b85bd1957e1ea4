"""Group commits: the writes of many socket events share one transaction and one commit.

A commit is the dearest part of a check-in: on PostgreSQL it waits for the write-ahead log to reach
the disk, on SQLite it takes the database's write lock. At the opening of a plenary a thousand
delegates check in within minutes, so each process runs one committer that takes every unit of work
waiting (up to GROUP_COMMIT_MAX, gathering for at most GROUP_COMMIT_SECONDS), runs each in a
savepoint of one transaction, and commits once.

The contract is the same as committing alone: run() returns the unit's result only once it is
committed, or raises its refusal (meetings.services.MeetingError), its database error, or the
group's commit error; a unit refused or failing rolls back its own savepoint and nothing else. So
a socket event is still acknowledged only after its commit, and a unit retried with the same
nonce after a failed commit still counts once.

A unit may also name a batch that can run it together with others of its kind (run(work,
batch=(batcher, item))): the committer hands the batcher every such item of the group at once, and
runs alone whatever the batcher leaves out or, if the batcher fails, all of them. A failed batch
leaves nothing behind: it runs in a savepoint of its own, or, the first batch of its transaction,
without one (it is then undone by rolling back the transaction, which holds nothing else yet). Online
check-ins run so (meetings/online.py): a group with one statement per kind rather than a dozen per
check-in.

On SQLite the group's transaction takes the write lock as it begins (BEGIN IMMEDIATE), waiting
for it as long as the busy timeout allows: a transaction that read first and wrote later would fail
at once, "database is locked", had another connection written in between.

With GROUP_COMMIT off (the tests, or a one-off script), run() runs the unit in the caller's own
database session and commits it at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask
from flask_socketio import SocketIO
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from db import get_db
from meetings.services import MeetingError

T = TypeVar("T")

log = logging.getLogger(__name__)


class CommitTimeout(Exception):
    """The committer did not answer in time: the unit may still be committed later (its nonce keeps it once)."""


# A batcher runs many units' items at once in a database session and returns {index: result} for
# those it ran; the others run alone, after it.
Batcher = Callable[[Session, list], dict[int, object]]


class Stale(Exception):
    """Raised by a batcher whose writes found the database otherwise than its reads (another process wrote)."""


class _Unit:
    __slots__ = ("batch", "done", "error", "result", "work")

    def __init__(self, work: Callable[[Session], object], batch: tuple[Batcher, object] | None, done) -> None:
        self.work = work
        self.batch = batch
        self.done = done
        self.result: object = None
        self.error: BaseException | None = None


class GroupCommits:
    """The committer of one server process (app.extensions["commits"])."""

    def __init__(self, app: Flask, socketio: SocketIO) -> None:
        self.app = app
        self.socketio = socketio
        self.enabled = bool(app.config["GROUP_COMMIT"])
        self.window = float(app.config["GROUP_COMMIT_SECONDS"])
        self.limit = max(1, int(app.config["GROUP_COMMIT_MAX"]))
        self.wait = float(app.config["GROUP_COMMIT_WAIT_SECONDS"])
        self._queue = None
        self._lock = threading.Lock()
        # Figures for benchmarks and logs: groups committed and units in them.
        self.groups = 0
        self.units = 0

    def run(self, work: Callable[[Session], T], batch: tuple[Batcher, object] | None = None) -> T:
        """Run work(db) in a transaction shared with other units; its result once committed.

        batch: (batcher, item), if the batcher can run this unit's item with others of its kind,
        with the same result as work.
        """
        if not self.enabled:
            db = get_db()
            result = work(db)
            db.commit()
            return result
        unit = _Unit(work, batch, self.socketio.server.eio.create_event())
        self._started().put(unit)
        if not unit.done.wait(self.wait):
            raise CommitTimeout()
        if unit.error is not None:
            raise unit.error
        return unit.result  # type: ignore[return-value]

    def _started(self):
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    queue = self.socketio.server.eio.create_queue()
                    self.socketio.start_background_task(self._loop, queue)
                    self._queue = queue
        return self._queue

    def _loop(self, queue) -> None:
        empty = self.socketio.server.eio.get_queue_empty_exception()
        while True:
            group = [queue.get()]
            deadline = time.monotonic() + self.window
            while len(group) < self.limit:
                left = deadline - time.monotonic()
                try:
                    group.append(queue.get(timeout=left) if left > 0 else queue.get_nowait())
                except empty:
                    break
            try:
                self._commit(group)
            except BaseException as exc:  # the committer must outlive any one group
                log.exception("group commit: a group failed outside its units")
                for unit in group:
                    if unit.error is None:
                        unit.error = exc if isinstance(exc, Exception) else RuntimeError("commit interrupted")
                    unit.done.set()

    def _commit(self, group: list[_Unit]) -> None:
        with self.app.app_context():
            db: Session = self.app.extensions["db_sessionmaker"]()
            try:
                _begin(db)
                done = self._batches(db, group)
                for unit in group:
                    if unit in done:
                        continue
                    try:
                        with db.begin_nested():
                            unit.result = unit.work(db)
                    except MeetingError as exc:
                        unit.error = exc
                    except SQLAlchemyError as exc:
                        log.warning("group commit: a unit failed: %s", type(exc).__name__)
                        unit.error = exc
                    except Exception as exc:
                        log.exception("group commit: a unit failed unexpectedly")
                        unit.error = exc
                try:
                    db.commit()
                except SQLAlchemyError as exc:
                    log.warning("group commit: the commit of %d units failed: %s", len(group), type(exc).__name__)
                    db.rollback()
                    for unit in group:
                        if unit.error is None:
                            unit.result, unit.error = None, exc
            finally:
                db.close()
                self.groups += 1
                self.units += len(group)
                for unit in group:
                    unit.done.set()

    def _batches(self, db: Session, group: list[_Unit]) -> set[_Unit]:
        """Run the group's batchable units by batch; the units done."""
        batches: dict[Batcher, list[_Unit]] = {}
        for unit in group:
            if unit.batch is not None:
                batches.setdefault(unit.batch[0], []).append(unit)
        done: set[_Unit] = set()
        written = False
        for batcher, units in batches.items():
            # The first batch to write needs no savepoint (two statements fewer, and on PostgreSQL two
            # round trips in which the committer waits its turn behind every socket of the process):
            # should it fail, rolling the whole transaction back undoes it and nothing else.
            alone = not written
            try:
                with contextlib.nullcontext() if alone else db.begin_nested():
                    results = batcher(db, [unit.batch[1] for unit in units])
            except (Stale, SQLAlchemyError) as exc:
                # Another process got there first, say: every unit runs alone, and finds out.
                log.info("group commit: a batch of %d ran one by one: %s", len(units), type(exc).__name__)
                _undo(db, alone)
                continue
            except Exception:
                log.exception("group commit: a batch of %d failed unexpectedly and ran one by one", len(units))
                _undo(db, alone)
                continue
            written = True
            for index, result in results.items():
                units[index].result = result
                done.add(units[index])
        return done


def _begin(db: Session) -> None:
    if db.get_bind().dialect.name == "sqlite":
        db.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _undo(db: Session, alone: bool) -> None:
    """After a failed batch that was alone in the transaction: the transaction rolled back and begun again."""
    if alone:
        db.rollback()
        _begin(db)
