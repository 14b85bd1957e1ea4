"""The live attendance benchmark (bench/live.py) runs end to end in quick mode: the servers start as in
production, the load generator drives them, and every benchmark reports its figures and its target.

Quick mode proves that the harness works, not how fast the app is: no figure is checked against its
target here. On SQLite only, unless TEST_POSTGRES_URL and TEST_REDIS_URL are set (as in CI): then
PostgreSQL (a database of the benchmark's own, next to the test database) and Redis (database 5)
run too, with the two-process benchmark.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent

for module in ("aiohttp", "gunicorn", "gevent"):
    pytest.importorskip(module, reason=f"the live benchmark needs {module} (requirements-dev.txt)")


def services() -> list[str]:
    """The benchmark's own PostgreSQL database and Redis database, next to the test suite's, when both are given.

    Not the benchmark's defaults (bench_live, Redis /5): the suite would empty them under a full
    benchmark running on the same machine.
    """
    postgres, redis = os.environ.get("TEST_POSTGRES_URL"), os.environ.get("TEST_REDIS_URL")
    if not (postgres and redis):
        return ["--no-postgres"]
    bench_postgres = sa.engine.make_url(postgres).set(database="bench_live_test").render_as_string(hide_password=False)
    bench_redis = re.sub(r"(/\d+)?$", "/6", redis, count=1)
    return ["--postgres", bench_postgres, "--redis", bench_redis]


def test_the_live_benchmark_runs_in_quick_mode(tmp_path):
    output = tmp_path / "results.txt"
    extra = services()
    done = subprocess.run(
        [sys.executable, "bench/live.py", "--quick", "--output", str(output), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for expected in ("nproc:", "CPU:", "Python:", "SQLite:", "Load average at the start:"):
        assert expected in out
    assert re.search(r"throughput: \d+ clients back to back, \d+ watching: [\d,]+ acks/s", out)
    assert re.search(r"idle: \d+ sockets, [\d.]+ KiB per socket", out)
    assert "journal_mode=wal, synchronous=NORMAL" in out

    numbers = ["1", "2", "3", "5", "6", "7"] + (["4"] if "--postgres" in extra else [])
    for number in numbers:
        assert re.search(rf"^{number}\. \S", out, re.MULTILINE), f"benchmark {number} has no section"
    assert len(re.findall(r"^   target: .*: (met|NOT MET)$", out, re.MULTILINE)) >= len(numbers)
    assert re.search(r"rate: [\d,]+ events/s acknowledged \([\d.]+x the bare server's", out)
    # A window of a second may see no acknowledgement at all on a busy machine: no figure is required.
    assert re.search(r"ack latency: p50 (n/a|[\d.]+ ms)", out)
    # The app works at all: every check-in of the burst and every login is answered (a minute each at
    # most), and the log and the dashboards are compared with what was sent.
    assert re.search(r"acknowledged: (\d+) of \1 ", out)
    assert re.search(r"attendance log: \d+ entries for \d+ delegates", out)
    assert re.search(r"check-in to dashboard: p50 (n/a|[\d.]+ ms), p99 (n/a|[\d.]+ ms)", out)
    assert re.search(r"memory: [\d.]+ MiB before, [\d.]+ MiB with the sockets: -?[\d.]+ KiB per socket", out)
    # Clients that offer compression, as browsers do, connect: the app declines the offer.
    assert re.search(r"as browsers' do \(declined\), on a fresh server: (\d+) of \1 connected", out)
    assert re.search(r"logins: (\d+) of \1 succeeded", out)
    assert re.search(r"memory: [\d.]+ MiB at the start, [\d.]+ MiB at the end: [+-][\d.]+ %", out)
    if "--postgres" in extra:
        assert "synchronous_commit=" in out
        assert re.search(r"^4\. Two processes, PostgreSQL", out, re.MULTILINE)

    summary = out[out.index("Summary (targets from the issue)") :]
    # A row per benchmark and database (benchmark 1 runs on both when PostgreSQL is given), each with its verdict.
    rows = re.findall(r"^  (\d) .*?(met|NOT MET)$", summary, re.MULTILINE)
    assert sorted({number for number, _ in rows}) == sorted(numbers)
    assert output.read_text().splitlines()[1:4] == out.splitlines()[1:4]
