"""Jobs and endpoints learned by the page (SageMaker Search), not one Describe per resource.

The simulator answers Search over HTTP (guard/sim/search.py) with the fault injector in
front, so every call below is counted by operation where AWS would see it.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

import guard.sim.search as sim_search
from guard.cycle import Guard, run_cycle
from guard.model import ActivitySource, ManualClock
from guard.pricing import PriceBook, bundled_prices
from guard.sim import Simulator
from tests.conftest import emptied
from tests.factories import guard_for

KINDS = ["training_job", "processing_job", "transform_job", "endpoint"]
RULES: list[dict[str, Any]] = [
    {"id": "long-training", "kind": "training_job", "running_for": "1h", "action": "notify"},
    {
        "id": "stalled-gpu",
        "kind": "training_job",
        "utilization_below": {"gpu": 5, "for": "1h"},
        "action": "notify",
    },
    {"id": "long-etl", "kind": "processing_job", "running_for": "1h", "action": "notify"},
    {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "24h", "action": "notify"},
]
# The bundled table has no BatchTransform rows (as in tests/test_jobs.py).
TRANSFORM_PRICE = {("ml.m5.xlarge", "us-east-1", "BatchTransform"): Decimal("0.23")}
PER_RESOURCE = (
    "sagemaker:DescribeTrainingJob",
    "sagemaker:DescribeProcessingJob",
    "sagemaker:DescribeTransformJob",
    "sagemaker:DescribeEndpoint",
)

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


@pytest.fixture(autouse=True)
def _one_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed call fails at once (botocore would retry a reset a few times)."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


def make_guard(clock: ManualClock, db_url: str, kinds: list[str] = KINDS) -> Guard:
    guard = guard_for(clock, db_url, [r for r in RULES if r["kind"] in kinds], kinds=kinds)
    guard.prices = PriceBook({**bundled_prices(), **TRANSFORM_PRICE})
    return guard


def mixed_fleet(sim: Simulator) -> None:
    """150 training jobs (2 Search pages; GPU metrics), 120 processing (2 pages), 30
    transform jobs and 40 endpoints (a third invoked recently), all running for 6 h."""
    sim.add_job_fleet(150, kind="training_job", prefix="train", gpu=3.0)
    sim.add_job_fleet(120, kind="processing_job", prefix="etl")
    sim.add_job_fleet(30, kind="transform_job", prefix="score", instance_types=("ml.m5.xlarge",))
    sim.add_endpoint_fleet(40, prefix="ep")


def calls(sim: Simulator, *operations: str) -> dict[str, int]:
    counts = sim.request_counts
    return {op: counts[op] for op in operations if counts.get(op)}


def snapshot(guard: Guard) -> dict[str, dict[str, Any]]:
    """Every stored resource, as the rules and messages see it."""
    return {res.arn: dataclasses.asdict(res) for res in guard.store.resources()}


def test_first_cycle_makes_no_per_resource_describe(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    mixed_fleet(sim)
    guard = make_guard(clock, db_url)

    first = run_cycle(guard)

    assert first["errors"] == [] and first["resources"] == 340
    assert calls(sim, *PER_RESOURCE) == {}
    # 2 + 2 + 1 pages of job records, 1 of endpoint records; one Describe per distinct config
    assert sim.request_counts["sagemaker:Search"] == 6
    assert sim.request_counts["sagemaker:DescribeEndpointConfig"] == 40
    stored = {res.name: res for res in guard.store.resources()}
    assert stored["train-00001"].instance_count == 2
    assert stored["train-00001"].utilization == {"gpu/3600": 3.0}
    assert stored["etl-00000"].instance_type == "ml.g5.xlarge"
    assert stored["score-00000"].usd_per_hour == Decimal("0.23")
    assert stored["ep-00001"].instance_type == "ml.g5.xlarge"
    assert stored["ep-00001"].activity_source is ActivitySource.NO_INVOCATIONS

    sim.reset_counts()
    clock.advance(timedelta(minutes=5))
    steady = run_cycle(guard)
    assert steady["errors"] == []
    assert calls(sim, *PER_RESOURCE, "sagemaker:Search", "sagemaker:DescribeEndpointConfig") == {}


def test_search_gives_what_the_describes_gave(
    sim: Simulator, clock: ManualClock, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Same resources, prices, evidence and warnings by either path; Search denied falls
    back to the Describes with one log line per kind, and no error."""
    mixed_fleet(sim)
    sim.fail("sagemaker:Search")
    with caplog.at_level(logging.WARNING, logger="guard.scanners.search"):
        described = run_cycle(make_guard(clock, db_url))
    by_describe = snapshot(make_guard(clock, db_url))
    assert described["errors"] == []
    assert sim.request_counts["sagemaker:DescribeTrainingJob"] == 150
    assert sim.request_counts["sagemaker:DescribeEndpoint"] == 40
    denied = [r.getMessage() for r in caplog.records if "Search denied" in r.getMessage()]
    assert len(denied) == len(KINDS), denied
    assert "grant sagemaker:Search" in denied[0]

    sim.heal()
    sim.reset_counts()
    searched = run_cycle(make_guard(clock, emptied(db_url)))
    by_search = snapshot(make_guard(clock, db_url))
    assert calls(sim, *PER_RESOURCE) == {}

    assert by_search.keys() == by_describe.keys() and len(by_search) == 340
    for arn, res in by_describe.items():
        assert by_search[arn] == res, arn
    assert searched["resources"] == described["resources"]
    assert sorted(map(str, searched["warned"])) == sorted(map(str, described["warned"]))


def test_failure_mid_paging_leaves_the_kind_unjudged_this_cycle(
    sim: Simulator, clock: ManualClock, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed_fleet(sim)
    original = sim_search.answer

    def reset_after_first_page(records: Any, **query: Any) -> dict[str, Any]:
        page = original(records, **query)
        if query["resource"] == "TrainingJob" and query["token"] is None:
            sim.inject("reset", "sagemaker:Search", times=1)  # the second page's connection
        return page

    monkeypatch.setattr(sim_search, "answer", reset_after_first_page)
    guard = make_guard(clock, db_url)

    report = run_cycle(guard)

    assert sim.request_counts["sagemaker:Search"] == 2 + 2 + 1 + 1  # the lost page, counted
    [error] = report["errors"]
    assert "training_job: scan failed" in error and "reset" in error
    kinds = {res.kind for res in guard.store.resources()}
    assert kinds == {"processing_job", "transform_job", "endpoint"}  # nothing judged, none gone
    assert {w["kind"] for w in report["warned"]} == {"processing_job", "endpoint"}

    monkeypatch.setattr(sim_search, "answer", original)
    sim.reset_counts()
    clock.advance(timedelta(minutes=5))
    again = run_cycle(guard)
    assert again["errors"] == []
    assert sim.request_counts["sagemaker:Search"] == 2  # only the training jobs are new
    assert len([r for r in guard.store.resources() if r.kind == "training_job"]) == 150


def test_no_failure_or_restart_describes_an_endpoint_config_twice(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    names = sim.add_endpoint_fleet(5, prefix="ep")
    sim.fail("cloudwatch:GetMetricData")  # the first cycle fails: every endpoint is unknown
    first = run_cycle(make_guard(clock, db_url, ["endpoint"]))
    assert first["errors"] and sim.request_counts["sagemaker:DescribeEndpointConfig"] == 5

    # A restart (a new guard on the same database), every endpoint changed, and a new one
    # deployed with an existing config: Search finds the endpoints, the configs are known.
    sim.heal()
    client = sim.client("sagemaker")
    for name in names:
        client.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    client.create_endpoint(EndpointName="ep-copy", EndpointConfigName=f"{names[0]}-config")
    sim.reset_counts()
    clock.advance(timedelta(minutes=5))
    guard = make_guard(clock, db_url, ["endpoint"])
    report = run_cycle(guard)

    assert report["errors"] == []
    assert calls(sim, "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeEndpoint") == {}
    assert sim.request_counts["sagemaker:Search"] == 1
    stored = {res.name: res for res in guard.store.resources()}
    assert stored[names[0]].instance_count == 2
    assert stored["ep-copy"].instance_type == stored[names[0]].instance_type == "ml.m5.xlarge"
    assert stored["ep-copy"].evidence_error is None


def test_simulated_search_pages_and_refuses_as_aws_documents(sim: Simulator) -> None:
    sim.add_job_fleet(130, kind="training_job", prefix="train")
    sim.add_training_job("tagged", tags={"team": "vision"})
    client = sim.client("sagemaker")
    running = {"Filters": [{"Name": "TrainingJobStatus", "Value": "InProgress"}]}  # Equals

    first = client.search(Resource="TrainingJob", SearchExpression=running, MaxResults=100)
    second = client.search(
        Resource="TrainingJob", SearchExpression=running, MaxResults=100,
        NextToken=first["NextToken"],
    )  # fmt: skip
    names = [r["TrainingJob"]["TrainingJobName"] for r in first["Results"] + second["Results"]]
    assert len(names) == len(set(names)) == 131 and "NextToken" not in second
    assert first["TotalHits"] == {"Value": 131, "Relation": "EqualTo"}
    record = first["Results"][0]["TrainingJob"]
    assert record["ResourceConfig"]["InstanceType"] and record["TrainingStartTime"]

    tagged = client.search(
        Resource="TrainingJob",
        SearchExpression={
            "Filters": [{"Name": "Tags.team", "Operator": "Equals", "Value": "vision"}]
        },
    )
    assert [r["TrainingJob"]["TrainingJobName"] for r in tagged["Results"]] == ["tagged"]

    def refused(**params: Any) -> str:
        with pytest.raises(ClientError) as caught:
            client.search(Resource="TrainingJob", **params)
        return str(caught.value.response["Error"]["Code"])

    assert refused(MaxResults=101) == "ValidationException"
    assert refused(NextToken=first["NextToken"]) == "ValidationException"  # another query's
    two_contains = [{"Name": "TrainingJobName", "Operator": "Contains", "Value": v} for v in "ab"]
    assert refused(SearchExpression={"Filters": two_contains}) == "ValidationException"
    sim.fail("sagemaker:Search")  # the fault injector stands in front of Search too
    assert refused() == "AccessDeniedException"
