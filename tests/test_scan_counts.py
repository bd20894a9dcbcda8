"""What a scan reads every cycle, what it shares between kinds, and what it reads hourly: the
simulator over HTTP, a manual clock, call counts as AWS saw them (issue 15: steady calls)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from guard.cycle import run_cycle
from guard.inventory import scanner
from guard.kinds import KINDS
from guard.model import ManualClock
from guard.pricing import PriceBook
from guard.scanning import ScanContext, Target
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

EXEMPT = "cost-guard:exempt"
SNOOZE = "cost-guard:snooze-until"
IDLE_APPS = {"id": "idle-apps", "kind": "studio_app", "idle_for": "2h", "action": "delete"}


def calls(report: dict[str, Any], operation: str) -> int:
    return int(report["api_calls"].get(operation, 0))


def profile_findings(report: dict[str, Any]) -> list[str]:
    return sorted(f["subject"] for f in report["findings"] if f["subject"].startswith("user"))


def test_studio_profiles_are_listed_hourly_while_app_tags_are_read_every_cycle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = sim.add_domain("team", idle_shutdown=True)
    sim.add_user_profile(domain, "alice", tags={"owner": "alice@example.com"})
    sim.add_space(domain, "alice-space", "alice")
    arn = sim.add_app(domain, space="alice-space", created_at=clock.now() - timedelta(hours=5))
    guard = guard_for(clock, db_url, [IDLE_APPS], kinds=["studio_app"])

    first = run_cycle(guard)
    assert calls(first, "sagemaker:ListDomains") == calls(first, "sagemaker:ListUserProfiles") == 1
    assert [w["arn"] for w in first["warned"]] == [arn]
    # A profile that turns idle shutdown off: a finding, seen once the profiles are re-listed.
    sim.add_user_profile(domain, "bob", idle_shutdown=False)

    # Within the hour: no ListDomains / ListUserProfiles, but the app's tags are read afresh,
    # so an exemption added a minute ago counts in this very cycle.
    clock.advance(timedelta(minutes=5))
    sim.set_app_tags(arn, {EXEMPT: "true"})
    second = run_cycle(guard)
    assert calls(second, "sagemaker:ListDomains") == 0
    assert calls(second, "sagemaker:ListUserProfiles") == 0
    assert calls(second, "tagging:GetResources") == 1  # the app's tags; owner tags are hourly
    assert guard.store.resource(arn).tags[EXEMPT] == "true"  # type: ignore[union-attr]
    assert profile_findings(second) == []

    clock.advance(timedelta(minutes=54))  # 59 minutes after the listing
    snooze = (clock.now() + timedelta(days=1)).isoformat()
    sim.set_app_tags(arn, {EXEMPT: "false", SNOOZE: snooze})
    third = run_cycle(guard)
    assert calls(third, "sagemaker:ListUserProfiles") == 0
    tags = guard.store.resource(arn).tags  # type: ignore[union-attr]
    assert (tags[EXEMPT], tags[SNOOZE]) == ("false", snooze)
    assert profile_findings(third) == []

    clock.advance(timedelta(minutes=1))  # an hour after the listing: read again
    fourth = run_cycle(guard)
    assert calls(fourth, "sagemaker:ListDomains") == 1
    assert calls(fourth, "sagemaker:ListUserProfiles") == 1
    assert profile_findings(fourth) == [f"user profile bob in domain {domain} (team)"]
    # and it is the new listing that is kept for the next hour
    clock.advance(timedelta(minutes=5))
    fifth = run_cycle(guard)
    assert calls(fifth, "sagemaker:ListUserProfiles") == 0
    assert profile_findings(fifth) == profile_findings(fourth)


def test_a_failed_hourly_listing_is_read_again_next_cycle(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    domain = sim.add_domain("team", idle_shutdown=True)
    sim.add_user_profile(domain, "bob", idle_shutdown=False)
    sim.add_space(domain, "bob-space", "bob")
    sim.add_app(domain, space="bob-space", created_at=clock.now() - timedelta(hours=5))
    guard = guard_for(clock, fresh_sqlite_url, [IDLE_APPS], kinds=["studio_app"])
    sim.inject("denied", "sagemaker:ListUserProfiles", times=1)
    first = run_cycle(guard)
    assert any("idle-shutdown check incomplete" in e for e in first["errors"])
    assert profile_findings(first) == []
    clock.advance(timedelta(minutes=5))
    second = run_cycle(guard)  # nothing was kept: not an hour's wait
    assert calls(second, "sagemaker:ListUserProfiles") == 1
    assert profile_findings(second) == [f"user profile bob in domain {domain} (team)"]


def test_tags_of_every_kind_share_their_pages(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    # About call counts, not storage: SQLite only.
    sim.add_fleet(150)
    sim.add_endpoint_fleet(30)
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["notebook", "endpoint"])
    run_cycle(guard)
    clock.advance(timedelta(minutes=5))
    steady = run_cycle(guard)
    # 180 resources: 2 pages of 100 (one per kind would be 2 + 1)
    assert calls(steady, "tagging:GetResources") == 2
    by_kind = {r.kind: r for r in guard.store.resources()}
    assert by_kind["notebook"].tags and by_kind["endpoint"].tags  # each kind got its own


def test_job_tags_are_read_by_arn_never_paging_through_ended_jobs(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    for i in range(150):  # finished long ago, still tagged: a type filter would page them
        sim.add_training_job(f"old-{i:03d}", status="Completed", tags={"owner": "old"})
    running = [
        sim.add_training_job(f"run-{i}", tags={"owner": f"u{i}@example.com"}) for i in range(4)
    ]
    sim.add_processing_job("prep", tags={"owner": "prep@example.com"})
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["training_job", "processing_job"])
    first = run_cycle(guard)
    # the 5 running jobs of both kinds in one ResourceARNList batch
    assert calls(first, "tagging:GetResources") == 1
    by_arn = {r.arn: r for r in guard.store.resources()}
    assert by_arn[running[1]].tags == {"owner": "u1@example.com"}
    assert {r.tags["owner"] for r in by_arn.values() if r.kind == "processing_job"} == {
        "prep@example.com"
    }
    # A job that ends leaves the listing: described once, and its tags read by its ARN.
    sim.client("sagemaker").stop_training_job(TrainingJobName="run-0")
    clock.advance(timedelta(minutes=5))
    second = run_cycle(guard)
    assert calls(second, "tagging:GetResources") == 1
    ended = guard.store.resource(running[0])
    assert ended is not None and not ended.running and ended.tags == {"owner": "u0@example.com"}


def test_inference_components_are_described_again_only_when_they_change(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim.add_component_endpoint("ep", "ml.g5.12xlarge", 1, min_instance_count=1)
    sim.add_inference_component("a", "ep", copies=1)
    sim.add_inference_component("b", "ep", copies=2)
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["endpoint", "inference_component"])
    first = run_cycle(guard)
    assert calls(first, "sagemaker:DescribeInferenceComponent") == 2
    # the endpoint kind described the config this cycle: not again for the components
    assert calls(first, "sagemaker:DescribeEndpointConfig") == 1

    clock.advance(timedelta(minutes=5))
    steady = run_cycle(guard)
    assert calls(steady, "sagemaker:DescribeInferenceComponent") == 0
    assert calls(steady, "sagemaker:DescribeEndpoint") == 1  # managed scaling: every cycle
    copies = {r.name: r.instance_count for r in guard.store.resources()}
    assert (copies["a"], copies["b"]) == (1, 2)

    # Auto scaling moves a copy count (Updating, a new LastModifiedTime): described while it
    # is Updating, and once more when it is InService again (10 min later); then no more.
    sim.client("sagemaker").update_inference_component_runtime_config(
        InferenceComponentName="b", DesiredRuntimeConfig={"CopyCount": 3}
    )
    counted = []
    for _ in range(4):
        clock.advance(timedelta(minutes=5))
        report = run_cycle(guard)
        counted.append(calls(report, "sagemaker:DescribeInferenceComponent"))
    assert counted == [1, 1, 0, 0]
    assert {r.name: r.instance_count for r in guard.store.resources()}["b"] == 3


def test_an_app_created_after_the_shared_tag_read_is_judged_with_its_own_tags(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    """The shared page of tags is read by the first kind of a target (here the notebooks'),
    before the Studio apps are listed: an app created in between is read by its ARN."""
    sim.add_notebook("nb", tags={"owner": "nb@example.com"})
    domain = sim.add_domain("team", idle_shutdown=True)
    sim.add_user_profile(domain, "alice")
    sim.add_space(domain, "alice-space", "alice")
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=["notebook", "studio_app"])
    ctx = ScanContext(guard.cfg, guard.aws, guard.store, PriceBook(), clock.now())
    target = Target(None, sim.account_id, sim.regions[0])
    scanner(KINDS["notebook"])(ctx, target, KINDS["notebook"])
    assert sim.request_counts["tagging:GetResources"] == 1  # the shared page, read now
    arn = sim.add_app(domain, space="alice-space", tags={EXEMPT: "true"})  # not in it
    scanner(KINDS["studio_app"])(ctx, target, KINDS["studio_app"])
    [app] = [r for r in target.resources if r.arn == arn]
    assert app.tags == {EXEMPT: "true"}
    # its own by ARN, and the user profiles' owner tags (the app has no owner tag)
    assert sim.request_counts["tagging:GetResources"] == 1 + 1 + 1


def test_job_kinds_and_tuning_read_one_listing_of_changes_between_full_listings(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    """Between hourly full listings each job kind lists only what changed (one page), the
    first job kind scanned settles the others' too (their ARNs are read for tags in the same
    batch), and the tuning scanner counts running children from the same merged listing."""
    sim.add_job_fleet(150, kind="training_job", prefix="fleet")  # 2 pages in full
    sim.add_tuning_job("hpo", children=3, running=2, started_at=clock.now() - timedelta(hours=2))
    sim.add_processing_job("prep")
    clock.advance(timedelta(minutes=15))  # seeded before the first cycle, as a fleet is
    kinds = ["training_job", "processing_job", "transform_job", "tuning_job"]
    guard = guard_for(clock, fresh_sqlite_url, [], kinds=kinds)
    first = run_cycle(guard)
    assert calls(first, "sagemaker:ListTrainingJobs") == 2
    hpo = guard.store.resource_by_name("tuning_job", "hpo")
    assert hpo is not None and hpo.details["running_children"] == 2
    child = sorted(
        r.name for r in guard.store.resources() if r.details.get("parent_arn") and r.status
        == "InProgress"
    )[0]  # fmt: skip

    clock.advance(timedelta(minutes=5))
    sim.finish_job("training_job", child)
    sim.finish_job("processing_job", "prep")
    steady = run_cycle(guard)
    assert steady["errors"] == []
    for operation in ("ListTrainingJobs", "ListProcessingJobs", "ListTransformJobs"):
        assert calls(steady, f"sagemaker:{operation}") == 1, operation
    hpo = guard.store.resource_by_name("tuning_job", "hpo")
    assert hpo is not None and hpo.details["running_children"] == 1
    assert hpo.instance_count == 1
    prep = guard.store.resource_by_name("processing_job", "prep")
    assert prep is not None and (prep.status, prep.running) == ("Completed", False)
    running = {r.name for r in guard.store.resources() if r.kind == "training_job" and r.running}
    assert len(running) == 150
