"""Studio apps end to end: the simulator over HTTP, both databases, a manual clock."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from tests.factories import guard_for

IDLE_DELETE = {
    "id": "idle-studio",
    "kind": "studio_app",
    "idle_for": "2h",
    "action": "delete",
    "grace": "30m",
}
HEARTBEAT = "cost-guard:last-activity"


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE_DELETE,)), kinds=["studio_app"], **extra)


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def alice_space(sim: Simulator, *, idle_shutdown: bool = False) -> str:
    """A domain with user alice (owner tag on her profile) and her private space."""
    domain = sim.add_domain("team", idle_shutdown=idle_shutdown)
    sim.add_user_profile(domain, "alice", tags={"owner": "alice@example.com"})
    sim.add_space(domain, "alice-space", "alice")
    return domain


def test_idle_jupyterlab_is_warned_then_deleted_and_its_space_remains(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = alice_space(sim)
    arn = sim.add_app(
        domain, space="alice-space", instance_type="ml.g5.xlarge",
        created_at=clock.now() - timedelta(hours=5),
    )  # fmt: skip
    guard = make_guard(clock, db_url, mode="enforce")

    first = run_cycle(guard)
    assert [w["arn"] for w in first["warned"]] == [arn]
    assert first["actions"] == []
    [res] = guard.store.resources()
    assert res.name == f"{domain}/alice-space/JupyterLab/default"
    assert res.details["owner"] == "alice@example.com"  # from the space owner's profile tag
    assert res.details["owner_from"] == "space owner alice (its owner tag)"

    clock.advance(timedelta(minutes=35))
    report = run_cycle(guard)
    [action] = report["actions"]
    assert (action["arn"], action["outcome"]) == (arn, "done")
    assert "space and its storage volume remain" in action["detail"]
    assert sim.app_status(arn) == "Deleted"
    assert sim.space_exists(domain, "alice-space")
    assert sim.request_counts["sagemaker:DeleteApp"] == 1

    clock.advance(timedelta(minutes=5))
    assert run_cycle(guard)["actions"] == []
    assert guard.store.resources() == []  # a Deleted app is gone from the inventory


def test_dry_run_only_says_would_delete(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    domain = alice_space(sim)
    arn = sim.add_app(domain, space="alice-space", created_at=clock.now() - timedelta(hours=5))
    guard = make_guard(clock, db_url)
    run_cycle(guard)
    clock.advance(timedelta(minutes=31))
    [action] = run_cycle(guard)["actions"]
    assert action["outcome"] == "dry-run" and "would delete" in action["detail"]
    assert sim.app_status(arn) == "InService"
    assert "sagemaker:DeleteApp" not in sim.request_counts


def test_recent_heartbeat_is_untouched_and_an_old_one_is_idle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = alice_space(sim)
    sim.add_space(domain, "bob-space", "alice")
    since = clock.now() - timedelta(hours=9)
    busy = sim.add_app(
        domain, space="alice-space", created_at=since,
        tags={HEARTBEAT: (clock.now() - timedelta(minutes=4)).isoformat()},
    )  # fmt: skip
    stale = sim.add_app(
        domain, space="bob-space", created_at=since,
        tags={HEARTBEAT: (clock.now() - timedelta(hours=3)).isoformat()},
    )  # fmt: skip
    guard = make_guard(clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert [(a["arn"], a["outcome"]) for a in report["actions"]] == [(stale, "done")]
    assert "heartbeat" in report["actions"][0]["reason"]
    assert sim.app_status(busy) == "InService"
    by_arn = {r.arn: r for r in guard.store.resources(include_gone=True)}
    assert by_arn[busy].activity_source.value == "heartbeat-tag"
    assert by_arn[busy].last_activity == clock.now() - timedelta(minutes=4)


def test_failing_tags_call_makes_apps_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = alice_space(sim)
    arn = sim.add_app(
        domain, space="alice-space", created_at=clock.now() - timedelta(hours=9),
        tags={"cost-guard:exempt": "true"},
    )  # fmt: skip
    sim.fail("tagging:GetResources")
    guard = make_guard(clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    assert report["by_kind"]["studio_app"]["unknown"] == 1
    assert sim.app_status(arn) == "InService"
    [res] = guard.store.resources()
    assert res.unknown and "AccessDenied" in (res.evidence_error or "")


def test_apps_without_an_instance_cost_nothing_and_are_never_acted_on(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = alice_space(sim)
    old = clock.now() - timedelta(days=3)
    sim.add_app(domain, "JupyterServer", user="alice", instance_type=None, created_at=old)
    sim.add_app(domain, "JupyterServer", "sys", user="alice", instance_type="system",
                created_at=old)  # fmt: skip
    sim.add_app(domain, "KernelGateway", "kg", user="alice", instance_type="ml.m5.xlarge",
                created_at=old)  # fmt: skip
    guard = make_guard(clock, db_url, IDLE_DELETE | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert [a["name"] for a in report["actions"]] == [f"{domain}/alice/KernelGateway/kg"]
    free = [r for r in guard.store.resources() if r.details["app_type"] == "JupyterServer"]
    assert [(r.running, r.usd_per_hour) for r in free] == [(False, Decimal(0))] * 2
    # a user's own app: the owner comes from the profile's owner tag
    assert {r.details["owner"] for r in free} == {"alice@example.com"}


def test_canvas_without_instance_type_is_running_at_an_unknown_price(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    # Canvas bills per session hour: no instance type, yet not free (unknown, never $0).
    domain = alice_space(sim)
    sim.add_app(domain, "Canvas", user="alice", instance_type=None, created_at=clock.now())
    guard = make_guard(clock, db_url)
    run_cycle(guard)
    [canvas] = guard.store.resources()
    assert (canvas.running, canvas.usd_per_hour, canvas.price_source) == (True, None, "unknown")


def test_domains_and_profiles_without_idle_shutdown_are_findings(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    open_domain = sim.add_domain("open")
    guarded = sim.add_domain("guarded", idle_shutdown=True)
    sim.add_user_profile(guarded, "inherits")
    sim.add_user_profile(guarded, "opted-out", idle_shutdown=False)
    sim.add_user_profile(guarded, "opted-in", idle_shutdown=True)
    guard = make_guard(clock, db_url)
    first = run_cycle(guard)
    # The first scan of the account and region describes domains, not yet user profiles
    # (one call each, deciding nothing): they are checked from the second scan on.
    assert sorted(f["subject"] for f in first["findings"]) == [f"domain {open_domain} (open)"]
    assert "sagemaker:DescribeUserProfile" not in first["api_calls"]
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert report["api_calls"]["sagemaker:DescribeUserProfile"] == 3
    subjects = sorted(f["subject"] for f in report["findings"])
    assert subjects == [
        f"domain {open_domain} (open)",
        f"user profile opted-out in domain {guarded} (guarded)",
    ]
    domain_finding = next(f for f in report["findings"] if f["subject"].startswith("domain"))
    assert "JupyterLab apps, Code Editor apps" in domain_finding["problem"]
    assert f"update-domain --domain-id {open_domain}" in domain_finding["fix"]
    # Steady state: nothing changed, so nothing is described again.
    sim.reset_counts()
    clock.advance(timedelta(minutes=5))
    again = run_cycle(guard)
    assert sorted(f["subject"] for f in again["findings"]) == subjects
    assert "sagemaker:DescribeDomain" not in again["api_calls"]
    assert "sagemaker:DescribeUserProfile" not in again["api_calls"]


def test_api_calls_grow_with_pages_not_apps(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    # About call counts, not storage: SQLite only. 300 apps, each in its own user's space.
    sim.add_app_fleet(300, domains=3)
    guard = make_guard(clock, fresh_sqlite_url)
    cycles = []
    for _ in range(5):
        cycles.append(run_cycle(guard))
        clock.advance(timedelta(minutes=5))
    first, steady = cycles[0], cycles[-1]
    assert first["resources"] == 300
    # New profiles are described from the second scan on, at most 100 per cycle, once each
    # (then cached).
    described = [c["api_calls"].get("sagemaker:DescribeUserProfile", 0) for c in cycles]
    assert described == [0, 100, 100, 100, 0]
    calls = steady["api_calls"]
    assert calls == {
        "sagemaker:ListApps": 3,  # 100 per page, all domains at once
        "sagemaker:ListSpaces": 3,
        "tagging:GetResources": 3,  # the apps' tags, fresh every cycle
        # ListDomains, ListUserProfiles and the profiles' owner tags are read hourly
    }
    # ... and the profiles described over the next three cycles came from the first one's
    # ListUserProfiles (3 pages), the profiles' owner tags from its one page.
    listed = [c["api_calls"].get("sagemaker:ListUserProfiles", 0) for c in cycles]
    assert listed == [3, 0, 0, 0, 0]
    assert [c["api_calls"].get("tagging:GetResources", 0) for c in cycles] == [4, 3, 3, 3, 3]
    print("\nfirst cycle:", first["api_calls"], "\nsteady cycle:", calls)


def test_inventory_json_lists_apps_with_price_and_evidence(sim: Simulator, tmp_path: Path) -> None:
    now = datetime.now(UTC)  # the CLI runs on the system clock
    domain = alice_space(sim)
    sim.add_app(domain, space="alice-space", instance_type="ml.t3.medium",
                created_at=now - timedelta(hours=5),
                tags={HEARTBEAT: (now - timedelta(hours=1)).isoformat()})  # fmt: skip
    sim.add_app(domain, "JupyterServer", user="alice", instance_type=None, created_at=now)
    config = tmp_path / "cost-guard.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path / 'guard.db'}\nkinds: [studio_app]\n")
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
    items = {item["name"]: item for item in json.loads(result.output)}
    lab = items[f"{domain}/alice-space/JupyterLab/default"]
    assert lab["kind"] == "studio_app" and lab["arn"].endswith("/alice-space/jupyterlab/default")
    assert (lab["usd_per_hour"], lab["instance_type"], lab["owner"]) == (
        "0.0500", "ml.t3.medium", "alice@example.com",
    )  # fmt: skip
    assert lab["activity_source"] == "heartbeat-tag" and lab["last_activity"]
    server = items[f"{domain}/alice/JupyterServer/default"]  # no instance of its own
    assert (server["usd_per_hour"], server["running"]) == ("0.0000", False)


def test_a_profile_without_owner_tag_maps_to_its_owner_through_the_config(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "bob")  # no owner tag
    sim.add_user_profile(domain, "carol")
    sim.add_app(domain, user="bob", created_at=clock.now() - timedelta(hours=1))
    sim.add_app(domain, user="carol", created_at=clock.now() - timedelta(hours=1))
    guard = make_guard(
        clock, fresh_sqlite_url, owners={"studio_profiles": {"bob": "bob@example.com"}}
    )
    run_cycle(guard)
    owners = {r.details["owner"]: r.details["owner_from"] for r in guard.store.resources()}
    assert owners == {
        "bob@example.com": "user profile bob (owners.studio_profiles)",
        "carol": "user profile carol",  # unmapped: the profile's name, as before
    }
