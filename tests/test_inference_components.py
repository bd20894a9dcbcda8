"""Inference components end to end: the simulator over HTTP, SQLite and Postgres."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.digest import build
from guard.inference_actions import RestoreError, restore_component
from guard.model import ActivitySource, ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")

IDLE = {
    "id": "idle-components",
    "kind": "inference_component",
    "idle_for": "6h",
    "action": "scale-to-zero",
    "grace": "1h",
}
KINDS = ["endpoint", "inference_component"]


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE,)), kinds=KINDS, **extra)


def shared_endpoint(sim: Simulator, clock: ManualClock) -> None:
    """One ml.g5.12xlarge ($7.09/h) with minimum 1, shared by an idle and a busy component."""
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_component_endpoint(
        "llm", "ml.g5.12xlarge", 1, min_instance_count=1, created_at=two_days_ago
    )
    sim.add_inference_component(
        "idle-ic", "llm", copies=2, accelerators=1, created_at=two_days_ago,
        tags={"owner": "ada@example.com"},
    )  # fmt: skip
    sim.add_inference_component("busy-ic", "llm", copies=1, accelerators=2, created_at=two_days_ago)
    sim.component_invocations("busy-ic", [clock.now() - timedelta(hours=1)])


def sleeper(clock: ManualClock) -> Any:
    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


def sagemaker_of(sim: Simulator) -> Any:
    return lambda account, region: sim.client("sagemaker", region, account)


def test_components_carry_their_share_of_the_endpoint_and_it_is_counted_once(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url)
    report = run_cycle(guard)
    # The endpoint's config is described once: the component scan takes the configs the
    # endpoint scan of the same target read (its resources are already handed over).
    assert guard.aws.counter.snapshot()["sagemaker:DescribeEndpointConfig"] == 1
    found = {r.name: r for r in guard.store.resources()}
    idle, busy, endpoint = found["idle-ic"], found["busy-ic"], found["llm"]
    # 2 copies x 1 GPU and 1 copy x 2 GPUs: half of the instance each
    assert idle.usd_per_hour == busy.usd_per_hour == Decimal("3.545")
    assert idle.price_source in ("api", "bundled") and idle.details["share_by"] == "accelerators"
    assert idle.instance_type == "ml.g5.12xlarge" and idle.instance_count == 2
    assert idle.details["endpoint_name"] == "llm" and idle.tags == {"owner": "ada@example.com"}
    assert idle.activity_source is ActivitySource.NO_INVOCATIONS
    assert busy.activity_source is ActivitySource.INVOCATIONS
    # the endpoint's instances are on its components: $0 there, and not judged as an endpoint
    assert endpoint.price_source == "inference-components" and not endpoint.running
    assert endpoint.usd_per_hour == 0
    assert Decimal(report["usd_per_hour"]) == Decimal("7.09")
    assert [w["name"] for w in report["warned"]] == ["idle-ic"]


def test_idle_component_scaled_to_zero_then_restored_busy_one_untouched(
    sim: Simulator, clock: ManualClock, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url, mode="enforce")
    caplog.set_level(logging.INFO, logger="guard.notify")
    first = run_cycle(guard)
    # the warning says what is kept and how to get it back
    assert "its endpoint are kept; `cost-guard restore component idle-ic`" in caplog.text
    assert [w["name"] for w in first["warned"]] == ["idle-ic"]
    assert "no invocations at all" in first["warned"][0]["reason"]
    assert first["actions"] == []
    clock.advance(timedelta(minutes=61))
    sim.component_invocations("busy-ic", [clock.now() - timedelta(minutes=5)])
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("idle-ic", "done")]
    detail = report["actions"][0]["detail"]
    assert "scaled to zero copies (was 2)" in detail and "busy-ic still use(s) it" in detail
    assert sim.component_copies("idle-ic") == (0, 2)
    assert sim.component_copies("busy-ic") == (1, 1)
    sim.settle()
    assert sim.component_copies("idle-ic") == (0, 0)
    record = guard.store.restore_record("inference_component", "idle-ic")
    assert record is not None and record.record["copy_count"] == 2
    assert record.record["scaled_config_name"] is None  # the endpoint was left alone
    # now the busy one carries the whole instance
    clock.advance(timedelta(minutes=11))
    run_cycle(guard)
    found = {r.name: r for r in guard.store.resources()}
    assert found["busy-ic"].usd_per_hour == Decimal("7.09")
    assert not found["idle-ic"].running

    done = restore_component(
        guard.store, sagemaker_of(sim), "idle-ic", clock=clock, sleep=sleeper(clock)
    )
    assert done.created and done.in_service_at is not None
    assert sim.component_copies("idle-ic") == (2, 2)
    with pytest.raises(RestoreError, match="no restore record"):
        restore_component(guard.store, sagemaker_of(sim), "nope", clock=clock, sleep=sleeper(clock))


def test_the_last_component_also_lowers_the_endpoint_minimum_and_restore_puts_it_back(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_component_endpoint("solo", "ml.g5.2xlarge", 1, min_instance_count=1,
                               created_at=two_days_ago)  # fmt: skip
    sim.add_inference_component("only-ic", "solo", copies=1, created_at=two_days_ago)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("only-ic", "done")]
    assert "moved to config solo-config-scaled-to-0" in report["actions"][0]["detail"]
    sim.settle()
    client = sim.client("sagemaker")
    described = client.describe_endpoint(EndpointName="solo")
    assert described["EndpointConfigName"] == "solo-config-scaled-to-0"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 0
    clock.advance(timedelta(minutes=15))
    after = {r.name: r for r in guard.store.resources()}
    assert after["only-ic"].running  # the stored snapshot is last cycle's
    run_cycle(guard)
    after = {r.name: r for r in guard.store.resources()}
    assert not after["only-ic"].running and after["only-ic"].usd_per_hour == 0

    done = restore_component(
        guard.store, sagemaker_of(sim), "only-ic", clock=clock, sleep=sleeper(clock)
    )
    assert done.created
    assert client.describe_endpoint(EndpointName="solo")["EndpointConfigName"] == "solo-config"
    assert sim.component_copies("only-ic") == (1, 1)


def test_dry_run_changes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"})
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("idle-ic", "dry-run")]
    assert sim.component_copies("idle-ic") == (2, 2)
    assert guard.store.restore_record("inference_component", "idle-ic") is None


def test_a_failed_describe_makes_it_unknown_never_idle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    fault = sim.inject("denied", "sagemaker:DescribeInferenceComponent")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert report["warned"] == [] and report["actions"] == []
    found = {r.name: r for r in guard.store.resources()}
    assert found["idle-ic"].unknown and found["idle-ic"].usd_per_hour is None
    assert sim.component_copies("idle-ic") == (2, 2)

    fault = sim.inject("denied", "cloudwatch:GetMetricData")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert report["actions"] == []
    assert {r.name: r for r in guard.store.resources()}["idle-ic"].unknown


def test_a_failed_scale_call_is_failed_then_retried(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    fault = sim.inject("denied", "sagemaker:UpdateInferenceComponentRuntimeConfig")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("idle-ic", "failed")]
    assert sim.component_copies("idle-ic") == (2, 2)
    clock.advance(timedelta(hours=2))
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("idle-ic", "done")]
    # the retry kept the copy count saved before the first attempt
    record = guard.store.restore_record("inference_component", "idle-ic")
    assert record is not None and record.record["copy_count"] == 2


def test_without_the_component_kind_the_endpoint_is_priced_but_never_judged(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    """An endpoint hosting components is judged by them: with their kind off, the endpoint
    kind still counts its instances but calls it unknown (its Invocations are per component)."""
    shared_endpoint(sim, clock)
    rule = {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "6h", "action": "delete"}
    guard = guard_for(clock, db_url, [rule | {"grace": "0s"}], kinds=["endpoint"], mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    endpoint = {r.name: r for r in guard.store.resources()}["llm"]
    assert endpoint.running and endpoint.unknown and endpoint.usd_per_hour == Decimal("7.09")
    assert "judged by them" in (endpoint.evidence_error or "")
    assert sim.client("sagemaker").describe_endpoint(EndpointName="llm")["EndpointStatus"] == (
        "InService"
    )


def test_lowering_the_endpoint_minimum_failing_still_scales_the_copies(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_component_endpoint("solo", "ml.g5.2xlarge", 1, min_instance_count=1,
                               created_at=two_days_ago)  # fmt: skip
    sim.add_inference_component("only-ic", "solo", copies=3, created_at=two_days_ago)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    fault = sim.inject("denied", "sagemaker:UpdateEndpoint")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("only-ic", "done")]
    assert "keeps its minimum of 1 instance(s)" in report["actions"][0]["detail"]
    assert sim.component_copies("only-ic") == (0, 3)
    assert sim.client("sagemaker").describe_endpoint(EndpointName="solo")["EndpointConfigName"] == (
        "solo-config"
    )
    sim.settle()
    # `cost-guard restore component NAME`, as a person runs it
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [endpoint, inference_component]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    args = ["restore", "component", "only-ic", "--no-wait", "--config", str(config)]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "restored the 3 copies of inference component only-ic in 123456789012" in result.output
    sim.settle()
    assert sim.component_copies("only-ic") == (3, 3)
    missing = CliRunner().invoke(main, [*args[:2], "nope", *args[3:]], env=env)
    assert missing.exit_code != 0 and "no restore record" in missing.output


def test_inventory_table_json_and_digest_show_components(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    shared_endpoint(sim, clock)
    guard = make_guard(clock, db_url)
    run_cycle(guard)
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [endpoint, inference_component]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    result = CliRunner().invoke(main, ["inventory", "--json", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    items = {item["name"]: item for item in json.loads(result.output)}
    assert set(items) == {"idle-ic", "busy-ic"}  # the endpoint is not running as an endpoint
    assert items["idle-ic"]["kind"] == "inference_component"
    assert "3.545" in str(items["idle-ic"]) and "no-invocations" in str(items["idle-ic"])
    assert items["idle-ic"]["details"]["endpoint_name"] == "llm"
    table = CliRunner().invoke(main, ["inventory", "--config", str(config)], env=env)
    assert table.exit_code == 0, table.output
    assert "idle-ic" in table.output and "busy-ic" in table.output
    digest = build(guard.cfg, guard.store, clock.now())
    assert Decimal(digest["by_kind"]["inference_component"]["usd_per_hour"]) == Decimal("7.09")
