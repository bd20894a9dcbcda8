"""`cost-guard run` as real processes against the simulator (over HTTP) and Postgres:
JSON log lines, SIGTERM mid-cycle, and two replicas sharing one database."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from guard.sim import Simulator
from guard.store import normalize_url
from guard.tables import CycleRow

INTERVAL = 2.0  # seconds: COST_GUARD_SCAN_INTERVAL=2s
JITTER = INTERVAL * 0.1  # the daemon's interval jitter
SLOW_CALL = "sagemaker:ListNotebookInstances"
CYCLE_FIELDS = {"resources", "running", "usd_per_hour", "warnings", "actions", "errors",
                "api_calls", "duration_seconds", "instance"}  # fmt: skip


class Daemon:
    """One `cost-guard run` process; its JSON log lines collected as they arrive."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run"],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.raw.append(line)
                # not JSON: e.g. a traceback's continuation, kept in `raw` for the failure
                with contextlib.suppress(json.JSONDecodeError):
                    self.lines.append({**json.loads(line), "_seen": time.monotonic()})
                self._changed.notify_all()

    def events(self, event: str, after: float = 0.0) -> list[dict[str, Any]]:
        with self._changed:
            return [x for x in self.lines if x.get("event") == event and x["_seen"] >= after]

    def wait_for(self, ready: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"daemon did not get there; its log:\n{''.join(self.raw)[-4000:]}")
                self._changed.wait(min(left, 0.2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def daemon_env(sim: Simulator, pg_url: str, tmp_path: Path) -> dict[str, str]:
    now = datetime.now(UTC)  # the daemons run on the real clock
    sim.add_notebook("idle", "ml.m5.xlarge", in_service_since=now - timedelta(hours=5))
    sim.add_notebook("fresh", in_service_since=now - timedelta(minutes=5))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_"))}
    env.update(sim.env())
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        COST_GUARD_DATABASE_URL=pg_url,
        COST_GUARD_SCAN_INTERVAL="2s",
        COST_GUARD_LOG_FORMAT="json",
        COST_GUARD_PRICING__SOURCE="bundled",
    )
    return env


@pytest.fixture
def spawn(daemon_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Daemon]]:
    started: list[Daemon] = []

    def start() -> Daemon:
        started.append(Daemon(daemon_env, tmp_path))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


def cycles(pg_url: str) -> list[tuple[datetime, datetime, str]]:
    """(started, finished, instance) of every saved cycle, in order."""
    engine = create_engine(normalize_url(pg_url))
    with engine.connect() as conn:
        rows = conn.execute(
            select(CycleRow.started_at, CycleRow.finished_at, CycleRow.report)
            .order_by(CycleRow.started_at)
        ).all()  # fmt: skip
    engine.dispose()
    return [(start, end, report["instance"]) for start, end, report in rows]


def test_run_logs_json_cycles_and_sigterm_lets_the_running_cycle_finish(
    sim: Simulator, spawn: Callable[[], Daemon], pg_url: str
) -> None:
    daemon = spawn()
    daemon.wait_for(lambda: len(daemon.events("cycle")) >= 2)
    first = daemon.events("cycle")[0]
    assert set(first) >= CYCLE_FIELDS
    assert first["instance"].endswith(f":{daemon.proc.pid}")  # host:pid
    assert (first["resources"], first["running"], first["errors"]) == (2, 2, 0)
    assert float(first["usd_per_hour"]) > 0 and first["api_calls"] > 0
    assert first["level"] == "INFO" and first["logger"] == "guard.cycle"
    assert len(daemon.events("retention")) == 1  # its own job, at start (then daily)

    sim.slow(SLOW_CALL, seconds=2.5)  # the next cycle takes > 2.5 s
    mark = time.monotonic()
    daemon.wait_for(lambda: bool(daemon.events("cycle_started", after=mark)))
    time.sleep(0.3)  # inside the slow call
    sent = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(15) == 0
    took = time.monotonic() - sent
    daemon.wait_for(lambda: bool(daemon.events("stop")))

    finished = daemon.events("cycle", after=mark)
    assert len(finished) == 1, "the cycle running at SIGTERM finished and was logged"
    assert daemon.events("signal")[0]["_seen"] < finished[0]["_seen"]
    assert daemon.events("stop")[0]["_seen"] >= finished[0]["_seen"]
    assert 1.5 < took < 10, took  # waited for the slow call, then exited at once
    print(f"SIGTERM to exit: {took:.2f}s (cycle mid-way through a 2.5 s call)")
    # the cycle that was running is in the database: nothing cut off half-way
    assert len(cycles(pg_url)) == len(daemon.events("cycle"))


def test_two_replicas_never_overlap_and_a_standby_takes_over_after_sigkill(
    sim: Simulator, spawn: Callable[[], Daemon], pg_url: str
) -> None:
    replicas = [spawn(), spawn()]
    by_pid = {d.proc.pid: d for d in replicas}

    def total(event: str, after: float = 0.0) -> list[dict[str, Any]]:
        return [x for d in replicas for x in d.events(event, after)]

    replicas[0].wait_for(lambda: len(total("cycle")) >= 4, timeout=25)

    sim.slow(SLOW_CALL, seconds=3)  # a long cycle, to kill its replica in the middle of it
    mark = time.monotonic()
    replicas[0].wait_for(lambda: bool(total("cycle_started", after=mark)))
    started = total("cycle_started", after=mark)[0]
    leader = by_pid[int(started["instance"].rsplit(":", 1)[1])]
    standby = next(d for d in replicas if d is not leader)
    time.sleep(0.3)  # the leader is inside its cycle, holding the lock
    killed = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(5)

    assert not leader.events("cycle", after=started["_seen"]), "killed mid-cycle"
    standby.wait_for(lambda: bool(standby.events("cycle_started", after=killed)), timeout=10)
    takeover = standby.events("cycle_started", after=killed)[0]["_seen"] - killed
    print(f"takeover after SIGKILL of the leader: {takeover:.2f}s (interval {INTERVAL}s)")
    assert takeover < INTERVAL + JITTER + 1.0  # within one interval (+ log latency)
    sim.heal()
    standby.wait_for(lambda: len(standby.events("cycle", after=killed)) >= 2, timeout=15)

    saved = cycles(pg_url)
    for (_, end, who), (start, _, nxt) in itertools.pairwise(saved):
        assert end <= start, f"cycles overlap: {who} until {end}, {nxt} from {start}"
    pids = {int(who.rsplit(":", 1)[1]) for _, _, who in saved}  # the reports say who ran
    assert pids == {leader.proc.pid, standby.proc.pid}
    # N replicas scan about once per interval between them, not N times
    span = (saved[-1][0] - saved[0][0]).total_seconds()
    assert len(saved) <= span / INTERVAL * 1.5 + 2

    standby.proc.send_signal(signal.SIGTERM)
    assert standby.proc.wait(15) == 0
