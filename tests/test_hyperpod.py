"""HyperPod clusters end to end: the simulator over HTTP, SQLite and Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from guard import digest
from guard.cli import main
from guard.config import Rule, Secrets
from guard.cycle import Guard, run_cycle
from guard.hyperpod_actions import RestoreError, restore_cluster
from guard.model import ActivitySource, ManualClock
from guard.sim import Simulator
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

KIND = "hyperpod_cluster"
IDLE = {"id": "idle-clusters", "kind": KIND, "idle_for": "6h", "action": "scale-to-zero",
        "grace": "1h"}  # fmt: skip
WORKERS_ONLY = IDLE | {"instance_groups": ["workers"], "grace": "0s"}
GROUPS = (
    {"InstanceGroupName": "controller", "InstanceType": "ml.t3.medium", "InstanceCount": 1},
    {"InstanceGroupName": "workers", "InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
)

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE,)), kinds=[KIND], **extra)


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((a["name"], a["outcome"]) for a in report["actions"])


def utilization(
    sim: Simulator, cluster: str, eks: str, now: datetime, gpu: float, cpu: float,
    hours: int = 12,
) -> None:  # fmt: skip
    """Container Insights points every 5 minutes for every node of the cluster."""
    times = [now - timedelta(minutes=5 * i) for i in range(hours * 12, 0, -1)]
    for node in sim.cluster_nodes(cluster):
        sim.cluster_node_metric(eks, node.instance_id, "node_gpu_utilization",
                                [(t, gpu) for t in times])  # fmt: skip
        sim.cluster_node_metric(eks, node.instance_id, "node_cpu_utilization",
                                [(t, cpu) for t in times])  # fmt: skip


def fleet(sim: Simulator, clock: ManualClock) -> None:
    """idle-eks: nodes at 1 % GPU for 12 h; busy-eks: 80 % GPU; old-slurm: no metrics, never
    resized in two days."""
    two_days_ago = clock.now() - timedelta(days=2)
    sim.add_hyperpod_cluster("idle-eks", GROUPS, eks_cluster="eks-idle", created_at=two_days_ago,
                             tags={"owner": "ada@example.com", "team": "research"})  # fmt: skip
    sim.add_hyperpod_cluster("busy-eks", eks_cluster="eks-busy", created_at=two_days_ago)
    sim.add_hyperpod_cluster("old-slurm", created_at=two_days_ago)
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=1, cpu=3)
    utilization(sim, "busy-eks", "eks-busy", clock.now(), gpu=80, cpu=40)


def counts(sim: Simulator, name: str) -> dict[str, tuple[int, int]]:
    """Per group: (CurrentCount, TargetCount) as DescribeCluster says."""
    described = sim.client("sagemaker").describe_cluster(ClusterName=name)
    return {
        g["InstanceGroupName"]: (g["CurrentCount"], g["TargetCount"])
        for g in described["InstanceGroups"]
    }


def sagemaker_for(sim: Simulator) -> Any:
    return lambda account, region: sim.client("sagemaker", region, account)


def test_listed_with_price_and_evidence(
    sim: Simulator, clock: ManualClock, db_url: str, tmp_path: Path
) -> None:
    fleet(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"action": "notify"})
    report = run_cycle(guard)
    assert report["by_kind"][KIND]["listed"] == 3
    resources = {r.name: r for r in guard.store.resources()}
    idle, busy, slurm = resources["idle-eks"], resources["busy-eks"], resources["old-slurm"]
    # Σ groups x current count x Cluster price: 0.05 + 2 x 1.408
    assert (idle.usd_per_hour, idle.instance_type, idle.instance_count) == (
        Decimal("2.866"), "mixed", 3
    )  # fmt: skip
    assert (busy.usd_per_hour, busy.instance_type) == (Decimal("2.816"), "ml.g5.xlarge")
    assert idle.tags["owner"] == "ada@example.com" and idle.tags["team"] == "research"
    assert idle.activity_source is ActivitySource.NODE_UTILIZATION
    assert idle.last_activity == clock.now() - timedelta(hours=6)  # never busy in the window
    assert idle.details["last_busy"] is None and idle.details["eks_cluster"] == "eks-idle"
    assert busy.activity_source is ActivitySource.NODE_UTILIZATION
    assert busy.last_activity is not None
    assert clock.now() - timedelta(minutes=15) <= busy.last_activity <= clock.now()
    assert slurm.activity_source is ActivitySource.LAST_SCALED
    assert slurm.last_activity == clock.now() - timedelta(days=2)
    warned = {w["name"]: w["reason"] for w in report["warned"]}
    assert set(warned) == {"idle-eks", "old-slurm"}
    assert "no node at 5 % GPU or 10 % CPU or more for 6 h (node utilization)" in warned["idle-eks"]
    assert "no instance group changed size for 2 d" in warned["old-slurm"]

    lines = digest.text(digest.build(guard.cfg, guard.store, clock.now()))[1]
    assert any(line.startswith(f"By kind: {KIND} 3 running $8.50/h") for line in lines), lines
    assert any(f"{KIND}/idle-eks (ada@example.com): $2.87/h, idle 6 h" in line for line in lines)

    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: {db_url}\nkinds: [{KIND}]\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    result = CliRunner().invoke(main, ["inventory", "--json", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    items = {item["name"]: item for item in json.loads(result.output)}
    assert items["idle-eks"]["kind"] == KIND and "2.866" in str(items["idle-eks"])
    assert "node-utilization" in str(items["idle-eks"]) and "last-scaled" in str(items["old-slurm"])
    table = CliRunner().invoke(main, ["inventory", "--config", str(config)], env=env)
    assert table.exit_code == 0 and "idle-eks" in table.output


def test_idle_cluster_warned_then_scaled_to_zero_and_restored(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    fleet(sim, clock)
    guard = make_guard(clock, db_url, mode="enforce")
    first = run_cycle(guard)
    assert sorted(w["name"] for w in first["warned"]) == ["idle-eks", "old-slurm"]
    assert first["actions"] == []
    clock.advance(timedelta(minutes=61))
    utilization(sim, "busy-eks", "eks-busy", clock.now(), gpu=80, cpu=40, hours=1)
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=1, cpu=3, hours=1)
    report = run_cycle(guard)
    assert outcomes(report) == [("idle-eks", "done"), ("old-slurm", "done")]
    detail = {a["name"]: a["detail"] for a in report["actions"]}["idle-eks"]
    assert "was controller: 1 x ml.t3.medium, workers: 2 x ml.g5.xlarge" in detail
    assert "`cost-guard restore cluster idle-eks` brings the instance counts back" in detail
    assert counts(sim, "idle-eks") == {"controller": (1, 0), "workers": (2, 0)}
    assert counts(sim, "busy-eks") == {"workers": (2, 2)}  # untouched
    assert sim.cluster_status("idle-eks") == "Updating"  # never deleted

    record = guard.store.restore_record(KIND, "idle-eks")
    assert record is not None
    saved = {g["name"]: g for g in record.record["groups"]}
    assert saved["workers"]["instance_count"] == 2
    spec = saved["workers"]["specification"]
    assert spec["InstanceType"] == "ml.g5.xlarge" and spec["ExecutionRole"]
    assert spec["LifeCycleConfig"]["OnCreate"] == "on_create.sh"

    sim.settle()
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)
    scaled = guard.store.resource_by_name(KIND, "idle-eks")
    assert scaled is not None and not scaled.running and scaled.usd_per_hour == 0

    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the injected wait: moves simulated time
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    done = restore_cluster(guard.store, sagemaker_for(sim), "idle-eks", clock=clock, sleep=sleep)
    assert done.created and done.status == "InService" and done.in_service_at is not None
    assert len(slept) == 20  # the simulator's 10-minute transition at 30 s polls
    assert counts(sim, "idle-eks") == {"controller": (1, 1), "workers": (2, 2)}
    assert "back to controller: 1 x ml.t3.medium, workers: 2 x ml.g5.xlarge" in (
        done.recreated("here")
    )
    again = restore_cluster(guard.store, sagemaker_for(sim), "idle-eks", clock=clock, sleep=sleep)
    assert not again.created and "already has its saved instance counts" in again.message
    # Back up, it was just resized: activity, not idleness.
    clock.advance(timedelta(minutes=1))
    after = run_cycle(guard)
    assert "idle-eks" not in [w["name"] for w in after["warned"]]
    assert [a for a in after["actions"] if a["name"] == "idle-eks"] == []


def test_instance_groups_choose_what_is_scaled(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    fleet(sim, clock)
    guard = make_guard(clock, db_url, WORKERS_ONLY, mode="enforce")
    report = run_cycle(guard)
    detail = {a["name"]: a for a in report["actions"]}["idle-eks"]
    assert detail["outcome"] == "done"
    assert (
        "was workers: 2 x ml.g5.xlarge); still running: controller: 1 x ml.t3.medium"
        in (detail["detail"])
    )
    assert counts(sim, "idle-eks") == {"controller": (1, 1), "workers": (2, 0)}
    record = guard.store.restore_record(KIND, "idle-eks")
    assert record is not None and [g["name"] for g in record.record["groups"]] == ["workers"]

    # Once the workers are at zero, the rule finds nothing more to scale (the controller is
    # not its business), and the restore record of the workers is not overwritten by zeros.
    sim.settle()
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)  # sees the new counts: a resize restarts the idle clock
    clock.advance(timedelta(hours=7))
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=0, cpu=2, hours=8)
    later = run_cycle(guard)
    result = {a["name"]: a for a in later["actions"]}["idle-eks"]
    assert result["outcome"] == "skipped" and "workers already at zero" in result["detail"]
    # busy-eks published nothing in these 7 hours: having published before, it is unknown
    # (its agent may have died), never judged by its last resize two days ago
    assert "busy-eks" not in [a["name"] for a in later["actions"]]
    silent = guard.store.resource_by_name(KIND, "busy-eks")
    assert silent is not None and silent.unknown
    assert "no node utilization published in the last 6 h" in (silent.evidence_error or "")
    latest = guard.store.restore_record(KIND, "idle-eks")
    assert latest is not None and latest.id == record.id


def test_a_group_the_cluster_lacks_is_skipped_with_its_groups_named(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    rule = WORKERS_ONLY | {"instance_groups": ["gpu-workers"]}
    report = run_cycle(make_guard(clock, db_url, rule, mode="enforce"))
    [action] = report["actions"]
    assert action["outcome"] == "skipped"
    assert "no instance group named gpu-workers (its groups: workers)" in action["detail"]
    assert counts(sim, "old") == {"workers": (2, 2)}


def test_dry_run_changes_nothing(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    fleet(sim, clock)
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"})  # dry-run by default
    report = run_cycle(guard)
    assert outcomes(report) == [("idle-eks", "dry-run"), ("old-slurm", "dry-run")]
    assert "would scale to zero instances" in report["actions"][0]["detail"]
    assert "sagemaker:UpdateCluster" not in sim.request_counts
    assert counts(sim, "idle-eks") == {"controller": (1, 1), "workers": (2, 2)}
    assert guard.store.restore_record(KIND, "idle-eks") is None


def test_exempt_cluster_is_listed_never_touched(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("keep", created_at=clock.now() - timedelta(days=2),
                             tags={"cost-guard:exempt": "true"})  # fmt: skip
    report = run_cycle(make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce"))
    assert report["warned"] == [] and report["actions"] == []
    assert report["by_kind"][KIND]["listed"] == 1


def test_failing_metrics_make_publishing_clusters_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    fleet(sim, clock)
    sim.fail("cloudwatch:GetMetricData")
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    # the Slurm cluster's evidence needs no metrics; the EKS ones are unknown, never idle
    assert outcomes(report) == [("old-slurm", "done")]
    assert any("GetMetricData failed" in e for e in report["errors"])
    idle = guard.store.resource_by_name(KIND, "idle-eks")
    assert idle is not None and idle.unknown and "AccessDenied" in (idle.evidence_error or "")
    assert idle.usd_per_hour == Decimal("2.866")  # the price is still known
    assert counts(sim, "idle-eks") == {"controller": (1, 1), "workers": (2, 2)}
    sim.heal()
    clock.advance(timedelta(minutes=10))
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=1, cpu=3, hours=1)
    assert ("idle-eks", "done") in outcomes(run_cycle(guard))


def test_failing_describe_or_node_listing_makes_the_cluster_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    for operation in ("sagemaker:DescribeCluster", "sagemaker:ListClusterNodes"):
        fault = sim.inject("denied", operation)
        report = run_cycle(guard)
        assert report["actions"] == [] and report["warned"] == []
        assert report["by_kind"][KIND]["unknown"] == 1
        assert any("could not be described" in e for e in report["errors"])
        fault.off()
    assert outcomes(run_cycle(guard)) == [("old", "done")]


def test_failing_tags_make_clusters_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2),
                             tags={"cost-guard:exempt": "true"})  # fmt: skip
    sim.fail("tagging:GetResources")
    report = run_cycle(make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce"))
    assert report["warned"] == [] and report["actions"] == []
    assert counts(sim, "old") == {"workers": (2, 2)}


def test_a_node_that_stopped_publishing_makes_the_cluster_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("eks", eks_cluster="eks-a",
                             created_at=clock.now() - timedelta(days=2))  # fmt: skip
    first, second = sim.cluster_nodes("eks")
    times = [clock.now() - timedelta(minutes=5 * i) for i in range(144, 0, -1)]
    sim.cluster_node_metric("eks-a", first.instance_id, "node_gpu_utilization",
                            [(t, 0.0) for t in times])  # fmt: skip
    # the second node's agent died 3 hours ago: what it does now is not known
    sim.cluster_node_metric(
        "eks-a",
        second.instance_id,
        "node_gpu_utilization",
        [(t, 0.0) for t in times if t < clock.now() - timedelta(hours=3)],
    )
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert report["actions"] == [] and report["by_kind"][KIND]["unknown"] == 1
    res = guard.store.resource_by_name(KIND, "eks")
    assert res is not None and "publish no utilization" in (res.evidence_error or "")
    assert second.instance_id in (res.evidence_error or "")


def test_a_resize_is_activity(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(clock, db_url, IDLE | {"action": "notify"})
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["old"]
    sim.client("sagemaker").update_cluster(
        ClusterName="old",
        InstanceGroups=[{**GROUPS[1], "InstanceCount": 3,
                         "ExecutionRole": "arn:aws:iam::123456789012:role/x",
                         "LifeCycleConfig": {"SourceS3Uri": "s3://b/", "OnCreate": "a.sh"}}],
    )  # fmt: skip
    sim.settle()
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)
    res = guard.store.resource_by_name(KIND, "old")
    assert res is not None and res.last_activity == clock.now() and res.instance_count == 3
    assert res.usd_per_hour == Decimal("4.224")
    assert report["warned"] == []


def test_failed_update_is_failed_then_retried(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    fault = sim.inject("denied", "sagemaker:UpdateCluster")
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert outcomes(report) == [("old", "failed")]
    assert "AccessDenied" in report["actions"][0]["detail"]
    # the record was saved before the call, and nothing changed
    assert guard.store.restore_record(KIND, "old") is not None
    assert counts(sim, "old") == {"workers": (2, 2)}
    fault.off()
    clock.advance(timedelta(minutes=6))  # the first retry comes 5 minutes later
    assert outcomes(run_cycle(guard)) == [("old", "done")]
    assert counts(sim, "old") == {"workers": (2, 0)}


def test_restore_says_why_it_cannot(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    guard = make_guard(clock, db_url, IDLE | {"grace": "0s"}, mode="enforce")
    with pytest.raises(RestoreError, match="no restore record for cluster nope"):
        restore_cluster(guard.store, sagemaker_for(sim), "nope", clock=clock, sleep=lambda s: None)
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    assert outcomes(run_cycle(guard)) == [("old", "done")]
    # still Updating: the counts cannot change yet
    with pytest.raises(RestoreError, match="old is Updating"):
        restore_cluster(guard.store, sagemaker_for(sim), "old", clock=clock, sleep=lambda s: None)
    sim.settle()
    sim.client("sagemaker").delete_cluster(ClusterName="old")
    sim.settle()
    with pytest.raises(RestoreError, match="no longer exists"):
        restore_cluster(guard.store, sagemaker_for(sim), "old", clock=clock, sleep=lambda s: None)


def test_restore_cli(sim: Simulator, clock: ManualClock, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"mode: enforce\ndatabase_url: sqlite:///{db}\nkinds: [{KIND}]\n")
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(clock, f"sqlite:///{db}", IDLE | {"grace": "0s"}, mode="enforce")
    assert outcomes(run_cycle(guard)) == [("old", "done")]
    sim.settle()
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    runner = CliRunner()
    missing = runner.invoke(main, ["restore", "cluster", "nope", "--config", str(config)], env=env)
    assert missing.exit_code == 1 and "no restore record for cluster nope" in missing.output
    result = runner.invoke(
        main, ["restore", "cluster", "old", "--no-wait", "--config", str(config)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "scaled cluster old in 123456789012 us-east-1 back to workers: 2 x ml.g5.xlarge" in (
        result.output
    )
    assert counts(sim, "old") == {"workers": (0, 2)}
    sim.settle()
    assert counts(sim, "old") == {"workers": (2, 2)}


def test_instance_groups_is_validated() -> None:
    Rule.model_validate(WORKERS_ONLY)
    with pytest.raises(
        ValidationError, match="instance_groups is not available for kind 'endpoint'"
    ):
        Rule.model_validate({"id": "e", "kind": "endpoint", "idle_for": "1h",
                             "action": "delete", "instance_groups": ["a"]})  # fmt: skip
    with pytest.raises(ValidationError, match=f"available for: {KIND} scale-to-zero"):
        Rule.model_validate(WORKERS_ONLY | {"action": "notify"})


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    yield slack
    slack.stop()


def test_slack_says_what_is_kept(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    sim.add_hyperpod_cluster("old", created_at=clock.now() - timedelta(days=2),
                             tags={"owner": "U0ADA1234"})  # fmt: skip
    secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-test-token"})
    guard = make_guard(
        clock, db_url, mode="enforce", secrets=secrets,
        slack={"channel": "C123", "base_url": fake_slack.api_url, "digest": "0 9 1 1 *"},
    )  # fmt: skip
    run_cycle(guard)
    [warning] = fake_slack.accepted("chat.postMessage")
    text = str(warning.body)
    kept = "`cost-guard restore cluster old` brings the instance counts back"
    for expected in ("old", "$2.82/h", "<@U0ADA1234>", "no instance group changed size", kept):
        assert expected in text, expected
    clock.advance(timedelta(minutes=61))
    run_cycle(guard)
    acted = str(fake_slack.accepted("chat.postMessage")[-1].body)
    assert "was workers: 2 x ml.g5.xlarge" in acted and "restore cluster old" in acted


def test_interrupted_scale_to_zero_is_reconciled_from_the_live_cluster(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_hyperpod_cluster("sent", created_at=clock.now() - timedelta(days=2))
    sim.add_hyperpod_cluster("unsent", created_at=clock.now() - timedelta(days=2))
    guard = make_guard(clock, db_url, mode="enforce")
    run_cycle(guard)  # warned only
    intents = {}
    for res in guard.store.resources():
        # A crash while the updates were being sent: AWS took the one of "sent" only.
        intents[res.name] = guard.store.record_action(
            res, rule_id="idle-clusters", episode_id=None, action="scale-to-zero",
            mode="enforce", outcome="intended", detail="", now=clock.now(),
        )  # fmt: skip
        guard.store.mark_action_sending(intents[res.name], clock.now())
    spec = {**GROUPS[1], "InstanceCount": 0, "ExecutionRole": "arn:aws:iam::1:role/x",
            "LifeCycleConfig": {"SourceS3Uri": "s3://b/", "OnCreate": "a.sh"}}  # fmt: skip
    sim.client("sagemaker").update_cluster(ClusterName="sent", InstanceGroups=[spec])

    restarted = make_guard(clock, db_url, mode="enforce")
    rows = {r.id: r for r in restarted.store.audit(clock.now() - timedelta(days=1))}
    assert rows[intents["sent"]].outcome == "done" and "Updating" in rows[intents["sent"]].detail
    assert rows[intents["unsent"]].outcome == "failed"
    assert "InService" in rows[intents["unsent"]].detail


def test_the_generated_policy_covers_every_call(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    from guard.iam import policy

    fleet(sim, clock)
    sim.add_training_plan("plan", start=clock.now() - timedelta(days=1))
    guard = make_guard(clock, fresh_sqlite_url, IDLE | {"grace": "0s"}, mode="enforce")
    sim.reset_counts()
    report = run_cycle(guard)
    assert outcomes(report) == [("idle-eks", "done"), ("old-slurm", "done")]
    prefixes = {"tagging": "tag"}  # the simulator's name for the Resource Groups Tagging API
    called = {f"{prefixes.get(op.split(':')[0], op.split(':')[0])}:{op.split(':')[1]}"
              for op in sim.request_counts}  # fmt: skip
    assert {"sagemaker:UpdateCluster", "sagemaker:ListTrainingPlans"} <= called
    granted: set[str] = set()
    for statement in policy(guard.cfg)["Statement"]:
        actions = statement["Action"]
        granted |= {actions} if isinstance(actions, str) else set(actions)
    assert called <= granted, called - granted
    update = next(
        s for s in policy(guard.cfg)["Statement"] if s["Action"] == "sagemaker:UpdateCluster"
    )
    assert update["Resource"] == "arn:aws:sagemaker:*:*:cluster/*"
    assert "sagemaker:UpdateCluster" not in str(policy(guard.cfg, read_only=True))


def test_prices_come_from_the_price_list_and_an_unknown_one_is_never_zero(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.set_price("ml.g5.xlarge", "Cluster", "1.5")  # the API's figure, not the bundled 1.408
    sim.remove_price("ml.t3.medium", "Cluster")
    sim.add_hyperpod_cluster("priced", created_at=clock.now() - timedelta(days=1))
    sim.add_hyperpod_cluster("half-priced", GROUPS, created_at=clock.now() - timedelta(days=1))
    guard = make_guard(clock, db_url, IDLE | {"action": "notify"})
    report = run_cycle(guard)
    resources = {r.name: r for r in guard.store.resources()}
    assert (resources["priced"].usd_per_hour, resources["priced"].price_source) == (
        Decimal("3.0"), "api"
    )  # fmt: skip
    # ml.t3.medium is still in the bundled table: the cluster is priced from both
    assert resources["half-priced"].usd_per_hour == Decimal("3.05")
    assert report["by_kind"][KIND]["unpriced"] == 0
    sim.add_hyperpod_cluster("unpriced", [{"InstanceGroupName": "x", "InstanceType":
                             "ml.c6a.xlarge", "InstanceCount": 1}])  # fmt: skip
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)
    unpriced = guard.store.resource_by_name(KIND, "unpriced")
    assert unpriced is not None and unpriced.usd_per_hour is None
    assert unpriced.price_source == "unknown" and report["by_kind"][KIND]["unpriced"] == 1


def test_steady_cycle_lists_nodes_only_where_needed(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    fleet(sim, clock)  # two EKS clusters, one Slurm
    guard = make_guard(clock, db_url, IDLE | {"action": "notify"})
    run_cycle(guard)
    assert sim.request_counts["sagemaker:ListClusterNodes"] == 3
    assert sim.request_counts["sagemaker:DescribeCluster"] == 3
    sim.reset_counts()
    clock.advance(timedelta(minutes=10))
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=1, cpu=3, hours=1)
    utilization(sim, "busy-eks", "eks-busy", clock.now(), gpu=80, cpu=40, hours=1)
    run_cycle(guard)
    # Every cluster's nodes are known while its counts stay: the EKS ones' metrics are
    # queried by the stored node ids. Only the idle EKS cluster's are listed, to check that
    # no node was replaced at the same count before it is judged idle on them.
    assert sim.request_counts["sagemaker:ListClusterNodes"] == 1
    assert sim.request_counts["sagemaker:DescribeCluster"] == 3
    busy = guard.store.resource_by_name(KIND, "busy-eks")
    assert busy is not None and not busy.unknown
    slurm = guard.store.resource_by_name(KIND, "old-slurm")
    assert slurm is not None and slurm.running_since == clock.now() - timedelta(days=2, minutes=10)
    assert slurm.last_activity == clock.now() - timedelta(days=2, minutes=10)

    spec = {**GROUPS[1], "InstanceCount": 3, "ExecutionRole": "arn:aws:iam::1:role/x",
            "LifeCycleConfig": {"SourceS3Uri": "s3://b/", "OnCreate": "a.sh"}}  # fmt: skip
    sim.client("sagemaker").update_cluster(ClusterName="old-slurm", InstanceGroups=[spec])
    sim.reset_counts()
    clock.advance(timedelta(minutes=10))  # the resize has finished by now
    utilization(sim, "idle-eks", "eks-idle", clock.now(), gpu=1, cpu=3, hours=1)
    utilization(sim, "busy-eks", "eks-busy", clock.now(), gpu=80, cpu=40, hours=1)
    run_cycle(guard)
    assert sim.request_counts["sagemaker:ListClusterNodes"] == 2  # the resized one, idle-eks
    resized = guard.store.resource_by_name(KIND, "old-slurm")
    assert resized is not None and resized.instance_count == 3
    assert resized.last_activity == clock.now()
