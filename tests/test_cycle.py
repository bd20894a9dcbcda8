"""Whole cycles against the simulated account over HTTP, on SQLite and Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from guard import cycle as cycle_module
from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.inventory import scan_targets
from guard.model import ManualClock
from guard.sim import Simulator
from guard.wiring import build_guard
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

# These tests count the channel's messages; the daily digest (Mon-Fri 09:00 by default, and
# the tests start on a Monday at 09:00) is tested in test_digest.py.
NO_DIGEST = "0 9 1 1 *"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}


def make_guard(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    *rules: dict[str, Any],
    secrets: Secrets | None = None,
    **extra: Any,
) -> Guard:
    return guard_for(clock, db_url, list(rules or (IDLE_STOP,)), secrets, **extra)


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def outcomes(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["name"], a["outcome"]) for a in report["actions"]]


def test_idle_notebook_is_warned_then_stopped_in_enforce_mode(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    sim.jupyter_activity("idle", clock.now() - timedelta(hours=3))
    guard = make_guard(sim, clock, db_url, mode="enforce")

    first = run_cycle(guard)
    assert [w["name"] for w in first["warned"]] == ["idle"]
    assert first["actions"] == []

    clock.advance(timedelta(minutes=20))  # still within the 30 min grace
    second = run_cycle(guard)
    assert second["warned"] == [] and second["actions"] == []  # one warning per episode
    assert sim.notebook_status("idle") == "InService"

    clock.advance(timedelta(minutes=15))
    report = run_cycle(guard)
    assert outcomes(report) == [("idle", "done")]
    assert sim.notebook_status("idle") == "Stopping"
    audit = [
        (row.action, row.outcome) for row in guard.store.audit(clock.now() - timedelta(days=1))
    ]
    assert audit == [("warn", "warned"), ("stop", "done")]


def test_dry_run_only_says_would_stop(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = make_guard(sim, clock, db_url)  # mode defaults to dry-run
    run_cycle(guard)
    clock.advance(timedelta(minutes=31))
    report = run_cycle(guard)
    assert outcomes(report) == [("idle", "dry-run")]
    assert "would stop" in report["actions"][0]["detail"]
    assert sim.notebook_status("idle") == "InService"
    assert "sagemaker:StopNotebookInstance" not in sim.request_counts
    assert "sagemaker:DescribeNotebookInstance" not in sim.request_counts
    clock.advance(timedelta(minutes=10))
    assert run_cycle(guard)["actions"] == []  # said once per episode


def test_exempt_and_snoozed_are_never_stopped(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("exempt", tags={"cost-guard:exempt": "true"}, in_service_since=since)
    until = (clock.now() + timedelta(hours=8)).isoformat()
    sim.add_notebook("tag-snoozed", tags={"cost-guard:snooze-until": until}, in_service_since=since)
    sim.add_notebook("cli-snoozed", in_service_since=since)
    guard = make_guard(sim, clock, db_url, mode="enforce")
    run_cycle(guard)  # warns cli-snoozed: not snoozed yet
    res = guard.store.resource_by_name("notebook", "cli-snoozed")
    assert res is not None
    guard.store.snooze(
        res.arn, clock.now() + timedelta(hours=4), "finishing a run", "test", clock.now()
    )
    for _ in range(6):
        clock.advance(timedelta(minutes=30))
        report = run_cycle(guard)
        assert report["actions"] == []
    assert {sim.notebook_status(n) for n in ("exempt", "tag-snoozed", "cli-snoozed")} == {
        "InService"
    }
    audit = [(r.name, r.action) for r in guard.store.audit(clock.now() - timedelta(days=1))]
    assert audit == [("cli-snoozed", "warn")]


def test_recent_jupyter_activity_is_not_idle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("busy", in_service_since=clock.now() - timedelta(hours=9))
    sim.jupyter_activity("busy", clock.now() - timedelta(minutes=15))
    guard = make_guard(sim, clock, db_url, mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    [res] = guard.store.resources()
    assert res.activity_source.value == "jupyter-log"
    assert res.last_activity == clock.now() - timedelta(minutes=15)


def test_heartbeat_tag_counts_as_activity(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    beat = (clock.now() - timedelta(minutes=4)).isoformat()
    sim.add_notebook(
        "terminal-user",
        tags={"cost-guard:last-activity": beat},
        in_service_since=clock.now() - timedelta(hours=9),
    )
    guard = make_guard(sim, clock, db_url, mode="enforce")
    assert run_cycle(guard)["warned"] == []
    [res] = guard.store.resources()
    assert res.activity_source.value == "heartbeat-tag"


def test_failing_logs_call_makes_notebooks_unknown_not_idle(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("quiet", in_service_since=clock.now() - timedelta(hours=9))
    sim.fail("logs:DescribeLogStreams")
    guard = make_guard(sim, clock, db_url, mode="enforce")
    for _ in range(3):
        report = run_cycle(guard)
        assert report["warned"] == [] and report["actions"] == []
        assert report["by_kind"]["notebook"]["unknown"] == 1
        assert any("DescribeLogStreams" in e for e in report["errors"])
        clock.advance(timedelta(hours=1))
    [res] = guard.store.resources()
    assert res.unknown and "AccessDenied" in (res.evidence_error or "")
    sim.heal()
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["quiet"]


def test_failing_tags_call_makes_notebooks_unknown(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    # Without tags, an exemption cannot be seen: nothing may be acted on.
    sim.add_notebook(
        "exempt",
        tags={"cost-guard:exempt": "true"},
        in_service_since=clock.now() - timedelta(hours=9),
    )
    sim.fail("tagging:GetResources")
    guard = make_guard(sim, clock, db_url, IDLE_STOP | {"grace": "0s"}, mode="enforce")
    report = run_cycle(guard)
    assert report["warned"] == [] and report["actions"] == []
    assert sim.notebook_status("exempt") == "InService"


def test_schedule_rule_stops_at_cron_time_in_timezone_not_before(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    rule = {
        "id": "overnight",
        "kind": "notebook",
        "schedule": "0 20 * * MON-FRI",
        "action": "stop",
        "grace": "15m",
    }
    sim.add_notebook("worker", in_service_since=clock.now() - timedelta(hours=1))
    guard = make_guard(sim, clock, db_url, rule, mode="enforce", timezone="Europe/Berlin")
    # START is Monday 09:00 UTC; 20:00 Berlin is 19:00 UTC. Keep it busy all day.
    while clock.now().hour < 19:
        sim.jupyter_activity("worker", clock.now())
        assert run_cycle(guard)["warned"] == [], clock.now()
        clock.advance(timedelta(minutes=30))
    sim.jupyter_activity("worker", clock.now())
    assert [w["name"] for w in run_cycle(guard)["warned"]] == ["worker"]  # 19:00 UTC
    clock.advance(timedelta(minutes=10))
    assert run_cycle(guard)["actions"] == []  # grace
    clock.advance(timedelta(minutes=5))
    assert outcomes(run_cycle(guard)) == [("worker", "done")]
    assert sim.notebook_status("worker") == "Stopping"


def test_second_stop_of_a_stopping_notebook_is_a_no_op(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = make_guard(sim, clock, db_url, IDLE_STOP | {"grace": "0s"}, mode="enforce")
    res = run_cycle(guard)
    assert outcomes(res) == [("idle", "done")]
    [stored] = [r for r in guard.store.resources() if r.name == "idle"]
    again = guard.actions.execute(stored, "stop", rule_id="idle", episode_id=None, reason="test")
    assert (again.outcome, again.detail) == ("skipped", "already Stopping: nothing to do")
    assert sim.request_counts["sagemaker:StopNotebookInstance"] == 1


def test_interrupted_action_is_reconciled_at_start(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = make_guard(sim, clock, db_url, mode="enforce")
    run_cycle(guard)
    [res] = guard.store.resources()
    # A crash after the call was sent (the row says so) and AWS accepted the stop:
    action_id = guard.store.record_action(
        res, rule_id="idle", episode_id=None, action="stop", mode="enforce",
        outcome="intended", detail="", now=clock.now(),
    )  # fmt: skip
    guard.store.mark_action_sending(action_id, clock.now())
    sim.client("sagemaker").stop_notebook_instance(NotebookInstanceName="idle")
    restarted = build_guard(guard.cfg, clock)
    [row] = [r for r in restarted.store.audit(clock.now() - timedelta(days=1)) if r.id == action_id]
    assert row.outcome == "done" and "reconciled" in row.detail


def test_api_calls_grow_with_pages_not_notebooks(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    # About call counts, not storage: SQLite only (the fleet takes seconds to scan in moto).
    sim.add_fleet(1000)
    guard = make_guard(sim, clock, fresh_sqlite_url)
    first = run_cycle(guard)
    assert first["resources"] == 1000
    clock.advance(timedelta(minutes=5))
    steady = run_cycle(guard)
    calls = steady["api_calls"]
    assert steady["api_calls_total"] <= 60, calls
    assert calls["sagemaker:ListNotebookInstances"] == 10
    assert calls["tagging:GetResources"] == 10
    assert "sagemaker:DescribeNotebookInstance" not in calls
    assert "sagemaker:ListTags" not in calls


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    yield slack
    slack.stop()


def test_slack_warning_is_updated_in_place_and_survives_a_500(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    sim.add_notebook(
        "idle", tags={"owner": "U0ADA1234"}, in_service_since=clock.now() - timedelta(hours=5)
    )
    secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-test-token"})
    guard = make_guard(
        sim, clock, db_url, mode="enforce", secrets=secrets,
        slack={"channel": "C123", "base_url": fake_slack.api_url, "interactive": True,
               "digest": NO_DIGEST},
    )  # fmt: skip
    fake_slack.fail_next(1, status=500)
    first = run_cycle(guard)
    assert first["slack"]["failed"] == 1 and fake_slack.accepted("chat.postMessage") == []

    clock.advance(timedelta(minutes=5))  # past the first backoff
    run_cycle(guard)
    [post] = fake_slack.accepted("chat.postMessage")
    text = str(post.body)
    for expected in ("idle", "ml.t3.medium", "$0.05/h", "<@U0ADA1234>", "no activity", "Snooze 4h"):
        assert expected in text, expected

    clock.advance(timedelta(minutes=30))
    run_cycle(guard)
    [update] = fake_slack.accepted("chat.update")
    assert update.body["ts"] == post.response["ts"]
    assert "Stopped at" in str(update.body)
    posts = len(fake_slack.accepted("chat.postMessage"))
    assert posts == 2  # the warning + a thread reply for the action
    for _ in range(2):  # the episode ended at its action: later cycles send nothing more
        clock.advance(timedelta(minutes=5))
        run_cycle(guard)
    assert len(fake_slack.accepted("chat.postMessage")) == posts
    assert len(fake_slack.accepted("chat.update")) == 1
    assert "Resolved" not in str(fake_slack.accepted("chat.update")[-1].body)


def test_one_failing_region_leaves_the_other_working(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("us-idle", region="us-east-1", in_service_since=since)
    sim.add_notebook("eu-idle", region="eu-west-1", in_service_since=since)
    sim.fail("sagemaker:ListNotebookInstances", region="eu-west-1")
    guard = make_guard(
        sim, clock, db_url, IDLE_STOP | {"grace": "0s"},
        mode="enforce", regions=["us-east-1", "eu-west-1"],
    )  # fmt: skip
    report = run_cycle(guard)
    assert outcomes(report) == [("us-idle", "done")]
    assert any("eu-west-1" in e and "scan failed" in e for e in report["errors"])
    assert report["api_errors"] == {"sagemaker:ListNotebookInstances": 1}  # for /metrics
    assert sim.notebook_status("eu-idle", region="eu-west-1") == "InService"
    sim.heal()
    clock.advance(timedelta(minutes=5))
    healed = run_cycle(guard)
    assert outcomes(healed) == [("eu-idle", "done")] and healed["api_errors"] == {}


# IAM names the tagging API "tag"; botocore signs it as "tagging".
_IAM_PREFIX = {"tagging": "tag"}


def test_generated_iam_policy_covers_every_call_the_guard_makes(
    sim: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    from guard.iam import policy

    long_ago = clock.now() - timedelta(days=2)
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    sim.add_notebook("busy", in_service_since=clock.now() - timedelta(hours=5))
    sim.jupyter_activity("busy", clock.now())
    sim.add_endpoint("idle-ep", created_at=long_ago)
    sim.add_training_job("long-train", started_at=long_ago)
    sim.add_processing_job("long-proc", started_at=long_ago)
    sim.add_transform_job("long-transform", started_at=long_ago)
    domain = sim.add_domain("studio")
    sim.add_user_profile(domain, "ada")
    sim.add_app(domain, user="ada", created_at=long_ago)
    act_now = {"grace": "0s"}
    rules = [
        IDLE_STOP | act_now,
        {"id": "ep", "kind": "endpoint", "idle_for": "1d", "action": "delete"} | act_now,
        {"id": "app", "kind": "studio_app", "idle_for": "1d", "action": "delete"} | act_now,
        *(
            {"id": kind, "kind": kind, "running_for": "1d", "action": "stop"} | act_now
            for kind in ("training_job", "processing_job", "transform_job")
        ),
    ]
    guard = make_guard(sim, clock, fresh_sqlite_url, *rules, mode="enforce")
    sim.reset_counts()
    report = run_cycle(guard)
    assert {a["outcome"] for a in report["actions"]} == {"done"}, report["actions"]
    assert len(report["actions"]) == 6
    guard.actions.reconcile()
    called = {
        f"{_IAM_PREFIX.get(op.split(':')[0], op.split(':')[0])}:{op.split(':')[1]}"
        for op in sim.request_counts
    }
    for mutation in ("StopNotebookInstance", "DeleteEndpoint", "DeleteApp", "StopTrainingJob"):
        assert f"sagemaker:{mutation}" in called
    granted: set[str] = set()
    for statement in policy(guard.cfg)["Statement"]:
        actions = statement["Action"]
        granted |= {actions} if isinstance(actions, str) else set(actions)
    assert called <= granted, called - granted
    read_only = policy(guard.cfg, read_only=True)
    assert "sagemaker:StopNotebookInstance" not in str(read_only)
    stop = next(
        s for s in policy(guard.cfg)["Statement"] if s["Action"] == "sagemaker:StopNotebookInstance"
    )
    assert stop["Condition"] == {
        "StringNotEqualsIgnoreCase": {"aws:ResourceTag/cost-guard:exempt": "true"}
    }


def test_activity_seen_during_a_tags_outage_is_not_lost(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("nb", in_service_since=clock.now() - timedelta(hours=9))
    sim.jupyter_activity("nb", clock.now() - timedelta(minutes=90))
    guard = make_guard(sim, clock, db_url)
    assert run_cycle(guard)["warned"] == []
    worked = clock.now() + timedelta(minutes=5)
    sim.jupyter_activity("nb", worked)  # someone works...
    clock.advance(timedelta(minutes=40))  # ...and the next cycle cannot read tags
    sim.fail("tagging:GetResources")
    assert run_cycle(guard)["by_kind"]["notebook"]["unknown"] == 1
    sim.heal()
    clock.set(worked + timedelta(minutes=100))
    report = run_cycle(guard)  # 1 h 40 min after that work: not idle for 2 h
    assert report["warned"] == [], report["warned"]


def test_member_accounts_are_scanned_through_their_roles(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("own-idle", in_service_since=since)
    sim.add_notebook("member-idle", in_service_since=since, account="111111111111")
    accounts = [
        {"id": "123456789012", "name": "platform"},
        {
            "id": "111111111111",
            "name": "research",
            "role_arn": "arn:aws:iam::111111111111:role/guard",
            "external_id": "cost-guard-7f3a",  # the member role's trust policy may demand it
        },
    ]
    guard = make_guard(
        sim, clock, db_url, IDLE_STOP | {"grace": "0s"}, mode="enforce", accounts=accounts
    )
    report = run_cycle(guard)
    assert sorted(outcomes(report)) == [("member-idle", "done"), ("own-idle", "done")]
    assert {r.account for r in guard.store.resources()} == {"123456789012", "111111111111"}
    assert sim.notebook_status("member-idle", account="111111111111") == "Stopping"
    assert sim.assumed_roles("111111111111")[-1] == (
        "arn:aws:iam::111111111111:role/guard",
        "cost-guard-7f3a",
    )


def test_a_failing_assumed_role_leaves_the_other_accounts_working(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("own-idle", in_service_since=since)
    sim.add_notebook("member-idle", in_service_since=since, account="111111111111")
    accounts = [
        {"id": "123456789012", "name": "platform"},
        {"id": "111111111111", "name": "research", "role_arn": "arn:aws:iam::111111111111:role/g"},
    ]
    guard = make_guard(sim, clock, db_url, IDLE_STOP, mode="enforce", accounts=accounts)
    run_cycle(guard)  # both seen and warned while everything works
    assert {r.name for r in guard.store.resources()} == {"own-idle", "member-idle"}

    # The member role breaks (its trust policy was edited, say); a restarted guard has no
    # cached session for it.
    sim.fail("sts:AssumeRole")
    guard = make_guard(sim, clock, db_url, IDLE_STOP, mode="enforce", accounts=accounts)
    clock.advance(timedelta(minutes=35))
    report = run_cycle(guard)
    assert outcomes(report) == [("own-idle", "done")]
    assert [e for e in report["errors"] if "research" in e and "AssumeRole" in e], report["errors"]
    # Nothing in the unreachable account is acted on or marked gone.
    assert sim.notebook_status("member-idle", account="111111111111") == "InService"
    assert {r.name for r in guard.store.resources()} == {"own-idle", "member-idle"}

    sim.heal()
    clock.advance(timedelta(minutes=5))
    assert outcomes(run_cycle(guard)) == [("member-idle", "done")]


def test_a_blind_spot_is_posted_to_the_channel_once_a_day(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    sim.add_notebook("eu-nb", region="eu-west-1")
    sim.fail("sagemaker:ListNotebookInstances", region="eu-west-1")
    secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-test-token"})
    guard = make_guard(
        sim, clock, db_url, secrets=secrets, regions=["us-east-1", "eu-west-1"],
        slack={"channel": "C123", "base_url": fake_slack.api_url, "digest": NO_DIGEST},
    )  # fmt: skip
    run_cycle(guard)
    [post] = fake_slack.accepted("chat.postMessage")
    text = str(post.body)
    assert post.body["channel"] == "C123"
    # the notebooks and the storage of stopped ones: one failed listing, two blind spots
    for expected in ("cannot see 2 part", "eu-west-1 notebook", "eu-west-1 notebook_storage",
                     "AccessDenied", "Nothing there"):  # fmt: skip
        assert expected in text, expected
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)  # still failing: said once today, not every cycle
    assert len(fake_slack.accepted("chat.postMessage")) == 1
    clock.advance(timedelta(days=1))
    run_cycle(guard)
    assert len(fake_slack.accepted("chat.postMessage")) == 2


def test_a_snooze_stored_after_the_judgement_still_wins_over_the_action(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    """A Slack click or `cost-guard snooze` can land between the cycle's evaluation and its
    action: the action path reads stored snoozes again just before any AWS call."""
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = make_guard(sim, clock, db_url, mode="enforce")
    run_cycle(guard)  # warned
    [res] = guard.store.resources()
    guard.store.snooze(res.arn, clock.now() + timedelta(hours=4), "slack", "<@U0BOB>", clock.now())
    sim.reset_counts()
    outcome = guard.actions.execute(res, "stop", rule_id="idle", episode_id=None, reason="test")
    assert (outcome.outcome, outcome.snoozed) == ("skipped", True)
    assert "snoozed by <@U0BOB>" in outcome.detail
    assert not any(op.startswith("sagemaker:Stop") for op in sim.request_counts)
    assert sim.notebook_status("idle") == "InService"
    assert [a.outcome for a in guard.store.audit(clock.now())] == ["warned", "skipped"]


def test_a_region_answering_last_is_still_judged_and_reported_first(
    sim: Simulator, clock: ManualClock, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan hands a kind of a target over as soon as it is done, whichever target it is
    from, and the cycle judges it then; what it decides and reports still keeps the config's
    order (regions as listed, then kinds), whichever region answered first."""
    since = clock.now() - timedelta(hours=5)
    regions = ["us-east-1", "eu-west-1"]
    for region in regions:
        for name in ("a", "b"):
            sim.add_notebook(f"{region}-{name}", region=region, in_service_since=since)
    # the first region answers last: its part comes after the second region's
    sim.inject("slow", "sagemaker:ListNotebookInstances", region="us-east-1", seconds=0.5)
    sim.fail("sagemaker:ListEndpoints", "sagemaker:ListTrainingJobs")
    guard = make_guard(
        sim, clock, db_url, IDLE_STOP | {"grace": "0s"}, mode="enforce", regions=regions,
        kinds=["notebook", "endpoint", "training_job"],
    )  # fmt: skip
    handed: list[tuple[int, int]] = []
    real = scan_targets

    def watched(ctx: Any) -> Any:
        for part in real(ctx):
            handed.append(part.order)
            yield part

    monkeypatch.setattr(cycle_module, "scan_targets", watched)
    report = run_cycle(guard)
    assert handed.index((1, 0)) < handed.index((0, 0))  # eu-west-1's notebooks came first
    assert [w["name"] for w in report["warned"]] == [
        "us-east-1-a", "us-east-1-b", "eu-west-1-a", "eu-west-1-b",
    ]  # fmt: skip
    assert outcomes(report) == [
        ("us-east-1-a", "done"), ("us-east-1-b", "done"),
        ("eu-west-1-a", "done"), ("eu-west-1-b", "done"),
    ]  # fmt: skip
    failed = [(e.split(": scan failed")[0]) for e in report["errors"]]
    assert failed == [
        "default account us-east-1 endpoint", "default account us-east-1 training_job",
        "default account eu-west-1 endpoint", "default account eu-west-1 training_job",
    ]  # fmt: skip


def test_a_targets_kinds_are_judged_while_its_later_kinds_are_still_listed(
    sim: Simulator, clock: ManualClock, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle takes a target's notebooks as soon as they are listed, not once the whole
    account and region is: it never holds a whole target (12,000 resources in a big one)."""
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("nb", in_service_since=since)
    sim.add_endpoint("ep", created_at=since)
    sim.slow("sagemaker:ListEndpoints", seconds=0.5)
    guard = make_guard(sim, clock, db_url, kinds=["notebook", "endpoint"])
    taken: dict[tuple[int, int], tuple[float, list[str]]] = {}
    real = scan_targets

    def watched(ctx: Any) -> Any:
        for part in real(ctx):
            taken[part.order] = (time.monotonic(), [r.name for r in part.resources])
            yield part

    monkeypatch.setattr(cycle_module, "scan_targets", watched)
    run_cycle(guard)
    (notebooks_at, notebooks), (endpoints_at, endpoints) = taken[(0, 0)], taken[(0, 1)]
    assert notebooks == ["nb"] and endpoints == ["ep"]
    assert endpoints_at - notebooks_at >= 0.4  # the notebooks were judged during the listing


def test_the_database_failing_in_a_scan_fails_the_cycle_and_acts_on_nothing(
    sim: Simulator, clock: ManualClock, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan worker's read of the database failing (an outage, not the scan's fault) fails
    the cycle at once, even while the other region's parts are being judged: no decision is
    carried out, no target is left waiting, and the next cycle works."""
    since = clock.now() - timedelta(hours=5)
    regions = ["us-east-1", "eu-west-1"]
    for region in regions:
        sim.add_notebook(f"{region}-idle", region=region, in_service_since=since)
        sim.add_endpoint(f"{region}-ep", region=region, created_at=since)
    guard = make_guard(
        sim, clock, db_url, IDLE_STOP | {"grace": "0s"}, mode="enforce", regions=regions,
        kinds=["notebook", "endpoint"],
    )  # fmt: skip
    real = guard.store.known_details

    def down(kind: str, account: str, region: str, *args: Any) -> Any:
        if region == "eu-west-1" and kind == "endpoint":
            raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))
        return real(kind, account, region, *args)

    monkeypatch.setattr(guard.store, "known_details", down)
    with pytest.raises(OperationalError):
        run_cycle(guard)
    assert guard.store.audit(since) == []  # nothing was carried out
    assert sim.notebook_status("us-east-1-idle") == "InService"
    monkeypatch.undo()
    clock.advance(timedelta(minutes=5))
    report = run_cycle(guard)
    assert sorted(outcomes(report)) == [("eu-west-1-idle", "done"), ("us-east-1-idle", "done")]


def test_small_parts_of_the_scan_are_saved_together(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    """A kind with a few resources in one account and region costs no statements of its own:
    parts are saved once they add up to a chunk, so a cycle's statements follow its
    resources, not kinds x targets (an organisation has thousands of such parts)."""
    since = clock.now() - timedelta(hours=5)
    regions = ["us-east-1", "eu-west-1"]
    for region in regions:
        sim.add_notebook(f"{region}-nb", region=region, in_service_since=since)
        sim.add_endpoint(f"{region}-ep", region=region, created_at=since)
        sim.add_training_job(f"{region}-job", region=region, started_at=since)
    guard = make_guard(
        sim, clock, db_url, regions=regions, kinds=["notebook", "endpoint", "training_job"]
    )
    saves: list[int] = []  # the ARNs each read of stored rows (one per saved chunk) names

    @event.listens_for(guard.store.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT resources.arn, resources.account") and (
            "resources.arn IN" in statement
        ):
            flat = params.values() if isinstance(params, dict) else params
            saves.append(sum(1 for p in flat if isinstance(p, str) and p.startswith("arn:")))

    assert run_cycle(guard)["resources"] == 6  # 6 parts: 3 kinds x 2 regions
    assert saves == [6]
    saves.clear()
    guard.store.snapshot_chunk = 4
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)
    assert saves == [4, 2]  # a whole chunk once 4 are waiting, the rest at the end
