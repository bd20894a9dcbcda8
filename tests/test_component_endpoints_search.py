"""Endpoints hosting inference components are read every cycle (managed instance scaling moves
their instance count without a new LastModifiedTime): by the page with SageMaker `Search`,
DescribeEndpoint for what Search leaves out or when it fails. The simulator over HTTP, call
counts as AWS saw them (issue 15: steady calls)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

ENDPOINTS = [f"ic-endpoint-{i}" for i in range(3)]


def calls(report: dict[str, Any], operation: str) -> int:
    return int(report["api_calls"].get(operation, 0))


def seed(sim: Simulator) -> None:
    for endpoint in ENDPOINTS:
        sim.add_component_endpoint(endpoint, "ml.g5.12xlarge", 2, min_instance_count=1)
        sim.add_inference_component(f"{endpoint}-a", endpoint, copies=1)


def scale_silently(sim: Simulator, endpoint: str, count: int) -> None:
    """Managed instance scaling: the count moves, LastModifiedTime does not."""
    found = sim._sagemaker(sim.regions[0]).endpoints[endpoint]
    for summary in found.production_variants:
        summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = count


def instances(guard: Any) -> dict[str, str]:
    """Each component's endpoint instance share, as stored: its $/h follows the count."""
    return {r.name: str(r.usd_per_hour) for r in guard.store.resources() if r.name.endswith("-a")}


def test_hosting_endpoints_are_read_by_the_page_and_a_silent_rescale_is_seen(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed(sim)
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["inference_component"])
    run_cycle(guard)
    before = instances(guard)
    clock.advance(timedelta(minutes=5))
    scale_silently(sim, ENDPOINTS[1], 4)
    steady = run_cycle(guard)
    # three endpoints in one Search page instead of three DescribeEndpoint
    assert calls(steady, "sagemaker:Search") == 1
    assert calls(steady, "sagemaker:DescribeEndpoint") == 0
    after = instances(guard)
    # the rescaled endpoint's only component carries 4 instances instead of 2; others alike
    assert float(after[f"{ENDPOINTS[1]}-a"]) == pytest.approx(
        2 * float(before[f"{ENDPOINTS[1]}-a"])
    )
    assert after[f"{ENDPOINTS[0]}-a"] == before[f"{ENDPOINTS[0]}-a"]


def test_search_failing_falls_back_to_describe_and_both_failing_is_unknown(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    seed(sim)
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["inference_component"])
    run_cycle(guard)
    priced = instances(guard)

    clock.advance(timedelta(minutes=5))
    fault = sim.inject("throttle", "sagemaker:Search")
    try:
        report = run_cycle(guard)
    finally:
        fault.off()
    assert calls(report, "sagemaker:DescribeEndpoint") == len(ENDPOINTS)
    assert instances(guard) == priced and not any(r.unknown for r in guard.store.resources())

    clock.advance(timedelta(minutes=5))
    faults = [
        sim.inject("reset", "sagemaker:Search"),
        sim.inject("reset", "sagemaker:DescribeEndpoint"),
    ]
    try:
        report = run_cycle(guard)
    finally:
        for fault in faults:
            fault.off()
    components = [r for r in guard.store.resources() if r.name.endswith("-a")]
    assert components and all(r.unknown for r in components)  # never idle, never $0
    assert all(r.usd_per_hour is None for r in components)


def test_many_long_names_are_searched_in_chunks_that_fit_a_filter_value(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    # 40 names of 40 characters: 1,639 characters joined, over FilterValue's 1,024
    names = [f"a-rather-long-endpoint-name-for-llms-{i:03d}" for i in range(40)]
    for name in names:
        sim.add_component_endpoint(name, "ml.g5.12xlarge", 1, min_instance_count=1)
        sim.add_inference_component(f"{name}-a", name, copies=1)
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["inference_component"])
    run_cycle(guard)
    clock.advance(timedelta(minutes=5))
    steady = run_cycle(guard)
    assert calls(steady, "sagemaker:Search") == 2
    assert calls(steady, "sagemaker:DescribeEndpoint") == 0
    assert steady["errors"] == []
