"""Asynchronous inference endpoints end to end: queue and invocations as evidence, scale-to-zero
through Application Auto Scaling, restore. The simulator over HTTP, SQLite and Postgres."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.endpoint_actions import restore_endpoint
from guard.model import ActivitySource, ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")

IDLE = {
    "id": "idle-async",
    "kind": "endpoint",
    "idle_for": "6h",
    "action": "scale-to-zero",
    "grace": "1h",
}
TARGET = "endpoint/{}/variant/AllTraffic"
AAS_REGISTER = "anyscalefrontendservice:RegisterScalableTarget"


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE,)), kinds=["endpoint"], **extra)


def queues(sim: Simulator, clock: ManualClock) -> None:
    """`quiet` had nothing for two days; `queued` had requests waiting an hour ago."""
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_async_endpoint("quiet", "ml.g5.xlarge", 1, min_capacity=1, created_at=two_days_ago)
    sim.add_async_endpoint("queued", "ml.g5.xlarge", 2, min_capacity=1, created_at=two_days_ago)
    sim.async_backlog("quiet", [(clock.now() - timedelta(hours=3), 0.0)])
    sim.async_backlog("queued", [(clock.now() - timedelta(hours=1), 12.0)])


def minimum(sim: Simulator, name: str) -> int | None:
    found = sim.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[TARGET.format(name)]
    )["ScalableTargets"]
    return int(found[0]["MinCapacity"]) if found else None


def test_listed_with_price_and_queue_evidence(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    queues(sim, clock)
    guard = make_guard(clock, db_url)
    report = run_cycle(guard)
    found = {r.name: r for r in guard.store.resources()}
    quiet, queued = found["quiet"], found["queued"]
    assert quiet.details["async"] and queued.details["async"], quiet.details
    # no asynchronous-inference price is bundled: the type's Hosting price, labelled so
    if quiet.price_source == "hosting-estimate":
        assert quiet.usd_per_hour == Decimal("1.408")
        assert queued.usd_per_hour == Decimal("2.816")
    assert quiet.activity_source is ActivitySource.NO_INVOCATIONS
    # requests waiting in the queue are activity, without any invocation metric
    assert queued.activity_source is ActivitySource.INVOCATIONS
    assert queued.last_activity is not None
    assert queued.last_activity >= clock.now() - timedelta(hours=1)
    assert [w["name"] for w in report["warned"]] == ["quiet"]


def test_idle_one_scaled_to_zero_then_restored_busy_one_untouched(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    queues(sim, clock)
    guard = make_guard(clock, db_url, mode="enforce")
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["quiet"]
    clock.advance(timedelta(minutes=61))
    sim.async_backlog("queued", [(clock.now() - timedelta(minutes=5), 3.0)])
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("quiet", "done")]
    assert "MinCapacity 0; was AllTraffic: minimum 1" in report["actions"][0]["detail"]
    assert minimum(sim, "quiet") == 0 and minimum(sim, "queued") == 1
    record = guard.store.restore_record("endpoint", "quiet")
    assert record is not None and record.record["targets"][0]["min_capacity"] == 1

    sim.scale_to_minimum("quiet")  # what Application Auto Scaling does with an empty queue
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    after = {r.name: r for r in guard.store.resources()}
    assert not after["quiet"].running and after["queued"].running

    done = restore_endpoint(
        guard.store, lambda a, r: sim.client("sagemaker", r, a), "quiet",
        clock=clock, sleep=lambda s: None,
    )  # fmt: skip
    assert done.created and done.in_service_at is not None
    assert "minimum capacity is back (AllTraffic: 1)" in done.message
    assert minimum(sim, "quiet") == 1


def test_dry_run_changes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    queues(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"})
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("quiet", "dry-run")]
    assert minimum(sim, "quiet") == 1
    assert guard.store.restore_record("endpoint", "quiet") is None


def test_backlog_metrics_failing_make_it_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    queues(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    fault = sim.inject("denied", "cloudwatch:GetMetricData")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert report["warned"] == [] and report["actions"] == []
    assert {r.name: r for r in guard.store.resources()}["quiet"].unknown
    assert minimum(sim, "quiet") == 1


def test_a_failed_register_call_is_failed_then_retried(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    queues(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    fault = sim.inject("denied", AAS_REGISTER)
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("quiet", "failed")]
    assert minimum(sim, "quiet") == 1
    clock.advance(timedelta(hours=2))
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("quiet", "done")]
    assert minimum(sim, "quiet") == 0


def test_an_endpoint_without_a_scalable_target_gets_one_and_restore_removes_it(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    sim.add_async_endpoint("bare", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    assert [(a["name"], a["outcome"]) for a in run_cycle(guard)["actions"]] == [("bare", "done")]
    assert minimum(sim, "bare") == 0
    # `cost-guard restore endpoint NAME`, as a person runs it: the target it added goes
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [endpoint]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    args = ["restore", "endpoint", "bare", "--config", str(config)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "restored the minimum capacity of endpoint bare" in result.output
    assert minimum(sim, "bare") is None
