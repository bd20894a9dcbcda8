"""Budgets: periods, spend and forecast, Slack warnings, act_at, Cost Explorer, `budget --json`.

AWS through the simulator over HTTP, Slack through the local fake, both databases. Known spend
is written as accrual rows directly; the cycles' own accrual adds cents on top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from guard import budgets
from guard.budgets import Status, in_scope, period_of, statuses
from guard.cli import main
from guard.config import BudgetScope, Config, Secrets
from guard.cost_explorer import cost_filter
from guard.cycle import Guard, run_cycle
from guard.iam import policy
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import OutboxRow, Store, upgrade
from guard.tables import AccrualRow, BudgetAlertRow
from tests.conftest import START
from tests.factories import guard_for
from tests.factories import notebook as make_notebook
from tests.fakeslack import FakeSlack

TOKEN = "xoxb-budget-test-token"
MONDAY = START.date()  # 2026-11-23, a Monday; START is 09:00 UTC


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack().start()
    yield slack
    slack.stop()


def make_guard(
    clock: ManualClock,
    db_url: str,
    *budget_list: dict[str, Any],
    rules: list[dict[str, Any]] | None = None,
    slack: FakeSlack | None = None,
    **settings: Any,
) -> Guard:
    secrets = None
    if slack is not None:
        secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": TOKEN})
        settings["slack"] = {"channel": "C-COSTS", "base_url": slack.api_url}
    return guard_for(clock, db_url, rules or [], secrets, budgets=list(budget_list), **settings)


def add_spend(
    store: Store,
    arn: str,
    day: date,
    usd: str,
    *,
    unpriced_hours: int = 0,
    unobserved_hours: int = 0,
) -> None:
    """Add to a resource's accrued spend on a day, as the cycle's accrual would."""
    with store.session() as s:
        row = s.get(AccrualRow, (arn, day))
        if row is None:
            row = AccrualRow.zero(arn, day)
            s.add(row)
        row.usd += Decimal(usd)
        row.unpriced_seconds += unpriced_hours * 3600
        row.unobserved_seconds += unobserved_hours * 3600


def budget_posts(slack: FakeSlack) -> list[str]:
    return [
        str(call.body.get("text"))
        for call in slack.accepted("chat.postMessage")
        if "Budget" in str(call.body.get("text"))
    ]


def status_of(guard: Guard, budget_id: str) -> Status:
    found = statuses(guard.cfg, guard.store, guard.clock.now())
    return next(st for st in found if st.budget.id == budget_id)


def alerts(store: Store) -> list[tuple[str, date, str]]:
    with store.session() as s:
        rows = s.scalars(select(BudgetAlertRow).order_by(BudgetAlertRow.id))
        return [(r.budget_id, r.period_start, r.threshold) for r in rows]


pytestmark = pytest.mark.usefixtures("aws_env")


# --- periods and scope (pure) --------------------------------------------------------------


def test_periods_in_a_timezone_with_dst() -> None:
    la = ZoneInfo("America/Los_Angeles")
    sunday_night = datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # Sun Nov 29, 23:30 PST
    day = period_of("day", sunday_night, la)
    assert (day.start, day.end) == (date(2026, 11, 29), date(2026, 11, 30))
    assert day.end_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    week = period_of("week", sunday_night, la)
    assert (week.start, week.end) == (date(2026, 11, 23), date(2026, 11, 30))
    month = period_of("month", sunday_night, la)
    assert (month.start, month.end, month.last_day) == (
        date(2026, 11, 1),
        date(2026, 12, 1),
        date(2026, 11, 30),
    )
    # Nov 1 began in daylight time (UTC-7), Dec 1 begins in standard time (UTC-8).
    assert month.start_at == datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    assert month.end_at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    monday_morning = sunday_night + timedelta(hours=1)  # Mon Nov 30, 00:30 PST
    assert period_of("day", monday_morning, la).start == date(2026, 11, 30)
    assert period_of("week", monday_morning, la).start == date(2026, 11, 30)
    assert period_of("month", monday_morning, la).start == date(2026, 11, 1)
    # The same instant is already Tuesday Dec 1 in Tokyo: another week has not begun there.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert period_of("month", sunday_night, tokyo).start == date(2026, 11, 1)
    assert period_of("day", monday_morning, tokyo).start == date(2026, 11, 30)
    assert period_of("month", datetime(2026, 11, 30, 15, 0, tzinfo=UTC), tokyo).start == date(
        2026, 12, 1
    )
    assert period_of("month", datetime(2028, 2, 10, tzinfo=UTC), la).end == date(2028, 3, 1)


def test_scope_uses_the_rules_tag_semantics() -> None:
    nb = make_notebook(START, tags={"team": "ml", "env": "dev"})
    assert in_scope(BudgetScope(), nb)
    assert in_scope(BudgetScope(tags={"team": "ml", "env": "*"}), nb)
    assert not in_scope(BudgetScope(tags={"team": "cv"}), nb)
    assert not in_scope(BudgetScope(tags={"project": "*"}), nb)
    assert not in_scope(BudgetScope(regions=("eu-west-1",)), nb)
    assert not in_scope(BudgetScope(accounts=("999999999999",)), nb)
    assert not in_scope(BudgetScope(kinds=("endpoint",)), nb)
    assert in_scope(BudgetScope(kinds=("notebook",), regions=("us-east-1",)), nb)


def test_cost_explorer_filter_from_scope() -> None:
    assert cost_filter(BudgetScope()) == {
        "Dimensions": {"Key": "SERVICE", "Values": ["Amazon SageMaker"]}
    }
    scope = BudgetScope(
        accounts=("111111111111",), regions=("eu-west-1",), tags={"team": "ml", "env": "*"}
    )
    assert cost_filter(scope) == {
        "And": [
            {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon SageMaker"]}},
            {"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": ["111111111111"]}},
            {"Dimensions": {"Key": "REGION", "Values": ["eu-west-1"]}},
            {"Not": {"Tags": {"Key": "env", "MatchOptions": ["ABSENT"]}}},
            {"Tags": {"Key": "team", "Values": ["ml"]}},
        ]
    }


def test_iam_policy_grants_cost_explorer_only_when_enabled() -> None:
    def actions(**settings: Any) -> set[str]:
        cfg = Config.model_validate(
            {"budgets": [{"id": "b", "period": "month", "limit_usd": 10}], **settings}
        )
        return {a for st in policy(cfg)["Statement"] for a in st["Action"]}

    assert "ce:GetCostAndUsage" not in actions()
    assert "ce:GetCostAndUsage" in actions(cost_explorer={"enabled": True})


def test_iam_policy_grants_a_budgets_action_on_the_kinds_in_its_scope() -> None:
    budget = {"id": "b", "period": "day", "limit_usd": 10, "act_at": 1.0, "action": "stop",
              "scope": {"kinds": ["notebook", "training_job", "endpoint"]}}  # fmt: skip
    cfg = Config.model_validate({"budgets": [budget]})
    granted = {st["Sid"]: st["Action"] for st in policy(cfg)["Statement"]}
    assert granted["StopNotebook"] == "sagemaker:StopNotebookInstance"
    assert granted["StopTrainingJob"] == "sagemaker:StopTrainingJob"
    assert "StopProcessingJob" not in granted and "DeleteEndpoint" not in granted


# --- warnings --------------------------------------------------------------------------


def test_one_message_per_threshold_per_period(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    arn = sim.add_notebook("ml-nb", tags={"team": "ml"}, in_service_since=START)
    sim.add_notebook("cv-nb", tags={"team": "cv"}, in_service_since=START)
    budget = {
        "id": "ml-day", "period": "day", "limit_usd": 10, "scope": {"tags": {"team": "ml"}},
        "warn_at": [0.5, 0.8], "channel": "C-BUDGET",
    }  # fmt: skip
    guard = make_guard(clock, db_url, budget, slack=fake_slack)
    add_spend(guard.store, arn, MONDAY, "4")
    report = run_cycle(guard)
    assert report["budgets"][0]["alerts_sent"] == [] and budget_posts(fake_slack) == []

    add_spend(guard.store, arn, MONDAY, "2")  # 60 %
    cv = guard.store.resource_by_name("notebook", "cv-nb")
    assert cv is not None
    add_spend(guard.store, cv.arn, MONDAY, "100")  # another team's spend: not this budget's
    for _ in range(4):
        clock.advance(timedelta(minutes=10))
        run_cycle(guard)
    [first] = budget_posts(fake_slack)
    assert first.startswith(":moneybag: Budget ml-day passed 50 % of its daily limit")
    assert "$6.0" in first and "of $10.00 spent (60 %) by Nov 23" in first
    channels = {c.body["channel"] for c in fake_slack.accepted("chat.postMessage")}
    assert "C-BUDGET" in channels and all(
        c.body["channel"] == "C-BUDGET"
        for c in fake_slack.accepted("chat.postMessage")
        if "Budget" in str(c.body.get("text"))
    )

    add_spend(guard.store, arn, MONDAY, "2.5")  # 85 %
    for _ in range(4):
        clock.advance(timedelta(minutes=10))
        report = run_cycle(guard)
        assert report["budgets"][0]["alerts_sent"] in ([], ["0.8"])
    assert len(budget_posts(fake_slack)) == 2
    assert "passed 80 %" in budget_posts(fake_slack)[1]
    assert alerts(guard.store) == [("ml-day", MONDAY, "0.5"), ("ml-day", MONDAY, "0.8")]

    clock.set(START + timedelta(days=1))  # Tuesday: a new period starts clean
    tuesday = MONDAY + timedelta(days=1)
    run_cycle(guard)
    assert len(budget_posts(fake_slack)) == 2
    add_spend(guard.store, arn, tuesday, "5.5")
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)
    assert report["budgets"][0]["alerts_sent"] == ["0.5"]
    assert report["budgets"][0]["period_start"] == tuesday.isoformat()
    assert len(budget_posts(fake_slack)) == 3
    assert "by Nov 24" in budget_posts(fake_slack)[2]


def test_several_thresholds_at_once_are_one_message(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    arn = sim.add_notebook("nb", in_service_since=START)
    budget = {"id": "all-week", "period": "week", "limit_usd": 100, "warn_at": [0.5, 0.8, 1.0]}
    guard = make_guard(clock, db_url, budget, slack=fake_slack)
    add_spend(guard.store, arn, MONDAY, "85")
    report = run_cycle(guard)
    assert report["budgets"][0]["alerts_sent"] == ["0.5", "0.8"]
    [post] = budget_posts(fake_slack)
    assert "passed 80 %" in post
    assert fake_slack.accepted("chat.postMessage")[0].body["channel"] == "C-COSTS"
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        run_cycle(guard)
    assert len(budget_posts(fake_slack)) == 1  # 0.5 is never told later


def test_a_racing_cycle_cannot_tell_a_threshold_twice(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arn = sim.add_notebook("nb", in_service_since=START)
    budget = {"id": "b", "period": "day", "limit_usd": 10, "warn_at": [0.5]}
    guard = make_guard(clock, db_url, budget)
    run_cycle(guard)
    add_spend(guard.store, arn, MONDAY, "6")
    stale = status_of(guard, "b")  # what a second replica computed before the first told
    assert stale.alerts == {} and stale.reached(0.5)
    clock.advance(timedelta(minutes=10))
    assert run_cycle(guard)["budgets"][0]["alerts_sent"] == ["0.5"]
    assert guard.notifier is not None
    assert budgets._warn(guard.cfg, guard.store, guard.notifier, stale) == []
    with guard.store.session() as s:
        keys = [k for k in s.scalars(select(OutboxRow.key)) if k.startswith("budget:")]
    assert keys == [f"budget:b:{MONDAY.isoformat()}:0.5"]
    assert alerts(guard.store) == [("b", MONDAY, "0.5")]


def test_forecast_warning_comes_before_spend_crosses(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    arn = sim.add_notebook(
        "gpu", "ml.g5.xlarge", tags={"team": "ml"}, in_service_since=START - timedelta(hours=1)
    )
    sim.jupyter_activity("gpu", START - timedelta(minutes=5))
    month = {"id": "ml-month", "period": "month", "limit_usd": 200,
             "scope": {"tags": {"team": "ml"}}, "warn_at": [0.8]}  # fmt: skip
    roomy = {"id": "roomy", "period": "month", "limit_usd": 5000, "warn_at": [0.8]}
    guard = make_guard(clock, db_url, month, roomy, slack=fake_slack)
    add_spend(guard.store, arn, MONDAY - timedelta(days=2), "20")
    for _ in range(3):
        report = run_cycle(guard)
        clock.advance(timedelta(minutes=10))
    [post] = budget_posts(fake_slack)
    assert post.startswith(":crystal_ball: Budget ml-month is on course to exceed its limit")
    # $1.41/h over the 183 h left in November (from Mon Nov 23 09:00 UTC) reaches $278.
    assert "at the current $1.41/h it will reach $278 by Nov 30 \N{EM DASH} over the limit" in post
    st = status_of(guard, "ml-month")
    assert st.spend_usd < Decimal(200) * Decimal("0.8") < st.forecast_usd
    assert [a[2] for a in alerts(guard.store)] == ["forecast"]
    first = {b["id"]: b for b in report["budgets"]}
    assert first["roomy"]["alerts_sent"] == []
    assert Decimal(first["ml-month"]["forecast_usd"]) > Decimal(200)


def test_non_utc_day_budget_resets_at_local_midnight(
    sim: Simulator, db_url: str, fake_slack: FakeSlack
) -> None:
    ny = ZoneInfo("America/New_York")
    clock = ManualClock(datetime(2026, 11, 24, 4, 30, tzinfo=UTC))  # Mon Nov 23, 23:30 EST
    sim.clock = clock
    from guard.sim.moto_ext import install

    install(clock)
    arn = sim.add_notebook("nb", in_service_since=clock.now() - timedelta(hours=2))
    budget = {"id": "daily", "period": "day", "limit_usd": 10, "warn_at": [0.5]}
    guard = make_guard(clock, db_url, budget, slack=fake_slack, timezone="America/New_York")
    add_spend(guard.store, arn, date(2026, 11, 23), "6")
    add_spend(guard.store, arn, date(2026, 11, 24), "1")  # the UTC date: not this local day
    run_cycle(guard)
    [monday] = budget_posts(fake_slack)
    assert "by Nov 23" in monday and "$6.0" in monday
    st = status_of(guard, "daily")
    assert st.period.start == date(2026, 11, 23) and st.period.end_at == datetime(
        2026, 11, 24, 5, 0, tzinfo=UTC
    )
    clock.advance(timedelta(hours=1))  # 00:30 EST on Tuesday: a new period
    assert clock.now().astimezone(ny).date() == date(2026, 11, 24)
    run_cycle(guard)
    assert len(budget_posts(fake_slack)) == 1  # $1 + a few cents: under 50 %
    add_spend(guard.store, arn, date(2026, 11, 24), "5")
    clock.advance(timedelta(minutes=10))
    run_cycle(guard)
    assert len(budget_posts(fake_slack)) == 2 and "by Nov 24" in budget_posts(fake_slack)[1]
    assert [a[1] for a in alerts(guard.store)] == [date(2026, 11, 23), date(2026, 11, 24)]


# --- act_at ----------------------------------------------------------------------------


def seed_team(sim: Simulator, clock: ManualClock) -> dict[str, str]:
    """Notebooks of team ml (idle, busy, exempt, snoozed), another team's, another region's."""
    idle_since = clock.now() - timedelta(hours=5)
    until = (clock.now() + timedelta(hours=8)).isoformat()
    arns = {
        "ml-idle-small": sim.add_notebook(
            "ml-idle-small", tags={"team": "ml"}, in_service_since=idle_since
        ),
        "ml-idle-big": sim.add_notebook(
            "ml-idle-big", "ml.g5.xlarge", tags={"team": "ml"}, in_service_since=idle_since
        ),
        "ml-idle-mid": sim.add_notebook(
            "ml-idle-mid", "ml.m5.xlarge", tags={"team": "ml"}, in_service_since=idle_since
        ),
        "ml-busy": sim.add_notebook(
            "ml-busy", "ml.m5.4xlarge", tags={"team": "ml"}, in_service_since=idle_since
        ),
        "ml-exempt": sim.add_notebook(
            "ml-exempt", "ml.g5.xlarge", in_service_since=idle_since,
            tags={"team": "ml", "cost-guard:exempt": "true"},
        ),
        "ml-tag-snoozed": sim.add_notebook(
            "ml-tag-snoozed", "ml.g5.xlarge", in_service_since=idle_since,
            tags={"team": "ml", "cost-guard:snooze-until": until},
        ),
        "ml-cli-snoozed": sim.add_notebook(
            "ml-cli-snoozed", "ml.g5.xlarge", tags={"team": "ml"}, in_service_since=idle_since
        ),
        "cv-idle": sim.add_notebook(
            "cv-idle", "ml.g5.xlarge", tags={"team": "cv"}, in_service_since=idle_since
        ),
        "ml-eu": sim.add_notebook(
            "ml-eu", "ml.g5.xlarge", tags={"team": "ml"}, region="eu-west-1",
            in_service_since=idle_since,
        ),
    }  # fmt: skip
    sim.jupyter_activity("ml-busy", clock.now() - timedelta(minutes=10))
    return arns


ACT_BUDGET = {
    "id": "ml-week", "period": "week", "limit_usd": 50, "warn_at": [0.8],
    "scope": {"tags": {"team": "ml"}, "regions": ["us-east-1"]},
    "act_at": 1.0, "action": "stop", "idle_for": "1h",
}  # fmt: skip


def test_act_at_stops_idle_in_scope_most_expensive_first(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arns = seed_team(sim, clock)
    guard = make_guard(
        clock, db_url, ACT_BUDGET, mode="enforce", regions=["us-east-1", "eu-west-1"]
    )
    guard.store.snooze(
        arns["ml-cli-snoozed"], clock.now() + timedelta(hours=4), "", "t", clock.now()
    )
    add_spend(guard.store, arns["ml-busy"], MONDAY, "30")
    add_spend(guard.store, arns["ml-eu"], MONDAY, "500")  # out of scope: not counted

    report = run_cycle(guard)  # 60 %: under act_at
    assert report["actions"] == []
    add_spend(guard.store, arns["ml-busy"], MONDAY, "25")  # 110 %
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)
    assert [(a["name"], a["rule"], a["outcome"]) for a in report["actions"]] == [
        ("ml-idle-big", "budget:ml-week", "done"),
        ("ml-idle-mid", "budget:ml-week", "done"),
        ("ml-idle-small", "budget:ml-week", "done"),
    ]
    assert "budget ml-week at $56.14 of $50.00 (112 %" in report["actions"][0]["reason"]
    [entry] = report["budgets"]
    assert entry["acted"] == [
        "notebook/ml-idle-big",
        "notebook/ml-idle-mid",
        "notebook/ml-idle-small",
    ]
    for name in ("ml-idle-big", "ml-idle-mid", "ml-idle-small"):
        assert sim.notebook_status(name) == "Stopping"
    for name in ("ml-busy", "ml-exempt", "ml-tag-snoozed", "ml-cli-snoozed", "cv-idle"):
        assert sim.notebook_status(name) == "InService", name
    assert sim.notebook_status("ml-eu", region="eu-west-1") == "InService"
    audit = [
        (r.name, r.rule_id, r.action, r.outcome)
        for r in guard.store.audit(START - timedelta(days=1))
    ]
    assert ("ml-idle-big", "budget:ml-week", "warn", "warned") in audit
    assert ("ml-idle-big", "budget:ml-week", "stop", "done") in audit
    assert len(audit) == 6

    st = status_of(guard, "ml-week")
    assert st.resources_in_scope == 7  # us-east-1, team ml
    assert st.over_act_at and st.spend_usd < Decimal(60)

    sim.settle()
    clock.advance(timedelta(minutes=10))
    report = run_cycle(guard)  # the episodes ended at their action: nothing more to say
    assert report["actions"] == [] and report["resolved"] == []
    assert guard.store.open_episodes() == {}
    clock.advance(timedelta(minutes=10))
    assert run_cycle(guard)["actions"] == [] and guard.store.open_episodes() == {}


def test_act_at_never_stops_a_job_for_running_long(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    five_hours_ago = clock.now() - timedelta(hours=5)
    job = sim.add_training_job("ml-train", tags={"team": "ml"}, started_at=five_hours_ago)
    sim.add_notebook("ml-idle", tags={"team": "ml"}, in_service_since=five_hours_ago)
    budget = {**ACT_BUDGET, "scope": {"tags": {"team": "ml"}}}
    guard = make_guard(clock, db_url, budget, mode="enforce")
    add_spend(guard.store, job, MONDAY, "60")  # 120 %: over act_at
    report = run_cycle(guard)
    # A job works until it ends: 5 h without activity evidence is not idleness.
    assert [a["name"] for a in report["actions"]] == ["ml-idle"]
    assert sim.job_status("training_job", "ml-train") == "InProgress"


def test_act_at_in_dry_run_only_records_would(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arns = seed_team(sim, clock)
    guard = make_guard(clock, db_url, ACT_BUDGET, regions=["us-east-1", "eu-west-1"])
    add_spend(guard.store, arns["ml-busy"], MONDAY, "60")
    report = run_cycle(guard)
    outcomes = {a["name"]: a["outcome"] for a in report["actions"]}
    assert outcomes == {
        "ml-idle-big": "dry-run",
        "ml-idle-mid": "dry-run",
        "ml-idle-small": "dry-run",
        "ml-cli-snoozed": "dry-run",
    }
    assert "would stop" in report["actions"][0]["detail"]
    assert all(sim.notebook_status(n) == "InService" for n in outcomes)
    assert "sagemaker:StopNotebookInstance" not in sim.request_counts
    for _ in range(3):  # said once per episode
        clock.advance(timedelta(minutes=10))
        assert run_cycle(guard)["actions"] == []


def test_a_resource_a_rule_acts_on_is_not_acted_on_again_by_a_budget(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arn = sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    rule = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"}
    budget = {"id": "all", "period": "day", "limit_usd": 1, "act_at": 1.0, "action": "stop"}
    guard = make_guard(clock, db_url, budget, rules=[rule], mode="enforce")
    add_spend(guard.store, arn, MONDAY, "2")
    report = run_cycle(guard)
    assert [(a["name"], a["rule"], a["outcome"]) for a in report["actions"]] == [
        ("idle", "idle", "done")
    ]
    assert report["budgets"][0]["acted"] == []
    assert sim.request_counts["sagemaker:StopNotebookInstance"] == 1


# --- Cost Explorer ----------------------------------------------------------------------

CE_BUDGET = {"id": "ml-month", "period": "month", "limit_usd": 1000,
             "scope": {"tags": {"team": "ml"}}, "warn_at": [0.5]}  # fmt: skip


def test_cost_explorer_replaces_closed_day_estimates_once_a_day(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arn = sim.add_notebook("nb", tags={"team": "ml"}, in_service_since=START)
    guard = make_guard(clock, db_url, CE_BUDGET, cost_explorer={"enabled": True})
    add_spend(guard.store, arn, date(2026, 11, 20), "10")
    add_spend(guard.store, arn, date(2026, 11, 21), "20")
    add_spend(guard.store, arn, date(2026, 11, 23), "5")  # today: stays the estimate
    sim.queue_daily_costs(
        {date(2026, 11, 20): "12.50", date(2026, 11, 21): "18", date(2026, 11, 22): "0"},
        {date(2026, 11, 20): "12.50", date(2026, 11, 21): "18.25", date(2026, 11, 22): "1"},
    )
    report = run_cycle(guard)
    assert report["api_calls"]["ce:GetCostAndUsage"] == 1
    [request] = sim.cost_and_usage_requests()
    assert request["TimePeriod"] == {"Start": "2026-11-01", "End": "2026-11-23"}
    assert request["Granularity"] == "DAILY" and request["Metrics"] == ["UnblendedCost"]
    assert request["Filter"] == {
        "And": [
            {"Dimensions": {"Key": "SERVICE", "Values": ["Amazon SageMaker"]}},
            {"Tags": {"Key": "team", "Values": ["ml"]}},
        ]
    }
    st = status_of(guard, "ml-month")
    assert st.estimate_usd == Decimal(35)
    assert st.actual_usd == Decimal("30.50")
    assert st.actual_days == (date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22))
    assert st.estimate_on_actual_days_usd == Decimal(30)
    assert st.spend_usd == Decimal("35.50")
    item = st.to_json()
    assert (item["estimate_usd"], item["actual_usd"], item["spend_usd"]) == (
        "35.00",
        "30.50",
        "35.50",
    )

    for _ in range(3):  # the same day: no further request ($0.01 each)
        clock.advance(timedelta(hours=2))
        assert "ce:GetCostAndUsage" not in run_cycle(guard)["api_calls"]
    clock.set(START + timedelta(days=1))
    assert run_cycle(guard)["api_calls"]["ce:GetCostAndUsage"] == 1
    assert sim.cost_and_usage_requests()[1]["TimePeriod"]["End"] == "2026-11-24"
    assert sim.request_counts["ce:GetCostAndUsage"] == 2  # as AWS saw it: two requests
    st = status_of(guard, "ml-month")
    assert st.actual_usd == Decimal("31.75")
    assert st.actual_days[-1] == date(2026, 11, 22)  # Nov 23 not in that answer: estimate


def test_cost_explorer_is_not_called_when_disabled(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arn = sim.add_notebook("nb", tags={"team": "ml"}, in_service_since=START)
    guard = make_guard(clock, db_url, CE_BUDGET)
    add_spend(guard.store, arn, date(2026, 11, 20), "10")
    sim.queue_daily_costs({date(2026, 11, 20): "99"})
    for _ in range(2):
        report = run_cycle(guard)
        clock.advance(timedelta(days=1))
        assert "ce:GetCostAndUsage" not in report["api_calls"]
    assert sim.cost_and_usage_requests() == []
    assert "ce:GetCostAndUsage" not in sim.request_counts
    st = status_of(guard, "ml-month")
    assert st.actual_usd is None and st.actual_days == ()
    assert Decimal(10) <= st.spend_usd == st.estimate_usd < Decimal(99)


def test_cost_explorer_failure_keeps_the_estimate(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    arn = sim.add_notebook("nb", tags={"team": "ml"}, in_service_since=START)
    guard = make_guard(clock, db_url, CE_BUDGET, cost_explorer={"enabled": True})
    add_spend(guard.store, arn, date(2026, 11, 20), "10")
    sim.fail("ce:GetCostAndUsage")
    report = run_cycle(guard)
    assert any("Cost Explorer (ml-month)" in e for e in report["errors"])
    assert status_of(guard, "ml-month").spend_usd == Decimal(10)


# --- status and `budget --json` ----------------------------------------------------------


def test_status_json_values(sim: Simulator, clock: ManualClock, db_url: str) -> None:
    arn = sim.add_notebook("gpu", "ml.g5.xlarge", tags={"team": "ml"}, in_service_since=START)
    sim.add_notebook("odd", "ml.z9.huge", tags={"team": "ml"}, in_service_since=START)  # no price
    budget = {
        "id": "ml-week", "period": "week", "limit_usd": "200.5", "scope": {"tags": {"team": "ml"}},
        "warn_at": [0.25, 0.9], "act_at": 1.5, "action": "stop",
    }  # fmt: skip
    guard = make_guard(clock, db_url, budget)
    add_spend(guard.store, arn, MONDAY, "60", unpriced_hours=3, unobserved_hours=2)
    add_spend(guard.store, arn, MONDAY - timedelta(days=1), "1000")  # last week's
    run_cycle(guard)
    [item] = [st.to_json() for st in statuses(guard.cfg, guard.store, clock.now())]
    assert set(item) >= {
        "id", "period", "period_start", "period_end", "limit_usd", "spend_usd", "fraction",
        "forecast_usd", "burn_usd_per_hour", "thresholds", "act_at", "action", "over_act_at",
        "scope", "resources_in_scope", "running_in_scope", "unpriced_hours", "unobserved_hours",
        "estimate_usd", "actual_usd",
    }  # fmt: skip
    hours_left = Decimal(6 * 24 + 15)  # Mon 09:00 UTC to Mon Nov 30 00:00
    assert item == item | {
        "id": "ml-week",
        "period": "week",
        "period_start": "2026-11-23",
        "period_end": "2026-11-30",
        "limit_usd": "200.50",
        "spend_usd": "60.00",
        "fraction": 0.2993,
        "forecast_usd": f"{Decimal(60) + Decimal('1.41') * hours_left:.2f}",
        "burn_usd_per_hour": "1.4100",
        "act_at": 1.5,
        "action": "stop",
        "over_act_at": False,
        "scope": {"accounts": [], "regions": [], "kinds": [], "tags": {"team": "ml"}},
        "resources_in_scope": 2,
        "running_in_scope": 2,
        "unpriced_running": 1,
        "unpriced_hours": 3.0,
        "unobserved_hours": 2.0,
        "estimate_usd": "60.00",
        "actual_usd": None,
    }
    assert item["thresholds"][0]["at"] == 0.25 and item["thresholds"][0]["crossed"] is True
    assert item["thresholds"][0]["alerted_at"] == START.isoformat()
    assert item["thresholds"][1] == {"at": 0.9, "crossed": False, "alerted_at": None}
    lines = budgets._lines(guard.cfg, status_of(guard, "ml-week"))
    assert "1 running resource(s) have no known price" in lines[2]
    assert "3 h unpriced and 2 h unobserved" in lines[2]


def test_budget_command_prints_json_and_a_table(sim: Simulator, tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    config = tmp_path / "cost-guard.yaml"
    config.write_text(
        f"database_url: sqlite:///{db}\n"
        "budgets:\n"
        "  - {id: team-ml, period: month, limit_usd: 100, scope: {tags: {team: ml}},"
        " warn_at: [0.5, 0.8]}\n"
        "  - {id: everything, period: day, limit_usd: 50}\n"
    )
    now = datetime.now(UTC)
    arn = sim.add_notebook("nb", tags={"team": "ml"}, in_service_since=now - timedelta(hours=1))
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    runner = CliRunner()
    assert (
        runner.invoke(main, ["once", "--config", str(config)], env={**clean, **env}).exit_code == 0
    )
    upgrade(f"sqlite:///{db}")
    store = Store(f"sqlite:///{db}")
    add_spend(store, arn, datetime.now(UTC).date(), "30")
    store.close()

    out = runner.invoke(main, ["budget", "--json", "--config", str(config)], env={**clean, **env})
    assert out.exit_code == 0, out.output
    items = json.loads(out.output)
    assert [i["id"] for i in items] == ["team-ml", "everything"]
    ml = items[0]
    assert ml["spend_usd"].startswith("30.0") and ml["limit_usd"] == "100.00"
    assert ml["burn_usd_per_hour"] == "0.0500" and ml["resources_in_scope"] == 1
    assert ml["period_start"] == datetime.now(UTC).date().replace(day=1).isoformat()
    assert [t["at"] for t in ml["thresholds"]] == [0.5, 0.8]
    assert all(isinstance(t["crossed"], bool) for t in ml["thresholds"])
    table = runner.invoke(main, ["budget", "--config", str(config)], env={**clean, **env})
    assert table.exit_code == 0 and "team-ml" in table.output and "everything" in table.output
