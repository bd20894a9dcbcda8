"""MLflow tracking servers end to end: the simulator over HTTP, both databases, a manual clock."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.config import Config
from guard.cycle import Guard, run_cycle
from guard.kinds import KINDS
from guard.model import ManualClock, Resource
from guard.pricing import PriceBook, bundled_prices, parse_price_item
from guard.scanners.mlflow import RestoreError, restore_server
from guard.sim import Simulator
from tests.factories import guard_for

LONG_RUNNING = {
    "id": "mlflow-overnight",
    "kind": "mlflow_server",
    "running_for": "12h",
    "action": "stop",
    "grace": "30m",
}
# A figure for the tests only (no honest source ships one: see README, Prices).
TEST_PRICE = {("mlflow-small", "us-east-1", "MLflow"): Decimal("0.6")}

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    guard = guard_for(clock, db_url, list(rules), kinds=["mlflow_server"], **extra)
    guard.prices = PriceBook({**bundled_prices(), **TEST_PRICE})
    return guard


def by_name(guard: Guard) -> dict[str, Resource]:
    return {res.name: res for res in guard.store.resources()}


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["name"], a["outcome"]) for a in report["actions"])


def sagemaker_of(sim: Simulator) -> Any:
    return lambda account, region: sim.client("sagemaker", region, account)


def test_servers_are_listed_by_size_with_their_price_or_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_mlflow_server("small", "Small", created_at=now - timedelta(hours=3),
                          tags={"owner": "ada@example.com"})  # fmt: skip
    sim.add_mlflow_server("large", "Large", created_at=now - timedelta(hours=1))
    sim.add_mlflow_server("off", "Medium", status="Stopped", created_at=now - timedelta(days=3))
    guard = make_guard(clock, db_url)

    report = run_cycle(guard)

    assert report["errors"] == []
    servers = by_name(guard)
    small, large, off = servers["small"], servers["large"], servers["off"]
    assert (small.instance_type, small.usd_per_hour, small.price_source) == (
        "mlflow-small", Decimal("0.6"), "bundled",
    )  # fmt: skip
    assert small.running and small.running_since == now - timedelta(hours=3)
    assert small.activity_source.value == "in-service-since" and small.last_activity is None
    assert "no activity metric" in small.details["evidence"]
    assert small.tags["owner"] == "ada@example.com"
    # no source for Large: unknown, counted, never $0
    assert (large.usd_per_hour, large.price_source) == (None, "unknown")
    assert report["prices"]["unknown"] == 1
    assert (off.running, off.usd_per_hour) == (False, Decimal(0))
    # sized once: the next cycle serves the size from the snapshot
    describes = sim.request_counts["sagemaker:DescribeMlflowTrackingServer"]
    assert describes == 3
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    assert sim.request_counts["sagemaker:DescribeMlflowTrackingServer"] == describes


def test_long_running_server_is_warned_stopped_and_restored(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_mlflow_server("nightly", created_at=now - timedelta(hours=20))
    sim.add_mlflow_server("fresh", created_at=now - timedelta(hours=2))
    guard = make_guard(clock, db_url, LONG_RUNNING, mode="enforce")

    first = run_cycle(guard)
    assert [w["name"] for w in first["warned"]] == ["nightly"]
    assert "running for 20 h" in first["warned"][0]["reason"]
    assert first["actions"] == []

    clock.advance(timedelta(minutes=35))
    report = run_cycle(guard)
    assert outcomes(report) == [("nightly", "done")]
    detail = report["actions"][0]["detail"]
    assert "experiments, runs and registered models are kept" in detail
    assert "cost-guard restore mlflow nightly" in detail
    assert sim.mlflow_status("nightly") == "Stopping"
    assert sim.mlflow_status("fresh") == "Created"  # busy (young): untouched
    assert sim.request_counts["sagemaker:StopMlflowTrackingServer"] == 1
    sim.settle()
    assert sim.mlflow_status("nightly") == "Stopped"

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    done = restore_server(guard.store, sagemaker_of(sim), "nightly", clock=clock, sleep=sleep)
    assert done.created and done.status == "Started" and done.in_service_at is not None
    assert len(slept) == 20  # Starting lasts 10 minutes of the clock, polled every 30 s
    assert sim.mlflow_status("nightly") == "Started"
    again = restore_server(guard.store, sagemaker_of(sim), "nightly", clock=clock, sleep=sleep)
    assert not again.created and "is Started" in again.message


def test_dry_run_changes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_mlflow_server("nightly", created_at=clock.now() - timedelta(hours=20))
    guard = make_guard(clock, db_url, LONG_RUNNING | {"grace": "0s"})

    report = run_cycle(guard)

    assert outcomes(report) == [("nightly", "dry-run")]
    assert "would stop" in report["actions"][0]["detail"]
    assert sim.mlflow_status("nightly") == "Created"
    assert "sagemaker:StopMlflowTrackingServer" not in sim.request_counts
    assert guard.store.restore_record("mlflow_server", "nightly") is None


def test_failed_describe_makes_the_server_unknown_and_nothing_is_stopped(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_mlflow_server("nightly", created_at=clock.now() - timedelta(hours=20))
    sim.fail("sagemaker:DescribeMlflowTrackingServer")
    guard = make_guard(clock, db_url, LONG_RUNNING | {"grace": "0s"}, mode="enforce")

    report = run_cycle(guard)

    assert report["actions"] == [] and report["warned"] == []
    [res] = guard.store.resources()
    assert res.unknown and "AccessDenied" in (res.evidence_error or "")
    assert any("could not be described" in e for e in report["errors"])
    assert sim.mlflow_status("nightly") == "Created"


def test_failed_listing_judges_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_mlflow_server("nightly", created_at=clock.now() - timedelta(hours=20))
    sim.fail("sagemaker:ListMlflowTrackingServers")
    guard = make_guard(clock, db_url, LONG_RUNNING | {"grace": "0s"}, mode="enforce")

    report = run_cycle(guard)

    assert report["actions"] == [] and guard.store.resources() == []
    assert any("mlflow_server: scan failed" in e for e in report["errors"])


def test_failed_stop_is_failed_and_retried(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_mlflow_server("nightly", created_at=clock.now() - timedelta(hours=20))
    fault = sim.inject("denied", "sagemaker:StopMlflowTrackingServer", times=1)
    guard = make_guard(clock, db_url, LONG_RUNNING | {"grace": "0s"}, mode="enforce")

    assert outcomes(run_cycle(guard)) == [("nightly", "failed")]
    assert fault.hits == 1 and sim.mlflow_status("nightly") == "Created"
    clock.advance(timedelta(minutes=30))  # the failed action's retry
    report = run_cycle(guard)
    assert outcomes(report) == [("nightly", "done")]
    assert sim.mlflow_status("nightly") == "Stopping"


def test_server_outliving_its_studio_domain_is_a_finding(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = sim.add_domain("team")
    sim.add_mlflow_server("kept", domain_id=domain, user_profile="alice")
    sim.add_mlflow_server("orphan", domain_id="d-deleted00000", user_profile="bob")
    sim.add_mlflow_server("plain")  # not created from Studio: nothing to check
    sim.add_mlflow_server("orphan-off", status="Stopped", domain_id="d-deleted00000")
    guard = make_guard(clock, db_url)

    report = run_cycle(guard)

    subjects = [f["subject"] for f in report["findings"]]
    assert subjects == ["MLflow tracking server orphan"]
    [finding] = report["findings"]
    assert "its Studio domain d-deleted00000 was deleted" in finding["problem"]
    assert "stop-mlflow-tracking-server --tracking-server-name orphan" in finding["fix"]
    assert by_name(guard)["kept"].details["domain_id"] == domain

    sim.fail("sagemaker:ListDomains")  # a missing answer is not a deletion
    clock.advance(timedelta(minutes=5))
    failed = run_cycle(guard)
    assert failed["findings"] == []
    assert any("ListDomains failed" in e for e in failed["errors"])


def test_restore_without_a_record_or_server_says_why(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    guard = make_guard(clock, db_url, LONG_RUNNING | {"grace": "0s"}, mode="enforce")
    with pytest.raises(RestoreError, match="never stopped a tracking server of that name"):
        restore_server(guard.store, sagemaker_of(sim), "nope", clock=clock, sleep=lambda s: None)
    sim.add_mlflow_server("gone", created_at=clock.now() - timedelta(hours=20))
    assert outcomes(run_cycle(guard)) == [("gone", "done")]
    with pytest.raises(RestoreError, match="still Stopping"):
        restore_server(guard.store, sagemaker_of(sim), "gone", clock=clock, sleep=lambda s: None)
    sim.client("sagemaker").delete_mlflow_tracking_server(TrackingServerName="gone")
    sim.settle()
    with pytest.raises(RestoreError, match="no longer exists"):
        restore_server(guard.store, sagemaker_of(sim), "gone", clock=clock, sleep=lambda s: None)


def test_inventory_json_and_restore_cli(sim: Simulator, clock: ManualClock, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"mode: enforce\ndatabase_url: sqlite:///{db}\nkinds: [mlflow_server]\n")
    sim.add_mlflow_server("nightly", created_at=clock.now() - timedelta(hours=20))
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    env = {**clean, **sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    runner = CliRunner()
    listed = runner.invoke(
        main, ["inventory", "--json", "--scan", "--all", "--config", str(config)], env=env
    )
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.output)
    assert (item["kind"], item["instance_type"], item["usd_per_hour"]) == (
        "mlflow_server", "mlflow-small", None,
    )  # fmt: skip
    assert item["activity_source"] == "in-service-since"

    guard = make_guard(clock, f"sqlite:///{db}", LONG_RUNNING | {"grace": "0s"}, mode="enforce")
    assert outcomes(run_cycle(guard)) == [("nightly", "done")]
    sim.settle()
    result = runner.invoke(main, ["restore", "mlflow", "nightly", "--no-wait",
                                  "--config", str(config)], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "started MLflow tracking server nightly" in result.output
    assert sim.mlflow_status("nightly") == "Starting"


def test_idle_for_is_refused_for_mlflow_servers() -> None:
    with pytest.raises(ValueError, match=r"idle_for is not available.*no activity metric"):
        Config.model_validate(
            {"rules": [{"id": "x", "kind": "mlflow_server", "idle_for": "2h", "action": "stop"}]}
        )
    assert not KINDS["mlflow_server"].idles


def test_a_price_list_item_billed_per_size_is_keyed_by_its_size() -> None:
    """An hourly item with no ml. instance, `<REGION>-<Operation>:<What>-Hrs`, is keyed
    "<operation>-<what>": a Price List MLflow item in that shape prices "mlflow-small"."""
    attributes = {
        "regionCode": "us-east-1",
        "component": "MLflow",
        "usagetype": "USE1-MLflow:Small-Hrs",
    }
    item: dict[str, Any] = {
        "product": {"attributes": attributes},
        "terms": {"OnDemand": {"t": {"priceDimensions": {"d": {
            "unit": "Hrs", "pricePerUnit": {"USD": "0.6"}}}}}},
    }  # fmt: skip
    assert parse_price_item(item) == (
        ("mlflow-small", "us-east-1", "MLflow"), Decimal("0.6"), "USE1-MLflow:Small-Hrs"
    )  # fmt: skip
    attributes["usagetype"] = "USE1-MLflow:Small"  # no -Hrs: not an hour
    assert parse_price_item(item) == "not an ml. instance"
