"""Replicas and a database outage, on the real Postgres.

- Two guards (each its own Store, engine and connections: two replicas) cycle concurrently
  on one database and one simulator: never two cycles at once, one action and one top-level
  Slack post per idle resource.
- A Postgres outage mid-run, made by a TCP proxy between the daemon and Postgres
  (tests/tcpproxy.py; the shared server is never restarted): every connection cut mid-action
  and new ones refused for 10 s. The daemon keeps running, says so once per failed cycle (no
  tracebacks), reconnects by itself, and acts on nothing twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import guard.cycle as cycle_module
from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.daemon import Daemon
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Store, normalize_url
from tests.factories import guard_for
from tests.fakeslack import Call, FakeSlack
from tests.tcpproxy import TcpProxy

CHANNEL = "C0REPLICA"
NOTEBOOK_RULE = {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop"}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def _guard(clock: Any, url: str, slack: FakeSlack, grace: str, **settings: Any) -> Guard:
    return guard_for(
        clock, url, [{**NOTEBOOK_RULE, "grace": grace}],
        secrets=Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-replica-test"}),
        mode="enforce", kinds=["notebook"], pricing={"source": "bundled"},
        slack={"channel": CHANNEL, "base_url": slack.api_url, "timeout_seconds": 5},
        **settings,
    )  # fmt: skip


def _key(call: Call) -> str:
    meta: Any = call.body.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return str((meta.get("event_payload") or {}).get("key", "?"))


def episode_posts(slack: FakeSlack) -> Counter[str]:
    """Accepted top-level posts of resource episodes, by resource name."""
    names: Counter[str] = Counter()
    for call in slack.accepted("chat.postMessage"):
        if call.body.get("thread_ts") or not _key(call).startswith("episode:"):
            continue
        text = json.dumps(call.body)
        found = [w for w in _NAMES if w in text]
        assert len(found) == 1, (found, text[:300])
        names[found[0]] += 1
    return names


_NAMES: list[str] = []


def seed_idle(sim: Simulator, now: datetime, names: list[str], idle_for: timedelta) -> None:
    for name in names:
        _NAMES.append(name)
        sim.add_notebook(name, in_service_since=now - timedelta(hours=8), tags={"owner": "a@b.c"})
        sim.jupyter_activity(name, now - idle_for)


def stops_done(store: Store) -> Counter[str]:
    audit = store.audit(datetime(2000, 1, 1, tzinfo=UTC))
    return Counter(a.name for a in audit if a.action == "stop" and a.outcome == "done")


# --- two replicas ----------------------------------------------------------------------------


def test_two_replicas_never_cycle_at_once_and_act_once(
    aws_env: Simulator, clock: ManualClock, pg_url: str, slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _NAMES.clear()
    now = clock.now()
    idle = ["nb-idle-1", "nb-idle-2", "nb-idle-3"]
    seed_idle(aws_env, now, idle, timedelta(hours=3))
    seed_idle(aws_env, now, ["nb-busy"], timedelta(minutes=5))
    seed_idle(aws_env, now, ["nb-later"], timedelta(minutes=100))  # idle from round 4

    running, most, overlap_lock = 0, 0, threading.Lock()
    real_cycle = cycle_module._cycle

    def tracked(guard: Guard) -> dict[str, Any]:  # counts cycles in progress, both replicas
        nonlocal running, most
        with overlap_lock:
            running += 1
            most = max(most, running)
        try:
            return real_cycle(guard)
        finally:
            with overlap_lock:
                running -= 1

    monkeypatch.setattr(cycle_module, "_cycle", tracked)
    replicas = [_guard(clock, pg_url, slack, "10m") for _ in range(2)]
    rounds, ran = 10, Counter[str]()
    barrier = threading.Barrier(3, timeout=60)
    failures: list[BaseException] = []

    def replica(i: int, g: Guard) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()  # both replicas start each round together
                report = run_cycle(g)
                ran["skipped" if report.get("skipped") else f"replica-{i}"] += 1
                barrier.wait()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=replica, args=(i, g)) for i, g in enumerate(replicas)]
    for t in threads:
        t.start()
    for r in range(rounds):
        barrier.wait()
        barrier.wait()
        clock.advance(timedelta(minutes=5))  # between rounds: both replicas are idle
        aws_env.jupyter_activity("nb-busy", clock.now() - timedelta(minutes=1))
        if r == 2:
            aws_env.settle()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    for g in replicas:
        g.store.close()

    assert most == 1, "two cycles ran at once"
    assert ran["replica-0"] + ran["replica-1"] >= rounds  # each round had at least one cycle
    store = Store(pg_url)
    try:
        assert store.unfinished_actions() == []
        assert stops_done(store) == Counter({n: 1 for n in [*idle, "nb-later"]})
        assert store.pending_messages() == []
    finally:
        store.close()
    assert aws_env.request_counts.get("sagemaker:StopNotebookInstance") == 4
    assert aws_env.notebook_status("nb-busy") == "InService"
    assert episode_posts(slack) == Counter({n: 1 for n in [*idle, "nb-later"]})


# --- a database outage -------------------------------------------------------------------------


class FastClock:
    """Wall time, then `speed` times faster from `go()`: a daemon's minutes in seconds."""

    def __init__(self) -> None:
        self._base, self._mono, self._speed = datetime.now(UTC), time.monotonic(), 1.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._base + timedelta(seconds=(time.monotonic() - self._mono) * self._speed)

    def go(self, speed: float) -> None:
        now = self.now()
        with self._lock:
            self._base, self._mono, self._speed = now, time.monotonic(), speed


@pytest.fixture
def fast_clock(aws_env: Simulator) -> FastClock:
    """The simulator and the daemon share it."""
    from guard.sim.moto_ext import install

    clock = FastClock()
    aws_env.clock = clock
    install(clock)
    return clock


def wait_for(what: str, check: Callable[[], bool], timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


OUTAGE_SECONDS = 10.0


def test_daemon_survives_a_postgres_outage_mid_action(
    aws_env: Simulator, fast_clock: FastClock, pg_url: str, slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    _NAMES.clear()
    clock = fast_clock
    url = make_url(normalize_url(pg_url))
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    now = clock.now()
    seed_idle(aws_env, now, ["nb-first"], timedelta(hours=3))  # stopped before the outage
    seed_idle(aws_env, now, ["nb-cut"], timedelta(minutes=117))  # idle from +3 min: mid-cut
    seed_idle(aws_env, now, ["nb-after"], timedelta(minutes=90))  # idle from +30 min: after

    caplog.set_level(logging.INFO)
    daemon = Daemon(_guard(clock, proxied, slack, "0m", scan_interval="1s"))
    clock.go(speed=60.0)  # a cycle every second = every minute of the guard's time
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    check = Store(pg_url)  # straight to Postgres, not through the proxy
    try:
        wait_for("nb-first stopped", lambda: stops_done(check)["nb-first"] == 1)
        # nb-cut's StopNotebookInstance takes 1.5 s: cut every connection while it is in flight.
        aws_env.slow("sagemaker:StopNotebookInstance", seconds=1.5)
        wait_for(
            "nb-cut's stop in flight",
            lambda: aws_env.request_counts.get("sagemaker:StopNotebookInstance", 0) >= 2,
        )
        assert proxy.cut() >= 1  # the cycle lock's connection at least
        first_failed = len(caplog.records)
        time.sleep(OUTAGE_SECONDS)
        assert thread.is_alive(), "the daemon died in the outage"
        during = caplog.records[first_failed:]
        proxy.restore()
        aws_env.heal()
        restored_at = clock.now()

        def caught_up() -> bool:
            last = check.last_cycle()
            return (
                last is not None
                and datetime.fromisoformat(last["started_at"]) > restored_at
                and stops_done(check)["nb-after"] == 1
                and not check.unfinished_actions()
                and not check.pending_messages()
            )

        wait_for("a clean cycle after the outage", caught_up)
        assert thread.is_alive()
    finally:
        daemon.stop()
        thread.join(timeout=30)
        proxy.stop()

    assert not thread.is_alive()
    try:
        # Nothing acted on twice, every intent settled, every episode announced once.
        assert stops_done(check) == Counter({"nb-first": 1, "nb-cut": 1, "nb-after": 1})
        assert aws_env.request_counts.get("sagemaker:StopNotebookInstance") == 3
        assert check.unfinished_actions() == []
    finally:
        check.close()
    assert episode_posts(slack) == Counter({"nb-first": 1, "nb-cut": 1, "nb-after": 1})

    # The outage was told once per failed cycle, in one line each, no traceback storm.
    failed = [r for r in during if r.levelno >= logging.ERROR]
    assert failed, "the outage went unreported"
    assert not [r for r in during if r.exc_info], [r.getMessage() for r in during if r.exc_info]
    # a cycle a second, and the digest / retention jobs: at most a few lines a second
    assert len(failed) <= 2 * (OUTAGE_SECONDS + 2), [r.getMessage() for r in failed]
    assert all("database" in r.getMessage().lower() for r in failed), [
        r.getMessage() for r in failed
    ]
