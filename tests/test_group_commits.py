"""Group commits (meetings/commits.py): check-ins from many sockets share one commit, and each is still
acknowledged only after it, refused alone, and counted once when retried after a failed or late commit."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from conftest import socket_client
from sqlalchemy.exc import OperationalError

from app import create_app
from auth.models import Role, User
from meetings import services
from meetings.models import AttendanceEvent, Presence

PARTIES = ["CHE", "FRA", "NGA", "BRA", "IDN", "JPN", "SEN", "MEX", "NOR", "PER"]


@pytest.fixture
def grouped(database_url, clock, cop4):
    """An app whose socket events commit in groups, gathering for 0.2 s; and its open online session."""
    app = create_app("testing", {"DATABASE_URL": database_url, "GROUP_COMMIT": True, "GROUP_COMMIT_SECONDS": 0.2})
    app.extensions["clock"] = clock
    db = app.extensions["db_sessionmaker"]()
    meeting_session = db.merge(cop4).segments[0].sessions[0]
    secretariat = db.scalar(sa.select(User).where(User.role == Role.SECRETARIAT))
    services.change_state(db, meeting_session, "open", secretariat, clock())
    db.commit()
    yield app, meeting_session.id
    db.close()
    app.extensions["db_engine"].dispose()


def page_of(app, user):
    """A delegate's session page, connected with their login cookie."""
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = user.get_id()
        cookie["_fresh"] = True
    return socket_client(app, client)


def emit_all(pages, payloads, event="check_in") -> list[dict]:
    """Emit from every page at once (one thread each); the acknowledgements in order."""
    acks: list[dict | None] = [None] * len(pages)

    def send(i):
        acks[i] = pages[i].emit(event, payloads[i], namespace="/live", callback=True)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(pages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return acks


def entries(db, session_id) -> int:
    db.expire_all()
    return db.scalar(
        sa.select(sa.func.count()).select_from(AttendanceEvent).where(AttendanceEvent.session_id == session_id)
    )


def test_check_ins_arriving_together_share_a_commit_and_are_acknowledged_after_it(grouped, db, make_delegate):
    app, session_id = grouped
    # More at once than the database pool has connections (5 + 10): waiting for the group must not hold one.
    pages = [page_of(app, make_delegate(code)[0]) for code in PARTIES * 2]
    payloads = [{"session_id": session_id, "nonce": f"together-{n:04d}"} for n in range(len(pages))]
    commits = app.extensions["commits"]

    acks = emit_all(pages, payloads)

    assert all(ack["ok"] and ack["recorded"] for ack in acks), acks
    # Each acknowledgement came after its commit: everything is in the database now.
    assert entries(db, session_id) == len(pages)
    assert db.scalar(sa.select(sa.func.count()).select_from(Presence)) == len(pages)
    # Twenty check-ins within the gathering window, far fewer commits.
    assert commits.units == len(pages) and commits.groups < len(pages)


def test_a_refused_check_in_leaves_the_rest_of_its_group_committed(grouped, db, make_delegate):
    app, session_id = grouped
    pages = [page_of(app, make_delegate(code)[0]) for code in PARTIES[:4]]
    payloads = [{"session_id": session_id, "nonce": f"refused-{n:04d}"} for n in range(4)]
    # The third reuses the first's nonce for itself: refused as nonce_reused once the first is in.
    payloads[2] = {"session_id": session_id, "nonce": "refused-0000"}
    first = pages[0].emit("check_in", payloads[0], namespace="/live", callback=True)
    assert first["ok"]

    acks = emit_all(pages[1:], payloads[1:])

    assert [ack["ok"] for ack in acks] == [True, False, True]
    assert acks[1]["error"]["code"] == "nonce_reused"
    assert entries(db, session_id) == 3


def test_a_failed_group_commit_records_none_of_it_and_the_retries_count_once(grouped, db, make_delegate, monkeypatch):
    app, session_id = grouped
    pages = [page_of(app, make_delegate(code)[0]) for code in PARTIES[:3]]
    payloads = [{"session_id": session_id, "nonce": f"failed-{n:04d}"} for n in range(3)]
    real_commit = sa.orm.Session.commit

    def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("database is locked"))

    monkeypatch.setattr(sa.orm.Session, "commit", failing_commit)
    acks = emit_all(pages, payloads)
    monkeypatch.setattr(sa.orm.Session, "commit", real_commit)

    assert [ack["error"]["code"] for ack in acks] == ["unavailable"] * 3
    assert entries(db, session_id) == 0
    assert all(ack["recorded"] for ack in emit_all(pages, payloads))
    assert not any(ack["recorded"] for ack in emit_all(pages, payloads))
    assert entries(db, session_id) == 3


def test_a_commit_that_comes_too_late_is_unavailable_and_its_retry_counts_once(grouped, db, make_delegate, monkeypatch):
    app, session_id = grouped
    commits = app.extensions["commits"]
    commits.wait = 0.05  # less than the gathering window: the first answer is always late
    page = page_of(app, make_delegate("CHE")[0])
    payload = {"session_id": session_id, "nonce": "late-commit-0001"}

    late = page.emit("check_in", payload, namespace="/live", callback=True)
    assert late["ok"] is False and late["error"]["code"] == "unavailable"

    commits.wait = 10.0
    # The late unit was committed after all; the page's retry with the same nonce finds it.
    retry = page.emit("check_in", payload, namespace="/live", callback=True)
    assert retry["ok"] and retry["recorded"] is False
    assert entries(db, session_id) == 1


def test_on_sqlite_a_write_from_elsewhere_cannot_fail_a_group_between_its_reads_and_its_writes(
    grouped, db, database_url
):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock: PostgreSQL locks rows, not the database")
    app, _ = grouped
    secretariat_id = db.scalar(sa.select(User.id).where(User.role == Role.SECRETARIAT))
    # Another process's writer, waiting a little for the lock rather than the default 5 s.
    elsewhere = sa.create_engine(database_url, connect_args={"timeout": 0.2})

    def work(session):
        session.execute(sa.select(User.given_name).where(User.id == secretariat_id)).one()  # the group reads...
        try:
            with elsewhere.begin() as connection:  # ... another connection tries to write ...
                connection.execute(sa.update(User).where(User.id == secretariat_id).values(given_name="Elsewhere"))
            wrote_elsewhere = True
        except OperationalError:
            wrote_elsewhere = False
        # ... and the group writes: had it not held the lock from the start, "database is locked".
        session.execute(sa.update(User).where(User.id == secretariat_id).values(given_name="Group"))
        return wrote_elsewhere

    with app.app_context():
        wrote_elsewhere = app.extensions["commits"].run(work)
    elsewhere.dispose()

    assert wrote_elsewhere is False  # the other writer waited for the group (and here gave up)
    db.expire_all()
    assert db.get(User, secretariat_id).given_name == "Group"
