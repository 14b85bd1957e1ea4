"""The production setup of deploy/: the app under gunicorn's gevent worker, Socket.IO over a real WebSocket.

One real server process is started (deploy/gunicorn.conf.py, the production configuration from the
environment, a migrated SQLite file) on a free loopback port, and spoken to as a browser would:
over HTTP for the login, over a WebSocket only for Socket.IO.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import importlib.util
import os
import queue
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import CSRF_RE, TEST_HASH

import config
import db as database
from app import create_app
from auth import services as auth_services
from auth import totp
from auth.models import Authenticator, Gender, Role
from meetings import demo
from meetings.models import Meeting

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(DEPLOY))

import capacity  # noqa: E402

MISSING = [name for name in ("gunicorn", "gevent", "websocket") if importlib.util.find_spec(name) is None]
needs_server = pytest.mark.skipif(
    bool(MISSING),
    reason=f"the production server test needs {', '.join(MISSING)} (gunicorn and gevent from requirements.txt, "
    "websocket-client from requirements-dev.txt: python-socketio's WebSocket transport)",
)

EMAIL = "officer@deploy.example.org"
PASSWORD = "officer password for the deploy test"
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(process: subprocess.Popen, url: str, log_path: Path) -> None:
    """Wait until a started server answers url with a success, or fail with the end of its log."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"gunicorn exited with status {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                log = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"gunicorn did not answer {url} within {START_TIMEOUT:.0f} s:\n{log}")
            time.sleep(0.1)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies and forms over plain HTTP, redirects not followed (their target is checked instead)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=5) as response:
            return response.read().decode()

    def post(self, path: str, form_page: str, fields: dict) -> tuple[int, str]:
        """Send a form with the CSRF token of the page it is on; the status and the redirect target."""
        token = CSRF_RE.search(self.get(form_page)).group(1)
        data = urllib.parse.urlencode({**fields, "csrf_token": token}).encode()
        try:
            with self.opener.open(self.base + path, data, timeout=5) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location", "")

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)


def prepare_database(url: str, key: str) -> tuple[str, int]:
    """Migrate, load the COP-4 demo and add an officer; their TOTP secret and an online session's id."""
    database.upgrade(url)
    app = create_app("testing", {"DATABASE_URL": url, "TOTP_ENCRYPTION_KEY": key})
    db = app.extensions["db_sessionmaker"]()
    try:
        now = database.utcnow()
        demo.seed(db, now, TEST_HASH)
        user = auth_services.create_user(
            db,
            email=EMAIL,
            password=PASSWORD,
            given_name="Deploy",
            family_name="Officer",
            gender=Gender.FEMALE,
            role=Role.OFFICER,
            hash_method=TEST_HASH,
        )
        user.email_confirmed_at = now
        secret = totp.new_secret()
        db.add(Authenticator(user=user, secret=secret, confirmed_at=now))
        db.commit()
        meeting = db.scalar(sa.select(Meeting).where(Meeting.code == demo.MEETING_CODE))
        session_id = meeting.segments[0].sessions[0].id
    finally:
        db.close()
        app.extensions["db_engine"].dispose()
    return secret, session_id


def server_environment(url: str, key: str, port: int) -> dict[str, str]:
    """The production settings, and nothing of the app's from the environment the tests run in."""
    known = {name for name in dir(config.Config) if name.isupper()} | {
        "APP_CONFIG",
        "PORT",
        "BIND",
        "SOCKETIO_MAX_CONNECTIONS",
        "PSYCOPG_WAIT_FUNC",
    }
    env = {name: value for name, value in os.environ.items() if name not in known}
    env.update(
        SECRET_KEY="production-test-secret-key",
        TOTP_ENCRYPTION_KEY=key,
        DATABASE_URL=url,
        # Plain HTTP on loopback: a Secure cookie would never come back.
        SESSION_COOKIE_SECURE="false",
        PORT=str(port),
        LOG_LEVEL="WARNING",
        GRACEFUL_TIMEOUT="1",
    )
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One gunicorn process with the gevent worker, as deploy/gunicorn.conf.py starts it; its URL and details."""
    from cryptography.fernet import Fernet

    tmp = tmp_path_factory.mktemp("production")
    url = f"sqlite:///{tmp / 'production.sqlite3'}"
    key = Fernet.generate_key().decode()
    secret, session_id = prepare_database(url, key)
    port = free_port()
    log_path = tmp / "gunicorn.log"
    # Started with a soft open-file limit below the hard one, which the configuration must raise.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
    command = [sys.executable, "-m", "gunicorn", "--config", str(DEPLOY / "gunicorn.conf.py")]
    with log_path.open("wb") as log:
        # Started from elsewhere than the project root: the configuration finds the app itself.
        process = subprocess.Popen(
            ["bash", "-c", 'ulimit -S -n "$1" && shift && exec "$@"', "bash", str(soft), *command],
            cwd=tmp,
            env=server_environment(url, key, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        wait_until_answering(process, base + "/auth/login", log_path)
        yield {"base": base, "pid": process.pid, "secret": secret, "session_id": session_id, "log": log_tail}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@needs_server
def test_an_anonymous_websocket_is_refused_with_login_required(server):
    import socketio

    client = socketio.Client(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append, namespace="/live")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(server["base"], namespaces=["/live"], transports=["websocket"], wait_timeout=5)
    # The Socket.IO refusal came back over the WebSocket: the upgrade worked and the app answered.
    # ("Connection refused by server" instead means the handler raised Python's own
    # ConnectionRefusedError, whose message python-socketio drops, rather than flask_socketio's.)
    assert refusals == [{"message": "login_required"}], server["log"]()


@needs_server
def test_a_logged_in_officer_watches_a_session_over_a_websocket(server):
    import socketio

    browser = Browser(server["base"])
    status, location = browser.post("/auth/login", "/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert (status, location) == (302, "/auth/login/code"), server["log"]()
    code = totp.code_at(server["secret"], dt.datetime.now(dt.UTC))
    status, _ = browser.post("/auth/login/code", "/auth/login/code", {"code": code})
    assert status == 302, server["log"]()

    updates = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("quorum_updated", updates.put, namespace="/live")
    client.connect(
        server["base"],
        namespaces=["/live"],
        transports=["websocket"],
        headers={"Cookie": browser.cookie_header()},
        wait_timeout=5,
    )
    try:
        assert client.transport() == "websocket"
        session_id = server["session_id"]
        ack = client.call("watch_session", {"session_id": session_id}, namespace="/live", timeout=5)
        assert ack["ok"] is True and ack["state"]["state"] == "scheduled"

        # Opening the session over HTTP reaches the dashboard's socket through the broadcaster, a
        # background greenlet of the worker.
        page = f"/sessions/{session_id}/dashboard"
        status, _ = browser.post(f"/sessions/{session_id}/open", page, {})
        assert status == 302, server["log"]()
        update = updates.get(timeout=5)
        assert update["state"] == "open"
    finally:
        client.disconnect()


@needs_server
def test_a_websocket_declines_the_compression_a_browser_offers(server):
    # Every browser offers permessage-deflate; accepted, it would keep a compressor of about 100 KiB
    # for every open socket. The connection itself still works: the first frame is Engine.IO's open.
    port = int(urllib.parse.urlsplit(server["base"]).port)
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < 2:
            chunk = connection.recv(4096)
            assert chunk, received
            received += chunk
    head, _, frame = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101"), server["log"]()
    assert not [line for line in lines if line.lower().startswith("sec-websocket-extensions")]
    # FIN and a text frame, with RSV1 (a compressed message) clear.
    assert frame[0] == 0x81
    assert frame[2:4] == b"0{"


@needs_server
@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads the limits from /proc (Linux)")
def test_the_server_runs_with_its_open_file_limit_raised_to_the_hard_limit(server):
    limits = Path(f"/proc/{server['pid']}/limits").read_text()
    soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()
    assert soft == hard or (hard == "unlimited" and int(soft) > 1024)


GREENLET_TREE_PROBE = """
import runpy, sys
runpy.run_path(sys.argv[1])
import gevent
greenlet = gevent.spawn(lambda: None)
greenlet.join()
print(gevent.config.track_greenlet_tree, greenlet.spawning_stack is not None)
"""


@pytest.mark.parametrize(("setting", "tracked"), [(None, "False False"), ("true", "True True")])
def test_the_production_configuration_spares_each_greenlet_its_spawning_stack(setting, tracked):
    # gevent's record of where each greenlet started costs every idle socket 5 KiB; an operator who
    # wants it for debugging sets the variable, and that wins.
    env = {name: value for name, value in os.environ.items() if name != "GEVENT_TRACK_GREENLET_TREE"}
    if setting is not None:
        env["GEVENT_TRACK_GREENLET_TREE"] = setting
    result = subprocess.run(
        [sys.executable, "-c", GREENLET_TREE_PROBE, str(DEPLOY / "gunicorn.conf.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == tracked


@pytest.mark.parametrize(
    ("open_files", "connections", "sockets"),
    [
        (1024, 924, 832),
        (65536, 65436, 58893),
        (100, 0, 0),
        (50, 0, 0),
    ],
)
def test_capacity_follows_the_open_file_limit(open_files, connections, sockets):
    assert capacity.connection_capacity(open_files) == connections
    assert capacity.socketio_capacity(connections) == sockets


def test_capacity_counts_descriptors_per_connection():
    assert capacity.connection_capacity(1100, reserved=100, per_connection=2) == 500
    # A tenth of the capacity is left to pages, or at least MIN_HTTP_HEADROOM.
    assert capacity.socketio_capacity(10_000) == 9_000
    assert capacity.socketio_capacity(100) == 100 - capacity.MIN_HTTP_HEADROOM


def test_several_processes_need_a_message_queue():
    env = {name: value for name, value in os.environ.items() if name not in {"SOCKETIO_MESSAGE_QUEUE", "ENV_FILE"}}
    result = subprocess.run(
        ["bash", str(DEPLOY / "run-production"), "2", "8001"], env=env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 2
    assert "SOCKETIO_MESSAGE_QUEUE" in result.stderr


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cop.example.org")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_the_nginx_sample_is_valid(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    site = (DEPLOY / "nginx.conf").read_text()
    site = re.sub(r"/etc/letsencrypt/live/cop\.example\.org/fullchain\.pem", str(cert), site)
    site = re.sub(r"/etc/letsencrypt/live/cop\.example\.org/privkey\.pem", str(key), site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    temp_paths = " ".join(
        f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ {temp_paths} include {tmp_path}/site.conf; }}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
