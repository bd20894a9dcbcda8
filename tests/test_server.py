"""`/healthz`, `/readyz` and `/metrics` over real HTTP: a `Server` on 127.0.0.1 (port 0), a
cycle against the simulator, time from the injected clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.server import Server
from guard.sim import Simulator
from guard.store import instance_id
from tests.factories import guard_for

IDLE_RULE = {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop",
             "grace": "30m"}  # fmt: skip
ACCOUNT = "123456789012"


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def health(server: Server, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    status, kind, body = get(f"{server.url}{path}")
    assert kind == "application/json"
    return status, json.loads(body)


def metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    status, _, body = get(f"{server.url}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@pytest.fixture
def serving() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for server in servers:
        server.stop()


def start(guard: Guard, serving: list[Server]) -> Server:
    server = Server(guard, host="127.0.0.1", port=0).start()
    serving.append(server)
    return server


def test_readyz_on_a_fresh_database_is_starting_then_failing(
    clock: ManualClock, fresh_sqlite_url: str, serving: list[Server]
) -> None:
    guard = guard_for(clock, fresh_sqlite_url, [], scan_interval="5m")
    server = start(guard, serving)

    status, body = health(server)
    assert (status, body["status"], body["last_cycle_at"]) == (200, "starting", None)
    assert body["healthy_within_seconds"] == 900  # 3 x scan_interval by default

    clock.advance(timedelta(minutes=16))  # past the startup grace, still no cycle
    status, body = health(server)
    assert (status, body["status"]) == (503, "no cycle yet")


def test_readyz_is_ok_after_a_cycle_and_fails_when_it_gets_old(
    aws_env: Simulator, clock: ManualClock, db_url: str, serving: list[Server]
) -> None:
    aws_env.add_notebook("nb", in_service_since=clock.now() - timedelta(hours=1))
    guard = guard_for(clock, db_url, [], pricing={"source": "bundled"},
                      serve={"healthy_within": "10m"})  # fmt: skip
    server = start(guard, serving)
    report = run_cycle(guard)

    clock.advance(timedelta(minutes=9))
    status, body = health(server)
    assert status == 200
    assert body["status"] == "ok"
    assert body["last_cycle_at"] == report["finished_at"]
    assert body["age_seconds"] == 540
    assert body["instance"] == instance_id() == report["instance"]

    clock.advance(timedelta(minutes=2))  # 11 min since the last cycle > healthy_within 10m
    status, body = health(server)
    assert (status, body["status"], body["age_seconds"]) == (503, "stale", 660)

    run_cycle(guard)  # a new cycle (by any replica) makes it healthy again
    assert health(server)[0] == 200


def test_metrics_report_the_cycle_from_the_database(
    aws_env: Simulator, clock: ManualClock, db_url: str, serving: list[Server]
) -> None:
    now = clock.now()
    aws_env.add_notebook("idle", "ml.m5.xlarge", in_service_since=now - timedelta(hours=5))
    aws_env.jupyter_activity("idle", now - timedelta(hours=3))
    aws_env.add_notebook("busy", in_service_since=now - timedelta(hours=5))
    aws_env.jupyter_activity("busy", now - timedelta(minutes=5))
    aws_env.add_notebook("other-region", region="us-west-2", in_service_since=now)
    guard = guard_for(clock, db_url, [IDLE_RULE], regions=["us-east-1", "us-west-2"],
                      pricing={"source": "bundled"})  # fmt: skip
    server = start(guard, serving)
    before = metrics(server)
    assert before[("cost_guard_database_up", ())] == 1
    assert not any(name == "cost_guard_running_resources" for name, _ in before)

    report = run_cycle(guard)
    assert report["warnings"] == 1 and not report["errors"]
    clock.advance(timedelta(minutes=35))  # past the grace: the dry-run "would stop"
    report = run_cycle(guard)
    assert [a["outcome"] for a in report["actions"]] == ["dry-run"]
    samples = metrics(server)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    east = {"kind": "notebook", "account": ACCOUNT, "region": "us-east-1"}
    west = {**east, "region": "us-west-2"}
    assert value("cost_guard_running_resources", **east) == 2
    assert value("cost_guard_running_resources", **west) == 1
    east_usd = report["by_kind"]["notebook"]["usd_per_hour"]  # one kind: the whole east fleet
    # ml.t3.medium has no bundled us-west-2 price: counted as unpriced, never a $0 sample
    assert value("cost_guard_unpriced_resources", **west) == 1
    assert ("cost_guard_usd_per_hour", tuple(sorted(west.items()))) not in samples
    total = value("cost_guard_usd_per_hour", **east)
    assert total == pytest.approx(float(report["usd_per_hour"]))
    assert float(east_usd) == pytest.approx(total)
    assert value("cost_guard_warnings_total", rule="idle-notebooks") == 1
    assert value("cost_guard_actions_total", rule="idle-notebooks", action="stop",
                 mode="dry-run", outcome="dry-run") == 1  # fmt: skip
    assert value("cost_guard_cycle_duration_seconds") == report["duration_seconds"]
    assert value("cost_guard_cycle_errors") == 0
    for operation, count in report["api_calls"].items():
        assert value("cost_guard_cycle_aws_calls", operation=operation) == count
    assert value("cost_guard_cycle_aws_calls", operation="sagemaker:ListNotebookInstances") == 2
    # No Slack configured: messages are logged, nothing waits in the outbox.
    assert value("cost_guard_outbox_pending") == len(guard.store.pending_messages())
    finished = value("cost_guard_last_cycle_timestamp_seconds", instance=instance_id(),
                     mode="dry-run")  # fmt: skip
    assert finished == clock.now().timestamp()


def test_metrics_show_cycle_errors_and_the_outbox_waiting_for_slack(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str, serving: list[Server]
) -> None:
    now = clock.now()
    aws_env.add_notebook("idle", in_service_since=now - timedelta(hours=5))
    aws_env.jupyter_activity("idle", now - timedelta(hours=3))
    aws_env.add_notebook("other", region="us-west-2", in_service_since=now)
    aws_env.fail("sagemaker:ListNotebookInstances", region="us-west-2")
    # Slack is down (nothing listens on port 9): the warning waits in the outbox.
    secrets = Secrets.model_validate({"SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    guard = guard_for(
        clock, fresh_sqlite_url, [IDLE_RULE], secrets,
        regions=["us-east-1", "us-west-2"], pricing={"source": "bundled"},
    )  # fmt: skip
    report = run_cycle(guard)
    assert report["errors"] and report["warnings"] == 1
    samples = metrics(start(guard, serving))
    assert samples[("cost_guard_cycle_errors", ())] == len(report["errors"])
    pending = len(guard.store.pending_messages())
    assert pending >= 1
    assert samples[("cost_guard_outbox_pending", ())] == pending
    assert samples[("cost_guard_outbox_oldest_pending_timestamp_seconds", ())] == now.timestamp()


def test_unknown_paths_are_404_and_slack_is_not_mounted_without_a_signing_secret(
    clock: ManualClock, fresh_sqlite_url: str, serving: list[Server]
) -> None:
    server = start(guard_for(clock, fresh_sqlite_url, []), serving)
    assert get(f"{server.url}/nope")[0] == 404
    assert get(f"{server.url}/slack/events")[0] == 404


def test_slack_events_are_mounted_with_a_signing_secret_and_verify_signatures(
    clock: ManualClock, fresh_sqlite_url: str, serving: list[Server]
) -> None:
    secrets = Secrets.model_validate(
        {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "shh-test"}
    )
    server = start(guard_for(clock, fresh_sqlite_url, [], secrets), serving)
    request = urllib.request.Request(
        f"{server.url}/slack/events", data=b"payload=%7B%7D", method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401  # unsigned: refused by slack-bolt, not a 404


def test_serve_answers_until_sigterm_then_exits_cleanly(fresh_sqlite_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_"))}
    env.update(COST_GUARD_DATABASE_URL=fresh_sqlite_url, COST_GUARD_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = ""
        for line in proc.stderr:  # the first line names the bound port
            url = json.loads(line).get("url", "")
            if url:
                break
        status, _, body = get(f"{url}/healthz")  # alive: no scheduler in `serve`
        assert (status, json.loads(body)["status"]) == (200, "ok")
        status, _, body = get(f"{url}/readyz")
        assert (status, json.loads(body)["status"]) == (200, "starting")
        assert get(f"{url}/metrics")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert '"stopped"' in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_healthz_is_the_schedulers_liveness_and_ignores_an_aws_outage(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str, serving: list[Server]
) -> None:
    import threading
    import time

    from guard.daemon import Daemon

    guard = guard_for(clock, fresh_sqlite_url, [], pricing={"source": "bundled"},
                      scan_interval="5m")  # fmt: skip
    daemon = Daemon(guard)
    server = Server(guard, host="127.0.0.1", port=0, alive=daemon.liveness).start()
    serving.append(server)
    assert health(server, "/healthz") == (
        200,
        {**health(server, "/healthz")[1], "status": "starting"},
    )
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while health(server, "/livez")[1]["status"] != "ok":
        assert time.monotonic() < deadline, health(server, "/livez")
        time.sleep(0.05)

    aws_env.down()  # AWS unreachable, and no cycle for an hour: not ready, but alive
    clock.advance(timedelta(hours=1))
    status, body = health(server, "/healthz")
    assert (status, body["status"]) == (200, "ok")
    assert "last_cycle_at" not in body  # liveness reads neither AWS nor the database
    status, body = health(server, "/readyz")
    assert (status, body["status"]) == (503, "no cycle yet")

    daemon.stop()
    runner.join(10)
    status, body = health(server, "/healthz")
    assert (status, body["status"]) == (503, "stopping")
