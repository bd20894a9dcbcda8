"""The paths to production that a happy-path suite misses: the dry-run -> enforce switch, a
failed action retried at later cycles, one bad decision among many. Whole cycles against the
simulator over HTTP, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from guard import cycle
from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.rules import RETRY_CAP, RETRY_FIRST, retry_at
from guard.sim import Simulator
from tests.conftest import START
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

pytestmark = pytest.mark.usefixtures("aws_env")

NO_DIGEST = "0 9 1 1 *"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}
TOKEN = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-test-token"})


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def build(
    clock: ManualClock,
    db_url: str,
    slack: FakeSlack | None = None,
    rules: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Guard:
    settings: dict[str, Any] = {"slack": {"digest": NO_DIGEST}}
    secrets = None
    if slack is not None:
        settings["slack"] |= {"channel": "C123", "base_url": slack.api_url}
        secrets = TOKEN
    return guard_for(clock, db_url, rules or [IDLE_STOP], secrets, **settings, **extra)


def audit(guard: Guard, clock: ManualClock) -> list[tuple[str, str, str]]:
    rows = guard.store.audit(clock.now() - timedelta(days=30))
    return [(row.name, row.action, row.outcome) for row in rows]


def test_dry_run_episode_is_rearmed_when_the_guard_starts_enforcing(
    sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack
) -> None:
    tried_in_dry_run(sim, clock, db_url, slack)

    # The team is convinced: same database, mode enforce (`once --enforce` / the config).
    clock.advance(timedelta(minutes=10))
    guard = build(clock, db_url, slack, mode="enforce")
    rearmed = run_cycle(guard)
    assert rearmed["actions"] == []  # a fresh grace period first: nobody was told "will stop"
    assert [w["name"] for w in rearmed["warned"]] == ["idle"]
    assert sim.notebook_status("idle") == "InService"
    [update] = [c for c in slack.accepted("chat.update") if "now enforces" in str(c.body)]
    assert "Will stop at" in str(update.body)  # the deadline is stated, with the grace left

    clock.advance(timedelta(minutes=20))
    assert run_cycle(guard)["actions"] == []  # still within the new grace
    clock.advance(timedelta(minutes=11))
    acted = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in acted["actions"]] == [("idle", "done")]
    assert sim.notebook_status("idle") == "Stopping"
    assert audit(guard, clock) == [
        ("idle", "warn", "warned"),
        ("idle", "stop", "dry-run"),
        ("idle", "warn", "warned"),  # the re-armed warning, with its new deadline
        ("idle", "stop", "done"),
    ]
    clock.advance(timedelta(minutes=10))
    assert run_cycle(guard)["actions"] == []  # acted once


def tried_in_dry_run(
    sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack | None = None
) -> None:
    """An idle notebook taken by a dry-run guard to "would stop" (its grace over)."""
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    trial = build(clock, db_url, slack)
    run_cycle(trial)
    clock.advance(timedelta(minutes=31))
    assert [a["outcome"] for a in run_cycle(trial)["actions"]] == ["dry-run"]
    trial.store.close()


def test_rearmed_episode_ends_if_the_notebook_is_used_during_the_new_grace(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    tried_in_dry_run(sim, clock, db_url)
    guard = build(clock, db_url, mode="enforce")
    run_cycle(guard)  # re-armed
    clock.advance(timedelta(minutes=15))
    sim.jupyter_activity("idle", clock.now())  # the owner saw the message and came back
    clock.advance(timedelta(minutes=20))
    report = run_cycle(guard)
    assert report["actions"] == [] and [r["name"] for r in report["resolved"]] == ["idle"]
    assert sim.notebook_status("idle") == "InService"


def test_dry_run_episode_stays_quiet_while_still_in_dry_run(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    tried_in_dry_run(sim, clock, db_url)
    guard = build(clock, db_url)
    for _ in range(3):
        clock.advance(timedelta(minutes=30))
        report = run_cycle(guard)
        assert report["actions"] == [] and report["warned"] == []


def test_failed_stop_is_retried_with_backoff_while_the_notebook_still_qualifies(
    sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack
) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = build(clock, db_url, slack, mode="enforce")
    run_cycle(guard)
    sim.fail("sagemaker:StopNotebookInstance")  # a transient refusal
    clock.advance(timedelta(minutes=31))
    first = run_cycle(guard)
    assert [a["outcome"] for a in first["actions"]] == ["failed"]
    failed = [c for c in slack.accepted("chat.update") if "trying again at" in str(c.body)]
    assert len(failed) == 1 and "attempt 2" in str(failed[0].body)

    clock.advance(RETRY_FIRST - timedelta(minutes=1))
    assert run_cycle(guard)["actions"] == []  # not before the backoff
    clock.advance(timedelta(minutes=1))
    second = run_cycle(guard)
    assert [a["outcome"] for a in second["actions"]] == ["failed"]  # still failing
    assert len([c for c in slack.accepted("chat.update") if "attempt 3" in str(c.body)]) == 1

    sim.heal()
    clock.advance(2 * RETRY_FIRST)  # the second backoff is twice the first
    third = run_cycle(guard)
    assert [a["outcome"] for a in third["actions"]] == ["done"]
    assert sim.notebook_status("idle") == "Stopping"
    stops = [row for row in audit(guard, clock) if row[1] == "stop"]
    assert stops == [("idle", "stop", "failed")] * 2 + [("idle", "stop", "done")]
    clock.advance(timedelta(hours=1))
    assert run_cycle(guard)["actions"] == []


def test_failed_stop_is_not_retried_once_the_notebook_is_used(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("idle", in_service_since=clock.now() - timedelta(hours=5))
    guard = build(clock, db_url, mode="enforce")
    run_cycle(guard)
    sim.fail("sagemaker:StopNotebookInstance")
    clock.advance(timedelta(minutes=31))
    run_cycle(guard)
    sim.heal()
    sim.jupyter_activity("idle", clock.now())
    clock.advance(RETRY_FIRST)
    report = run_cycle(guard)
    assert report["actions"] == [] and [r["name"] for r in report["resolved"]] == ["idle"]
    assert sim.notebook_status("idle") == "InService"


def test_retry_backoff_doubles_up_to_its_cap() -> None:
    delays = [retry_at(n, START) - START for n in range(1, 10)]
    assert delays[:4] == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST, 8 * RETRY_FIRST]
    assert max(delays) == RETRY_CAP and delays == sorted(delays)
    assert retry_at(10**6, START) - START == RETRY_CAP  # huge counts do not overflow


def test_one_broken_decision_does_not_sink_the_cycle(
    sim: Simulator, clock: ManualClock, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = clock.now() - timedelta(hours=5)
    for name in ("a-first", "b-broken", "c-last"):
        sim.add_notebook(name, in_service_since=since)
    guard = build(clock, db_url, mode="enforce", rules=[{**IDLE_STOP, "grace": "0s"}])
    real_warn = cycle._warn

    def warn(g: Guard, d: Any) -> int:
        episode = real_warn(g, d)  # writes its episode and audit row, then fails
        if d.resource.name == "b-broken":
            raise KeyError("console_url")
        return episode

    monkeypatch.setattr(cycle, "_warn", warn)
    report = run_cycle(guard)
    assert sorted(w["name"] for w in report["warned"]) == ["a-first", "c-last"]
    assert sorted(a["name"] for a in report["actions"]) == ["a-first", "c-last"]
    [error] = report["errors"]
    assert "b-broken" in error and "KeyError" in error
    assert guard.store.last_cycle() is not None  # the report was saved
    # The broken decision's own writes were undone: no half-open episode, no audit row.
    assert [row[0] for row in audit(guard, clock) if row[0] == "b-broken"] == []
    assert sim.notebook_status("b-broken") == "InService"
    assert {sim.notebook_status(n) for n in ("a-first", "c-last")} == {"Stopping"}

    monkeypatch.setattr(cycle, "_warn", real_warn)
    clock.advance(timedelta(minutes=5))
    again = run_cycle(guard)  # fixed: judged afresh next cycle
    assert [a["name"] for a in again["actions"]] == ["b-broken"]
