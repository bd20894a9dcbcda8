"""Parents of child jobs (tuning and AutoML jobs) end to end: listed as what the person
launched, priced as their running children, stopped as one; their children are not warned
about separately. The simulator over HTTP, both databases, a manual clock."""

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
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock, Resource
from guard.pricing import PriceBook, bundled_prices
from guard.scanners.tuning import definition_facts
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

KINDS = ["training_job", "tuning_job", "automl_job"]
LONG_TUNING = {"id": "long-hpo", "kind": "tuning_job", "running_for": "24h", "action": "stop"}
LONG_AUTOML = {"id": "long-automl", "kind": "automl_job", "running_for": "24h", "action": "stop"}
LONG_TRAINING = {"id": "long-train", "kind": "training_job", "running_for": "1h", "action": "stop"}
# ml.m5.2xlarge Training has no bundled row: a figure for the tests only
M5_2XL = {("ml.m5.2xlarge", "us-east-1", "Training"): Decimal("0.461")}
G5 = Decimal("1.4080")  # bundled ml.g5.xlarge Training, us-east-1


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    guard = guard_for(clock, db_url, list(rules), kinds=KINDS, **extra)
    guard.prices = PriceBook({**bundled_prices(), **M5_2XL})
    return guard


def by_kind(guard: Guard, kind: str) -> dict[str, Resource]:
    return {r.name: r for r in guard.store.resources() if r.kind == kind}


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["name"], a["outcome"]) for a in report["actions"])


def test_parents_are_listed_and_priced_as_their_running_children(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_tuning_job(
        "hpo",
        "ml.g5.xlarge",
        children=3,
        running=2,
        started_at=now - timedelta(hours=3),
        tags={"owner": "ada@example.com"},
    )
    sim.add_automl_job("auto", "ml.m5.2xlarge", children=2, running=1,
                       started_at=now - timedelta(hours=2))  # fmt: skip
    sim.add_training_job("plain", started_at=now - timedelta(hours=2))
    guard = make_guard(clock, db_url)

    report = run_cycle(guard)

    assert report["errors"] == []
    [hpo] = by_kind(guard, "tuning_job").values()
    assert (hpo.instance_type, hpo.instance_count) == ("ml.g5.xlarge", 2)
    assert (hpo.usd_per_hour, hpo.price_source) == (G5 * 2, "bundled")
    assert hpo.details["running_children"] == 2 and hpo.details["completed_children"] == 1
    assert hpo.running_since == now - timedelta(hours=3) and hpo.tags["owner"] == "ada@example.com"
    [auto] = by_kind(guard, "automl_job").values()
    assert (auto.instance_type, auto.instance_count, auto.usd_per_hour) == (
        "ml.m5.2xlarge", 1, Decimal("0.461"),
    )  # fmt: skip
    # the children: deferred to their parent, not running, $0, counted once in the totals
    training = by_kind(guard, "training_job")
    children = [r for r in training.values() if r.details.get("parent_arn")]
    assert len(children) == 3  # 2 of the tuning job, 1 of the AutoML job (InProgress ones)
    assert all((c.running, c.usd_per_hour, c.price_source) == (False, Decimal(0), "parent")
               for c in children)  # fmt: skip
    assert training["plain"].running and not training["plain"].details.get("parent_arn")
    total = sum(r.usd_per_hour or 0 for r in guard.store.resources() if r.running)
    assert total == G5 * 2 + Decimal("0.461") + (training["plain"].usd_per_hour or 0)
    # the definition is described once, the running count comes from the listing each cycle
    describes = sim.request_counts["sagemaker:DescribeHyperParameterTuningJob"]
    child_describes = sim.request_counts["sagemaker:DescribeTrainingJob"]
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    assert sim.request_counts["sagemaker:DescribeHyperParameterTuningJob"] == describes == 1
    assert sim.request_counts["sagemaker:DescribeTrainingJob"] == child_describes


def test_a_rule_stops_the_parent_and_children_are_not_warned_separately(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_tuning_job("hpo", children=3, running=2, started_at=now - timedelta(hours=30))
    sim.add_tuning_job("young", children=2, running=2, started_at=now - timedelta(hours=2))
    sim.add_automl_job("auto", children=2, running=1, started_at=now - timedelta(hours=30))
    grace = {"grace": "30m"}
    rules = (LONG_TUNING | grace, LONG_AUTOML | grace, LONG_TRAINING | grace)
    guard = make_guard(clock, db_url, *rules, mode="enforce")

    first = run_cycle(guard)
    # warned: the parents only (every child ran past LONG_TRAINING's hour, none is warned)
    assert sorted(w["name"] for w in first["warned"]) == ["auto", "hpo"]

    clock.advance(timedelta(minutes=31))  # past the grace
    report = run_cycle(guard)
    assert outcomes(report) == [("auto", "done"), ("hpo", "done")]
    details = {a["name"]: a["detail"] for a in report["actions"]}
    assert "running training jobs stop with it" in details["hpo"]
    assert "Its completed training jobs, their models" in details["hpo"]
    assert sim.tuning_status("hpo") == "Stopping" and sim.automl_status("auto") == "Stopping"
    assert sim.tuning_status("young") == "InProgress"  # busy (young): untouched
    assert "sagemaker:StopTrainingJob" not in sim.request_counts
    assert sim.request_counts["sagemaker:StopHyperParameterTuningJob"] == 1
    assert sim.request_counts["sagemaker:StopAutoMLJob"] == 1
    sim.settle()
    clock.advance(timedelta(minutes=5))
    after = run_cycle(guard)
    assert after["actions"] == [] and after["warned"] == []
    assert sim.tuning_status("hpo") == "Stopped"
    assert set(by_kind(guard, "tuning_job")) == {"young"}


def test_dry_run_changes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_tuning_job("hpo", started_at=clock.now() - timedelta(hours=30))
    guard = make_guard(clock, db_url, LONG_TUNING | {"grace": "0s"})

    report = run_cycle(guard)

    assert outcomes(report) == [("hpo", "dry-run")]
    assert sim.tuning_status("hpo") == "InProgress"
    assert "sagemaker:StopHyperParameterTuningJob" not in sim.request_counts


def test_new_parents_are_read_by_the_page_and_described_only_when_search_cannot(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    # About call counts, not storage: SQLite only.
    now = clock.now()
    for i in range(3):
        sim.add_tuning_job(f"hpo-{i}", "ml.g5.xlarge", children=2, running=1,
                           started_at=now - timedelta(hours=1))  # fmt: skip
    guard = make_guard(clock, fresh_sqlite_url)
    report = run_cycle(guard)
    assert report["errors"] == []
    # one page for the three definitions, one for their three running training jobs
    assert sim.request_counts["sagemaker:Search"] == 2
    assert sim.request_counts.get("sagemaker:DescribeHyperParameterTuningJob", 0) == 0
    priced = {
        r.name: (r.instance_type, r.usd_per_hour) for r in by_kind(guard, "tuning_job").values()
    }
    assert priced == {f"hpo-{i}": ("ml.g5.xlarge", G5) for i in range(3)}

    # Search denied: the new ones are described one by one, priced the same
    for i in range(3, 5):
        sim.add_tuning_job(f"hpo-{i}", "ml.g5.xlarge", children=2, running=1,
                           started_at=now - timedelta(hours=1))  # fmt: skip
    clock.advance(timedelta(minutes=5))
    fault = sim.inject("denied", "sagemaker:Search")
    try:
        run_cycle(guard)
    finally:
        fault.off()
    assert sim.request_counts["sagemaker:DescribeHyperParameterTuningJob"] == 2
    assert by_kind(guard, "tuning_job")["hpo-4"].usd_per_hour == G5


def test_failed_describe_makes_the_parent_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_tuning_job("hpo", started_at=clock.now() - timedelta(hours=30))
    sim.fail("sagemaker:DescribeHyperParameterTuningJob")
    guard = make_guard(clock, db_url, LONG_TUNING | {"grace": "0s"}, mode="enforce")

    report = run_cycle(guard)

    assert report["actions"] == [] and report["warned"] == []
    [hpo] = by_kind(guard, "tuning_job").values()
    assert hpo.unknown and "AccessDenied" in (hpo.evidence_error or "")
    assert sim.tuning_status("hpo") == "InProgress"


def test_unfindable_children_make_the_automl_price_unknown_never_zero(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_automl_job("auto", started_at=clock.now() - timedelta(hours=3))
    sim.fail("sagemaker:DescribeTrainingJob")
    guard = guard_for(clock, db_url, [], kinds=["automl_job"])

    report = run_cycle(guard)

    [auto] = by_kind(guard, "automl_job").values()
    assert auto.running and auto.usd_per_hour is None and auto.price_source == "unknown"
    assert "DescribeTrainingJob failed" in auto.details["price_error"]
    assert any("running children of AutoML jobs unknown" in e for e in report["errors"])
    sim.heal()
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    [auto] = by_kind(guard, "automl_job").values()
    assert auto.usd_per_hour is None  # no bundled ml.m5.2xlarge Training price: still unknown
    assert auto.price_source == "unknown" and "price_error" not in auto.details
    assert auto.instance_type == "ml.m5.2xlarge"


def test_failed_stop_is_failed_then_retried(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_tuning_job("hpo", started_at=clock.now() - timedelta(hours=30))
    fault = sim.inject("denied", "sagemaker:StopHyperParameterTuningJob", times=1)
    guard = make_guard(clock, db_url, LONG_TUNING | {"grace": "0s"}, mode="enforce")

    assert outcomes(run_cycle(guard)) == [("hpo", "failed")]
    assert fault.hits == 1 and sim.tuning_status("hpo") == "InProgress"
    clock.advance(timedelta(minutes=30))
    assert outcomes(run_cycle(guard)) == [("hpo", "done")]
    assert sim.tuning_status("hpo") == "Stopping"


def test_no_running_child_is_zero_and_several_definitions_are_unknown() -> None:
    one = {"TrainingJobDefinition": {"ResourceConfig": {"InstanceType": "ml.g5.xlarge",
                                                        "InstanceCount": 2},
                                     "EnableManagedSpotTraining": True}}  # fmt: skip
    assert definition_facts(one) | {} == {
        "instance_type": "ml.g5.xlarge", "several_types": False, "instance_count_per_child": 2,
        "spot": True, "max_training_jobs": None, "max_parallel_training_jobs": None,
    }  # fmt: skip
    several = {"TrainingJobDefinitions": [
        {"ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}},
        {"HyperParameterTuningResourceConfig": {"InstanceConfigs": [
            {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1}]}},
    ]}  # fmt: skip
    facts = definition_facts(several)
    assert facts["several_types"] and facts["instance_type"] == "ml.g5.xlarge+ml.p4d.24xlarge"


def test_inventory_json_lists_the_parents(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    sim.add_tuning_job("hpo", children=2, running=2, started_at=clock.now() - timedelta(hours=1))
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path / 'g.db'}\nkinds: [tuning_job]\n")
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    result = CliRunner().invoke(
        main,
        ["inventory", "--json", "--scan", "--all", "--config", str(config)],
        env={**clean, **sim.env(), "AWS_DEFAULT_REGION": "us-east-1"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert (item["kind"], item["instance_type"], item["instance_count"]) == (
        "tuning_job", "ml.g5.xlarge", 2,
    )  # fmt: skip
    assert item["usd_per_hour"] == f"{G5 * 2:.4f}"
    assert item["details"]["billing"] == "2 running training job(s), billed as Training"
