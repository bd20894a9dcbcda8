"""Real-time endpoints end to end: the simulator over HTTP, SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.endpoint_actions import RestoreError, restore_endpoint
from guard.model import ActivitySource, ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

IDLE_DELETE = {
    "id": "idle-endpoints",
    "kind": "endpoint",
    "idle_for": "6h",
    "action": "delete",
    "grace": "1h",
}
SCALE_TO_ZERO = IDLE_DELETE | {"id": "scale-idle", "action": "scale-to-zero", "grace": "0s"}


def make_guard(
    sim: Simulator, clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any
) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE_DELETE,)), kinds=["endpoint"], **extra)


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["name"], a["outcome"]) for a in report["actions"]]


def idle_and_busy(sim: Simulator, clock: ManualClock) -> None:
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_endpoint("idle", tags={"owner": "ada@example.com"}, created_at=two_days_ago)
    sim.add_endpoint("busy", "ml.g5.xlarge", 2, created_at=two_days_ago)
    sim.invocations("idle", [clock.now() - timedelta(hours=30)])  # before the window
    sim.invocations("busy", [clock.now() - timedelta(hours=5), clock.now() - timedelta(hours=1)])


def test_idle_endpoint_is_warned_then_deleted_busy_one_untouched(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    idle_and_busy(sim, clock)
    guard = make_guard(sim, clock, db_url, mode="enforce")

    first = run_cycle(guard)
    assert [w["name"] for w in first["warned"]] == ["idle"]
    assert "no invocations at all in the last 6 h" in first["warned"][0]["reason"]
    assert first["actions"] == []
    clock.advance(timedelta(minutes=30))
    assert run_cycle(guard)["actions"] == []  # within the grace
    assert sim.endpoint_status("idle") == "InService"

    clock.advance(timedelta(minutes=31))
    sim.invocations("busy", [clock.now() - timedelta(minutes=2)])
    report = run_cycle(guard)
    assert outcomes(report) == [("idle", "done")]
    assert "config idle-config and model(s) idle-model are kept" in report["actions"][0]["detail"]
    assert sim.endpoint_status("idle") is None
    assert sim.endpoint_status("busy") == "InService"
    record = guard.store.restore_record("endpoint", "idle")
    assert record is not None
    assert record.record["endpoint_config_name"] == "idle-config"
    assert record.record["tags"] == [{"Key": "owner", "Value": "ada@example.com"}]
    assert [v["VariantName"] for v in record.record["variants"]] == ["AllTraffic"]
    audit = [
        (r.name, r.action, r.outcome) for r in guard.store.audit(clock.now() - timedelta(days=1))
    ]
    assert audit == [("idle", "warn", "warned"), ("idle", "delete", "done")]


def test_restore_recreates_the_deleted_endpoint_with_its_config(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    idle_and_busy(sim, clock)
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    assert outcomes(run_cycle(guard)) == [("idle", "done")]
    sim.set_endpoint_create_delay(timedelta(minutes=8))  # SageMaker takes minutes
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the injected wait: moves simulated time
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    def sagemaker(account: str, region: str) -> Any:
        return sim.client("sagemaker", region, account)

    try:
        done = restore_endpoint(guard.store, sagemaker, "idle", clock=clock, sleep=sleep)
    finally:
        sim.set_endpoint_create_delay(timedelta(0))
    assert done.created and done.status == "InService"
    assert done.in_service_at is not None and len(slept) == 16  # 8 min at 30 s polls
    described = sim.client("sagemaker").describe_endpoint(EndpointName="idle")
    assert described["EndpointConfigName"] == "idle-config"
    tags = sim.client("sagemaker").list_tags(ResourceArn=described["EndpointArn"])["Tags"]
    assert tags == [{"Key": "owner", "Value": "ada@example.com"}]
    record = guard.store.restore_record("endpoint", "idle")
    assert record is not None and record.restored_at is not None

    again = restore_endpoint(guard.store, sagemaker, "idle", clock=clock, sleep=sleep)
    assert not again.created and "already exists (InService)" in again.message
    # Back in service, it is a new endpoint: watched from its creation, not deleted at once.
    clock.advance(timedelta(minutes=1))
    report = run_cycle(guard)
    assert report["actions"] == [] and report["warned"] == []


def test_restore_without_record_or_config_says_why(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")

    def sagemaker(account: str, region: str) -> Any:
        return sim.client("sagemaker", region, account)

    with pytest.raises(RestoreError, match="no restore record for endpoint nope"):
        restore_endpoint(guard.store, sagemaker, "nope", clock=clock, sleep=lambda s: None)
    sim.add_endpoint("old", created_at=clock.now() - timedelta(days=2))
    assert outcomes(run_cycle(guard)) == [("old", "done")]
    sim.client("sagemaker").delete_endpoint_config(EndpointConfigName="old-config")
    with pytest.raises(RestoreError, match="endpoint config old-config no longer exists"):
        restore_endpoint(guard.store, sagemaker, "old", clock=clock, sleep=lambda s: None)


def test_restore_cli(sim: Simulator, clock: ManualClock, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"mode: enforce\ndatabase_url: sqlite:///{db}\nkinds: [endpoint]\n")
    sim.add_endpoint("idle", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(sim, clock, f"sqlite:///{db}", IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    assert outcomes(run_cycle(guard)) == [("idle", "done")]
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    runner = CliRunner()

    missing = runner.invoke(main, ["restore", "endpoint", "nope", "--config", str(config)], env=env)
    assert missing.exit_code == 1 and "no restore record for endpoint nope" in missing.output

    result = runner.invoke(main, ["restore", "endpoint", "idle", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert "recreated endpoint idle" in result.output and "from endpoint config idle-config" in (
        result.output
    )
    assert "is InService again at" in result.output
    assert sim.endpoint_status("idle") == "InService"


def test_restore_record_is_saved_before_delete(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("idle", created_at=clock.now() - timedelta(days=2))
    sim.fail("sagemaker:DeleteEndpoint")
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert outcomes(report) == [("idle", "failed")]
    assert "AccessDenied" in report["actions"][0]["detail"]
    record = guard.store.restore_record("endpoint", "idle")
    assert record is not None and record.record["endpoint_config_name"] == "idle-config"
    assert sim.endpoint_status("idle") == "InService"


def test_serverless_and_zero_instance_endpoints_cost_nothing_and_are_never_acted_on(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_endpoint("serverless", serverless=True, created_at=two_days_ago)
    sim.add_endpoint("at-zero", count=0, min_instance_count=0, created_at=two_days_ago)
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    assert report["by_kind"]["endpoint"]["listed"] == 2
    resources = {r.name: r for r in guard.store.resources()}
    assert {n: (r.usd_per_hour, r.price_source, r.running) for n, r in resources.items()} == {
        "serverless": (Decimal(0), "serverless", False),
        "at-zero": (Decimal(0), "zero-instances", False),
    }
    assert resources["at-zero"].details["variants"][0]["min_instance_count"] == 0
    assert sim.endpoint_status("serverless") == sim.endpoint_status("at-zero") == "InService"


def test_failing_metrics_make_endpoints_unknown_never_acted_on(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("quiet", created_at=clock.now() - timedelta(days=2))
    sim.fail("cloudwatch:GetMetricData")
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    for _ in range(2):
        report = run_cycle(guard)
        assert report["warned"] == [] and report["actions"] == []
        assert report["by_kind"]["endpoint"]["unknown"] == 1
        assert any("GetMetricData" in e for e in report["errors"])
        clock.advance(timedelta(hours=1))
    [res] = guard.store.resources()
    assert res.unknown and "AccessDenied" in (res.evidence_error or "")
    assert res.usd_per_hour == Decimal("0.23")  # the price is still known
    sim.heal()
    assert outcomes(run_cycle(guard)) == [("quiet", "done")]


def test_failing_tags_make_endpoints_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint(
        "exempt",
        tags={"cost-guard:exempt": "true"},
        created_at=clock.now() - timedelta(days=2),
    )
    sim.fail("tagging:GetResources")
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    assert sim.endpoint_status("exempt") == "InService"


def test_scale_to_zero_refused_for_plain_endpoint_done_where_minimum_is_zero(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_endpoint("plain", created_at=two_days_ago)
    sim.add_endpoint("components", "ml.g5.xlarge", 2, min_instance_count=0, created_at=two_days_ago)
    guard = make_guard(sim, clock, db_url, SCALE_TO_ZERO, mode="enforce")
    report = run_cycle(guard)
    result = {a["name"]: a for a in report["actions"]}
    assert result["plain"]["outcome"] == "skipped"
    assert "only endpoints whose variants allow a minimum of 0" in result["plain"]["detail"]
    assert "variant(s) AllTraffic do not" in result["plain"]["detail"]
    assert result["components"]["outcome"] == "done"
    assert "was AllTraffic: 2 instance(s)" in result["components"]["detail"]
    assert sim.endpoint_variants("components")[0]["CurrentInstanceCount"] == 0
    assert sim.endpoint_variants("plain")[0]["CurrentInstanceCount"] == 1
    assert "sagemaker:UpdateEndpointWeightsAndCapacities" in sim.request_counts

    clock.advance(timedelta(minutes=10))
    run_cycle(guard)
    at_zero = guard.store.resource_by_name("endpoint", "components")
    assert at_zero is not None and not at_zero.running and at_zero.usd_per_hour == 0


def test_steady_cycle_describes_nothing_unchanged(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = sim.add_endpoint_fleet(30, active_share=0.5)
    guard = make_guard(sim, clock, db_url)
    run_cycle(guard)
    first = dict(sim.request_counts)
    # endpoints come by the page (SageMaker Search); each distinct config is described once
    assert "sagemaker:DescribeEndpoint" not in first and first["sagemaker:Search"] == 1
    assert first["sagemaker:DescribeEndpointConfig"] == 30
    assert first["cloudwatch:GetMetricData"] == 1

    sim.reset_counts()
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)
    steady = sim.request_counts
    assert "sagemaker:DescribeEndpoint" not in steady
    assert "sagemaker:DescribeEndpointConfig" not in steady
    assert steady["sagemaker:ListEndpoints"] == 1 and steady["cloudwatch:GetMetricData"] == 1

    # A changed endpoint (LastModifiedTime moves) is described again; its config is known.
    sim.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=names[0],
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
    )
    sim.reset_counts()
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)
    assert sim.request_counts["sagemaker:DescribeEndpoint"] == 1
    assert "sagemaker:DescribeEndpointConfig" not in sim.request_counts
    changed = guard.store.resource_by_name("endpoint", names[0])
    assert changed is not None and changed.instance_count == 3
    assert changed.usd_per_hour == Decimal("0.69")


def test_inventory_json_lists_endpoints_with_price_and_evidence(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    idle_and_busy(sim, clock)
    sim.add_endpoint(
        "two-variants",
        variants=[
            {"name": "a", "instance_type": "ml.m5.xlarge", "count": 1},
            {"name": "b", "instance_type": "ml.g5.xlarge", "count": 1},
        ],
        created_at=clock.now() - timedelta(hours=2),
    )
    sim.invocations("two-variants", [clock.now() - timedelta(minutes=30)], variant="b")
    guard = make_guard(sim, clock, db_url)
    run_cycle(guard)
    resources = {r.name: r for r in guard.store.resources()}
    busy, idle, mixed = resources["busy"], resources["idle"], resources["two-variants"]
    assert (busy.usd_per_hour, busy.instance_type, busy.instance_count) == (
        Decimal("2.816"),
        "ml.g5.xlarge",
        2,
    )
    assert busy.activity_source is ActivitySource.INVOCATIONS
    assert busy.last_activity is not None
    assert clock.now() - timedelta(hours=1) <= busy.last_activity <= clock.now()
    assert idle.activity_source is ActivitySource.NO_INVOCATIONS
    assert idle.last_activity == clock.now() - timedelta(hours=6)  # the window's start
    assert (mixed.instance_type, mixed.usd_per_hour) == ("mixed", Decimal("1.638"))
    assert mixed.activity_source is ActivitySource.INVOCATIONS

    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [endpoint]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    result = CliRunner().invoke(main, ["inventory", "--json", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    items = {item["name"]: item for item in json.loads(result.output)}
    assert set(items) == {"busy", "idle", "two-variants"}
    assert items["busy"]["kind"] == "endpoint"
    assert "2.816" in str(items["busy"])
    assert "invocations-metric" in str(items["busy"]) and "no-invocations" in str(items["idle"])
    assert items["idle"]["details"]["config_name"] == "idle-config"


def test_dry_run_deletes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    idle_and_busy(sim, clock)
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "0s"})  # dry-run default
    report = run_cycle(guard)
    assert outcomes(report) == [("idle", "dry-run")]
    assert "would delete" in report["actions"][0]["detail"]
    assert sim.endpoint_status("idle") == "InService"
    assert "sagemaker:DeleteEndpoint" not in sim.request_counts
    assert guard.store.restore_record("endpoint", "idle") is None


def test_interrupted_delete_is_reconciled_from_the_live_endpoint(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_endpoint("gone", created_at=clock.now() - timedelta(days=2))
    sim.add_endpoint("kept", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(sim, clock, db_url, IDLE_DELETE | {"grace": "1h"}, mode="enforce")
    run_cycle(guard)  # warned only
    intents = {}
    for res in guard.store.resources():
        # A crash while the deletes were being sent: AWS took the delete of "gone" only.
        intents[res.name] = guard.store.record_action(
            res, rule_id="idle-delete", episode_id=None, action="delete", mode="enforce",
            outcome="intended", detail="", now=clock.now(),
        )  # fmt: skip
        guard.store.mark_action_sending(intents[res.name], clock.now())
    sim.client("sagemaker").delete_endpoint(EndpointName="gone")

    restarted = guard_for(clock, db_url, [IDLE_DELETE], kinds=["endpoint"], mode="enforce")
    rows = {r.id: r for r in restarted.store.audit(clock.now() - timedelta(days=1))}
    assert rows[intents["gone"]].outcome == "done" and "Gone" in rows[intents["gone"]].detail
    assert rows[intents["kept"]].outcome == "failed"
    assert "InService" in rows[intents["kept"]].detail
