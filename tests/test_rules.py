"""Rule evaluation as a pure function: fixed datetimes, no AWS, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from guard.config import Config, ConfigError, load_config
from guard.model import ActivitySource, Episode, Resource, Step, parse_time
from guard.rules import evaluate, human, last_fire
from tests.factories import notebook as make_notebook

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)  # Monday 18:00 UTC = 19:00 in Berlin
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}


def cfg(*rules: dict[str, Any], **extra: Any) -> Config:
    return Config.model_validate({"rules": list(rules), **extra})


def notebook(**changes: Any) -> Resource:
    return make_notebook(NOW, **changes)


def episode(**changes: Any) -> dict[tuple[str, str], Episode]:
    values: dict[str, Any] = dict(
        id=7,
        arn=notebook().arn,
        rule_id="idle",
        started_at=NOW - timedelta(minutes=40),
        warned_at=NOW - timedelta(minutes=40),
        deadline=NOW - timedelta(minutes=10),
        acted_at=None,
    )
    values.update(changes)
    ep = Episode(**values)
    return {(ep.arn, ep.rule_id): ep}


def steps(decisions: list[Any]) -> list[tuple[str, str]]:
    return [(d.step.value, d.rule_id) for d in decisions]


def test_idle_resource_is_warned_with_deadline_at_grace() -> None:
    [d] = evaluate([notebook()], {}, {}, cfg(IDLE_STOP), NOW)
    assert d.step is Step.WARN
    assert d.deadline == NOW + timedelta(minutes=30)
    assert "no Jupyter activity for 3 h" in d.reason


def test_recent_activity_is_not_idle() -> None:
    res = notebook(last_activity=NOW - timedelta(minutes=20))
    assert evaluate([res], {}, {}, cfg(IDLE_STOP), NOW) == []


def test_restart_counts_as_activity() -> None:
    # Last Jupyter use was yesterday, but it was started 30 minutes ago.
    res = notebook(last_activity=NOW - timedelta(days=1), running_since=NOW - timedelta(minutes=30))
    assert evaluate([res], {}, {}, cfg(IDLE_STOP), NOW) == []


def test_acts_only_after_grace() -> None:
    before = episode(deadline=NOW + timedelta(minutes=1))
    assert evaluate([notebook()], before, {}, cfg(IDLE_STOP), NOW) == []
    [d] = evaluate([notebook()], episode(), {}, cfg(IDLE_STOP), NOW)
    assert (d.step, d.episode_id) == (Step.ACT, 7)


def test_warned_once_per_episode_and_acted_once() -> None:
    acted = episode(acted_at=NOW - timedelta(minutes=5))
    assert evaluate([notebook()], acted, {}, cfg(IDLE_STOP), NOW) == []


def test_became_active_during_grace_resolves_instead_of_acting() -> None:
    res = notebook(last_activity=NOW - timedelta(minutes=5))
    [d] = evaluate([res], episode(), {}, cfg(IDLE_STOP), NOW)
    assert d.step is Step.RESOLVE
    assert "no longer matches" in d.reason


def test_stopped_resource_ends_its_episode() -> None:
    res = notebook(status="Stopped", running=False)
    assert steps(evaluate([res], episode(), {}, cfg(IDLE_STOP), NOW)) == [("resolve", "idle")]


@pytest.mark.parametrize("tag_value", ["true", "True", " TRUE "])
def test_exempt_is_never_warned_or_acted_on(tag_value: str) -> None:
    res = notebook(tags={"cost-guard:exempt": tag_value})
    assert evaluate([res], {}, {}, cfg(IDLE_STOP), NOW) == []
    assert steps(evaluate([res], episode(), {}, cfg(IDLE_STOP), NOW)) == [("resolve", "idle")]


def test_snooze_tag_and_stored_snooze() -> None:
    tagged = notebook(tags={"cost-guard:snooze-until": (NOW + timedelta(hours=1)).isoformat()})
    assert evaluate([tagged], {}, {}, cfg(IDLE_STOP), NOW) == []
    stored = {notebook().arn: NOW + timedelta(hours=4)}
    assert steps(evaluate([notebook()], episode(), stored, cfg(IDLE_STOP), NOW)) == [
        ("resolve", "idle")
    ]
    expired = {notebook().arn: NOW - timedelta(minutes=1)}
    assert steps(evaluate([notebook()], {}, expired, cfg(IDLE_STOP), NOW)) == [("warn", "idle")]


def test_unknown_evidence_never_acts_nor_resolves() -> None:
    res = notebook(activity_source=ActivitySource.UNKNOWN, evidence_error="logs: AccessDenied")
    assert evaluate([res], {}, {}, cfg(IDLE_STOP), NOW) == []
    assert evaluate([res], episode(), {}, cfg(IDLE_STOP), NOW) == []


def test_grace_zero_warns_and_acts_in_the_same_cycle() -> None:
    rule = {**IDLE_STOP, "grace": "0s"}
    assert steps(evaluate([notebook()], {}, {}, cfg(rule), NOW)) == [
        ("warn", "idle"),
        ("act", "idle"),
    ]


def test_notify_rule_never_acts() -> None:
    rule = {"id": "gpu", "kind": "notebook", "cost_per_hour_over": 1, "action": "notify"}
    gpu = notebook(instance_type="ml.g5.xlarge", usd_per_hour=Decimal("1.41"))
    [d] = evaluate([gpu], {}, {}, cfg(rule), NOW)
    assert (d.step, d.deadline) == (Step.WARN, None)
    assert evaluate([gpu], episode(rule_id="gpu", deadline=None), {}, cfg(rule), NOW) == []
    assert evaluate([notebook()], {}, {}, cfg(rule), NOW) == []  # $0.23/h is not over $1/h
    assert evaluate([notebook(usd_per_hour=None)], {}, {}, cfg(rule), NOW) == []


def test_selectors_are_anded() -> None:
    rule = {
        **IDLE_STOP,
        "regions": ["us-east-1"],
        "instance_types": ["ml.g*", "ml.m5.*"],
        "tags": {"team": "*", "env": "dev"},
    }
    ok = notebook(tags={"team": "ml", "env": "dev"})
    assert steps(evaluate([ok], {}, {}, cfg(rule), NOW)) == [("warn", "idle")]
    for other in (
        notebook(tags={"team": "ml", "env": "prod"}),
        notebook(tags={"env": "dev"}),
        notebook(tags={"team": "ml", "env": "dev"}, instance_type="ml.t3.medium"),
        notebook(tags={"team": "ml", "env": "dev"}, region="eu-west-1"),
    ):
        assert evaluate([other], {}, {}, cfg(rule), NOW) == []


def test_running_for_selector() -> None:
    rule = {"id": "long", "kind": "notebook", "running_for": "10h"}
    assert evaluate([notebook()], {}, {}, cfg(rule), NOW) == []
    long = notebook(running_since=NOW - timedelta(hours=11))
    [d] = evaluate([long], {}, {}, cfg(rule), NOW)
    assert d.reason == "running for 11 h"


def test_schedule_fires_at_its_cron_time_in_the_configured_timezone() -> None:
    rule = {
        "id": "overnight",
        "kind": "notebook",
        "schedule": "0 20 * * MON-FRI",
        "action": "stop",
        "grace": "15m",
    }
    berlin = cfg(rule, timezone="Europe/Berlin")
    busy = notebook(last_activity=NOW)
    # 20:00 in Berlin is 19:00 UTC in November.
    assert evaluate([busy], {}, {}, berlin, datetime(2026, 11, 23, 18, 59, tzinfo=UTC)) == []
    at = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    [d] = evaluate([busy], {}, {}, berlin, at)
    assert (d.step, d.deadline) == (Step.WARN, at + timedelta(minutes=15))
    # Started after the schedule fired: left alone until the next evening.
    late = notebook(running_since=datetime(2026, 11, 23, 21, 0, tzinfo=UTC))
    assert evaluate([late], {}, {}, berlin, datetime(2026, 11, 23, 22, 0, tzinfo=UTC)) == []


def test_last_fire_handles_weekends() -> None:
    tz = cfg().tz
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert last_fire("0 20 * * MON-FRI", tz, saturday) == datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


def test_human_durations() -> None:
    assert human(timedelta(hours=3, minutes=10)) == "3 h 10 min"
    assert human(timedelta(days=2, hours=4)) == "2 d 4 h"
    assert human(timedelta(minutes=45)) == "45 min"


def test_invalid_rule_names_file_rule_and_field(tmp_path: Any) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text(
        "rules:\n"
        "  - id: idle-notebooks\n"
        "    kind: notebook\n"
        "    idle_for: two hours\n"
        "    action: stop\n"
        "  - id: bad-action\n"
        "    kind: notebook\n"
        "    action: explode\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}: rule 'idle-notebooks' field idle_for: invalid duration 'two hours'" in message
    assert "rule 'bad-action'" in message and "action 'explode' is not available" in message


def test_idle_for_is_refused_for_jobs_which_are_never_idle_by_time() -> None:
    # A training job shows no "activity" while it trains: idle_for would stop every job
    # that ran longer than the window, so the config refuses it and names the alternatives.
    with pytest.raises(ConfigError, match="idle_for is not available for kind 'training_job'"):
        load_config(None, rules=[{"id": "j", "kind": "training_job", "idle_for": "2h"}])


def test_malformed_snooze_tag_snoozes_nothing() -> None:
    res = notebook(tags={"cost-guard:snooze-until": "after lunch"})
    assert steps(evaluate([res], {}, {}, cfg(IDLE_STOP), NOW)) == [("warn", "idle")]


def test_numeric_weekdays_are_standard_crontab() -> None:
    # 1-5 is Monday to Friday, 0 and 7 Sunday: APScheduler 3's own from_crontab says 0 = Monday.
    utc = cfg().tz
    monday_night = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    assert last_fire("0 20 * * 1-5", utc, monday_night) == datetime(2026, 11, 23, 20, tzinfo=UTC)
    assert last_fire("0 20 * * 0", utc, monday_night) == datetime(2026, 11, 22, 20, tzinfo=UTC)
    assert last_fire("0 20 * * 7", utc, monday_night) == datetime(2026, 11, 22, 20, tzinfo=UTC)
    rule = {"id": "night", "kind": "notebook", "schedule": "0 20 * * 1-5", "action": "stop"}
    berlin = cfg(rule, timezone="Europe/Berlin")
    busy = notebook(last_activity=NOW, running_since=datetime(2026, 11, 20, 8, tzinfo=UTC))
    # Saturday 20:30 in Berlin: the latest fire is Friday's, not Saturday's.
    saturday = datetime(2026, 11, 28, 19, 30, tzinfo=UTC)
    d = evaluate([busy], {}, {}, berlin, saturday)[0]
    assert "(Fri 20:00 CET)" in d.reason
    # Monday 20:00 in Berlin fires (0 = Monday would not).
    late = notebook(last_activity=NOW, running_since=datetime(2026, 11, 30, 8, tzinfo=UTC))
    d = evaluate([late], {}, {}, berlin, datetime(2026, 11, 30, 19, 5, tzinfo=UTC))[0]
    assert "(Mon 20:00 CET)" in d.reason


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "1970-01-01T00:00:00Z",
        "after lunch",
        "x" * 300,
        "",
        "   ",
    ],
)
def test_out_of_range_snooze_tag_snoozes_nothing_and_never_crashes(value: str) -> None:
    res = notebook(tags={"cost-guard:snooze-until": value})
    berlin = cfg(IDLE_STOP, timezone="Europe/Berlin")
    assert steps(evaluate([res], {}, {}, berlin, NOW)) == [("warn", "idle")]
    assert steps(evaluate([res], episode(), {}, berlin, NOW)) == [("act", "idle")]


@pytest.mark.parametrize(
    ("value", "until"),
    [
        ("2026-11-23 20:00", datetime(2026, 11, 23, 20, tzinfo=UTC)),
        ("2026-11-23T20:00:00.123456789Z", datetime(2026, 11, 23, 20, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-23t20:00:00z", datetime(2026, 11, 23, 20, tzinfo=UTC)),
        ("2026-11-23T21:00:00+0100", datetime(2026, 11, 23, 20, tzinfo=UTC)),
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
        (" 2026-11-23T20:00:00Z ", datetime(2026, 11, 23, 20, tzinfo=UTC)),
    ],
)
def test_snooze_tag_in_the_iso_forms_people_write(value: str, until: datetime) -> None:
    assert parse_time(value) == until
    res = notebook(tags={"cost-guard:snooze-until": value})
    assert evaluate([res], {}, {}, cfg(IDLE_STOP, timezone="Europe/Berlin"), NOW) == []
