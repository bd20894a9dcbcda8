"""The money digest and the inventory's accrued columns, from real cycles over the simulator."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import select

from guard import digest
from guard.config import Config
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.pricing import PriceBook
from guard.reports import inventory_for
from guard.sim import Simulator
from guard.store import STORED_ENTRIES, OutboxRow, Store
from tests.factories import guard_for, notebook

pytestmark = pytest.mark.usefixtures("aws_env")

STOP_IDLE = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"}
NEVER = "0 9 1 1 *"  # a digest cron that does not fire during a test


def hourly(instance_type: str) -> Decimal:
    price = PriceBook().price(instance_type, "us-east-1", "Notebook").usd_per_hour
    assert price is not None
    return price


def test_digest_shows_spend_by_owner_and_team_idle_spenders_and_savings(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    # Monday 2026-11-23 09:00 UTC. Both run from before the guard's first look.
    an_hour_ago = clock.now() - timedelta(hours=1)
    ada = {"owner": "ada@example.com", "team": "vision"}
    sim.add_notebook("gpu-idle", "ml.g5.xlarge", tags=ada, in_service_since=an_hour_ago)
    sim.add_notebook("cpu-busy", "ml.m5.xlarge", tags={"team": "nlp"}, in_service_since=an_hour_ago)
    guard = guard_for(clock, db_url, [STOP_IDLE], mode="enforce", pricing={"source": "bundled"})
    for _ in range(12):  # one hour of 5-minute cycles; cpu-busy is in use throughout
        sim.jupyter_activity("cpu-busy", clock.now())
        run_cycle(guard)
        clock.advance(timedelta(minutes=5))
    # gpu-idle has been idle for 2 h by now: the rule stops it (grace 0s)
    sim.jupyter_activity("cpu-busy", clock.now())
    report = run_cycle(guard)
    assert [(a["name"], a["outcome"]) for a in report["actions"]] == [("gpu-idle", "done")]
    stopped_at = clock.now()

    clock.advance(timedelta(hours=3))
    sim.jupyter_activity("cpu-busy", clock.now())
    run_cycle(guard)
    d = digest.build(guard.cfg, guard.store, clock.now())

    hour_gpu, hour_cpu = hourly("ml.g5.xlarge"), hourly("ml.m5.xlarge")
    # gpu-idle accrued one observed hour; cpu-busy one hour, then 3 h unobserved (> max_gap)
    assert Decimal(d["month_to_date_usd"]) == (hour_gpu + hour_cpu).quantize(Decimal("0.01"))
    assert d["by_owner"][0] == {"name": "ada@example.com", "month_to_date_usd": f"{hour_gpu:.2f}"}
    assert {t["name"] for t in d["by_team"]} == {"vision", "nlp"}
    assert d["top_idle"] == []  # the idle one is stopped; the busy one is busy
    # saved: gpu-idle's $/h for the 3 h since it was stopped
    assert Decimal(d["saved"]["month_to_date_usd"]) == (hour_gpu * 3).quantize(Decimal("0.01"))
    assert d["saved"]["still_off"] == 1

    sim.settle()
    sim.start_notebook("gpu-idle")  # its owner needed it again: the saving stops growing
    back = clock.now()
    clock.advance(timedelta(hours=1))  # (2 h would make it idle enough to stop again)
    run_cycle(guard)
    saved = digest.build(guard.cfg, guard.store, clock.now())["saved"]
    assert saved["still_off"] == 0
    # saved until it was seen running again, an hour after it started
    hours = Decimal(int((back + timedelta(hours=1) - stopped_at).total_seconds())) / 3600
    assert abs(Decimal(saved["month_to_date_usd"]) - hour_gpu * hours) <= Decimal("0.01")

    items = {i["name"]: i for i in inventory_for(guard.store, guard.cfg, clock.now(), True)}
    assert Decimal(items["gpu-idle"]["accrued_today_usd"]) == (hour_gpu * 2).quantize(
        Decimal("0.01")
    )  # the observed hour before the stop, and the hour since its restart
    assert items["cpu-busy"]["accrued_month_usd"] == items["cpu-busy"]["accrued_today_usd"]
    guard.store.close()


def test_digest_is_queued_once_per_cron_fire(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    sim.add_notebook("nb", in_service_since=clock.now() - timedelta(hours=1))
    # the default cron: weekdays 09:00 in the configured timezone (UTC); clock: Mon 09:00
    guard = guard_for(clock, db_url, [], pricing={"source": "bundled"})
    clock.advance(timedelta(hours=-2))
    for _ in range(6):  # 07:00 .. 11:10, every 50 min: the 09:00 fire is seen once
        run_cycle(guard)
        clock.advance(timedelta(minutes=50))
    with guard.store.session() as s:
        keys = list(s.scalars(select(OutboxRow.key).where(OutboxRow.key.startswith("digest:"))))
    assert keys == ["digest:2026-11-23T09:00:00+00:00"]
    guard.store.close()


def test_nothing_is_due_before_the_first_fire(clock: ManualClock) -> None:
    from guard.config import Config

    cfg = Config.model_validate({"slack": {"digest": "0 9 * * MON-FRI"}})
    sunday = clock.now() - timedelta(days=1)
    assert digest.due(cfg, sunday) is None  # Friday's fire is more than a day old
    assert digest.due(cfg, clock.now() + timedelta(minutes=1)) == clock.now()


def test_digest_lists_actions_since_the_last_digest_unowned_and_blind_spots(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    # Monday 09:00 UTC: the first digest goes out with the second cycle (the first one on a
    # new database has no spend to report).
    ago = clock.now() - timedelta(hours=5)
    sim.add_notebook("ada-idle", "ml.g5.xlarge", tags={"owner": "ada@example.com"},
                     in_service_since=ago)  # fmt: skip
    sim.add_notebook("nobodys", "ml.m5.xlarge", in_service_since=ago)
    sim.jupyter_activity("nobodys", clock.now())
    sim.fail("sagemaker:ListNotebookInstances", region="eu-west-1")
    guard = guard_for(
        clock, db_url, [STOP_IDLE | {"grace": "30m"}], mode="enforce",
        pricing={"source": "bundled"}, regions=["us-east-1", "eu-west-1"],
    )  # fmt: skip
    run_cycle(guard)  # warns about ada-idle; a new database defers the digest
    assert not guard.store.queued("digest:2026-11-23T09:00:00+00:00")
    clock.advance(timedelta(minutes=5))
    run_cycle(guard)  # the next cycle sends Monday's digest
    assert guard.store.queued("digest:2026-11-23T09:00:00+00:00")
    clock.advance(timedelta(minutes=30))
    sim.jupyter_activity("nobodys", clock.now())
    assert [a["name"] for a in run_cycle(guard)["actions"]] == ["ada-idle"]

    clock.advance(timedelta(days=1) - timedelta(minutes=35))  # Tuesday 09:00
    sim.jupyter_activity("nobodys", clock.now())
    run_cycle(guard)
    with guard.store.session() as s:
        tuesday = s.scalars(
            select(OutboxRow).where(OutboxRow.key == "digest:2026-11-24T09:00:00+00:00")
        ).one()
    d = digest.build(guard.cfg, guard.store, clock.now() - timedelta(seconds=1))
    # The stop came after Monday's digest: Tuesday's reports it (and not the warning).
    assert [(a["name"], a["action"], a["outcome"]) for a in d["actions"]] == [
        ("ada-idle", "stop", "done")
    ]
    assert d["unowned"]["running"] == 1 and d["unowned"]["resources"][0]["name"] == "nobodys"
    assert d["running_by_owner"] == [
        {"name": "(no owner)", "usd_per_hour": "0.2300", "unpriced": 0}
    ]
    assert any("eu-west-1" in e and "AccessDenied" in e for e in d["scan_errors"])
    plain = tuesday.payload["plain"]
    for expected in (
        "Running now by owner: (no owner) $0.23/h",
        "Unowned (no owner tag): 1 running, $0.23/h: notebook/nobodys",
        "Since the last digest: stop done 1",
        "• stop notebook/ada-idle: done (rule idle)",
        "Cannot see: ",
    ):
        assert expected in plain, expected
    fields = tuesday.payload["blocks"][1]["fields"]
    assert [f["text"].split("\n")[0] for f in fields] == [
        "*Running now*", "*Month to date*", "*Unowned*", "*Saved this month*",
    ]  # fmt: skip
    guard.store.close()


def test_thousands_of_actions_are_counted_and_five_named(
    clock: ManualClock, sqlite_store: Store
) -> None:
    """A first dry-run cycle over a big fleet records thousands of would-stops: the digest
    counts them all (in the database) and names the latest five, and the stored cycle report
    keeps the first `STORED_ENTRIES` with the total."""
    now = clock.now()
    for i in range(2_400):
        sqlite_store.record_action(
            notebook(now, f"nb-{i:04d}"), rule_id="idle", episode_id=None,
            action="warn" if i % 2 else ("stop" if i % 3 else "delete"), mode="dry-run",
            outcome="warned" if i % 2 else "dry-run", detail="", now=now,
        )  # fmt: skip
    cfg = Config.model_validate({})
    d = digest.build(cfg, sqlite_store, now + timedelta(hours=1))
    assert d["action_counts"] == {"delete dry-run": 400, "stop dry-run": 800}
    assert d["actions_total"] == 1_200
    assert [a["name"] for a in d["actions"]] == [f"nb-{i:04d}" for i in range(2390, 2400, 2)]
    _, lines = digest.text(d)
    assert "Since the last digest: delete dry-run 400; stop dry-run 800 (the latest 5:)" in lines
    assert "• stop notebook/nb-2398: dry-run (rule idle)" in lines

    entry = {"arn": "arn", "kind": "notebook", "name": "nb", "rule": "idle", "reason": "idle"}
    report = {
        "started_at": now.isoformat(), "finished_at": now.isoformat(),
        "warned": [entry] * (STORED_ENTRIES + 1), "actions": [entry] * 3, "resolved": [],
    }  # fmt: skip
    sqlite_store.save_cycle(report, "dry-run")
    stored = sqlite_store.last_cycle()
    assert stored is not None
    assert len(stored["warned"]) == STORED_ENTRIES and stored["warned_total"] == STORED_ENTRIES + 1
    assert len(stored["actions"]) == 3 and "actions_total" not in stored


@pytest.mark.parametrize("weekdays", ["1-5", "MON-FRI", "mon-fri"])
def test_digest_cron_counts_weekdays_from_sunday(clock: ManualClock, weekdays: str) -> None:
    from guard.config import Config
    from guard.daemon import Daemon

    # Monday 2026-11-23 09:00 UTC: `0 9 * * 1-5` fired now (0 = Monday would say Tuesday).
    cfg = Config.model_validate({"slack": {"digest": f"0 9 * * {weekdays}"}})
    assert digest.due(cfg, clock.now() + timedelta(minutes=1)) == clock.now()
    saturday = clock.now() + timedelta(days=5, hours=1)
    assert digest.due(cfg, saturday) is None  # Friday's fire is more than a day old
    # The daemon's digest job fires on the same days (its jobs only read cfg and clock).
    daemon = Daemon(cast(Guard, SimpleNamespace(cfg=cfg, clock=clock)))
    trigger = daemon.scheduler.get_job("digest").trigger
    fire = trigger.get_next_fire_time(None, saturday)
    assert fire == clock.now() + timedelta(days=7)  # the next Monday, not Saturday or Tuesday


def test_unknown_prices_are_counted_never_summed_as_zero(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from guard.metrics import GuardCollector

    # The bundled table has no BatchTransform prices: both jobs' prices are unknown.
    sim.add_notebook("nb", "ml.m5.xlarge", tags={"owner": "ada"}, in_service_since=clock.now())
    sim.add_transform_job("scoring", "ml.m5.xlarge", 2, started_at=clock.now())
    sim.add_transform_job("batch", "ml.m5.xlarge", 1, started_at=clock.now())
    guard = guard_for(clock, db_url, [], pricing={"source": "bundled"}, slack={"digest": NEVER})
    run_cycle(guard)
    d = digest.build(guard.cfg, guard.store, clock.now())

    assert d["running"] == 3 and d["unpriced_running"] == 2
    assert Decimal(d["usd_per_hour"]) == hourly("ml.m5.xlarge")  # the known price only
    assert d["by_kind"]["transform_job"]["unpriced"] == 2
    assert d["by_kind"]["notebook"]["unpriced"] == 0
    assert d["unowned"]["unpriced"] == 2
    assert {o["name"]: o["unpriced"] for o in d["running_by_owner"]} == {"ada": 0, "(no owner)": 2}
    title, lines = digest.text(d)
    shown = "\n".join([title, *lines, *(v for _, v in digest.fields(d))])
    assert "$0.00/h" not in shown and "$0/h" not in shown
    assert "$0.23/h + unknown for 2 resources" in title
    assert "transform_job 2 running unknown $/h (2 resources without a price)" in shown
    assert "(no owner) unknown $/h (2 resources without a price)" in shown

    registry = CollectorRegistry()
    registry.register(GuardCollector(guard.store))
    scrape = generate_latest(registry).decode()
    assert 'cost_guard_unpriced_resources{account="123456789012",kind="transform_job"' in scrape
    assert 'cost_guard_usd_per_hour{account="123456789012",kind="transform_job"' not in scrape
    assert 'cost_guard_usd_per_hour{account="123456789012",kind="notebook"' in scrape
    assert "known price" in scrape  # the help text says what the $ gauge sums
    guard.store.close()
