"""Weekly usage profiles from recorded evidence (guard/profiles.py), on both databases.

`record` writes hourly snapshots and cycles through the real Store, as cycles do: each
resource's last activity moves to `now` in the hours its `used` function says it was used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard import backtest, profiles
from guard.cli import main
from guard.config import Config
from guard.model import ActivitySource, Episode, ManualClock, Step, UsagePattern
from guard.notify import Notice, Notifier
from guard.rules import evaluate, match
from guard.store import Store
from tests.factories import notebook

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
JUPYTER, IN_SERVICE = ActivitySource.JUPYTER_LOG, ActivitySource.IN_SERVICE_SINCE
SCANNED = {("123456789012", "us-east-1", "notebook")}


def weekdays_9_to_18(at: datetime) -> bool:
    return at.weekday() < 5 and 9 <= at.hour < 18


def at_random(seed: int = 7) -> Callable[[datetime], bool]:
    rng = random.Random(seed)
    chosen = {START + timedelta(hours=rng.randrange(21 * 24)) for _ in range(40)}
    return lambda at: at in chosen


def record(
    store: Store,
    used: Mapping[str, Callable[[datetime], bool]],
    weeks: int = 3,
    *,
    start: datetime = START,
    tags: Mapping[str, Mapping[str, str]] | None = None,
    prices: Mapping[str, Decimal] | None = None,
) -> datetime:
    """Hourly snapshots and cycle rows over `weeks`; returns the end time."""
    last: dict[str, datetime | None] = dict.fromkeys(used)
    now = start
    while now < start + timedelta(weeks=weeks):
        seen = []
        for name, is_used in used.items():
            if is_used(now):
                last[name] = now
            seen.append(
                notebook(
                    now,
                    name,
                    created_at=start,
                    running_since=start,
                    last_activity=last[name],
                    activity_source=(
                        ActivitySource.JUPYTER_LOG
                        if last[name]
                        else ActivitySource.IN_SERVICE_SINCE
                    ),
                    tags=dict((tags or {}).get(name, {"owner": f"{name}@example.com"})),
                    usd_per_hour=(prices or {}).get(name, Decimal("1.00")),
                )
            )
        store.save_snapshot(seen, SCANNED, now)
        stamp = now.isoformat()
        store.save_cycle({"started_at": stamp, "finished_at": stamp}, "dry-run")
        now += timedelta(hours=1)
    return now


def test_a_weekday_resource_reads_as_such_and_a_random_one_has_no_pattern(store: Store) -> None:
    end = record(
        store, {"office": weekdays_9_to_18, "random": at_random(), "idle": lambda _: False}
    )
    cfg = Config.model_validate({})
    found = {p.subject: p for p in profiles.profiles(store, cfg, end).values()}
    office = found["notebook/office"]
    assert office.text == "used weekdays 09–18; idle every night and weekend for 3 weeks"  # noqa: RUF001
    assert office.usual == frozenset(d * 24 + h for d in range(5) for h in range(9, 18))
    assert office.confidence > 0.99
    rand = found["notebook/random"]
    assert rand.confidence < 0.5 and not rand.stable and office.stable
    assert rand.text.startswith("used at irregular hours (")
    assert found["notebook/idle"].text == "not used in 3 weeks"
    # one week of evidence says nothing about the next: no profile
    assert profiles.profiles(store, cfg, START + timedelta(days=5)) == {}


def test_owner_profiles_join_their_resources_and_follow_the_timezone(store: Store) -> None:
    morning = lambda at: at.weekday() < 5 and 8 <= at.hour < 12  # noqa: E731
    evening = lambda at: at.weekday() < 5 and 12 <= at.hour < 16  # noqa: E731
    owner = {"owner": "ada@example.com"}
    end = record(store, {"a": morning, "b": evening}, tags={"a": owner, "b": owner})
    berlin = Config.model_validate({"timezone": "Europe/Berlin"})
    (ada,) = profiles.owner_profiles(store, berlin, end).values()
    assert ada.subject == "owner ada@example.com"
    # UTC 08-16 is 09-17 in Berlin in November (CET)
    assert ada.text == "used weekdays 09–17; idle every night and weekend for 3 weeks"  # noqa: RUF001


def test_the_slack_message_and_the_inventory_show_the_profile(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CLI reads the system clock: a history of the three weeks before the last Monday
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday() + 21)
    end = record(sqlite_store, {"office": weekdays_9_to_18}, start=monday)
    cfg = Config.model_validate({"database_url": sqlite_store.url})
    res = sqlite_store.resource_by_name("notebook", "office")
    assert res is not None
    notifier = Notifier(cfg, sqlite_store, ManualClock(end))
    notice = Notice(
        resource=res, rule_id="idle", episode_id=1, state="warned", action="stop",
        reason="no Jupyter activity", deadline=end + timedelta(hours=1), mode="dry-run",
    )  # fmt: skip
    payload: dict[str, Any] = notifier.render(notice, "ada", end)
    assert (
        "Usage: used weekdays 09–18; idle every night and weekend for 3 weeks" in (payload["plain"])  # noqa: RUF001
    )
    assert any("*Usage*" in json.dumps(block) for block in payload["blocks"])

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", sqlite_store.url)
    runner = CliRunner()
    out = runner.invoke(main, ["inventory", "--json"])
    assert out.exit_code == 0, out.output
    (item,) = json.loads(out.output)
    assert item["usage"]["text"].startswith("used weekdays 09–18")  # noqa: RUF001
    assert item["usage"]["confidence"] >= 0.99
    table = runner.invoke(main, ["inventory"])
    assert "usage of notebook/office: used weekdays 09–18" in table.output  # noqa: RUF001


# --- `schedule: learned` (guard/rules.py) ----------------------------------------------------

LEARNED_RULE = {"id": "learned", "kind": "notebook", "schedule": "learned", "idle_for": "12h",
                "action": "stop", "grace": "30m"}  # fmt: skip
WEEKDAYS = frozenset(d * 24 + h for d in range(5) for h in range(9, 18))


def _pattern(weeks: float = 3.0, confidence: float = 1.0) -> UsagePattern:
    return UsagePattern(WEEKDAYS, weeks, confidence, "used weekdays 09-18")


def test_learned_stops_outside_usual_hours_after_warning_and_grace() -> None:
    cfg = Config.model_validate({"rules": [LEARNED_RULE], "mode": "enforce"})
    rule = cfg.rules[0]
    evening = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)  # Monday 19:00
    quiet = notebook(evening, last_activity=evening - timedelta(minutes=45))
    hit = match(rule, quiet, cfg, evening, None, _pattern())
    assert hit.matched and "outside its learned usage hours" in hit.reason
    # inside the usual hours: never, however idle
    noon = evening.replace(hour=12)
    idle_at_noon = notebook(noon, last_activity=noon - timedelta(hours=11))
    assert match(rule, idle_at_noon, cfg, noon, None, _pattern()).matched is False
    # outside them but used minutes ago: not mid-work
    busy = notebook(evening, last_activity=evening - timedelta(minutes=10))
    assert match(rule, busy, cfg, evening, None, _pattern()).matched is False
    # the usual warning, then the action after the grace
    (warn,) = evaluate([quiet], {}, {}, cfg, evening, {quiet.arn: _pattern()})
    assert warn.step is Step.WARN and warn.deadline == evening + timedelta(minutes=30)
    episode = Episode(1, quiet.arn, "learned", evening, evening, warn.deadline, None)
    later = evening + timedelta(hours=1)
    still = notebook(later, last_activity=evening - timedelta(minutes=45))
    (act,) = evaluate([still], {(still.arn, "learned"): episode}, {}, cfg, later, {
        still.arn: _pattern()})  # fmt: skip
    assert act.step is Step.ACT


def test_learned_falls_back_to_the_idle_rule_while_unsure() -> None:
    cfg = Config.model_validate({"rules": [LEARNED_RULE]})
    rule = cfg.rules[0]
    evening = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    quiet = notebook(evening, last_activity=evening - timedelta(minutes=45))
    for unsure in (None, _pattern(weeks=2.0), _pattern(confidence=0.5)):
        assert match(rule, quiet, cfg, evening, None, unsure).matched is False
        long_idle = notebook(
            evening,
            last_activity=evening - timedelta(hours=13),
            running_since=evening - timedelta(days=1),
        )
        fallback = match(rule, long_idle, cfg, evening, None, unsure)
        assert fallback.matched and "outside" not in fallback.reason
    with pytest.raises(ValueError, match="schedule: learned needs idle_for"):
        Config.model_validate({"rules": [{**LEARNED_RULE, "idle_for": None}]})


def test_a_learned_schedule_backtests_to_evening_stops_once_the_pattern_is_known(
    sqlite_store: Store,
) -> None:
    """Four recorded weeks of a weekday 09-18 notebook: for three weeks the rule is its 12 h
    idle rule (stops at 06:00); from then on it stops at 19:00, and never mid-work."""
    end = record(sqlite_store, {"office": weekdays_9_to_18}, weeks=4)
    cfg = Config.model_validate({"rules": [LEARNED_RULE]})
    history = backtest.load_history(sqlite_store, START, end, backtest.warm_up_for(cfg))
    stops = backtest.replay(history, cfg).stops
    sure = START + timedelta(weeks=3)
    early = {s.at.hour for s in stops if s.at < sure}
    late = [s.at for s in stops if s.at >= sure]
    assert early == {6}
    assert late == [sure + timedelta(days=d, hours=19) for d in range(5)]
    assert not any(s.busy for s in stops)
    idle_only = cfg.with_overrides(rules=[{**LEARNED_RULE, "schedule": None}])
    assert sum(s.usd or 0 for s in stops) > sum(
        s.usd or 0 for s in backtest.replay(history, idle_only).stops
    )


@pytest.mark.usefixtures("aws_env")
def test_a_live_cycle_stops_outside_the_learned_hours(
    sim: Any, clock: ManualClock, db_url: str
) -> None:
    """The daemon's own cycle, not a replay: three recorded weeks of weekday use, then the
    notebook quiet since 18:00 on a Monday evening is warned and, after the grace, stopped —
    while its 12 h idle rule alone would still wait."""
    from guard.cycle import run_cycle
    from tests.factories import guard_for

    store = Store(db_url)
    try:
        end = record(store, {"office": weekdays_9_to_18})  # Monday 2026-11-23 00:00
    finally:
        store.close()
    evening = end + timedelta(hours=19)
    clock.set(evening)
    sim.add_notebook("office", "ml.m5.xlarge", in_service_since=START,
                     tags={"owner": "office@example.com"})  # fmt: skip
    sim.jupyter_activity("office", evening - timedelta(minutes=45))
    guard = guard_for(clock, db_url, [LEARNED_RULE], mode="enforce",
                      pricing={"source": "bundled"})  # fmt: skip
    report = run_cycle(guard)
    [warned] = report["warned"]
    assert warned["name"] == "office" and "outside its learned usage hours" in warned["reason"]
    clock.advance(timedelta(minutes=35))
    sim.jupyter_activity("office", evening - timedelta(minutes=45))  # still quiet
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("office", "done")]
    assert sim.notebook_status("office") in ("Stopping", "Stopped")
    guard.store.close()


@pytest.mark.usefixtures("aws_env")
def test_a_live_cycle_without_a_learned_pattern_waits_for_the_idle_rule(
    sim: Any, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    clock.set(datetime(2026, 11, 23, 19, tzinfo=UTC))  # no recorded history at all
    sim.add_notebook("office", "ml.m5.xlarge", in_service_since=clock.now() - timedelta(days=1))
    sim.jupyter_activity("office", clock.now() - timedelta(minutes=45))
    from guard.cycle import run_cycle
    from tests.factories import guard_for

    guard = guard_for(clock, fresh_sqlite_url, [LEARNED_RULE], mode="enforce",
                      pricing={"source": "bundled"})  # fmt: skip
    assert run_cycle(guard)["warned"] == []  # 45 min idle: the 12 h idle rule does not match
    guard.store.close()
