"""Backtest: a recorded simulated month replayed through the rules (guard/backtest.py).

The month is recorded by the real guard (hourly cycles, enforce mode) against the simulator:
"day-nb" is used on weekdays 09:00-17:00 (its owner starts it again at 09:00 when the guard
stopped it), "pause-nb" every day at 10:00 and again at 11:30 (a 90-minute pause), "ep" is an
endpoint nobody calls. The backtest of the rules that ran must reproduce what the guard did;
a tighter idle threshold must save more and list its busy stops (pause-nb at 11:00, used
again at 11:30) exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard import backtest
from guard.cli import EXIT_USAGE, main
from guard.config import Config, ConfigError
from guard.cycle import run_cycle
from guard.model import ActivitySource, ManualClock
from guard.sim import Simulator
from guard.sim.moto_ext import naive_utc
from guard.store import Store
from tests.factories import guard_for, notebook

START = datetime(2026, 11, 1, tzinfo=UTC)  # a Sunday
DAYS = 30
RULES: list[dict[str, Any]] = [
    {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop",
     "grace": "30m"},
    {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "12h", "action": "delete",
     "grace": "1h"},
]  # fmt: skip
TIGHTER = [{**RULES[0], "idle_for": "1h", "grace": "0s"}, RULES[1]]


def _use(sim: Simulator, name: str, at: datetime) -> None:
    """Someone works in `name` at `at`, starting it first if the guard stopped it."""
    if sim.notebook_status(name) != "InService":
        sim.start_notebook(name)
        nb = sim._sagemaker("us-east-1").notebook_instances[name]
        nb.status, nb.last_modified_time = "InService", naive_utc(at)
    sim.jupyter_activity(name, at)


def record_month(sim: Simulator, clock: ManualClock, db_url: str) -> Config:
    clock.set(START)
    sim.add_notebook("day-nb", "ml.g5.xlarge", tags={"owner": "ada@example.com"})
    sim.add_notebook("pause-nb", "ml.m5.xlarge", tags={"owner": "bob@example.com"})
    sim.add_endpoint("ep", "ml.m5.xlarge")
    guard = guard_for(
        clock, db_url, RULES, mode="enforce", kinds=["notebook", "endpoint"],
        pricing={"source": "bundled"},
    )  # fmt: skip
    now = START
    while now < START + timedelta(days=DAYS):
        clock.set(now)
        if now.weekday() < 5 and 9 <= now.hour <= 17:
            _use(sim, "day-nb", now)
        if now.hour == 10:
            _use(sim, "pause-nb", now)
        if now.hour == 12:  # the 11:30 use, seen by the 12:00 cycle
            _use(sim, "pause-nb", now - timedelta(minutes=30))
        run_cycle(guard)
        sim.settle()
        now += timedelta(hours=1)
    guard.store.close()
    return guard.cfg


@pytest.mark.usefixtures("aws_env")
def test_a_recorded_month_replays_to_what_the_guard_did_and_a_tighter_rule_saves_more(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    cfg = record_month(sim, clock, db_url)
    store = Store(db_url)
    end = clock.now()
    candidate = cfg.with_overrides(rules=TIGHTER)
    data = backtest.backtest(store, cfg, candidate, START, end)

    real = data["real"]
    print(json.dumps({k: data[k] for k in ("real", "current")}, indent=1)[:3000])
    # same actions: every real stop/delete replayed at its cycle, and nothing else
    assert real["actions"] > DAYS  # both notebooks stopped most days, the endpoint once
    assert real["not_replayed"] == [] and real["only_in_replay"] == []
    assert real["matched"] == real["actions"] == data["current"]["actions"]
    # same $ within 1 %
    real_usd, replay_usd = Decimal(real["saved_usd"]), Decimal(data["current"]["saved_usd"])
    assert real_usd > 0
    assert abs(replay_usd - real_usd) <= real_usd * Decimal("0.01"), (replay_usd, real_usd)
    assert data["current"]["busy_stops"] == []
    assert data["current"]["rules"]["idle-endpoints"]["actions"] == 1

    # the tighter rule: more saved, and exactly its busy stops (pause-nb at 11:00 each day,
    # used again at 11:30; every other stop is followed by a long pause)
    tight = data["candidate"]
    assert Decimal(tight["saved_usd"]) > replay_usd
    expected = [
        {
            "resource": "notebook/pause-nb",
            "rule": "idle-notebooks",
            "action": "stop",
            "at": (START + timedelta(days=d, hours=11)).isoformat(),
            "used_at": (START + timedelta(days=d, hours=11, minutes=30)).isoformat(),
        }
        for d in range(DAYS)
    ]
    assert tight["busy_stops"] == expected
    assert tight["rules"]["idle-notebooks"]["busy_stops"] == expected
    assert tight["kinds"]["notebook"]["actions"] == tight["rules"]["idle-notebooks"]["actions"]
    lines = backtest.text(data)
    assert any("busy stop: notebook/pause-nb" in line and "30 min later" in line for line in lines)
    assert "what the history cannot tell:" in lines
    store.close()


def test_history_without_evidence_is_said_not_guessed(sqlite_store: Store) -> None:
    """A database from before migration 0009 (or never cycled): nothing is replayed, and the
    report says why instead of showing $0 as if nothing could be saved."""
    cfg = Config.model_validate({"rules": RULES})
    data = backtest.backtest(sqlite_store, cfg, cfg, START, START + timedelta(days=30))
    assert data["cycles"] == 0 and data["current"]["actions"] == 0
    assert "cannot be replayed" in data["cannot_tell"][0]


def test_evidence_is_recorded_only_when_it_changes(sqlite_store: Store) -> None:
    """One row per change, not per cycle: an idle resource costs one row, not 720."""
    now = START
    idle = notebook(now, "idle")
    for _hour in range(5):
        sqlite_store.save_snapshot([idle], {("123456789012", "us-east-1", "notebook")}, now)
        now += timedelta(hours=1)
    used = notebook(now, "idle", last_activity=now)
    sqlite_store.save_snapshot([used], {("123456789012", "us-east-1", "notebook")}, now)
    sqlite_store.save_snapshot([], {("123456789012", "us-east-1", "notebook")}, now + timedelta(1))
    rows = sqlite_store.evidence_since(START - timedelta(1), now + timedelta(days=2))
    assert [(r.at, r.running, r.status) for r in rows] == [
        (START, True, "InService"),
        (now, True, "InService"),
        (now + timedelta(1), False, "Gone"),
    ]
    assert len(sqlite_store.evidence_snapshots(START, now + timedelta(days=2))) == 7


def test_pruning_keeps_the_state_each_resource_was_in(sqlite_store: Store) -> None:
    scanned = {("123456789012", "us-east-1", "notebook")}
    sqlite_store.save_snapshot([notebook(START, "a")], scanned, START)
    later = START + timedelta(days=100)
    sqlite_store.save_snapshot([notebook(START, "a")], scanned, later)
    sqlite_store.prune(later, timedelta(days=90))
    (row,) = sqlite_store.evidence_since(later, later)
    assert row.at == START  # superseded by nothing: still the state from then on


def test_candidate_rules_file_errors_name_the_file_and_rule(tmp_path: Path) -> None:
    cfg = Config.model_validate({"rules": RULES})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: x\n  kind: notebook\n  idle_for: soon\n  action: stop\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*rule 'x' field idle_for"):
        backtest.load_rules(bad, cfg)
    with pytest.raises(ConfigError, match="file not found"):
        backtest.load_rules(tmp_path / "missing.yaml", cfg)
    (tmp_path / "scalar.yaml").write_text("42\n")
    with pytest.raises(ConfigError, match="expected a list of rules"):
        backtest.load_rules(tmp_path / "scalar.yaml", cfg)
    whole = tmp_path / "config.yaml"
    whole.write_text("mode: enforce\nrules:\n  - {id: y, kind: notebook, idle_for: 1h}\n")
    assert [r.id for r in backtest.load_rules(whole, cfg).rules] == ["y"]


def test_cli_backtest_prints_json_and_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_sqlite_url: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cost-guard.yaml").write_text(
        f"database_url: {fresh_sqlite_url}\nrules:\n"
        "  - {id: idle, kind: notebook, idle_for: 2h, action: stop}\n"
    )
    (tmp_path / "cand.yaml").write_text(
        "- {id: idle, kind: notebook, idle_for: 1h}\n"
        "- {id: pricey, kind: notebook, cost_per_hour_over: 1}\n"  # no duration at all
    )
    runner = CliRunner()
    ok = runner.invoke(main, ["backtest", "--rules", "cand.yaml", "--since", "7d", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["candidate"]["rules"]["idle"]["actions"] == 0
    text = runner.invoke(main, ["backtest", "--rules", "cand.yaml"])
    assert text.exit_code == 0 and "what the history cannot tell:" in text.output
    for command in (["backtest", "--rules", "cand.yaml"], ["recommend"], ["audit"]):
        everything = runner.invoke(main, [*command, "--since", "1000000d"])  # past year 1
        assert everything.exit_code == 0, everything.output
    bad = runner.invoke(main, ["backtest", "--rules", "nope.yaml"])
    assert bad.exit_code == EXIT_USAGE
    assert "nope.yaml: file not found" in bad.output and "Traceback" not in bad.output


def test_a_resource_a_failed_scan_missed_is_skipped_not_taken_for_gone(sqlite_store: Store) -> None:
    east = {("123456789012", "us-east-1", "notebook")}
    west_nb = notebook(START, "west", region="us-west-2", arn="arn:aws:sagemaker:us-west-2:1:n/w")
    sqlite_store.save_snapshot(
        [notebook(START, "east"), west_nb], east | {("123456789012", "us-west-2", "notebook")},
        START,
    )  # fmt: skip
    later = START + timedelta(hours=1)
    sqlite_store.save_snapshot([notebook(START, "east")], east, later)  # us-west-2 failed
    assert sqlite_store.evidence_snapshots(later, later) == {later: [west_nb.arn]}
    history = backtest.load_history(sqlite_store, START, later, timedelta(0))
    assert history.missed == {later: {west_nb.arn}}
    assert any("did not list some known resources" in x for x in history.cannot_tell)


def _random_history(seed: int) -> tuple[backtest.History, Config]:
    """A fortnight of 60 resources whose evidence changes at random: used, idle, unknown,
    snoozed, exempted, stopped and started again, GPU busy or not, missed by a snapshot."""
    rng = random.Random(seed)
    cycles = [START + timedelta(minutes=20 * i) for i in range(14 * 72)]
    timelines: dict[str, list[backtest.Point]] = {}
    missed: dict[datetime, set[str]] = {}
    for i in range(60):
        kind = ("notebook", "endpoint", "training_job")[i % 3]
        base = notebook(
            START, f"r{i}", kind=kind, arn=f"arn:r{i}", running_since=START,
            last_activity=START, usd_per_hour=Decimal(rng.choice(("0.23", "1.41", "7.09"))),
            tags={"owner": "ada@example.com", "team": rng.choice(("a", "b"))},
        )  # fmt: skip
        res, points = base, [backtest.Point(START, base)]
        for at in cycles[1:]:
            roll = rng.random()
            snooze = None
            if roll < 0.05:  # used
                res = replace(res, last_activity=at - timedelta(minutes=rng.randrange(20)),
                              activity_source=ActivitySource.JUPYTER_LOG)  # fmt: skip
            elif roll < 0.06:
                res = replace(res, activity_source=ActivitySource.UNKNOWN)
            elif roll < 0.065:  # stopped, or started again
                res = replace(res, running=not res.running, running_since=at)
            elif roll < 0.07:
                snooze = at + timedelta(hours=rng.choice((1, 5, 30)))
                res = replace(res, tags={**res.tags})  # a new state, snoozed
            elif roll < 0.072:
                exempt = {"cost-guard:exempt": rng.choice(("true", "false"))}
                res = replace(res, tags={**res.tags, **exempt})
            elif roll < 0.08:
                res = replace(res, utilization={"gpu/3600": rng.choice((1.0, 90.0))})
            else:
                if rng.random() < 0.002:
                    missed.setdefault(at, set()).add(base.arn)
                continue
            points.append(backtest.Point(at, res, snooze))
        timelines[base.arn] = points
    cfg = Config.model_validate(
        {
            "timezone": "Europe/Berlin",
            "rules": [
                {"id": "idle-nb", "kind": "notebook", "idle_for": "3h", "action": "stop",
                 "grace": "40m"},
                {"id": "night-nb", "kind": "notebook", "schedule": "0 20 * * 1-5",
                 "action": "stop", "grace": "0s", "tags": {"team": "a"}},
                {"id": "idle-ep", "kind": "endpoint", "idle_for": "10h", "action": "delete",
                 "grace": "1h"},
                {"id": "pricey-ep", "kind": "endpoint", "cost_per_hour_over": 1,
                 "accrued_cost_over": 100, "action": "notify"},
                {"id": "long-job", "kind": "training_job", "running_for": "2d",
                 "action": "stop", "grace": "2h"},
                {"id": "stalled", "kind": "training_job",
                 "utilization_below": {"gpu": 5, "for": "1h"}, "action": "stop"},
            ],
        }
    )  # fmt: skip
    until = cycles[-1]
    return backtest.History(START, until, START, cycles, timelines, missed), cfg


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_judging_only_what_can_change_decides_as_judging_everything_every_cycle(
    seed: int,
) -> None:
    history, cfg = _random_history(seed)
    fast = backtest.replay(history, cfg)
    everything = backtest.replay(history, cfg, judge_all=True)
    assert len(fast.stops) > 50 and fast.warnings > len(fast.stops)  # the rules had work
    assert _ordered(fast.stops) == _ordered(everything.stops)
    assert fast.warnings == everything.warnings
    unexempt = frozenset(list(history.timelines)[:20])
    assert _ordered(backtest.replay(history, cfg, unexempt=unexempt).stops) == _ordered(
        backtest.replay(history, cfg, unexempt=unexempt, judge_all=True).stops
    )


def _ordered(stops: list[backtest.Stop]) -> list[backtest.Stop]:
    return sorted(stops, key=lambda s: (s.at, s.arn, s.rule_id))
