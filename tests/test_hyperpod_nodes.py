"""HyperPod node ids kept in the stored details (issue 15): an EKS cluster's nodes are listed
only when the stored ids cannot be trusted to be the nodes running now. The simulator over HTTP,
a manual clock, call counts as AWS saw them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from guard.cycle import Guard, run_cycle
from guard.model import ActivitySource, ManualClock, Resource
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

KIND = "hyperpod_cluster"
IDLE = {"id": "idle-clusters", "kind": KIND, "idle_for": "6h", "action": "scale-to-zero",
        "grace": "0s"}  # fmt: skip
LIST_NODES = "sagemaker:ListClusterNodes"
WORKERS = {"InstanceGroupName": "workers", "InstanceType": "ml.g5.xlarge", "InstanceCount": 2}


def make_guard(clock: ManualClock, db_url: str) -> Guard:
    return guard_for(clock, db_url, [IDLE], kinds=[KIND], mode="enforce")


def calls(report: dict[str, Any], operation: str) -> int:
    return int(report["api_calls"].get(operation, 0))


def publish(
    sim: Simulator, cluster: str, eks: str, start: datetime, end: datetime, gpu: float,
    skip: frozenset[str] = frozenset(),
) -> None:  # fmt: skip
    """GPU and CPU utilization every 5 minutes in (start, end] for every node running now."""
    times = []
    at = end
    while at > start:
        times.append(at)
        at -= timedelta(minutes=5)
    for node in sim.cluster_nodes(cluster):
        if node.instance_id in skip:
            continue
        for metric, value in (("node_gpu_utilization", gpu), ("node_cpu_utilization", gpu)):
            sim.cluster_node_metric(eks, node.instance_id, metric, [(t, value) for t in times])


def cluster(guard: Guard, name: str) -> Resource:
    res = guard.store.resource_by_name(KIND, name)
    assert res is not None
    return res


def stored_ids(res: Resource) -> set[str]:
    return {node_id for node_id, _, _ in res.details["nodes"]}


def ids(sim: Simulator, name: str) -> set[str]:
    return {n.instance_id for n in sim.cluster_nodes(name)}


def test_a_busy_cluster_is_judged_on_stored_node_ids_until_one_stops_publishing(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("busy", [WORKERS], eks_cluster="eks-b",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    publish(sim, "busy", "eks-b", clock.now() - timedelta(hours=12), clock.now(), gpu=80)
    guard = make_guard(clock, db_url)
    first = run_cycle(guard)
    assert calls(first, LIST_NODES) == 1  # new: listed
    assert stored_ids(cluster(guard, "busy")) == ids(sim, "busy")

    for _ in range(2):  # steady: described, its metrics read by the stored ids, not listed
        before = clock.now()
        clock.advance(timedelta(minutes=5))
        publish(sim, "busy", "eks-b", before, clock.now(), gpu=80)
        report = run_cycle(guard)
        assert calls(report, LIST_NODES) == 0
        assert calls(report, "sagemaker:DescribeCluster") == 1
        res = cluster(guard, "busy")
        assert res.activity_source is ActivitySource.NODE_UTILIZATION and not res.unknown

    # HyperPod replaces a node: its id stops publishing, the new one publishes.
    old = sorted(ids(sim, "busy"))[0]
    new = sim.replace_cluster_node("busy", old)
    quiet = clock.now()
    clock.advance(timedelta(minutes=20))
    publish(sim, "busy", "eks-b", quiet, clock.now(), gpu=80)
    report = run_cycle(guard)
    # still busy (the other node is): never idle; and the nodes are listed again now
    assert calls(report, LIST_NODES) == 1
    res = cluster(guard, "busy")
    assert res.activity_source is ActivitySource.NODE_UTILIZATION and not res.unknown
    assert stored_ids(res) == ids(sim, "busy") and new in stored_ids(res)
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "busy", "eks-b", before, clock.now(), gpu=80)
    assert calls(run_cycle(guard), LIST_NODES) == 0


def test_a_replaced_node_of_an_idle_cluster_makes_it_unknown_and_its_nodes_are_listed(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("quiet", [WORKERS], eks_cluster="eks-q",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    guard = guard_for(clock, db_url, [IDLE | {"action": "notify"}], kinds=[KIND])
    publish(sim, "quiet", "eks-q", clock.now() - timedelta(hours=12), clock.now(), gpu=1)
    first = run_cycle(guard)
    assert [w["name"] for w in first["warned"]] == ["quiet"]

    # Judged idle on stored ids: they are checked against a listing first (a node replaced at
    # the same count would be neither queried nor seen launching). Same ids: it stands.
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "quiet", "eks-q", before, clock.now(), gpu=1)
    second = run_cycle(guard)
    assert calls(second, LIST_NODES) == 1
    res = cluster(guard, "quiet")
    assert res.activity_source is ActivitySource.NODE_UTILIZATION and not res.unknown

    # A node replaced since: the new one (busy, say) was not queried: unknown, never idle.
    old = sorted(ids(sim, "quiet"))[0]
    new = sim.replace_cluster_node("quiet", old)
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "quiet", "eks-q", before, clock.now(), gpu=1, skip=frozenset({new}))
    sim.cluster_node_metric("eks-q", new, "node_gpu_utilization", [(clock.now(), 90.0)])
    guarded = guard_for(clock, db_url, [IDLE], kinds=[KIND], mode="enforce")
    third = run_cycle(guarded)
    assert calls(third, LIST_NODES) == 1
    res = cluster(guarded, "quiet")
    assert res.unknown and "nodes changed" in (res.evidence_error or "")
    assert third["actions"] == []
    assert stored_ids(res) == ids(sim, "quiet")  # the next cycle queries the new node
    fourth = run_cycle(guarded)
    res = cluster(guarded, "quiet")
    assert not res.unknown and res.activity_source is ActivitySource.NODE_UTILIZATION
    assert fourth["actions"] == []  # the new node is busy


def test_a_count_change_lists_the_nodes(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_hyperpod_cluster("grow", [WORKERS], eks_cluster="eks-g",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    publish(sim, "grow", "eks-g", clock.now() - timedelta(hours=12), clock.now(), gpu=80)
    guard = make_guard(clock, db_url)
    run_cycle(guard)
    spec = {**WORKERS, "InstanceCount": 3, "ExecutionRole": "arn:aws:iam::1:role/x",
            "LifeCycleConfig": {"SourceS3Uri": "s3://b/", "OnCreate": "a.sh"}}  # fmt: skip
    sim.client("sagemaker").update_cluster(ClusterName="grow", InstanceGroups=[spec])
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "grow", "eks-g", before, clock.now(), gpu=80)
    resizing = run_cycle(guard)  # resizing: listed, and nothing kept (a node is Pending)
    assert calls(resizing, LIST_NODES) == 1
    assert "nodes" not in cluster(guard, "grow").details
    sim.settle()
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "grow", "eks-g", before, clock.now(), gpu=80)
    grown = run_cycle(guard)
    assert calls(grown, LIST_NODES) == 1
    res = cluster(guard, "grow")
    assert res.instance_count == 3 and stored_ids(res) == ids(sim, "grow")
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "grow", "eks-g", before, clock.now(), gpu=80)
    assert calls(run_cycle(guard), LIST_NODES) == 0


def test_a_failed_node_listing_makes_the_cluster_unknown_and_the_next_cycle_lists(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("quiet", [WORKERS], eks_cluster="eks-q",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    publish(sim, "quiet", "eks-q", clock.now() - timedelta(hours=12), clock.now(), gpu=1)
    guard = guard_for(clock, db_url, [IDLE | {"action": "notify"}], kinds=[KIND])
    run_cycle(guard)
    fault = sim.inject("denied", LIST_NODES)
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "quiet", "eks-q", before, clock.now(), gpu=1)
    failed = run_cycle(guard)
    res = cluster(guard, "quiet")
    assert res.unknown and "could not be listed" in (res.evidence_error or "")
    assert "nodes" not in res.details
    assert any("nodes could not be listed" in e for e in failed["errors"])
    fault.off()
    before = clock.now()
    clock.advance(timedelta(minutes=5))
    publish(sim, "quiet", "eks-q", before, clock.now(), gpu=1)
    after = run_cycle(guard)
    assert calls(after, LIST_NODES) == 1
    assert not cluster(guard, "quiet").unknown


def test_a_cluster_publishing_nothing_is_not_listed_every_cycle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    """As the benchmark's EKS clusters: no Container Insights, judged by the last resize."""
    sim.add_hyperpod_cluster("silent", [WORKERS], eks_cluster="eks-s",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    guard = guard_for(clock, db_url, [IDLE | {"action": "notify"}], kinds=[KIND])
    assert calls(run_cycle(guard), LIST_NODES) == 1
    clock.advance(timedelta(minutes=5))
    second = run_cycle(guard)
    assert calls(second, LIST_NODES) == 0
    res = cluster(guard, "silent")
    assert res.activity_source is ActivitySource.LAST_SCALED
    assert res.running_since == clock.now() - timedelta(days=2, minutes=5)
