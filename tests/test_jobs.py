"""Training, processing and transform jobs, end to end: the simulator over HTTP, both databases."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event

from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock, Resource
from guard.pricing import PriceBook, bundled_prices
from guard.sim import Simulator
from tests.factories import guard_for

JOB_KINDS = ["training_job", "processing_job", "transform_job"]
LONG_TRAINING = {
    "id": "long-training",
    "kind": "training_job",
    "running_for": "24h",
    "action": "stop",
}
STALLED_GPU = {
    "id": "stalled-gpu",
    "kind": "training_job",
    "utilization_below": {"gpu": 5, "for": "1h"},
    "action": "stop",
}
# The bundled price table has no BatchTransform rows yet: tests that price transform jobs
# add one (SageMaker's us-east-1 on-demand price for ml.m5.xlarge batch transform).
TRANSFORM_PRICE = {("ml.m5.xlarge", "us-east-1", "BatchTransform"): Decimal("0.23")}


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    # Only the job kinds: this file is about them, and other kinds add calls.
    guard = guard_for(clock, db_url, list(rules), kinds=JOB_KINDS, **extra)
    guard.prices = PriceBook({**bundled_prices(), **TRANSFORM_PRICE})
    return guard


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["name"], a["outcome"]) for a in report["actions"])


def by_name(guard: Guard) -> dict[str, Resource]:
    return {res.name: res for res in guard.store.resources()}


def minutely(now: datetime, span: timedelta, value: float) -> list[tuple[datetime, float]]:
    """One datapoint a minute over the last `span`, as SageMaker publishes job metrics."""
    return [(now - timedelta(minutes=m), value) for m in range(1, int(span.total_seconds() // 60))]


def describe_calls(sim: Simulator) -> dict[str, int]:
    return {op: n for op, n in sim.request_counts.items() if op.startswith("sagemaker:Describe")}


def test_training_job_past_running_for_is_stopped_and_one_within_is_not(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_training_job("marathon", started_at=now - timedelta(hours=30), max_runtime=172_800)
    sim.add_training_job("sprint", started_at=now - timedelta(hours=2))
    guard = make_guard(clock, db_url, LONG_TRAINING, mode="enforce")

    report = run_cycle(guard)

    assert outcomes(report) == [("marathon", "done")]
    assert sim.job_status("training_job", "marathon") == "Stopping"
    assert sim.job_status("training_job", "sprint") == "InProgress"
    assert sim.request_counts["sagemaker:StopTrainingJob"] == 1
    sim.settle_jobs()
    clock.advance(timedelta(minutes=5))
    after = run_cycle(guard)
    assert after["actions"] == [] and after["errors"] == []
    assert sim.job_status("training_job", "marathon") == "Stopped"
    assert [name for name, res in by_name(guard).items() if res.running] == ["sprint"]


def test_stalled_job_is_caught_by_a_utilization_rule_and_a_busy_one_is_not(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    window = timedelta(hours=2)
    sim.add_training_job("stalled", count=2, started_at=now - timedelta(hours=5))
    sim.add_training_job("busy", count=2, started_at=now - timedelta(hours=5))
    for host in ("algo-1", "algo-2"):
        sim.gpu_utilization("stalled", minutely(now, window, 0.4), host=host)
    # Only one host of "busy" works: the job's peak is the busiest host's.
    sim.gpu_utilization("busy", minutely(now, window, 0.0), host="algo-1")
    sim.gpu_utilization("busy", minutely(now, window, 87.0), host="algo-2")
    guard = make_guard(clock, db_url, STALLED_GPU, mode="enforce")

    report = run_cycle(guard)

    assert outcomes(report) == [("stalled", "done")]
    assert sim.job_status("training_job", "stalled") == "Stopping"
    assert sim.job_status("training_job", "busy") == "InProgress"
    jobs = by_name(guard)
    assert jobs["stalled"].utilization == {"gpu/3600": pytest.approx(0.4)}
    assert jobs["busy"].utilization == {"gpu/3600": pytest.approx(87.0)}
    warned = {w["name"]: w for w in report["warned"]}
    assert "GPU at most 0.4 %" in warned["stalled"]["reason"]
    # 2 jobs x 2 hosts x 1 metric: one GetMetricData call
    assert sim.request_counts["cloudwatch:GetMetricData"] == 1


def test_missing_metrics_never_count_as_stalled(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_training_job("silent", started_at=now - timedelta(hours=5))  # no datapoints
    sim.add_training_job("late", started_at=now - timedelta(hours=5))
    sim.gpu_utilization("late", minutely(now, timedelta(minutes=20), 0.0))  # 20 min of 60
    sim.add_training_job("half", count=2, started_at=now - timedelta(hours=5))
    sim.gpu_utilization("half", minutely(now, timedelta(hours=2), 0.0))  # algo-2 never reported
    sim.add_training_job("young", started_at=now - timedelta(minutes=30))
    sim.gpu_utilization("young", minutely(now, timedelta(minutes=30), 0.0))
    guard = make_guard(clock, db_url, STALLED_GPU, mode="enforce")

    report = run_cycle(guard)

    assert report["warned"] == [] and report["actions"] == []
    for res in by_name(guard).values():
        assert res.utilization == {}, res.name
        assert not res.unknown  # missing data is not an error either: just no evidence
        assert sim.job_status("training_job", res.name) == "InProgress"


def test_failed_metrics_call_makes_the_jobs_unknown_and_nothing_is_stopped(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_training_job("stalled", started_at=now - timedelta(hours=5))
    sim.gpu_utilization("stalled", minutely(now, timedelta(hours=2), 0.0))
    sim.fail("cloudwatch:GetMetricData")
    guard = make_guard(clock, db_url, STALLED_GPU, LONG_TRAINING, mode="enforce")
    clock.advance(timedelta(hours=20))  # past running_for too: only "unknown" protects it

    report = run_cycle(guard)

    assert report["warned"] == [] and report["actions"] == []
    assert any("GetMetricData failed" in e for e in report["errors"])
    res = by_name(guard)["stalled"]
    assert res.unknown and "utilization metrics unavailable" in (res.evidence_error or "")
    assert sim.job_status("training_job", "stalled") == "InProgress"


def test_failed_tags_call_makes_the_jobs_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    # Without tags, exemptions and snoozes are unknown: nothing may be stopped.
    sim.add_training_job(
        "marathon", started_at=clock.now() - timedelta(hours=30), tags={"cost-guard:exempt": "true"}
    )
    sim.fail("tagging:GetResources")
    guard = make_guard(clock, db_url, LONG_TRAINING, mode="enforce")

    report = run_cycle(guard)

    assert report["actions"] == []
    assert by_name(guard)["marathon"].unknown
    assert sim.job_status("training_job", "marathon") == "InProgress"


def test_failed_describe_makes_only_that_new_job_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_training_job("seen", started_at=now - timedelta(hours=30))
    guard = make_guard(clock, db_url, {**LONG_TRAINING, "action": "notify"})
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["seen"]
    sim.add_training_job("new", started_at=now - timedelta(hours=40))
    sim.fail("sagemaker:DescribeTrainingJob")
    clock.advance(timedelta(minutes=5))

    report = run_cycle(guard)

    assert report["warned"] == []  # "new" would be warned, were it known
    assert any("could not be described" in e for e in report["errors"])
    jobs = by_name(guard)
    assert jobs["new"].unknown and "describe failed" in (jobs["new"].evidence_error or "")
    assert jobs["new"].usd_per_hour is None  # unknown, never $0
    assert not jobs["seen"].unknown and jobs["seen"].instance_type == "ml.g5.xlarge"
    assert jobs["seen"].usd_per_hour == Decimal("1.408")
    sim.heal()
    clock.advance(timedelta(minutes=5))
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["new"]  # described at last


def test_processing_and_transform_jobs_are_listed_priced_and_stoppable(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    now = clock.now()
    sim.add_processing_job("etl", "ml.m5.xlarge", 2, started_at=now - timedelta(hours=3))
    sim.add_transform_job("scoring", "ml.m5.xlarge", 3, started_at=now - timedelta(hours=3))
    sim.add_processing_job("finished", status="Completed")
    rules = [
        {"id": f"long-{kind}", "kind": kind, "running_for": "2h", "action": "stop"}
        for kind in ("processing_job", "transform_job")
    ]
    guard = make_guard(clock, db_url, *rules, mode="enforce")

    report = run_cycle(guard)

    jobs = by_name(guard)
    assert set(jobs) == {"etl", "scoring"}  # only InProgress jobs are listed
    assert (jobs["etl"].instance_count, jobs["etl"].usd_per_hour) == (2, Decimal("0.46"))
    assert (jobs["scoring"].instance_count, jobs["scoring"].usd_per_hour) == (3, Decimal("0.69"))
    assert jobs["etl"].running_since == now - timedelta(hours=3)
    assert outcomes(report) == [("etl", "done"), ("scoring", "done")]
    assert sim.job_status("processing_job", "etl") == "Stopping"
    assert sim.job_status("transform_job", "scoring") == "Stopping"
    counts = sim.request_counts
    assert counts["sagemaker:StopProcessingJob"] == counts["sagemaker:StopTransformJob"] == 1


def test_dry_run_stops_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_training_job("marathon", started_at=clock.now() - timedelta(hours=30))
    guard = make_guard(clock, db_url, LONG_TRAINING)  # mode defaults to dry-run

    report = run_cycle(guard)

    assert outcomes(report) == [("marathon", "dry-run")]
    assert "would stop" in report["actions"][0]["detail"]
    assert sim.job_status("training_job", "marathon") == "InProgress"
    assert "sagemaker:StopTrainingJob" not in sim.request_counts


def test_a_job_already_stopping_is_skipped(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_training_job("marathon", started_at=clock.now() - timedelta(hours=30))
    guard = make_guard(clock, db_url, {**LONG_TRAINING, "grace": "30m"}, mode="enforce")
    run_cycle(guard)  # warned; the owner stops it themselves meanwhile
    sim.client("sagemaker").stop_training_job(TrainingJobName="marathon")
    res = by_name(guard)["marathon"]

    outcome = guard.actions.execute(res, "stop", rule_id=None, episode_id=None, reason="test")

    assert (outcome.outcome, outcome.detail) == ("skipped", "already Stopping: nothing to do")
    assert sim.request_counts["sagemaker:StopTrainingJob"] == 1  # the owner's, not ours
    clock.advance(timedelta(minutes=31))
    assert run_cycle(guard)["actions"] == []  # no longer InProgress: not listed, not acted on


def test_steady_cycle_describes_no_job_twice_and_pages_the_listing(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_job_fleet(150, gpu=50.0, metric_span=timedelta(hours=2))  # 2 pages of 100
    sim.add_processing_job("etl", started_at=clock.now() - timedelta(hours=3))
    sim.add_transform_job("scoring", started_at=clock.now() - timedelta(hours=3))
    guard = make_guard(clock, db_url, STALLED_GPU)

    first = run_cycle(guard)
    # the 150 training jobs come by the page (SageMaker Search); a lone new job is described
    assert describe_calls(sim) == {
        "sagemaker:DescribeProcessingJob": 1,
        "sagemaker:DescribeTransformJob": 1,
    }
    assert sim.request_counts["sagemaker:Search"] == 2
    assert sim.request_counts["sagemaker:ListTrainingJobs"] == 2
    assert first["errors"] == []

    sim.reset_counts()
    clock.advance(timedelta(minutes=2))  # the seeded metrics end at the start
    steady = run_cycle(guard)

    assert describe_calls(sim) == {}
    assert steady["resources"] == 152 and steady["errors"] == []
    # 150 jobs x 1-2 hosts = 225 queries: one GetMetricData call
    assert sim.request_counts["cloudwatch:GetMetricData"] == 1
    jobs = by_name(guard)
    assert jobs["job-00001"].instance_count == 2 and jobs["job-00001"].utilization == {
        "gpu/3600": 50.0
    }
    assert steady["warned"] == []


def test_a_job_scan_reads_the_stored_facts_of_its_listed_and_just_ended_jobs_only(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    """Every job that ever ran keeps its row (and its facts) in the database: a scan reads the
    facts of the jobs it lists and of those that ended since the last one, by ARN, never the
    kind's whole history, whose size only grows."""
    names = sim.add_job_fleet(30, gpu=50.0, metric_span=timedelta(hours=2))
    guard = make_guard(clock, db_url, STALLED_GPU)
    assert run_cycle(guard)["resources"] == 30
    reads: list[list[str]] = []  # the ARNs bound in each read of training jobs' details

    @event.listens_for(guard.store.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        flat = params.values() if isinstance(params, dict) else params
        if "resources.details" in statement and "training_job" in list(flat):
            reads.append([p for p in flat if isinstance(p, str) and p.startswith("arn:")])

    for name in names[:25]:
        sim.finish_job("training_job", name)
    clock.advance(timedelta(minutes=5))
    assert run_cycle(guard)["errors"] == []  # 5 still running, 25 ended since the last scan
    assert [len(arns) for arns in reads] == [30]
    reads.clear()
    clock.advance(timedelta(minutes=5))
    assert run_cycle(guard)["errors"] == []  # the 25 are history now: the 5 only
    assert [len(arns) for arns in reads] == [5]
    assert len(guard.store.resources(include_gone=True)) == 30


def test_inventory_json_shows_jobs_with_price_and_evidence(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    now = clock.now()
    sim.add_training_job(
        "llm-finetune", "ml.g5.xlarge", 2, started_at=now - timedelta(hours=6),
        max_runtime=8 * 3600, tags={"owner": "ada@example.com"}, spot=True,
    )  # fmt: skip
    for host in ("algo-1", "algo-2"):
        sim.gpu_utilization("llm-finetune", minutely(now, timedelta(hours=2), 3.0), host=host)
    guard = make_guard(clock, db_url, {**STALLED_GPU, "action": "notify"})
    run_cycle(guard)
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [{', '.join(JOB_KINDS)}]\n")

    env = {k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))}
    result = CliRunner().invoke(
        main, ["inventory", "--json", "--config", str(config)], env={**env, **sim.env()}
    )

    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert item["kind"] == "training_job" and item["name"] == "llm-finetune"
    assert (item["instance_type"], item["instance_count"]) == ("ml.g5.xlarge", 2)
    # managed spot: 2 x 1.408 on demand, x (1 - pricing.spot_savings 0.7), an estimate
    assert (Decimal(item["usd_per_hour"]), item["price_source"]) == (
        Decimal("0.8448"),
        "spot-estimate",
    )
    assert item["owner"] == "ada@example.com"
    assert item["utilization"] == {"gpu/3600": 3.0}
    details = item["details"]
    assert details["runtime_seconds"] == 6 * 3600
    assert details["max_runtime_seconds"] == 8 * 3600 and details["max_runtime_used"] == 0.75
    assert details["spot"] is True
    assert item["rule_state"][0]["rule"] == "stalled-gpu"
