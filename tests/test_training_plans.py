"""Reserved capacity: Active training plans with unused instances are findings with the money
committed to them (the simulator over HTTP, SQLite and Postgres)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard import digest
from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.scanners.hyperpod import unused_capacity
from guard.scanning import Target
from guard.sim import Simulator
from tests.factories import guard_for

KIND = "hyperpod_cluster"

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def make_guard(clock: ManualClock, db_url: str) -> Guard:
    return guard_for(clock, db_url, [], kinds=[KIND])


def by_subject(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["subject"]: f for f in report["findings"]}


def test_unused_reserved_capacity_is_a_finding_with_the_money_committed(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    started = clock.now() - timedelta(days=7)
    plan = sim.add_training_plan("p5-reserve", "ml.p5.48xlarge", 4, start=started,
                                 duration=timedelta(days=14), upfront_fee="33868.80")  # fmt: skip
    # one of its four instances is in use: a cluster group running on the plan
    sim.add_hyperpod_cluster(
        "on-plan",
        [{"InstanceGroupName": "gpus", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 1,
          "TrainingPlanArn": plan}],
        created_at=started,
    )  # fmt: skip
    sim.add_training_plan("all-used", count=2, start=started, in_use=2)
    sim.add_training_plan("next-month", count=2, start=clock.now() + timedelta(days=30))
    sim.add_training_plan("over", count=2, start=clock.now() - timedelta(days=30))  # expired
    guard = make_guard(clock, db_url)
    report = run_cycle(guard)
    found = by_subject(report)
    assert set(found) == {"training plan p5-reserve"}
    finding = found["training plan p5-reserve"]
    # 33,868.80 x 3/4 = 25,401.60, half of it for the 7 days still ahead of 14
    assert finding["problem"] == (
        "3 of 4 reserved ml.p5.48xlarge instance(s) unused while the plan is Active until "
        f"{clock.now() + timedelta(days=7):%Y-%m-%d %H:%M} UTC; $25,401.60 of its $33,868.80 "
        "upfront fee is committed to them (fee x 3/4 unused), $12,700.80 of it for the 7 d "
        "still ahead"
    )
    assert Decimal(finding["usd"]) == Decimal("25401.60")
    assert "TrainingPlanArn" in finding["fix"]
    assert report["errors"] == []
    # not a resource: nothing to act on, nothing in the inventory but the cluster
    assert [r.name for r in guard.store.resources()] == ["on-plan"]

    # the findings command and the digest show it
    text = digest.text(digest.build(guard.cfg, guard.store, clock.now()))[1]
    assert any("training plan p5-reserve" in line and "$25,401.60" in line for line in text)


def test_findings_command_lists_it(sim: Simulator, clock: ManualClock, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'guard.db'}"
    sim.add_training_plan("idle-plan", "ml.p5.48xlarge", 2, upfront_fee="1000",
                          start=clock.now() - timedelta(days=1))  # fmt: skip
    run_cycle(make_guard(clock, db))
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db}\nkinds: [{KIND}]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    listed = CliRunner().invoke(main, ["findings", "--config", str(config)], env=env)
    assert listed.exit_code == 0, listed.output
    assert "training plan idle-plan: 2 of 2 reserved ml.p5.48xlarge instance(s) unused" in (
        listed.output
    )
    assert "$1,000.00 of its $1,000.00 upfront fee" in listed.output
    as_json = CliRunner().invoke(main, ["findings", "--json", "--config", str(config)], env=env)
    [item] = json.loads(as_json.output)
    assert item["subject"] == "training plan idle-plan" and Decimal(item["usd"]) == 1000


def test_a_failed_listing_is_an_error_never_a_clean_bill(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_training_plan("idle-plan", start=clock.now() - timedelta(days=1))
    sim.add_hyperpod_cluster("c", created_at=clock.now() - timedelta(days=1))
    sim.fail("sagemaker:ListTrainingPlans")
    report = run_cycle(make_guard(clock, db_url))
    assert report["findings"] == []
    assert any("ListTrainingPlans failed, reserved capacity not checked" in e
               for e in report["errors"])  # fmt: skip
    assert report["by_kind"][KIND]["listed"] == 1  # the clusters are still scanned


def _plan(**changes: Any) -> dict[str, Any]:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    plan: dict[str, Any] = {
        "TrainingPlanName": "p", "Status": "Active", "TotalInstanceCount": 4,
        "AvailableInstanceCount": 4, "InUseInstanceCount": 0, "UpfrontFee": "400",
        "CurrencyCode": "USD", "StartTime": start, "EndTime": start + timedelta(days=10),
        "TargetResources": ["training-job"],
    }  # fmt: skip
    return plan | changes


def test_the_money_in_other_currencies_and_without_a_fee() -> None:
    target = Target(None, "123456789012", "us-east-1")
    now = datetime(2026, 11, 25, tzinfo=UTC)  # half way
    usd = unused_capacity(target, _plan(AvailableInstanceCount=1, InUseInstanceCount=3), now)
    assert usd is not None and usd.usd == Decimal("100.00")
    assert "$100.00 of its $400.00 upfront fee" in usd.problem and "$50.00 of it" in usd.problem
    euro = unused_capacity(target, _plan(CurrencyCode="EUR"), now)
    assert euro is not None and euro.usd is None  # never counted as dollars
    assert "400.00 EUR of its 400.00 EUR upfront fee" in euro.problem
    no_fee = unused_capacity(target, _plan(UpfrontFee="n/a"), now)
    assert no_fee is not None and no_fee.usd is None and "upfront fee is unknown" in no_fee.problem
    assert unused_capacity(target, _plan(AvailableInstanceCount=0), now) is None
    assert unused_capacity(target, _plan(Status="Scheduled"), now) is None
    assert unused_capacity(target, _plan(TotalInstanceCount=0), now) is None
