"""Recommendations from recorded history (guard/recommend.py), on both databases.

Three weeks of hourly snapshots (tests/test_profiles.py's `record`): "office" is used on
weekdays 09-18, "random" at 40 random hours, "forgotten" never, though it is exempt. The
current rule stops notebooks after 12 h idle.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from guard import digest
from guard.cli import main
from guard.config import Config
from guard.recommend import recommendations, schedule_for
from guard.store import Store
from tests.test_profiles import START, at_random, record, weekdays_9_to_18

RULES = [{"id": "idle-notebooks", "kind": "notebook", "idle_for": "12h", "action": "stop",
          "grace": "1h"}]  # fmt: skip
EXEMPT = {"owner": "carol@example.com", "cost-guard:exempt": "true"}


def fleet(store: Store, start: datetime = START) -> datetime:
    return record(
        store,
        {"office": weekdays_9_to_18, "random": at_random(), "forgotten": lambda _: False},
        start=start,
        tags={"forgotten": EXEMPT},
    )


def test_a_weekday_resource_gets_a_weekday_schedule_and_a_random_one_nothing(
    store: Store,
) -> None:
    end = fleet(store)
    cfg = Config.model_validate({"rules": RULES})
    found = recommendations(store, cfg, end)
    titles = [r.title for r in found]
    print("\n".join(titles))
    (office,) = [r for r in found if r.what == "schedule"]
    assert office.title == "notebook/office: stop on schedule '0 19 * * 1-5'"
    (rule,) = yaml.safe_load(office.yaml)
    assert rule == {
        "id": "schedule-office", "kind": "notebook", "names": ["office"],
        "schedule": "0 19 * * 1-5", "action": "stop", "grace": "30m",
    }  # fmt: skip
    # pasted next to the current rules, it is a valid config
    Config.model_validate({"rules": [*RULES, rule]})
    assert office.usd_per_month > 0 and office.risk.startswith("low: ")
    assert office.why.startswith("used weekdays 09–18")  # noqa: RUF001
    assert not any("random" in t for t in titles)  # no pattern, no schedule
    (exempt,) = [r for r in found if r.what == "exemption"]
    assert exempt.title == "notebook/forgotten: remove its unused exemption"
    # the exempt notebook costs $1/h: 12 h idle + 1 h grace, then off for the rest
    assert exempt.saved_usd > Decimal(400)
    # every proposal saves more than the current rules, most $ first
    assert [r.usd_per_month for r in found] == sorted(
        (r.usd_per_month for r in found), reverse=True
    )
    # the weekly digest (the record ends on a Monday) lists them
    data = digest.build(cfg, store, end)
    _, lines = digest.text(data)
    assert any(line.startswith("Rules to consider") for line in lines)
    assert any("notebook/office: stop on schedule" in line for line in lines)
    # a Tuesday digest does not repeat them
    assert digest.build(cfg, store, end + timedelta(days=1))["recommendations"] == []


def test_no_history_no_recommendation(sqlite_store: Store) -> None:
    cfg = Config.model_validate({"rules": RULES})
    assert recommendations(sqlite_store, cfg, START) == []


def test_schedule_for_needs_an_evening() -> None:
    from guard.profiles import Profile

    late = Profile("x", frozenset({22, 23}), 5, 3.0, 1.0, "")
    assert schedule_for(late) is None
    weekend = Profile("x", frozenset({5 * 24 + 10, 6 * 24 + 10}), 5, 3.0, 1.0, "")
    assert schedule_for(weekend) == "0 12 * * 6,0"


def test_cli_recommend_prints_yaml_to_paste(
    fresh_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(fresh_sqlite_url)
    # the CLI reads the system clock: the three weeks before the last Monday
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fleet(store, start=today - timedelta(days=today.weekday() + 21))
    store.close()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cost-guard.yaml").write_text(
        f"database_url: {fresh_sqlite_url}\nrules: {json.dumps(RULES)}\n"
    )
    runner = CliRunner()
    out = runner.invoke(main, ["recommend", "--json"])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert any(r["what"] == "schedule" and "0 19 * * 1-5" in r["yaml"] for r in found)
    plain = runner.invoke(main, ["recommend"])
    assert plain.exit_code == 0 and "/month: notebook/office: stop on schedule" in plain.output
    assert "schedule: 0 19 * * 1-5" in plain.output
    bad = runner.invoke(main, ["recommend", "--since", "yesterday"])
    assert bad.exit_code == 2 and "invalid duration" in bad.output


def test_replaying_a_part_at_a_time_proposes_what_one_replay_of_the_fleet_does(
    store: Store,
) -> None:
    """The history is replayed a range of ARNs at a time (memory: a month of a big fleet is
    never held at once); rules act per resource, so one resource per part, a few, or the
    whole fleet in one part give the same proposals, in the same order, to the cent."""
    end = record(
        store,
        {
            "office": weekdays_9_to_18,
            "six-hourly": lambda at: at.hour % 6 == 0,
            "forgotten": lambda _: False,
            "also-forgotten": lambda _: False,
        },
        tags={"forgotten": EXEMPT, "also-forgotten": EXEMPT},
        prices={"office": Decimal("1.41"), "also-forgotten": Decimal("7.09")},
    )
    rules = [*RULES, {"id": "idle-short", "kind": "notebook", "idle_for": "4h",
                      "action": "stop", "grace": "2h"}]  # fmt: skip
    cfg = Config.model_validate({"rules": rules})
    whole = [r.to_json() for r in recommendations(store, cfg, end, part=10_000)]
    assert {r["what"] for r in whole} == {"idle_for", "schedule", "exemption"}
    for part in (1, 2, 3):
        assert [r.to_json() for r in recommendations(store, cfg, end, part=part)] == whole
