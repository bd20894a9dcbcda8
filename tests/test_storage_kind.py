"""Storage that keeps billing after a stop (`notebook_storage`): stopped notebook instances'
volumes and idle Studio spaces' EBS volumes, through the simulator over HTTP, both databases."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard import digest
from guard.cli import main
from guard.config import Config
from guard.cycle import Guard, run_cycle
from guard.kinds import KINDS
from guard.model import ManualClock, Resource
from guard.scanners.storage import price
from guard.sim import Simulator
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

OLD_VOLUMES = {
    "id": "forgotten-volumes",
    "kind": "notebook_storage",
    "idle_for": "30d",
    "action": "notify",
}
KINDS_SCANNED = ["notebook", "studio_app", "notebook_storage"]


def make_guard(clock: ManualClock, db_url: str, *rules: dict[str, Any], **extra: Any) -> Guard:
    return guard_for(clock, db_url, list(rules), kinds=KINDS_SCANNED, **extra)


def volumes(guard: Guard) -> dict[str, Resource]:
    return {r.name: r for r in guard.store.resources() if r.kind == "notebook_storage"}


def add_space(sim: Simulator, domain: str, name: str, size_gb: int | None, **extra: Any) -> None:
    settings: dict[str, Any] = {"AppType": extra.pop("app_type", "JupyterLab")}
    if size_gb is not None:
        settings["SpaceStorageSettings"] = {"EbsStorageSettings": {"EbsVolumeSizeInGb": size_gb}}
    sim.client("sagemaker").create_space(
        DomainId=domain, SpaceName=name, SpaceSettings=settings,
        SpaceSharingSettings={"SharingType": "Private"},
        OwnershipSettings={"OwnerUserProfileName": "alice"},
        Tags=[{"Key": k, "Value": v} for k, v in extra.pop("tags", {}).items()],
    )  # fmt: skip


def mutating_calls(sim: Simulator) -> list[str]:
    verbs = ("Delete", "Stop", "Update", "Start")
    return [op for op in sim.request_counts if op.split(":")[1].startswith(verbs)]


def test_price_is_gb_times_the_gb_month_price_over_730_hours() -> None:
    usd, source, billing = price("studio-space-ebs", "us-east-1", 50)
    assert usd == Decimal("0.007671") and source == "bundled"  # 50 x 0.112 / 730
    assert billing == "50 GB x $0.112 per GB-month (/ 730 h)"
    assert price("studio-space-ebs", "eu-west-1", 50)[:2] == (None, "unknown")
    assert price("notebook-ml-storage", "us-east-1", 50)[:2] == (None, "unknown")  # no source
    assert price("studio-space-ebs", "us-east-1", None)[:2] == (None, "unknown")


def test_stopped_notebook_and_idle_space_volumes_are_listed_with_their_last_start(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    start = clock.now()
    sim.add_notebook("nb", in_service_since=start, tags={"owner": "ada@example.com"})
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "alice")
    add_space(sim, domain, "idle-space", 50)
    add_space(sim, domain, "busy-space", 20)
    add_space(sim, domain, "classic", None, app_type="JupyterServer")  # EFS, not EBS
    sim.add_app(domain, space="idle-space", name="old", created_at=start)
    sim.client("sagemaker").delete_app(
        DomainId=domain, SpaceName="idle-space", AppType="JupyterLab", AppName="old"
    )
    guard = make_guard(clock, db_url)
    run_cycle(guard)  # sees the notebook running since `start`
    assert set(volumes(guard)) == {f"{domain}/idle-space", f"{domain}/busy-space"}

    clock.advance(timedelta(days=3))
    sim.client("sagemaker").stop_notebook_instance(NotebookInstanceName="nb")
    sim.settle()
    sim.add_app(domain, space="busy-space", created_at=clock.now())  # in use: not listed
    clock.advance(timedelta(days=37))
    report = run_cycle(guard)

    assert report["errors"] == []
    found = volumes(guard)
    assert set(found) == {"nb", f"{domain}/idle-space"}
    nb, space = found["nb"], found[f"{domain}/idle-space"]
    assert nb.running and nb.status == "Stopped" and nb.activity_source.value == "last-start"
    assert nb.last_activity == start  # its last start, from the guard's own snapshot
    assert nb.details["last_started_from"] == "last start"
    assert nb.details["size_gb"] == 5 and nb.usd_per_hour is None  # no sourced $/GB-month
    assert nb.arn.endswith(":notebook-instance/nb/volume") and nb.tags["owner"] == "ada@example.com"
    assert space.last_activity == start and space.details["last_started_from"] == (
        "its newest app started"
    )
    assert (space.usd_per_hour, space.price_source) == (Decimal("0.007671"), "bundled")
    assert space.details["owner"] == "alice" and space.details["size_gb"] == 50
    assert space.idle_for(clock.now()) == timedelta(days=40)
    assert space.details["days_since_start"] == 40
    assert space.details["evidence"] == "40 d since its newest app started"
    # the storage is a resource of its own, next to the (stopped, $0) notebook
    [notebook] = [r for r in guard.store.resources() if r.kind == "notebook"]
    assert (notebook.running, notebook.usd_per_hour) == (False, Decimal(0))
    # sized once: a later cycle describes nothing again
    described = dict(sim.request_counts)
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    for op in ("sagemaker:DescribeNotebookInstance", "sagemaker:DescribeSpace"):
        assert sim.request_counts[op] == described[op], op
    assert volumes(guard)["nb"].last_activity == start  # remembered, not re-read


def test_a_notify_rule_warns_about_old_volumes_and_nothing_is_changed(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    start = clock.now()
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "alice")
    add_space(sim, domain, "forgotten", 50, tags={"owner": "alice@example.com"})
    sim.add_app(domain, space="forgotten", name="old", created_at=start)
    sim.client("sagemaker").delete_app(
        DomainId=domain, SpaceName="forgotten", AppType="JupyterLab", AppName="old"
    )
    clock.advance(timedelta(days=35))
    add_space(sim, domain, "recent", 50)  # modified 0 days ago: not idle for 30 d
    guard = make_guard(clock, db_url, OLD_VOLUMES, mode="enforce")
    sim.reset_counts()

    report = run_cycle(guard)

    assert [w["name"] for w in report["warned"]] == [f"{domain}/forgotten"]
    reason = report["warned"][0]["reason"]
    assert "not started for 35 d" in reason and "its storage keeps billing" in reason
    clock.advance(timedelta(days=1))
    again = run_cycle(guard)
    assert again["actions"] == [] and mutating_calls(sim) == []  # notify only: never deletes
    assert sim.space_exists(domain, "forgotten")

    month = digest.build(guard.cfg, guard.store, clock.now())
    assert month["by_kind"]["notebook_storage"]["running"] == 2
    top = {t["name"]: t["idle_hours"] for t in month["top_idle"] if t["kind"] == "notebook_storage"}
    assert top == {f"{domain}/forgotten": 36 * 24, f"{domain}/recent": 24}  # since last start
    assert [(i["name"], i["days_since_start"]) for i in month["idle_storage"]] == [
        (f"{domain}/forgotten", 36), (f"{domain}/recent", 1),
    ]  # fmt: skip
    _, lines = digest.text(month)
    [line] = [x for x in lines if x.startswith("Storage billing while stopped: ")]
    assert f"{domain}/forgotten $" in line and "36 d since last start" in line


def test_only_notify_is_allowed_for_storage() -> None:
    assert KINDS["notebook_storage"].actions == {}
    with pytest.raises(ValueError, match="not available for kind 'notebook_storage'"):
        Config.model_validate({"rules": [OLD_VOLUMES | {"action": "delete"}]})


def test_failed_calls_make_volumes_unknown_never_idle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "alice")
    add_space(sim, domain, "space", 50)
    sim.add_notebook("nb", status="Stopped", in_service_since=clock.now())
    clock.advance(timedelta(days=60))
    guard = make_guard(clock, db_url, OLD_VOLUMES)

    sim.fail("sagemaker:DescribeSpace", "sagemaker:DescribeNotebookInstance")
    report = run_cycle(guard)
    assert report["warned"] == []
    assert len(volumes(guard)) == 2 and all(v.unknown for v in volumes(guard).values())
    assert any("could not be described" in e for e in report["errors"])
    sim.heal()

    sim.fail("sagemaker:ListApps")  # a space in use would look idle: unknown instead
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert [w["name"] for w in report["warned"]] == ["nb"]  # the notebook's needs no apps
    found = volumes(guard)
    assert found[f"{domain}/space"].unknown and not found["nb"].unknown
    assert any("ListApps failed" in e for e in report["errors"])
    sim.heal()

    sim.fail("tagging:GetResources")  # an exemption tag might be invisible: unknown
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert report["warned"] == [] and all(v.unknown for v in volumes(guard).values())
    sim.heal()

    sim.fail("sagemaker:ListSpaces")  # the listing: nothing of the kind judged, none gone
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert any("notebook_storage: scan failed" in e for e in report["errors"])
    assert len(volumes(guard)) == 2


def test_inventory_json_shows_the_volumes(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "alice")
    add_space(sim, domain, "space", 50)
    config = tmp_path / "cost-guard.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'guard.db'}\nkinds: [notebook_storage]\n"
    )
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
    assert (item["kind"], item["usd_per_hour"], item["activity_source"]) == (
        "notebook_storage", "0.0077", "last-start",
    )  # fmt: skip
    assert item["details"]["billing"] == "50 GB x $0.112 per GB-month (/ 730 h)"
    table = CliRunner().invoke(
        main, ["inventory", "--all", "--config", str(config)],
        env={**clean, **sim.env(), "AWS_DEFAULT_REGION": "us-east-1"},
        catch_exceptions=False,
    )  # fmt: skip
    assert "notebook_storage/" in table.output and "0.008" in table.output  # $/h, rounded
    assert item["details"]["evidence"].endswith("d since space last modified (no app seen)")
