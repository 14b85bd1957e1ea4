"""Load generator of the live benchmarks: Socket.IO clients on asyncio, in a process of their own.

bench/live.py starts it with a job file (JSON: the scenario, the server addresses, the login cookies
to connect with, the sizes) and talks to it over its standard streams. Each line it prints is JSON:
{"checkpoint": name, ...}, after which it waits for a line on its standard input (so that the
runner can read the server's memory or CPU time at that moment, while the clients stay as they
are), and last {"result": {...}}. Everything else goes to standard error.

The clients are python-socketio's AsyncClient over WebSocket (no long-polling first: a browser
upgrades to the same transport within a second), each with its own connection; they share one
aiohttp session per server, without a cookie jar: the login cookie goes in the upgrade request's
Cookie header, as a browser sends it. Delegates send check_in, check_out and heartbeat; dashboards
send watch_session (again every --resync seconds, as dashboard.js does) and keep the newest
`quorum_updated` state they receive. All times are taken with one monotonic clock in this process.

Only loopback addresses are accepted: this is a load generator for a server on this machine.

    python bench/loadgen.py JOB.json
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import random
import re
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pyotp
import socketio
from yarl import URL

NAMESPACE = "/live"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

log = logging.getLogger("loadgen")


# Plumbing -----------------------------------------------------------------------------------------


def loopback_only(url: str) -> str:
    """The URL, if its host is a loopback address; this generator sends nothing anywhere else."""
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load {url}: only loopback addresses are allowed")
    return url.rstrip("/")


def raise_open_files() -> int:
    """One descriptor per socket: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def say(**line: object) -> None:
    print(json.dumps(line), flush=True)


async def checkpoint(name: str, **data: object) -> None:
    """Tell the runner where we are and wait until it has looked (one line on standard input)."""
    say(checkpoint=name, **data)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def percentiles(values: list[float]) -> dict:
    """Count, p50, p90, p99 and max of latencies in milliseconds (nearest rank)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 2)

    return {"n": len(ordered), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": round(ordered[-1], 2)}


class Recorder:
    """Latencies (ms) and refusals of acknowledged events, counted only while a window is open."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        # Refusals at any time, window open or not: a failure just before or after it still counts.
        self.all_errors: Counter[str] = Counter()
        self.open = False
        self.opened_at = self.closed_at = 0.0

    def start(self) -> None:
        self.latencies, self.errors = [], Counter()
        self.opened_at, self.open = time.perf_counter(), True

    def stop(self) -> None:
        self.closed_at, self.open = time.perf_counter(), False

    def add(self, ms: float, error: str | None) -> None:
        if error is not None:
            self.all_errors[error] += 1
        if not self.open:
            return
        if error is None:
            self.latencies.append(ms)
        else:
            self.errors[error] += 1

    def summary(self) -> dict:
        seconds = (self.closed_at if not self.open else time.perf_counter()) - self.opened_at
        return {
            "events": len(self.latencies),
            "seconds": round(seconds, 3),
            "rate": round(len(self.latencies) / seconds, 1) if seconds > 0 else 0.0,
            "latency_ms": percentiles(self.latencies),
            "errors": dict(self.errors),
            "all_errors": dict(self.all_errors),
        }


def new_nonce(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(8)}"


class Clients:
    """The connections of one run: one shared aiohttp session per server, every socket closed at the end."""

    def __init__(self, connect_timeout: float, call_timeout: float, compress: int = 0) -> None:
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        # A WebSocket's offer of permessage-deflate (window bits), as every browser makes; 0: none.
        self.compress = compress
        self.http: dict[str, aiohttp.ClientSession] = {}
        self.sockets: list[socketio.AsyncClient] = []
        self.failures: Counter[str] = Counter()

    async def open(
        self, url: str, cookie: str | None, handlers: dict[str, Callable[[dict], Awaitable[None]]] | None = None
    ) -> socketio.AsyncClient | None:
        """A socket connected to the namespace with this login cookie, or None (the failure is counted)."""
        if url not in self.http:
            self.http[url] = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
            )
        options: dict = {"headers": {"Cookie": f"session={cookie}"}} if cookie else {}
        if self.compress:
            options["compress"] = self.compress
        client = socketio.AsyncClient(
            reconnection=False, http_session=self.http[url], websocket_extra_options=options, request_timeout=30
        )
        for event, handler in (handlers or {}).items():
            client.on(event, handler, namespace=NAMESPACE)
        try:
            await client.connect(
                url, namespaces=[NAMESPACE], transports=["websocket"], wait_timeout=self.connect_timeout
            )
        except Exception as exc:  # refused, timed out, reset: counted, not fatal
            self.failures[f"{type(exc).__name__}: {exc}"[:120]] += 1
            await _quietly(client.disconnect())
            return None
        self.sockets.append(client)
        return client

    async def call(self, client: socketio.AsyncClient, event: str, data: dict) -> tuple[float, dict | None, str | None]:
        """Send an event and wait for its acknowledgement: (ms, ack, error code or None)."""
        started = time.perf_counter()
        try:
            ack = await client.call(event, data, namespace=NAMESPACE, timeout=self.call_timeout)
        except socketio.exceptions.TimeoutError:
            return (time.perf_counter() - started) * 1000, None, "timeout"
        except socketio.exceptions.BadNamespaceError:
            return (time.perf_counter() - started) * 1000, None, "disconnected"
        ms = (time.perf_counter() - started) * 1000
        if not isinstance(ack, dict):
            return ms, None, "bad_ack"
        if not ack.get("ok"):
            return ms, ack, (ack.get("error") or {}).get("code", "unknown")
        return ms, ack, None

    async def close(self) -> None:
        for chunk in range(0, len(self.sockets), 200):
            await asyncio.gather(*(_quietly(c.disconnect()) for c in self.sockets[chunk : chunk + 200]))
        self.sockets = []
        for http in self.http.values():
            await http.close()
        self.http = {}


async def _quietly(awaitable: Awaitable) -> None:
    with contextlib.suppress(Exception):
        await awaitable


async def bounded(factories: list[Callable[[], Awaitable]], concurrency: int) -> list:
    """Run coroutine factories, at most `concurrency` at a time, in order of start."""
    gate = asyncio.Semaphore(concurrency)

    async def one(factory):
        async with gate:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories))


# Dashboards and delegates -------------------------------------------------------------------------


def _as_of(state: dict) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(state["as_of"])
    except (KeyError, TypeError, ValueError):
        return None


STATE_FIELDS = ("session_id", "state", "as_of", "parties_present", "participants_present", "present")


class Dashboard:
    """An officer's dashboard: follows a session, keeps the newest state, counts the broadcasts."""

    def __init__(self, clients: Clients, url: str, session_id: int, record: bool = False) -> None:
        self.clients, self.url, self.session_id, self.record = clients, url, session_id, record
        self.client: socketio.AsyncClient | None = None
        self.broadcasts = 0
        self.newest: dict | None = None
        self.initial_present: int | None = None
        self.resync_seconds: float | None = None  # when the server asked for the next watch_session
        self.refused: Counter[str] = Counter()  # watch_session refusals, the first one and resyncs
        self.arrivals: list[tuple[float, int]] = []  # (time, participants_present), when recording

    async def on_state(self, state: dict) -> None:
        self.broadcasts += 1
        if self.record and isinstance(state, dict) and "participants_present" in state:
            self.arrivals.append((time.perf_counter(), state["participants_present"]))
        self.keep(state)

    def keep(self, state: dict) -> None:
        """Keep the newer of this state and the one kept, by as_of (the protocol's rule)."""
        moment = _as_of(state) if isinstance(state, dict) else None
        if moment is None:
            return
        if self.newest is None or moment >= _as_of(self.newest):
            self.newest = {key: state.get(key) for key in STATE_FIELDS}

    async def connect(self, cookie: str) -> bool:
        self.client = await self.clients.open(self.url, cookie, {"quorum_updated": self.on_state})
        return self.client is not None

    async def watch(self) -> str | None:
        """Send watch_session; keep the acknowledged state. Returns the error code, if refused."""
        if self.client is None:
            return "not_connected"
        _ms, ack, error = await self.clients.call(self.client, "watch_session", {"session_id": self.session_id})
        if error is not None:
            self.refused[error] += 1
        else:
            self.keep(ack.get("state") or {})
            self.resync_seconds = ack.get("resync_seconds")
            if self.initial_present is None and self.newest is not None:
                self.initial_present = self.newest.get("participants_present")
        return error

    def final(self) -> tuple:
        state = self.newest or {}
        return (
            self.url,
            state.get("participants_present"),
            state.get("parties_present"),
            json.dumps(state.get("present"), sort_keys=True),
        )


class Delegate:
    """A delegate's page: checks in and out of a session, and sends heartbeats."""

    def __init__(self, clients: Clients, url: str, session_id: int, tag: str) -> None:
        self.clients, self.url, self.session_id, self.tag = clients, url, session_id, tag
        self.client: socketio.AsyncClient | None = None
        self.present = False

    async def connect(self, cookie: str) -> bool:
        self.client = await self.clients.open(self.url, cookie)
        return self.client is not None

    async def step(self) -> tuple[float, str | None]:
        """Check in if out, out if in, with a fresh nonce: (ms, error code or None)."""
        if self.client is None:
            return 0.0, "not_connected"
        event = "check_out" if self.present else "check_in"
        ms, _ack, error = await self.clients.call(
            self.client, event, {"session_id": self.session_id, "nonce": new_nonce(self.tag)}
        )
        if error is None:
            self.present = not self.present
        return ms, error

    async def heartbeat(self) -> tuple[float, str | None, bool]:
        if self.client is None:
            return 0.0, "not_connected", False
        ms, ack, error = await self.clients.call(self.client, "heartbeat", {"session_id": self.session_id})
        return ms, error, bool(ack and ack.get("present"))

    async def leave(self) -> None:
        """Check out if checked in, as the page's "Leave the session" button does."""
        if self.present:
            await self.step()


def spread(items: list, urls: list[str]) -> list[tuple[str, object]]:
    """Each item with the server it goes to, in turn."""
    return [(urls[i % len(urls)], item) for i, item in enumerate(items)]


async def connect_dashboards(clients: Clients, job: dict, cookies: list[str], record: bool = False) -> list[Dashboard]:
    """Dashboards connected and watching, spread over the servers."""
    boards = [Dashboard(clients, url, job["session_id"], record) for url, _ in spread(cookies, job["urls"])]

    async def one(board: Dashboard, cookie: str):
        if await board.connect(cookie):
            await board.watch()

    await bounded([lambda b=b, c=c: one(b, c) for b, c in zip(boards, cookies, strict=True)], job["concurrency"])
    return [b for b in boards if b.client is not None]


def refused_watch(boards: list[Dashboard]) -> dict:
    return dict(sum((board.refused for board in boards), Counter()))


async def connect_delegates(clients: Clients, job: dict, cookies: list[str], tag: str) -> list[Delegate]:
    people = [
        Delegate(clients, url, job["session_id"], f"{tag}{i}")
        for i, (url, _) in enumerate(spread(cookies, job["urls"]))
    ]
    oks = await bounded(
        [lambda d=d, c=c: d.connect(c) for d, c in zip(people, cookies, strict=True)], job["concurrency"]
    )
    return [d for d, ok in zip(people, oks, strict=True) if ok]


async def resync(boards: list[Dashboard], every: float, stop: asyncio.Event) -> None:
    """Every dashboard sends watch_session again when the server said (`every` seconds if it did not), as
    dashboard.js does: a quarter sooner or later at random."""
    if every <= 0 or not boards:
        return

    async def one(board: Dashboard):
        await _sleep_or_stop(random.uniform(0, board.resync_seconds or every), stop)
        while not stop.is_set():
            await board.watch()
            await _sleep_or_stop((board.resync_seconds or every) * random.uniform(0.75, 1.25), stop)

    await asyncio.gather(*(one(b) for b in boards))


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def flow(delegates: list[Delegate], recorder: Recorder, stop: asyncio.Event, think: float) -> None:
    """Each delegate alternates check_in and check_out until stopped: back to back, or `think` seconds apart."""

    async def one(person: Delegate):
        if think > 0:
            await _sleep_or_stop(random.uniform(0, think), stop)
        while not stop.is_set():
            ms, error = await person.step()
            recorder.add(ms, error)
            if error in ("not_connected", "disconnected"):
                return
            if think > 0:
                await _sleep_or_stop(random.uniform(0.5 * think, 1.5 * think), stop)

    await asyncio.gather(*(one(p) for p in delegates))


def final_states(boards: list[Dashboard]) -> list[dict]:
    counts = Counter(board.final() for board in boards)
    return [
        {
            "url": url,
            "participants_present": present,
            "parties_present": parties,
            "present": json.loads(codes),
            "dashboards": n,
        }
        for (url, present, parties, codes), n in sorted(counts.items(), key=lambda kv: -kv[1])
    ]


def cpu_seconds() -> float:
    return time.process_time()


# Scenarios ----------------------------------------------------------------------------------------


async def throughput(job: dict) -> dict:
    """Delegates alternate check_in and check_out, back to back, while dashboards watch."""
    clients = Clients(job["connect_timeout"], job["call_timeout"])
    try:
        boards = await connect_dashboards(clients, job, job["officers"])
        delegates = await connect_delegates(clients, job, job["delegates"], "t")
        await checkpoint("connected", dashboards=len(boards), delegates=len(delegates))
        recorder, stop = Recorder(), asyncio.Event()
        think = job.get("think", 0.0)
        tasks = [
            asyncio.ensure_future(flow(delegates, recorder, stop, think)),
            asyncio.ensure_future(resync(boards, job.get("resync", 0.0), stop)),
        ]
        await asyncio.sleep(job["warmup"])
        broadcasts_before = sum(b.broadcasts for b in boards)
        await checkpoint("window_start")
        recorder.start()
        cpu = cpu_seconds()
        await asyncio.sleep(job["seconds"])
        recorder.stop()
        cpu = cpu_seconds() - cpu
        await checkpoint("window_end")
        broadcasts = sum(b.broadcasts for b in boards) - broadcasts_before
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(job["settle"])
        result = recorder.summary()
        await checkpoint("settled")
        return {
            **result,
            "dashboards": len(boards),
            "delegates": len(delegates),
            "refused_watch": refused_watch(boards),
            "connect_failures": dict(clients.failures),
            "broadcasts": broadcasts,
            "broadcasts_per_dashboard_per_s": round(
                broadcasts / max(1, len(boards)) / recorder.summary()["seconds"], 2
            ),
            "client_cpu": round(cpu / max(1e-9, result["seconds"]), 3),
            "final_states": final_states(boards),
        }
    finally:
        await clients.close()


async def burst(job: dict) -> dict:
    """The opening of a plenary: delegates connect and check in, spread over a window, while dashboards watch."""
    clients = Clients(job["connect_timeout"], job["call_timeout"])
    try:
        boards = await connect_dashboards(clients, job, job["officers"], record=True)
        await checkpoint("ready", dashboards=len(boards))
        cookies, window = job["delegates"], job["window"]
        sent: list[dict] = []
        started = time.perf_counter()
        cpu = cpu_seconds()

        async def arrive(i: int, url: str, cookie: str) -> None:
            await asyncio.sleep(max(0.0, started + i * window / len(cookies) - time.perf_counter()))
            person = Delegate(clients, url, job["session_id"], f"b{i}")
            t0 = time.perf_counter()
            if not await person.connect(cookie):
                sent.append({"i": i, "connected": False})
                return
            t1 = time.perf_counter()
            ms, error = await person.step()
            sent.append(
                {"i": i, "connected": True, "connect_ms": (t1 - t0) * 1000, "send": t1, "ms": ms, "error": error}
            )

        await asyncio.gather(*(arrive(i, url, c) for i, (url, c) in enumerate(spread(cookies, job["urls"]))))
        finished = time.perf_counter()
        cpu = cpu_seconds() - cpu
        await asyncio.sleep(job["settle"])
        await checkpoint("settled")

        ok = [s for s in sent if s.get("connected") and s["error"] is None]
        # Only entries happen here, so the dashboards' participants_present counts committed check-ins:
        # the k-th check-in to be acknowledged shows once a dashboard shows k more than at the start.
        ok.sort(key=lambda s: s["send"] + s["ms"] / 1000)
        every, first = [], []
        unreflected = 0
        for board in boards:
            base = board.initial_present or 0
            arrivals = board.arrivals
            j = 0
            for k, s in enumerate(ok, start=1):
                while j < len(arrivals) and arrivals[j][1] - base < k:
                    j += 1
                if j == len(arrivals):
                    unreflected += len(ok) - k + 1
                    break
                every.append((arrivals[j][0] - s["send"]) * 1000)
                s["first"] = min(s.get("first", float("inf")), arrivals[j][0])
        first = [(s["first"] - s["send"]) * 1000 for s in ok if "first" in s]
        errors = Counter(s["error"] for s in sent if s.get("connected") and s["error"] is not None)
        return {
            "delegates": len(cookies),
            "dashboards": len(boards),
            "refused_watch": refused_watch(boards),
            "connected": sum(1 for s in sent if s.get("connected")),
            "connect_failures": dict(clients.failures),
            "acknowledged_ok": len(ok),
            "errors": dict(errors),
            "seconds": round(finished - started, 3),
            "window": window,
            "connect_ms": percentiles([s["connect_ms"] for s in sent if s.get("connected")]),
            "ack_ms": percentiles([s["ms"] for s in ok]),
            "dashboard_ms": percentiles(every),
            "first_dashboard_ms": percentiles(first),
            "unreflected": unreflected,
            "broadcasts": sum(b.broadcasts for b in boards),
            "client_cpu": round(cpu / max(1e-9, finished - started), 3),
            "final_states": final_states(boards),
        }
    finally:
        await clients.close()


async def idle(job: dict) -> dict:
    """Many delegates' pages open and idle: each checks in, then sends a heartbeat every `heartbeat` seconds.

    A page's heartbeats start once it has checked in, as a browser's do; their latencies are recorded
    once every page is open.
    """
    clients = Clients(job["connect_timeout"], job["call_timeout"], job.get("compress", 0))
    stop = asyncio.Event()
    beating: list[asyncio.Future] = []
    try:
        started = time.perf_counter()
        recorder, beats = Recorder(), Recorder()
        recorder.start()
        absent = 0

        async def beat(person: Delegate) -> None:
            nonlocal absent
            every = job["heartbeat"]
            await _sleep_or_stop(random.uniform(0, every), stop)
            while not stop.is_set():
                ms, error, present = await person.heartbeat()
                beats.add(ms, error)
                absent += beats.open and error is None and not present
                await _sleep_or_stop(every, stop)

        async def arrive(person: Delegate, cookie: str) -> bool:
            if not await person.connect(cookie):
                return False
            ms, error = await person.step()
            recorder.add(ms, error)
            beating.append(asyncio.ensure_future(beat(person)))
            return error is None

        people = [
            Delegate(clients, url, job["session_id"], f"i{i}")
            for i, (url, _) in enumerate(spread(job["delegates"], job["urls"]))
        ]
        oks = await bounded(
            [lambda p=p, c=c: arrive(p, c) for p, c in zip(people, job["delegates"], strict=True)], job["concurrency"]
        )
        connected = [p for p in people if p.client is not None]
        checked_in = recorder.summary()
        connect_seconds = time.perf_counter() - started
        beats.start()
        await asyncio.sleep(job["hold"])
        await checkpoint("steady", sockets=len(connected))
        beats.stop()
        stop.set()
        await asyncio.gather(*beating)
        return {
            "sockets": len(connected),
            "checked_in": sum(oks),
            "connect_failures": dict(clients.failures),
            "connect_seconds": round(connect_seconds, 2),
            "check_in": checked_in,
            "heartbeats": beats.summary(),
            "heartbeats_absent": absent,
        }
    finally:
        stop.set()
        await clients.close()


async def login(base: str, account: dict, address: str, timeout: float) -> tuple[float, str | None, str | None]:
    """A real login through the forms, from a given loopback address: (ms, error or None, session cookie)."""
    connector = aiohttp.TCPConnector(limit=0, local_addr=(address, 0))
    started = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=timeout)
    ) as http:
        try:

            async def form_token(path: str) -> str | None:
                async with http.get(base + path) as response:
                    match = CSRF_INPUT.search(await response.text())
                    return match.group(1) if response.status == 200 and match else None

            async def post(path: str, data: dict) -> tuple[int, str]:
                async with http.post(base + path, data=data, allow_redirects=False) as response:
                    await response.read()
                    return response.status, response.headers.get("Location", "")

            token = await form_token("/auth/login")
            if token is None:
                return (time.perf_counter() - started) * 1000, "login_page", None
            status, where = await post(
                "/auth/login", {"email": account["email"], "password": account["password"], "csrf_token": token}
            )
            if status != 302 or not where.endswith("/auth/login/code"):
                return (time.perf_counter() - started) * 1000, f"password_{status}", None
            token = await form_token("/auth/login/code")
            if token is None:
                return (time.perf_counter() - started) * 1000, "code_page", None
            code = pyotp.TOTP(account["secret"]).now()
            status, where = await post("/auth/login/code", {"code": code, "csrf_token": token})
            if status != 302 or "/auth/login" in where:
                return (time.perf_counter() - started) * 1000, f"code_{status}", None
            cookie = http.cookie_jar.filter_cookies(URL(base)).get("session")
            return (time.perf_counter() - started) * 1000, None, cookie.value if cookie else None
        except (TimeoutError, aiohttp.ClientError) as exc:
            return (time.perf_counter() - started) * 1000, type(exc).__name__, None


async def storm(job: dict) -> dict:
    """Check-ins flow at a steady pace; then real logins (password and TOTP code) arrive over a window.

    With no logins given, only the steady flow is measured (the bare server's run).
    """
    clients = Clients(job["connect_timeout"], job["call_timeout"])
    try:
        delegates = await connect_delegates(clients, job, job["delegates"], "s")
        stop = asyncio.Event()
        before, during = Recorder(), Recorder()

        class Both:
            def add(self, ms, error):
                before.add(ms, error)
                during.add(ms, error)

        task = asyncio.ensure_future(flow(delegates, Both(), stop, job["think"]))
        await asyncio.sleep(job["warmup"])
        before.start()
        await asyncio.sleep(job["before"])
        before.stop()
        logins = job.get("logins", [])
        outcomes: list[tuple[float, str | None]] = []
        after_login: list[float] = []
        after_errors: Counter[str] = Counter()
        storm_seconds = 0.0
        if logins:
            await checkpoint("storm_start")
            base, window, addresses = job["urls"][0], job["window"], job["addresses"]
            during.start()
            started = time.perf_counter()

            async def arrive(i: int, account: dict) -> None:
                await asyncio.sleep(max(0.0, started + i * window / len(logins) - time.perf_counter()))
                ms, error, cookie = await login(base, account, addresses[i % len(addresses)], job["call_timeout"])
                outcomes.append((ms, error))
                if error is None and job.get("check_in_after_login", True):
                    person = Delegate(clients, base, job["session_id"], f"l{i}")
                    if cookie and await person.connect(cookie):
                        ms, error = await person.step()
                        if error is None:
                            after_login.append(ms)
                        else:
                            after_errors[error] += 1
                    else:
                        after_errors["connect"] += 1

            await asyncio.gather(*(arrive(i, a) for i, a in enumerate(logins)))
            storm_seconds = time.perf_counter() - started
            during.stop()
            await checkpoint("storm_end")
        stop.set()
        await task
        ok = [ms for ms, error in outcomes if error is None]
        return {
            "delegates": len(delegates),
            "connect_failures": dict(clients.failures),
            "before": before.summary(),
            "during": during.summary() if logins else None,
            "logins": len(logins),
            "logins_ok": len(ok),
            "login_errors": dict(Counter(error for _, error in outcomes if error is not None)),
            "login_ms": percentiles(ok),
            "storm_seconds": round(storm_seconds, 2),
            "window": job.get("window"),
            "check_in_after_login_ms": percentiles(after_login),
            "check_in_after_login_errors": dict(after_errors),
        }
    finally:
        await clients.close()


async def soak(job: dict) -> dict:
    """Steady check-ins and dashboards for a duration; checkpoints at the start, along the way and at the end."""
    clients = Clients(job["connect_timeout"], job["call_timeout"])
    try:
        boards = await connect_dashboards(clients, job, job["officers"])
        delegates = await connect_delegates(clients, job, job["delegates"], "k")
        recorder, stop = Recorder(), asyncio.Event()
        tasks = [
            asyncio.ensure_future(flow(delegates, recorder, stop, job["think"])),
            asyncio.ensure_future(resync(boards, job.get("resync", 0.0), stop)),
        ]
        await asyncio.sleep(job["warmup"])
        recorder.start()
        await checkpoint("start", dashboards=len(boards), delegates=len(delegates))
        samples = max(1, job["samples"])
        for n in range(1, samples + 1):
            await asyncio.sleep(job["seconds"] / samples)
            summary = recorder.summary()
            await checkpoint("sample" if n < samples else "end", events=summary["events"], errors=summary["errors"])
        recorder.stop()
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(job["settle"])
        await checkpoint("settled")
        return {
            **recorder.summary(),
            "dashboards": len(boards),
            "delegates": len(delegates),
            "refused_watch": refused_watch(boards),
            "connect_failures": dict(clients.failures),
            "broadcasts": sum(b.broadcasts for b in boards),
            "final_states": final_states(boards),
        }
    finally:
        await clients.close()


SCENARIOS = {"throughput": throughput, "burst": burst, "idle": idle, "storm": storm, "soak": soak}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    job["urls"] = [loopback_only(url) for url in job["urls"]]
    for address in job.get("addresses", []):
        loopback_only(f"http://{address}/")
    job.setdefault("concurrency", 50)
    job.setdefault("connect_timeout", 60.0)
    job.setdefault("call_timeout", 60.0)
    job.setdefault("settle", 1.0)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="loadgen %(levelname)s %(name)s: %(message)s")
    raise_open_files()
    result = asyncio.run(SCENARIOS[job["scenario"]](job))
    say(result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
