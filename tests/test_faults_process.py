"""AWS unreachable, as real processes see it: `cost-guard once` exits with one clear line,
`cost-guard run --serve` starts anyway (an interrupted action waiting to be reconciled), stays
alive (/healthz 200), reports the blind spot and recovers by itself when AWS comes back."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from guard.sim import Simulator
from guard.sim.base import closed_port_url
from guard.store import Store
from tests.factories import notebook


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_"))}
    env.pop("AWS_ENDPOINT_URL", None)
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1", **extra)
    return env


def test_once_with_aws_unreachable_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    closed = closed_port_url()
    env = clean_env(
        AWS_ENDPOINT_URL=closed, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        COST_GUARD_DATABASE_URL=f"sqlite:///{tmp_path / 'guard.db'}",
        COST_GUARD_PRICING__SOURCE="bundled",
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "once"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "TypeError" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: default account us-east-1: cannot reach: sts:GetCallerIdentity in default "
        f"account/us-east-1: connection refused ({closed}/)"
    ], done.stderr


def test_once_with_only_sagemaker_unreachable_names_it(sim: Simulator, tmp_path: Path) -> None:
    env = clean_env(
        **sim.env(unreachable=["sagemaker"]),
        COST_GUARD_DATABASE_URL=f"sqlite:///{tmp_path / 'guard.db'}",
        COST_GUARD_PRICING__SOURCE="bundled", COST_GUARD_KINDS='["notebook"]',
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "once"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "scan failed: sagemaker:ListNotebookInstances in 123456789012/us-east-1: " in error
    assert "connection refused (http://127.0.0.1:" in error


class Process:
    """`cost-guard run --serve`, its JSON log lines collected as they arrive."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run", "--serve"],
            env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.raw: list[str] = []
        self.lines: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.raw.append(line)
                with contextlib.suppress(json.JSONDecodeError):
                    self.lines.append(json.loads(line))
                self._changed.notify_all()

    def wait_for(self, ready: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := ready()):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    pytest.fail(f"not there; the daemon's log:\n{''.join(self.raw)[-4000:]}")
                self._changed.wait(min(left, 0.2))
            return found

    def cycles(self) -> list[dict[str, Any]]:
        return [x for x in self.lines if x.get("event") == "cycle"]

    def url(self) -> str:
        return str(next((x["url"] for x in self.lines if x.get("event") == "serve"), ""))


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Process]]:
    procs: list[Process] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
        p.proc.wait(10)


def test_run_starts_while_aws_is_down_stays_alive_and_recovers_by_itself(
    sim: Simulator, pg_url: str, tmp_path: Path, running: list[Process]
) -> None:
    now = datetime.now(UTC)  # the daemon runs on the real clock
    sim.add_notebook("idle", "ml.m5.xlarge", in_service_since=now - timedelta(hours=5))
    # A stop interrupted by a crash: reconciled at start, which needs AWS.
    store = Store(pg_url)
    res = notebook(now, "idle")
    store.save_snapshot([res], set(), now)
    left = store.record_action(
        res, rule_id="idle", episode_id=None, action="stop", mode="enforce",
        outcome="intended", detail="idle", now=now,
    )  # fmt: skip
    env = clean_env(
        **sim.env(), COST_GUARD_DATABASE_URL=pg_url, COST_GUARD_SCAN_INTERVAL="1s",
        COST_GUARD_LOG_FORMAT="json", COST_GUARD_PRICING__SOURCE="bundled",
        COST_GUARD_KINDS='["notebook"]', COST_GUARD_SERVE__HOST="127.0.0.1",
        COST_GUARD_SERVE__PORT="0",
    )  # fmt: skip
    sim.down()
    daemon = Process(env, tmp_path)
    running.append(daemon)
    blind = daemon.wait_for(lambda: [c for c in daemon.cycles() if c["errors"]])
    url = daemon.wait_for(daemon.url)
    status, body = get(f"{url}/healthz")
    assert (status, body["status"]) == (200, "ok")  # alive: a restart would not bring AWS back
    log = "".join(daemon.raw)
    assert "Traceback" not in log and "TypeError" not in log, log[-4000:]
    assert "connection refused" in log and f"action {left}" in log, log[-6000:]
    assert blind[0]["errors"] >= 1
    assert [r.id for r in store.unfinished_actions()] == [left]

    sim.up()  # AWS is back: the next cycles see everything and settle the interrupted stop
    daemon.wait_for(lambda: [c for c in daemon.cycles()[len(blind) + 1 :] if not c["errors"]])
    assert store.unfinished_actions() == []
    [row] = [a for a in store.audit(now - timedelta(days=1)) if a.id == left]
    assert row.outcome == "failed" and "interrupted before the call was sent" in row.detail
    status, body = get(f"{url}/readyz")
    assert (status, body["status"]) == (200, "ok")
    assert daemon.proc.poll() is None
    store.close()
