"""Benchmarks of live attendance: check-ins over Socket.IO, dashboards, logins, idle sockets, a soak.

The server runs as in production: one gunicorn gevent worker per process, APP_CONFIG=production,
on a fresh database filled before it starts. The clients are a load generator in a process of its
own (bench/loadgen.py, python-socketio's asyncio client), on loopback. Each figure is also given
as a ratio to a bare Socket.IO server (bench/bare_server.py: the same worker, a handler that only
acknowledges) measured in the same run, with the durability settings of the database it ran on.

  1. check-in throughput with 100 dashboards watching, SQLite and PostgreSQL, one process
  2. opening burst: delegates connect and check in within 10 s while 50 dashboards watch
  3. fan-out guard: throughput with 1,000 dashboards, as a ratio to that with 100
  4. two processes with Redis and PostgreSQL: check-ins/s together, dashboards of both correct
  5. idle sockets: server memory per connected delegate sending heartbeats
  6. login storm: real logins (password and TOTP code) while check-ins flow
  7. soak: steady check-ins and dashboards for 30 minutes; server memory growth

    python bench/live.py                       # full sizes (about 45 minutes); writes bench/results-live.txt
    python bench/live.py --quick               # tiny sizes, well under a minute: proves it still works
    python bench/live.py --only 1,3 --db sqlite --no-postgres

PostgreSQL runs use a database of their own (--postgres, default bench_live), emptied first; Redis
a database number of its own (--redis, default /5).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import secrets  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from flask import Flask  # noqa: E402
from flask.sessions import SecureCookieSessionInterface  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import config  # noqa: E402
import db as database  # noqa: E402
from auth import crypto, totp  # noqa: E402
from auth.models import Authenticator, Gender, Role, User  # noqa: E402
from auth.passwords import hash_password  # noqa: E402
from meetings import demo  # noqa: E402
from meetings.models import (  # noqa: E402
    AttendanceEvent,
    Category,
    EventKind,
    Function,
    Meeting,
    MeetingSession,
    Party,
    Presence,
    Registration,
    RegistrationStatus,
    SegmentKind,
    SessionKind,
    SessionState,
    registration_segments,
)

BENCH = Path(__file__).resolve().parent
LOADGEN = BENCH / "loadgen.py"
RESULTS = BENCH / "results-live.txt"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_live"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
# The demo accounts are not used here: a cheap hash keeps the set-up short. The benchmark's own
# accounts that log in (benchmark 6) get the production hash.
DEMO_HASH = "scrypt:1024:8:1"
PASSWORD = "bench live passphrase for the login storm"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Sizes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    delegates: int = 200  # 1, 3, 4: clients each with one event in flight
    dashboards: int = 100  # 1, 4
    seconds: float = 20.0  # 1, 3, 4: measuring window
    warmup: float = 3.0
    burst: int = 2000  # 2
    burst_dashboards: int = 50
    burst_window: float = 10.0
    fanout_dashboards: int = 1000  # 3
    idle_sockets: int = 10_000  # 5
    heartbeat: float = 20.0
    browser_sockets: int = 2_000  # 5, on a fresh server: sockets that offer compression, as browsers' do
    logins: int = 500  # 6
    login_window: float = 30.0
    login_addresses: int = 0  # 0: enough that no address passes the login form's limit per minute
    storm_delegates: int = 50
    storm_think: float = 0.5
    storm_before: float = 10.0
    soak_seconds: float = 1800.0  # 7
    soak_warmup: float = 120.0  # caches and the dashboards' kept timelines fill up before memory is first read
    soak_delegates: int = 100
    soak_dashboards: int = 100
    soak_think: float = 1.0
    soak_samples: int = 10
    # Dashboards send watch_session again when the server says, as dashboard.js does: this often (the
    # server's DASHBOARD_RESYNC_SECONDS), less often for a crowd (at most 10 a second per process).
    resync: float = 30.0
    concurrency: int = 50  # connections being opened at once
    settle: float = 1.5  # seconds given to the last broadcasts before dashboards are compared with the database


FULL = Sizes()
QUICK = Sizes(
    delegates=20,
    dashboards=10,
    seconds=1.0,
    warmup=0.5,
    burst=50,
    burst_dashboards=5,
    burst_window=1.0,
    fanout_dashboards=40,
    idle_sockets=100,
    heartbeat=1.0,
    browser_sockets=20,
    logins=6,
    login_window=2.0,
    storm_delegates=10,
    storm_think=0.2,
    storm_before=1.5,
    soak_seconds=2.0,
    soak_warmup=0.5,
    soak_delegates=10,
    soak_dashboards=5,
    soak_think=0.2,
    soak_samples=2,
    resync=1.0,
    concurrency=20,
    settle=0.5,
)

TARGETS = {
    "1": "≥ 2,000/s on SQLite, ≥ 1,000/s on PostgreSQL, ≥ 0.5 of the bare server, ack p99 < 100 ms",
    "2": "all acknowledged, none lost or counted twice, check-in-to-dashboard p99 < 500 ms",
    "3": "throughput with 1,000 dashboards ≥ 0.4 of that with 100",
    "4": "≥ 3,000 check-ins/s together; every dashboard on either process ends at the database's state",
    "5": "≤ 50 KiB per socket",
    "6": "check-in ack p99 < 200 ms during the storm",
    "7": "≤ 5 % growth of server memory",
}


# Machine, processes, databases ---------------------------------------------------------------------


def machine() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return [
        f"nproc: {os.cpu_count()}",
        f"CPU: {cpu}",
        f"Python: {platform.python_version()} ({platform.python_implementation()})",
        f"SQLite: {sqlite3.sqlite_version}",
        f"SQLAlchemy: {sa.__version__}",
        ", ".join(f"{name} {version(name)}" for name in ("gunicorn", "gevent", "python-socketio", "aiohttp")),
        f"Platform: {platform.platform()}",
        f"open files per process: {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}",
    ]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proc_status_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def proc_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _more_open_files() -> None:
    """In the server's process: room for ten thousand WebSockets (two descriptors each) and more."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """One gunicorn process with one gevent worker, as in production, and its log file."""

    def __init__(self, name: str, wsgi: str, cwd: Path, env: dict[str, str], log: Path, connections: int) -> None:
        self.name, self.wsgi, self.cwd, self.env, self.log_path = name, wsgi, cwd, env, log
        self.connections = connections
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.worker = 0

    def start(self, ready_path: str) -> Server:
        return self.launch().wait_ready(ready_path)

    def launch(self) -> Server:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            "1",
            "--bind",
            f"127.0.0.1:{self.port}",
            # More connections than gunicorn's default of 1,000 (ten thousand idle sockets in benchmark 5).
            "--worker-connections",
            str(self.connections),
            # Each server has its own control socket (or none): several run side by side.
            "--no-control-socket",
            self.wsgi,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_more_open_files
        )
        log.close()
        return self

    def wait_ready(self, ready_path: str) -> Server:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} server did not answer in 90 s:\n{self.log_tail()}")
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        self.worker = int(children[0])
        return self

    def rss_kib(self) -> int:
        return proc_status_kib(self.worker)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.worker)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: open sockets are not waited for
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_errors(self) -> list[str]:
        """The last line of each traceback in the server's log, and its lines logged at level ERROR."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        found = []
        for n, line in enumerate(lines):
            if line.startswith("Traceback"):
                end = n + 1
                while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
                    end += 1
                found.append(lines[end] if end < len(lines) else line)
            elif "[ERROR]" in line or '"level": "ERROR"' in line:
                found.append(line)
        return found


def run_loadgen(
    workdir: Path,
    name: str,
    job: dict,
    on_checkpoint: Callable[[str, dict], None] | None = None,
    timeout: float = 600.0,
) -> dict:
    """Run a scenario in a load generator process; answer its checkpoints; return its result."""
    path = workdir / f"job-{name}.json"
    path.write_text(json.dumps(job))
    errors = (workdir / f"loadgen-{name}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, str(LOADGEN), str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    result = None
    try:
        for line in process.stdout:
            message = json.loads(line)
            if "checkpoint" in message:
                if on_checkpoint is not None:
                    on_checkpoint(message["checkpoint"], message)
                process.stdin.write("ok\n")
                process.stdin.flush()
            elif "result" in message:
                result = message["result"]
        process.wait()
    finally:
        watchdog.cancel()
        errors.close()
    if result is None:
        tail = "\n".join((workdir / f"loadgen-{name}.log").read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"the load generator ({name}) gave no result (exit {process.returncode}):\n{tail}")
    return result


def backend_processes(database_name: str) -> list[int]:
    """PostgreSQL's backend processes serving connections to this database, by their process titles."""
    marker = f" {database_name} ".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres: ") and marker in title:
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU time of the server workers, and of the database's backends, between two checkpoints.

    The backends are looked for ten times a second, so that connections opened and closed meanwhile
    (a connection pool's overflow) are counted too, all but their last tenth of a second.
    """

    def __init__(self, servers: list[Server], database_name: str | None) -> None:
        self.servers, self.database_name = servers, database_name
        self.started = 0.0
        self.server0 = 0.0
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.result: dict[str, float] = {}

    def _sample(self, at_start: bool = False) -> None:
        for pid in backend_processes(self.database_name):
            cpu = proc_cpu_seconds(pid)
            # A backend already running at the start counts from there; a new one from its birth.
            self.first.setdefault(pid, cpu if at_start else 0.0)
            self.last[pid] = cpu

    def _watch(self) -> None:
        while not self.stopping.wait(0.1):
            self._sample()

    def begin(self) -> None:
        self.started, self.server0 = time.monotonic(), sum(s.cpu() for s in self.servers)
        if self.database_name:
            self._sample(at_start=True)
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()

    def end(self) -> None:
        if not self.started:
            return
        wall = max(1e-9, time.monotonic() - self.started)
        self.result = {"server": (sum(s.cpu() for s in self.servers) - self.server0) / wall}
        if self.thread is not None:
            self.stopping.set()
            self.thread.join()
            self._sample()
            self.result["database"] = sum(self.last[pid] - first for pid, first in self.first.items()) / wall
            self.result["backends"] = len(self.first)


@dataclass(slots=True)
class Target:
    """A database the app runs on for the benchmarks, filled with the benchmark's accounts and sessions."""

    kind: str  # "sqlite" or "postgresql"
    url: str
    engine: sa.Engine
    label: str = ""
    durability: str = ""
    meeting_id: int = 0
    sessions: dict[str, int] = field(default_factory=dict)
    delegates: list[int] = field(default_factory=list)
    officers: list[int] = field(default_factory=list)
    logins: list[dict] = field(default_factory=list)

    def database_name(self) -> str | None:
        """The PostgreSQL database's name, whose backends' CPU time is measured; None for SQLite."""
        return self.engine.url.database if self.kind == "postgresql" else None


def durability(engine: sa.Engine) -> str:
    """The durability settings in force, as the database reports them."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            level = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return f"journal_mode={mode}, synchronous={names.get(level, level)} (db.py)"
        settings = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("synchronous_commit", "fsync", "server_version")
        }
        return (
            f"synchronous_commit={settings['synchronous_commit']}, fsync={settings['fsync']} "
            f"(PostgreSQL {settings['server_version'].split()[0]})"
        )


def reset_postgres(url: str) -> None:
    """Create the benchmark's own database if missing, and empty it."""
    target = sa.engine.make_url(url)
    if target.database in (None, "", "postgres", "test", "template0", "template1"):
        raise SystemExit(f"--postgres must name a database of the benchmark's own, not {target.database!r}")
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}):
            connection.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@dataclass(frozen=True, slots=True)
class Population:
    delegates: int
    officers: int
    logins: int
    sessions: tuple[str, ...]


def populate(target: Target, people: Population, hash_method: str, now: dt.datetime) -> float:
    """The COP-4 demo, open online sessions, and the benchmark's accounts, written before the server starts.

    Delegates are approved Party delegates of COP-4 registered for its online segment (as the
    registration desk leaves them); the accounts of the login storm also have a password (hashed as
    production hashes) and an enrolled authenticator. Returns the seconds it took.
    """
    started = time.perf_counter()
    database.upgrade(target.url)
    with Session(bind=target.engine) as db:
        demo.seed(db, now, DEMO_HASH)
        db.commit()
        meeting = db.scalar(sa.select(Meeting).where(Meeting.code == demo.MEETING_CODE))
        online = next(s for s in meeting.segments if s.kind == SegmentKind.ONLINE)
        first = online.sessions[0]
        party_ids = list(
            db.scalars(
                sa.select(Party.id)
                .where(Party.convention == meeting.convention, Party.entry_into_force_on <= first.local_date)
                .order_by(Party.code)
            )
        )
        target.meeting_id, segment_id = meeting.id, online.id
        for name in people.sessions:
            session = MeetingSession(
                segment=online,
                title=f"Benchmark: {name}",
                kind=SessionKind.PLENARY,
                scheduled_start_at=first.scheduled_start_at,
                scheduled_end_at=first.scheduled_end_at,
                state=SessionState.OPEN,
                opened_at=now,
            )
            db.add(session)
            db.flush()
            target.sessions[name] = session.id
        db.commit()

    password_hash = hash_password(PASSWORD, hash_method) if people.logins else None
    groups = (("d", people.delegates, Role.PARTICIPANT), ("o", people.officers, Role.OFFICER))
    groups += (("l", people.logins, Role.PARTICIPANT),)
    with target.engine.begin() as connection:
        for prefix, count, role in groups:
            for chunk in range(0, count, 5000):
                connection.execute(
                    sa.insert(User),
                    [
                        {
                            "email": f"bench-{prefix}{n:05d}@example.org",
                            "password_hash": password_hash if prefix == "l" else None,
                            "email_confirmed_at": now,
                            "given_name": "Bench",
                            "family_name": f"{prefix.upper()}{n:05d}",
                            "gender": Gender.UNDISCLOSED,
                            "role": role,
                            "is_enabled": True,
                            "session_epoch": 0,
                            "created_at": now,
                        }
                        for n in range(chunk, min(count, chunk + 5000))
                    ],
                )

        def ids(prefix: str) -> list[int]:
            return list(
                connection.scalars(sa.select(User.id).where(User.email.like(f"bench-{prefix}%")).order_by(User.email))
            )

        target.delegates, target.officers, login_ids = ids("d"), ids("o"), ids("l")
        participants = target.delegates + login_ids
        for chunk in range(0, len(participants), 5000):
            part = participants[chunk : chunk + 5000]
            connection.execute(
                sa.insert(Registration),
                [
                    {
                        "meeting_id": target.meeting_id,
                        "user_id": user_id,
                        "category": Category.PARTY,
                        "party_id": party_ids[(chunk + i) % len(party_ids)],
                        "function": Function.HEAD,
                        "status": RegistrationStatus.APPROVED,
                        "submitted_at": now,
                        "decided_at": now,
                        "focal_point": False,
                    }
                    for i, user_id in enumerate(part)
                ],
            )
        registration_ids = connection.scalars(
            sa.select(Registration.id)
            .join(User, User.id == Registration.user_id)
            .where(Registration.meeting_id == target.meeting_id, User.email.like("bench-%"))
        ).all()
        for chunk in range(0, len(registration_ids), 5000):
            connection.execute(
                sa.insert(registration_segments),
                [{"registration_id": r, "segment_id": segment_id} for r in registration_ids[chunk : chunk + 5000]],
            )
        secrets_ = [totp.new_secret() for _ in login_ids]
        if login_ids:
            connection.execute(
                sa.insert(Authenticator),
                [
                    {"user_id": user_id, "secret": secret, "created_at": now, "confirmed_at": now}
                    for user_id, secret in zip(login_ids, secrets_, strict=True)
                ],
            )
        target.logins = [
            {"email": f"bench-l{n:05d}@example.org", "password": PASSWORD, "secret": secret}
            for n, secret in enumerate(secrets_)
        ]
    if target.kind == "postgresql":
        with target.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def cookies(secret_key: str, user_ids: list[int]) -> list[str]:
    """Login cookies as the server signs them: a Flask session naming the account and its session epoch."""
    signer = Flask("bench-live")
    signer.secret_key = secret_key
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    return [serializer.dumps({"_user_id": f"{user_id}:0", "_fresh": True}) for user_id in user_ids]


def database_state(target: Target, session_id: int) -> tuple[int, set[str]]:
    """Who is present in the session by the database: participants, and the Parties' codes."""
    with target.engine.connect() as connection:
        participants = connection.scalar(
            sa.select(sa.func.count(sa.distinct(Presence.user_id))).where(Presence.session_id == session_id)
        )
        codes = set(
            connection.scalars(
                sa.select(sa.distinct(Party.code))
                .join(Registration, Registration.party_id == Party.id)
                .join(Presence, Presence.user_id == Registration.user_id)
                .where(
                    Presence.session_id == session_id,
                    Registration.meeting_id == target.meeting_id,
                    Registration.status == RegistrationStatus.APPROVED,
                    Registration.category == Category.PARTY,
                )
            )
        )
    return participants, codes


def tidy(target: Target, session_id: int) -> None:
    """End a finished benchmark's presences behind the server's back, so that no lapse sweep runs into the next."""
    with target.engine.begin() as connection:
        connection.execute(sa.delete(Presence).where(Presence.session_id == session_id))


def dashboards_agree(target: Target, session_id: int, final_states: list[dict]) -> tuple[bool, str]:
    """Whether every dashboard's newest state matches the database; and a line that says so."""
    participants, codes = database_state(target, session_id)
    total = sum(s["dashboards"] for s in final_states)
    wrong = [s for s in final_states if s["participants_present"] != participants or set(s["present"] or {}) != codes]
    if not wrong:
        return (
            True,
            f"all {total} dashboards end at the database's state ({participants} present, {len(codes)} Parties)",
        )
    seen = "; ".join(
        f"{s['dashboards']} on {s['url'].rsplit(':', 1)[1]} show {s['participants_present']} present, "
        f"{len(s['present'] or {})} Parties"
        for s in wrong[:4]
    )
    return False, (
        f"{sum(s['dashboards'] for s in wrong)} of {total} dashboards differ from the database "
        f"({participants} present, {len(codes)} Parties): {seen}"
    )


# Reporting -----------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def times(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "n/a"
    return f"{value / base:.2f}x"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT MET", None: "not measured"}[met]


def errors_text(errors: dict) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(errors.items())) if errors else "none"


def refusals(result: dict) -> str:
    """Refused or unanswered events: in the window, and at any time of the run (warm-up and wind-down too)."""
    return (
        f"errors: {errors_text(result['errors'])} in the window, {errors_text(result['all_errors'])} in the whole run"
    )


def cpu_text(cpu: dict[str, float], client: float | None = None) -> str:
    parts = [f"server worker(s) {cpu.get('server', 0) * 100:.0f} %"]
    if "database" in cpu:
        parts.append(f"PostgreSQL {cpu['database'] * 100:.0f} % (in {cpu['backends']:.0f} backend processes)")
    if client is not None:
        parts.append(f"load generator {client * 100:.0f} %")
    return "CPU, as a share of one core: " + ", ".join(parts)


# Where the server's time goes: a sampling profile of the worker (py-spy), summed up.

CATEGORIES = (
    ("the database, through its driver (sqlite3, psycopg)", ("/sqlite3/", "/psycopg/", "/psycopg_binary/")),
    ("SQLAlchemy", ("/sqlalchemy/",)),
    ("Socket.IO, Engine.IO, WebSocket", ("/socketio/", "/engineio/", "/simple_websocket/", "/wsproto/", "/h11/")),
    ("Flask, Werkzeug, Flask-Login, Flask-SocketIO", ("/flask/", "/werkzeug/", "/flask_login/", "/flask_socketio/")),
    ("signed cookies (itsdangerous, hashlib)", ("/itsdangerous/", "/hashlib.py", "/hmac.py")),
    ("gevent and sockets", ("/gevent/", "/socket.py", "/selectors.py")),
    ("JSON", ("/json/",)),
    ("logging", ("/logging/",)),
)


DRIVER_CALLS = tuple(
    f"DefaultDialect.{name} "
    for name in ("do_execute", "do_executemany", "do_execute_no_params", "do_commit", "do_rollback", "do_begin")
)


def _frame_file(frame: str) -> str:
    start, end = frame.rfind("("), frame.rfind(":")
    return frame[start + 1 : end] if 0 <= start < end else frame


def profile_summary(path: Path, app_dir: Path, top: int = 12) -> list[str]:
    """py-spy's raw stacks as two tables: where the CPU was (the innermost frame), and the app's functions."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(count for _, count in stacks)
    if not total:
        return ["   profile: no samples"]
    app = str(app_dir) + "/"
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        where = _frame_file(frames[-1])
        name = next((label for label, marks in CATEGORIES if any(m in where for m in marks)), None)
        if frames[-1].startswith(DRIVER_CALLS):
            # Without native frames, time inside the driver's C code shows as the call that entered it.
            name = CATEGORIES[0][0]
        if name is None:
            name = "the app (its own code)" if where.startswith(app) and "/.venv/" not in where else "other"
        leaf[name] += count
        seen = set()
        for frame in frames:
            file = _frame_file(frame)
            if file.startswith(app) and "/.venv/" not in file:
                label = f"{frame.split(' (')[0]} ({file[len(app) :]})"
                if label not in seen:
                    seen.add(label)
                    inclusive[label] += count
    shares = ", ".join(f"{name} {n / total * 100:.0f} %" for name, n in leaf.most_common())
    return [
        f"   profile of the server worker during the window ({total:,} samples of its CPU, py-spy):",
        f"     where the CPU was (innermost frame): {shares}",
        "     the app's functions, with what they call (share of samples):",
        *(f"       {n / total * 100:5.1f} %  {label}" for label, n in inclusive.most_common(top)),
    ]


class Profiler:
    """py-spy recording a server worker from a checkpoint on, if asked for."""

    def __init__(self, server: Server, seconds: float, output: Path) -> None:
        self.server, self.seconds, self.output = server, seconds, output
        self.process: subprocess.Popen | None = None

    def begin(self) -> None:
        spy = Path(sys.executable).with_name("py-spy")
        command = [str(spy) if spy.exists() else "py-spy", "record", "--pid", str(self.server.worker)]
        command += ["--duration", str(max(1, round(self.seconds))), "--rate", "200", "--format", "raw"]
        command += ["--nonblocking", "--full-filenames", "--output", str(self.output)]
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            self.process = None

    def summary(self, app_dir: Path) -> list[str]:
        if self.process is None:
            return ["   profile: py-spy is not installed (pip install py-spy)"]
        try:
            self.process.wait(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if not self.output.exists():
            return ["   profile: py-spy recorded nothing (it needs permission to read the worker's memory)"]
        return profile_summary(self.output, app_dir)


@dataclass(slots=True)
class Row:
    benchmark: str
    figure: str
    target: str
    met: bool | None


@dataclass(slots=True)
class Report:
    lines: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def say(self, *lines: str) -> None:
        for line in lines:
            self.lines.append(line)
            print(line, flush=True)


# The run -------------------------------------------------------------------------------------------


class Run:
    """Everything one invocation measures, in order, with the servers it starts."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, workdir: Path, report: Report) -> None:
        self.args, self.sizes, self.workdir, self.report = args, sizes, workdir, report
        self.secret_key = secrets.token_hex(32)
        self.totp_key = Fernet.generate_key().decode()
        crypto.configure(self.totp_key)
        self.bare: dict[str, dict] = {}
        self.throughput: dict[str, dict] = {}
        self.servers: list[Server] = []
        self.say = report.say

    # Servers and jobs

    def env(self, target: Target | None, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SOCKETIO_", "DATABASE_"))}
        env.update(
            APP_CONFIG="production",
            SECRET_KEY=self.secret_key,
            TOTP_ENCRYPTION_KEY=self.totp_key,
            SESSION_COOKIE_SECURE="false",  # loopback is plain http
            PYTHONUNBUFFERED="1",
            # As deploy/gunicorn.conf.py sets it, for the app and the bare server alike.
            GEVENT_TRACK_GREENLET_TREE="false",
            # Dashboards resync when the server says: this often, less often for a crowd (meetings/live.py).
            DASHBOARD_RESYNC_SECONDS=str(self.sizes.resync),
        )
        if target is not None:
            env["DATABASE_URL"] = target.url
        env.update(extra)
        return env

    def start_app(self, target: Target, name: str, sockets: int, **extra: str) -> Server:
        return self.start_apps(target, [name], sockets, **extra)[0]

    def start_apps(self, target: Target, names: list[str], sockets: int, **extra: str) -> list[Server]:
        """App servers on the target database, started side by side."""
        connections = max(1000, sockets + 200)
        env = self.env(target, SOCKETIO_MAX_CONNECTIONS=str(connections), **extra)
        servers = [
            Server(
                name,
                "app:create_app('production')",
                self.args.app_dir,
                env,
                self.workdir / f"server-{name}.log",
                connections,
            )
            for name in names
        ]
        self.servers.extend(servers)
        for server in servers:
            server.launch()
        return [server.wait_ready("/auth/login") for server in servers]

    def start_bare(self, sockets: int) -> Server:
        connections = max(1000, sockets + 200)
        server = Server("bare", "bare_server:app", BENCH, self.env(None), self.workdir / "server-bare.log", connections)
        self.servers.append(server)
        return server.start("/socket.io/?EIO=4&transport=polling")

    def stop(self, *servers: Server) -> None:
        for server in servers:
            server.stop()

    def server_errors(self) -> dict[str, list[str]]:
        return {server.log_path.name: server.log_errors() for server in self.servers}

    def job(self, scenario: str, urls: list[str], session_id: int, **fields: object) -> dict:
        return {
            "scenario": scenario,
            "urls": urls,
            "session_id": session_id,
            "concurrency": self.sizes.concurrency,
            "settle": self.sizes.settle,
            **fields,
        }

    def window_timeout(self, seconds: float) -> float:
        return 300 + 3 * seconds

    # Targets

    def target(self, kind: str) -> Target:
        if kind == "sqlite":
            url = f"sqlite:///{self.workdir / 'bench-live.sqlite3'}"
            label = "SQLite"
        else:
            url = self.args.postgres
            reset_postgres(url)
            label = "PostgreSQL"
        target = Target(kind, url, database.make_engine(url), label)
        s = self.sizes
        people = Population(
            delegates=max(
                s.delegates, s.burst, s.idle_sockets, s.browser_sockets, s.storm_delegates, s.soak_delegates, 20
            ),
            officers=max(s.dashboards, s.burst_dashboards, s.fanout_dashboards, s.soak_dashboards, 5),
            logins=s.logins,
            sessions=("warm-up", "throughput", "fan-out", "burst", "idle", "storm", "soak", "two processes"),
        )
        settings = config.load("production", self.env(target))
        seconds = populate(target, people, settings["PASSWORD_HASH_METHOD"], database.utcnow())
        target.durability = durability(target.engine)
        self.say(
            f"{label}: {target.durability}; filled in {seconds:.1f} s with {len(target.delegates):,} delegates, "
            f"{len(target.officers):,} officers, {len(target.logins):,} accounts that log in "
            f"(password hash {settings['PASSWORD_HASH_METHOD']}, as production), one open online session each"
        )
        return target

    def warm(self, server: Server, target: Target) -> None:
        """A few check-ins and a dashboard, so that what is loaded once is loaded before memory is read."""
        session_id = target.sessions["warm-up"]
        job = self.job(
            "throughput",
            [server.url],
            session_id,
            delegates=cookies(self.secret_key, target.delegates[:5]),
            officers=cookies(self.secret_key, target.officers[:1]),
            warmup=0.2,
            seconds=0.5,
            settle=0.3,
        )
        run_loadgen(self.workdir, f"warm-{server.name}", job)
        tidy(target, session_id)

    # The bare server

    def bare_runs(self, wanted: set[str]) -> None:
        s = self.sizes
        self.say("", "Bare Socket.IO server (bench/bare_server.py: the same gunicorn gevent worker, acknowledges only)")
        fake = [f"bare{n}" for n in range(max(s.delegates, s.dashboards, s.idle_sockets, s.burst, s.storm_delegates))]
        if "5" in wanted:
            # On a server of its own, started first: a worker's memory does not go back down once
            # sockets have come and gone.
            browsers = self.start_bare(s.browser_sockets)
            try:
                per, result = self.idle_memory(browsers, "bare-browsers", 1, fake[: s.browser_sockets], compress=15)
            finally:
                self.stop(browsers)
            self.bare["browsers"] = {**result, "kib_per_socket": per}
            self.say(
                f"   idle, sockets offering compression as browsers do: {result['sockets']:,} sockets, "
                f"{per:.1f} KiB per socket (simple-websocket accepts the offer)"
            )
        server = self.start_bare(max(s.idle_sockets, s.delegates + s.fanout_dashboards))
        try:
            if "5" in wanted:
                per, result = self.idle_memory(server, "bare-idle", 1, fake[: s.idle_sockets])
                self.bare["idle"] = {**result, "kib_per_socket": per}
                self.say(f"   idle: {result['sockets']:,} sockets, {per:.1f} KiB per socket")
            if wanted & {"1", "3", "4", "7"}:
                job = self.job(
                    "throughput",
                    [server.url],
                    1,
                    delegates=fake[: s.delegates],
                    officers=fake[: s.dashboards],
                    warmup=s.warmup,
                    seconds=s.seconds,
                    resync=s.resync,
                )
                meter = CpuMeter([server], None)
                result = run_loadgen(
                    self.workdir, "bare-throughput", job, self._meter(meter), self.window_timeout(s.seconds)
                )
                self.bare["throughput"] = result
                lat = result["latency_ms"]
                self.say(
                    f"   throughput: {s.delegates} clients back to back, {s.dashboards} watching: "
                    f"{result['rate']:,.0f} acks/s, p50 {ms(lat.get('p50'))}, p99 {ms(lat.get('p99'))}; "
                    f"{cpu_text(meter.result, result['client_cpu'])}"
                )
            if "2" in wanted:
                job = self.job(
                    "burst",
                    [server.url],
                    1,
                    delegates=fake[: s.burst],
                    officers=fake[: s.burst_dashboards],
                    window=s.burst_window,
                )
                result = run_loadgen(self.workdir, "bare-burst", job, timeout=self.window_timeout(s.burst_window))
                self.bare["burst"] = result
                self.say(
                    f"   burst: {result['acknowledged_ok']:,} of {s.burst:,} acknowledged in "
                    f"{result['seconds']:.1f} s, "
                    f"ack p99 {ms(result['ack_ms'].get('p99'))}"
                )
            if wanted & {"6", "7"}:
                job = self.job(
                    "storm",
                    [server.url],
                    1,
                    delegates=fake[: s.storm_delegates],
                    think=s.storm_think,
                    warmup=s.warmup,
                    before=s.storm_before,
                )
                result = run_loadgen(self.workdir, "bare-paced", job, timeout=self.window_timeout(s.storm_before))
                self.bare["paced"] = result["before"]
                lat = result["before"]["latency_ms"]
                self.say(
                    f"   paced: {s.storm_delegates} clients, one event each every {s.storm_think} s: "
                    f"{result['before']['rate']:,.0f} acks/s, p50 {ms(lat.get('p50'))}, p99 {ms(lat.get('p99'))}"
                )
        finally:
            self.stop(server)

    @staticmethod
    def _meter(meter: CpuMeter, profiler: Profiler | None = None) -> Callable[[str, dict], None]:
        def on(name: str, _message: dict) -> None:
            if name == "window_start":
                meter.begin()
                if profiler is not None:
                    profiler.begin()
            elif name == "window_end":
                meter.end()

        return on

    # 1 and 3: throughput

    def measure_throughput(
        self, server: Server, target: Target, session: str, dashboards: int, profile: bool = False
    ) -> tuple[dict, dict]:
        s = self.sizes
        session_id = target.sessions[session]
        job = self.job(
            "throughput",
            [server.url],
            session_id,
            delegates=cookies(self.secret_key, target.delegates[: s.delegates]),
            officers=cookies(self.secret_key, target.officers[:dashboards]),
            warmup=s.warmup,
            seconds=s.seconds,
            resync=s.resync,
        )
        meter = CpuMeter([server], target.database_name())
        name = f"{session}-{target.kind}-{dashboards}"
        profiler = Profiler(server, s.seconds, self.workdir / f"profile-{name}.txt") if profile else None
        result = run_loadgen(self.workdir, name, job, self._meter(meter, profiler), self.window_timeout(s.seconds))
        agree = dashboards_agree(target, session_id, result["final_states"])
        tidy(target, session_id)
        if profiler is not None:
            result["profile"] = profiler.summary(self.args.app_dir)
        return {**result, "agree": agree}, meter.result

    def throughput_lines(self, result: dict, cpu: dict) -> list[str]:
        bare = self.bare.get("throughput") or {}
        lat, bare_lat = result["latency_ms"], bare.get("latency_ms", {})
        return [
            f"   rate: {result['rate']:,.0f} events/s acknowledged ({times(result['rate'], bare.get('rate'))} the bare "
            f"server's {bare.get('rate', 0):,.0f}/s); {result['events']:,} events in {result['seconds']:.1f} s",
            f"   ack latency: p50 {ms(lat.get('p50'))} ({times(lat.get('p50'), bare_lat.get('p50'))} bare), "
            f"p90 {ms(lat.get('p90'))}, p99 {ms(lat.get('p99'))} ({times(lat.get('p99'), bare_lat.get('p99'))} bare), "
            f"max {ms(lat.get('max'))}",
            f"   {refusals(result)}; connect failures: {errors_text(result['connect_failures'])}",
            f"   dashboards: {result['dashboards']} connected, {result['broadcasts_per_dashboard_per_s']} broadcasts/s "
            f"each; watch_session refused: {errors_text(result['refused_watch'])}; {result['agree'][1]}",
            f"   {cpu_text(cpu, result['client_cpu'])}",
        ]

    def bench_throughput(self, target: Target, server: Server) -> None:
        s = self.sizes
        self.say(
            "",
            f"1. Check-in throughput, {target.label} ({target.durability}), one process",
            f"   measured: {s.delegates} delegates alternate check_in and check_out with fresh nonces, each sending "
            f"the next once the last is acknowledged (after its commit), while {s.dashboards} dashboards watch "
            f"(watch_session, again when the server says: every {s.resync:g} s, less often for a crowd) and count "
            f"quorum_updated; {s.seconds:g} s window after "
            f"{s.warmup:g} s of warm-up",
        )
        result, cpu = self.measure_throughput(server, target, "throughput", s.dashboards, self.args.profile)
        self.throughput[target.kind] = result
        self.say(*self.throughput_lines(result, cpu), *result.get("profile", []))
        floor = 2000 if target.kind == "sqlite" else 1000
        bare_rate = (self.bare.get("throughput") or {}).get("rate")
        p99 = result["latency_ms"].get("p99")
        met = result["rate"] >= floor and (bare_rate is None or result["rate"] >= 0.5 * bare_rate)
        met = met and p99 is not None and p99 < 100 and not result["all_errors"]
        self.say(f"   target: ≥ {floor:,}/s, ≥ 0.5 of bare, p99 < 100 ms, no errors: {verdict(met)}")
        self.report.rows.append(
            Row(
                f"1 throughput, {target.label}",
                f"{result['rate']:,.0f}/s ({times(result['rate'], bare_rate)} bare), p99 {ms(p99)}",
                f"≥ {floor:,}/s, ≥ 0.5x, p99 < 100 ms",
                met,
            )
        )

    def bench_fanout(self, target: Target, server: Server) -> None:
        s = self.sizes
        self.say(
            "",
            f"3. Fan-out guard, {target.label} ({target.durability})",
            f"   measured: benchmark 1's load with {s.fanout_dashboards:,} dashboards watching instead of "
            f"{s.dashboards}; throughput as a ratio to that with {s.dashboards}. The server spaces out a crowd's "
            "broadcasts (at most 2,000 messages a second, at least two broadcasts a second each) and resyncs "
            "(at most 10 a second)",
        )
        base = self.throughput.get(target.kind)
        if base is None:
            base, _cpu = self.measure_throughput(server, target, "throughput", s.dashboards)
            self.throughput[target.kind] = base
        result, cpu = self.measure_throughput(server, target, "fan-out", s.fanout_dashboards, self.args.profile)
        self.say(*self.throughput_lines(result, cpu), *result.get("profile", []))
        ratio = result["rate"] / base["rate"] if base["rate"] else 0.0
        met = ratio >= 0.4 and not result["all_errors"]
        self.say(
            f"   ratio: {result['rate']:,.0f}/s with {s.fanout_dashboards:,} dashboards against {base['rate']:,.0f}/s "
            f"with {s.dashboards}: {ratio:.2f}",
            f"   target: ≥ 0.4: {verdict(met)}",
        )
        self.report.rows.append(
            Row(
                f"3 fan-out, {target.label}",
                f"{ratio:.2f} ({result['rate']:,.0f}/s with {s.fanout_dashboards:,}, "
                f"p99 {ms(result['latency_ms'].get('p99'))})",
                "≥ 0.4",
                met,
            )
        )

    # 2: the opening burst

    def bench_burst(self, target: Target, server: Server) -> None:
        s = self.sizes
        session_id = target.sessions["burst"]
        self.say(
            "",
            f"2. Opening burst, {target.label} ({target.durability}), one process",
            f"   measured: {s.burst:,} delegates connect (their login cookie), each then checking in, arriving evenly "
            f"over {s.burst_window:g} s while {s.burst_dashboards} dashboards watch; the attendance log and every "
            "dashboard's last state are checked against what was sent. Check-in-to-dashboard latency: from the "
            "check_in's send to the first quorum_updated on that dashboard counting it (only entries happen, so the "
            "k-th acknowledged check-in shows once a dashboard counts k present), over every dashboard",
        )
        job = self.job(
            "burst",
            [server.url],
            session_id,
            delegates=cookies(self.secret_key, target.delegates[: s.burst]),
            officers=cookies(self.secret_key, target.officers[: s.burst_dashboards]),
            window=s.burst_window,
            settle=self.sizes.settle,
        )
        profile = self.workdir / f"profile-burst-{target.kind}.txt"
        profiler = Profiler(server, s.burst_window, profile) if self.args.profile else None

        def on(name: str, _message: dict) -> None:
            if name == "ready" and profiler is not None:
                profiler.begin()

        result = run_loadgen(self.workdir, f"burst-{target.kind}", job, on, self.window_timeout(s.burst_window))
        with target.engine.connect() as connection:
            entries, people, exits = connection.execute(
                sa.select(
                    sa.func.count().filter(AttendanceEvent.kind == EventKind.ENTRY),
                    sa.func.count(sa.distinct(AttendanceEvent.user_id)),
                    sa.func.count().filter(AttendanceEvent.kind == EventKind.EXIT),
                ).where(AttendanceEvent.session_id == session_id)
            ).one()
        agree, agree_line = dashboards_agree(target, session_id, result["final_states"])
        tidy(target, session_id)
        bare = self.bare.get("burst") or {}
        all_acked = result["acknowledged_ok"] == s.burst
        exact = entries == s.burst and people == s.burst and exits == 0
        dash = result["dashboard_ms"]
        self.say(
            f"   acknowledged: {result['acknowledged_ok']:,} of {s.burst:,} (connected {result['connected']:,}); "
            f"errors: {errors_text(result['errors'])}; connect failures: {errors_text(result['connect_failures'])}",
            f"   last acknowledgement {result['seconds']:.2f} s after the first arrival (window {s.burst_window:g} s)",
            f"   attendance log: {entries:,} entries for {people:,} delegates, {exits} exits: "
            + ("one each, none lost or doubled" if exact else "NOT one each"),
            f"   dashboards: {agree_line}; {result['unreflected']} (check-in, dashboard) pairs never shown; "
            f"watch_session refused: {errors_text(result['refused_watch'])}",
            f"   connect: p50 {ms(result['connect_ms'].get('p50'))}, p99 {ms(result['connect_ms'].get('p99'))}; "
            f"ack: p50 {ms(result['ack_ms'].get('p50'))}, p99 {ms(result['ack_ms'].get('p99'))} "
            f"({times(result['ack_ms'].get('p99'), bare.get('ack_ms', {}).get('p99'))} the bare server's "
            f"{ms(bare.get('ack_ms', {}).get('p99'))})",
            f"   check-in to dashboard: p50 {ms(dash.get('p50'))}, p99 {ms(dash.get('p99'))}, "
            f"max {ms(dash.get('max'))} "
            f"(first dashboard to show it: p99 {ms(result['first_dashboard_ms'].get('p99'))}); "
            f"{result['broadcasts']:,} broadcasts received in all",
            f"   load generator CPU {result['client_cpu'] * 100:.0f} % of one core",
            *(profiler.summary(self.args.app_dir) if profiler is not None else []),
        )
        met = all_acked and exact and agree and not result["unreflected"] and (dash.get("p99") or 1e9) < 500
        self.say(f"   target: all acknowledged, none lost or doubled, p99 < 500 ms: {verdict(met)}")
        self.report.rows.append(
            Row(
                f"2 burst, {target.label}",
                f"{result['acknowledged_ok']:,}/{s.burst:,} acked, log {'exact' if exact else 'WRONG'}, "
                f"dashboard p99 {ms(dash.get('p99'))}",
                "all acked, exact, p99 < 500 ms",
                met,
            )
        )

    # 4: two processes

    def bench_two_processes(self, target: Target) -> None:
        s = self.sizes
        session_id = target.sessions["two processes"]
        self.say(
            "",
            f"4. Two processes, {target.label} ({target.durability}), Socket.IO message queue {self.args.redis}",
            f"   measured: benchmark 1's load ({s.delegates} delegates back to back, {s.dashboards} dashboards) "
            "spread evenly over two server processes; check-ins/s together; each dashboard's last state against "
            "the database",
        )
        servers = self.start_apps(
            target, ["two-1", "two-2"], s.delegates + s.dashboards, SOCKETIO_MESSAGE_QUEUE=self.args.redis
        )
        try:
            job = self.job(
                "throughput",
                [server.url for server in servers],
                session_id,
                delegates=cookies(self.secret_key, target.delegates[: s.delegates]),
                officers=cookies(self.secret_key, target.officers[: s.dashboards]),
                warmup=s.warmup,
                seconds=s.seconds,
                resync=s.resync,
                settle=self.sizes.settle,
            )
            meter = CpuMeter(servers, target.database_name())
            profile = self.workdir / "profile-two-processes.txt"
            profiler = Profiler(servers[0], s.seconds, profile) if self.args.profile else None
            result = run_loadgen(
                self.workdir, "two-processes", job, self._meter(meter, profiler), self.window_timeout(s.seconds)
            )
            agree = dashboards_agree(target, session_id, result["final_states"])
            tidy(target, session_id)
            if profiler is not None:
                result["profile"] = [
                    line.replace("the server worker", "the first server's worker")
                    for line in profiler.summary(self.args.app_dir)
                ]
        finally:
            self.stop(*servers)
        result["agree"] = agree
        self.say(*self.throughput_lines(result, meter.result), *result.get("profile", []))
        met = result["rate"] >= 3000 and agree[0] and not result["all_errors"]
        self.say(f"   target: ≥ 3,000/s together, every dashboard correct: {verdict(met)}")
        self.report.rows.append(
            Row(
                "4 two processes",
                f"{result['rate']:,.0f}/s, dashboards {'correct' if agree[0] else 'WRONG'}",
                "≥ 3,000/s, correct",
                met,
            )
        )

    # 5: idle sockets

    def idle_memory(
        self, server: Server, name: str, session_id: int, delegates: list[str], compress: int = 0
    ) -> tuple[float, dict]:
        """Run the idle scenario with these delegates: the server's memory per connected socket, and the result
        (with the memory read before and once the sockets were steady, in KiB)."""
        s = self.sizes
        memory = {"before": server.rss_kib()}

        def sample(checkpoint: str, _message: dict) -> None:
            memory[checkpoint] = server.rss_kib()

        job = self.job(
            "idle",
            [server.url],
            session_id,
            delegates=delegates,
            heartbeat=s.heartbeat,
            hold=s.heartbeat,
            compress=compress,
        )
        result = run_loadgen(self.workdir, name, job, sample, self.window_timeout(s.heartbeat))
        result["rss_kib"] = memory
        return (memory["steady"] - memory["before"]) / max(1, result["sockets"]), result

    def bench_idle(self, target: Target, shared: Server | None) -> None:
        s = self.sizes
        session_id = target.sessions["idle"]
        self.say(
            "",
            f"5. Idle sockets, {target.label} ({target.durability}), one process",
            f"   measured: the server worker's resident memory (VmRSS) after warm-up, then with {s.idle_sockets:,} "
            f"delegates connected and checked in, each sending a heartbeat every {s.heartbeat:g} s, after "
            f"{s.heartbeat:g} s of them; the difference per socket",
        )
        server = shared or self.start_app(target, f"idle-{target.kind}", s.idle_sockets)
        try:
            if shared is None:
                self.warm(server, target)
            delegates = cookies(self.secret_key, target.delegates[: s.idle_sockets])
            per, result = self.idle_memory(server, f"idle-{target.kind}", session_id, delegates)
            tidy(target, session_id)
        finally:
            if shared is None:
                self.stop(server)
        # Browsers offer permessage-deflate, which the app declines (python-socketio's client does not
        # offer it): measured on a fresh server, whose memory has not yet held other sockets.
        browsers = self.start_app(target, f"idle-browsers-{target.kind}", s.browser_sockets)
        try:
            self.warm(browsers, target)
            delegates = cookies(self.secret_key, target.delegates[: s.browser_sockets])
            browser_per, browser_result = self.idle_memory(
                browsers, f"idle-browsers-{target.kind}", session_id, delegates, compress=15
            )
            tidy(target, session_id)
        finally:
            self.stop(browsers)
        bare = (self.bare.get("idle") or {}).get("kib_per_socket")
        bare_browsers = (self.bare.get("browsers") or {}).get("kib_per_socket")
        beats = result["heartbeats"]
        self.say(
            f"   sockets: {result['sockets']:,} connected in {result['connect_seconds']:.1f} s, "
            f"{result['checked_in']:,} checked in (ack p99 {ms(result['check_in']['latency_ms'].get('p99'))}, "
            f"errors: {errors_text(result['check_in']['errors'])}); "
            f"connect failures: {errors_text(result['connect_failures'])}",
            f"   memory: {result['rss_kib']['before'] / 1024:.1f} MiB before, "
            f"{result['rss_kib']['steady'] / 1024:.1f} MiB with the sockets: "
            f"{per:.1f} KiB per socket ({times(per, bare)} the bare server's {bare or 0:.1f} KiB)",
            f"   heartbeats: {beats['events']:,} acknowledged at {beats['rate']:,.0f}/s, p50 "
            f"{ms(beats['latency_ms'].get('p50'))}, p99 {ms(beats['latency_ms'].get('p99'))}; errors: "
            f"{errors_text(beats['errors'])}; {result['heartbeats_absent']} answered present: false",
            f"   sockets offering compression, as browsers' do (declined), on a fresh server: "
            f"{browser_result['sockets']:,} of {s.browser_sockets:,} connected, {browser_per:.1f} KiB per socket "
            f"({times(browser_per, bare_browsers)} the bare server's {bare_browsers or 0:.1f} KiB, which accepts it)",
        )
        met = per <= 50 and result["sockets"] == s.idle_sockets
        self.say(f"   target: ≤ 50 KiB per socket, every socket connected: {verdict(met)}")
        self.report.rows.append(
            Row(f"5 idle sockets, {target.label}", f"{per:.1f} KiB/socket ({times(per, bare)} bare)", "≤ 50 KiB", met)
        )

    # 6: login storm

    def bench_storm(self, target: Target, server: Server) -> None:
        s = self.sizes
        session_id = target.sessions["storm"]
        addresses = s.login_addresses or max(1, -(-s.logins * 60 // max(1.0, s.login_window) // 100) + 1)
        addresses = min(int(addresses), 250)
        self.say(
            "",
            f"6. Login storm, {target.label} ({target.durability}), one process",
            f"   measured: {s.storm_delegates} delegates check in and out at a steady pace (each every "
            f"{s.storm_think:g} s on average); after {s.storm_before:g} s, {s.logins:,} real logins arrive evenly over "
            f"{s.login_window:g} s: the login page, email and password with its CSRF token (hash as configured for "
            "production), the code page, a TOTP code; then the delegate's socket connects with the new cookie and "
            f"checks in. The logins come from {addresses} loopback addresses (127.0.0.2 on), as many as keep each "
            "under the login form's 120 per minute per address; check-in ack latency before the storm and during it",
        )
        job = self.job(
            "storm",
            [server.url],
            session_id,
            delegates=cookies(self.secret_key, target.delegates[: s.storm_delegates]),
            think=s.storm_think,
            warmup=s.warmup,
            before=s.storm_before,
            logins=target.logins[: s.logins],
            window=s.login_window,
            addresses=[f"127.0.0.{2 + n}" for n in range(addresses)],
        )
        meter = CpuMeter([server], target.database_name())
        profile = self.workdir / f"profile-storm-{target.kind}.txt"
        profiler = Profiler(server, s.login_window, profile) if self.args.profile else None

        def on(name: str, _message: dict) -> None:
            if name == "storm_start":
                meter.begin()
                if profiler is not None:
                    profiler.begin()
            elif name == "storm_end":
                meter.end()

        result = run_loadgen(
            self.workdir, f"storm-{target.kind}", job, on, self.window_timeout(s.storm_before + s.login_window)
        )
        tidy(target, session_id)
        before, during = result["before"], result["during"] or {}
        p99_before, p99_during = before["latency_ms"].get("p99"), (during.get("latency_ms") or {}).get("p99")
        bare = (self.bare.get("paced") or {}).get("latency_ms", {})
        self.say(
            f"   logins: {result['logins_ok']:,} of {result['logins']:,} succeeded in {result['storm_seconds']:.1f} s "
            f"(window {s.login_window:g} s); refused or failed: {errors_text(result['login_errors'])}; a login's four "
            f"requests took p50 {ms(result['login_ms'].get('p50'))}, p99 {ms(result['login_ms'].get('p99'))}",
            f"   check-in after login: p99 {ms(result['check_in_after_login_ms'].get('p99'))}; errors: "
            f"{errors_text(result['check_in_after_login_errors'])}",
            f"   check-in acks before: {before['rate']:,.0f}/s, p50 {ms(before['latency_ms'].get('p50'))}, p99 "
            f"{ms(p99_before)} ({times(p99_before, bare.get('p99'))} the bare server's {ms(bare.get('p99'))} "
            "at this pace)",
            f"   check-in acks during: {during.get('rate', 0):,.0f}/s, p50 "
            f"{ms((during.get('latency_ms') or {}).get('p50'))}, p99 {ms(p99_during)} "
            f"({times(p99_during, p99_before)} before, {times(p99_during, bare.get('p99'))} bare); errors: "
            f"{errors_text(during.get('errors', {}))}",
            f"   during the storm, {cpu_text(meter.result)}",
            *(profiler.summary(self.args.app_dir) if profiler is not None else []),
        )
        met = (
            p99_during is not None
            and p99_during < 200
            and result["logins_ok"] == result["logins"]
            and not during.get("errors")
        )
        self.say(f"   target: check-in p99 < 200 ms during the storm, every login through: {verdict(met)}")
        self.report.rows.append(
            Row(
                f"6 login storm, {target.label}",
                f"p99 {ms(p99_during)} during ({ms(p99_before)} before), "
                f"{result['logins_ok']}/{result['logins']} logins",
                "p99 < 200 ms",
                met,
            )
        )

    # 7: soak

    def bench_soak(self, target: Target, shared: Server | None) -> None:
        s = self.sizes
        session_id = target.sessions["soak"]
        self.say(
            "",
            f"7. Soak, {target.label} ({target.durability}), one process",
            f"   measured: for {s.soak_seconds:g} s, {s.soak_delegates} delegates check in and out at a steady pace "
            f"(each every {s.soak_think:g} s on average) while {s.soak_dashboards} dashboards watch (watch_session "
            f"again when the server says: every {s.resync:g} s); the server worker's VmRSS after "
            f"{s.soak_warmup:g} s of warm-up and at "
            "the end",
        )
        server = shared or self.start_app(target, f"soak-{target.kind}", s.soak_delegates + s.soak_dashboards)
        samples: list[tuple[float, int]] = []
        try:
            if shared is None:
                self.warm(server, target)
            job = self.job(
                "soak",
                [server.url],
                session_id,
                delegates=cookies(self.secret_key, target.delegates[: s.soak_delegates]),
                officers=cookies(self.secret_key, target.officers[: s.soak_dashboards]),
                think=s.soak_think,
                warmup=s.soak_warmup,
                seconds=s.soak_seconds,
                samples=s.soak_samples,
                resync=s.resync,
                settle=self.sizes.settle,
            )
            started = time.monotonic()

            def sample(name: str, _message: dict) -> None:
                if name in ("start", "sample", "end"):
                    samples.append((time.monotonic() - started, server.rss_kib()))

            result = run_loadgen(self.workdir, f"soak-{target.kind}", job, sample, self.window_timeout(s.soak_seconds))
            agree = dashboards_agree(target, session_id, result["final_states"])
            tidy(target, session_id)
        finally:
            if shared is None:
                self.stop(server)
        start, end = samples[0][1], samples[-1][1]
        growth = (end - start) / start * 100
        bare = (self.bare.get("paced") or {}).get("latency_ms", {})
        lat = result["latency_ms"]
        self.say(
            f"   memory: {start / 1024:.1f} MiB at the start, {end / 1024:.1f} MiB at the end: {growth:+.1f} %; along "
            "the way: " + ", ".join(f"{t:.0f} s {kib / 1024:.1f}" for t, kib in samples) + " MiB",
            f"   check-ins: {result['events']:,} acknowledged, {result['rate']:,.0f}/s, p50 {ms(lat.get('p50'))}, p99 "
            f"{ms(lat.get('p99'))} ({times(lat.get('p99'), bare.get('p99'))} the bare server's at benchmark 6's "
            f"pace); {refusals(result)}",
            f"   dashboards: {result['broadcasts']:,} broadcasts received; watch_session refused: "
            f"{errors_text(result['refused_watch'])}; {agree[1]}",
        )
        met = growth <= 5 and not result["all_errors"] and agree[0]
        self.say(f"   target: ≤ 5 % growth, no errors, dashboards correct: {verdict(met)}")
        self.report.rows.append(
            Row(f"7 soak, {target.label}", f"{growth:+.1f} % over {s.soak_seconds:g} s", "≤ 5 % growth", met)
        )

    # Everything

    def run(self, wanted: set[str]) -> None:
        args, s = self.args, self.sizes
        # Memory is measured on a server of its own, started for it, except in quick mode, where the
        # figures prove only that the benchmark works and each server start costs seconds.
        fresh = not args.quick
        self.timed(self.bare_runs, wanted)
        kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
        for kind in kinds:
            on_main = kind == args.db
            mine = (
                {"1"} | ({"2", "3", "5", "6", "7"} if on_main else set()) | ({"4"} if kind == "postgresql" else set())
            )
            if not wanted & mine:
                continue
            self.say("")
            target = self.target(kind)
            try:
                shared = {"1", "2", "3", "6"} | (set() if fresh else {"5", "7"})
                if wanted & mine & shared:
                    sockets = max(s.delegates + s.fanout_dashboards, s.burst + s.burst_dashboards)
                    sockets = max(sockets, s.storm_delegates + s.logins, 0 if fresh else s.idle_sockets)
                    server = self.start_app(target, kind, sockets)
                    try:
                        if fresh:
                            self.warm(server, target)
                        if "1" in wanted:
                            self.timed(self.bench_throughput, target, server)
                        if on_main and "3" in wanted:
                            self.timed(self.bench_fanout, target, server)
                        if on_main and "2" in wanted:
                            self.timed(self.bench_burst, target, server)
                        if on_main and "6" in wanted:
                            self.timed(self.bench_storm, target, server)
                        if on_main and "5" in wanted and not fresh:
                            self.timed(self.bench_idle, target, server)
                        if on_main and "7" in wanted and not fresh:
                            self.timed(self.bench_soak, target, server)
                    finally:
                        self.stop(server)
                if on_main and "5" in wanted and fresh:
                    self.timed(self.bench_idle, target, None)
                if on_main and "7" in wanted and fresh:
                    self.timed(self.bench_soak, target, None)
                if kind == "postgresql" and "4" in wanted:
                    if args.redis:
                        self.timed(self.bench_two_processes, target)
                    else:
                        self.say("", "4. Two processes: not run (--no-redis)")
            finally:
                target.engine.dispose()
        if "4" in wanted and not args.postgres:
            self.say("", "4. Two processes: not run (it needs PostgreSQL; --no-postgres)")

    def timed(self, bench: Callable, *args: object) -> None:
        """Run a benchmark; then say how long it took and which errors the servers logged meanwhile."""
        started, before = time.monotonic(), self.server_errors()
        bench(*args)
        for log, errors in self.server_errors().items():
            new = errors[len(before.get(log, [])) :]
            if new:
                counts = Counter(new)
                self.say(
                    f"   server errors ({log}): "
                    + "; ".join(f"{n} x {line.strip()[:150]}" for line, n in counts.most_common(3))
                )
        self.say(f"   ({time.monotonic() - started:.0f} s, load average {load_average()})")

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute: proves it still works")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="the benchmarks to run, by number (default: all)")
    parser.add_argument(
        "--db",
        choices=("postgresql", "sqlite"),
        help="the database of benchmarks 2, 3, 5, 6 and 7 (default: postgresql, or sqlite with --no-postgres)",
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL database of its own, emptied first")
    parser.add_argument("--no-postgres", dest="postgres", action="store_const", const=None, help="SQLite only")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis for the message queue of benchmark 4")
    parser.add_argument("--no-redis", dest="redis", action="store_const", const=None)
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="run the server from this checkout of the app")
    parser.add_argument("--output", type=Path, help=f"write the results here (default: {RESULTS.name} unless --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, jobs, SQLite file)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the server during benchmarks 1, 2, 3, 4 (the first process) and 6 (needs py-spy) and sum it up",
    )
    base = FULL
    for name in Sizes.__slots__:
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(base, name)), metavar="N")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    sizes = replace(sizes, **{n: getattr(args, n) for n in Sizes.__slots__ if getattr(args, n) is not None})
    args.db = args.db or ("postgresql" if args.postgres else "sqlite")
    if args.db == "postgresql" and not args.postgres:
        parser.error("--db postgresql needs --postgres")
    args.app_dir = args.app_dir.resolve()
    wanted = {part.strip() for part in args.only.split(",") if part.strip()}
    if not wanted <= set(TARGETS):
        parser.error(f"--only takes numbers from 1 to 7, not {args.only}")
    output = args.output or (None if args.quick else RESULTS)

    report = Report()
    started = time.monotonic()
    report.say(
        f"Live attendance benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''}",
        *machine(),
        f"Load average at the start: {load_average()} (other work on the machine shares its cores)",
        f"Server: gunicorn -k gevent -w 1, APP_CONFIG=production, GEVENT_TRACK_GREENLET_TREE=false (as in "
        f"deploy/gunicorn.conf.py), from {args.app_dir}; clients: bench/loadgen.py "
        "(python-socketio AsyncClient over WebSocket), one process, on loopback",
        "Sizes: " + ", ".join(f"{n}={getattr(sizes, n):g}" for n in Sizes.__slots__),
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    run = Run(args, sizes, workdir, report)
    try:
        run.run(wanted)
    finally:
        run.stop_all()
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Work folder kept: {workdir}")
    report.say("", "Summary (targets from the issue)")
    for row in report.rows:
        report.say(f"  {row.benchmark:<32} {row.figure:<58} target {row.target:<34} {verdict(row.met)}")
    report.say(
        "",
        f"Load average at the end: {load_average()}; the run took {time.monotonic() - started:.0f} s",
    )
    if output is not None:
        output.write_text("\n".join(report.lines) + "\n")
        print(f"Written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
