"""`cost-guard demo`: a simulated SageMaker account walked through one evening.

Everything is local: moto's server on 127.0.0.1 (the simulator), SQLite in a temporary
directory, Slack messages rendered in the terminal. Nothing real is touched, so the demo
runs in enforce mode to show real stops and deletes — of simulated resources — and the way
back (`restore endpoint`) the next morning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule as Divider

from guard import accrual, digest
from guard.config import Config, Secrets
from guard.cycle import Guard, run_cycle
from guard.endpoint_actions import restore_endpoint
from guard.interactions import snooze
from guard.kinds import KINDS
from guard.model import ActivitySource, ManualClock, Resource
from guard.pricing import PriceBook
from guard.reports import (
    audit_entries,
    audit_table,
    finding_text,
    inventory_for,
    inventory_table,
)
from guard.rules import clock_time
from guard.sim import ACCOUNT_ID, Simulator
from guard.wiring import build_guard

START = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # a Monday, 16:00
END = START + timedelta(hours=5)
STEP = timedelta(minutes=10)

RULES: list[dict[str, object]] = [
    {
        "id": "idle-notebooks",
        "kind": "notebook",
        "idle_for": "2h",
        "action": "stop",
        "grace": "30m",
    },
    {
        "id": "notebooks-overnight",
        "kind": "notebook",
        "schedule": "0 20 * * MON-FRI",
        "action": "stop",
        "grace": "15m",
    },
    {"id": "big-gpu-notebooks", "kind": "notebook", "cost_per_hour_over": 1, "action": "notify"},
    {
        "id": "idle-endpoints",
        "kind": "endpoint",
        "idle_for": "24h",
        "action": "delete",
        "grace": "30m",
    },
    {
        "id": "stalled-training",
        "kind": "training_job",
        "action": "stop",
        "grace": "15m",
        "utilization_below": {"gpu": 5, "for": "1h"},
    },
    {
        "id": "idle-studio-apps",
        "kind": "studio_app",
        "idle_for": "3h",
        "action": "delete",
        "grace": "30m",
    },
]


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The story is told in the panels: the guard's INFO lines are off while it runs, and back
    as they were after (a process that goes on, like a test worker, keeps its logging)."""
    logger = logging.getLogger("guard")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _isolated_environment() -> Iterator[None]:
    """The demo ignores the caller's Slack secrets and COST_GUARD_* settings: it is a sandbox."""
    hidden = {
        k: v for k, v in os.environ.items() if k.startswith(("COST_GUARD_", "SLACK_", "AWS_"))
    }
    for key in hidden:
        del os.environ[key]
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    try:
        yield
    finally:
        os.environ.pop("AWS_DEFAULT_REGION", None)
        os.environ.update(hidden)


def run_demo(
    console: Console,
    pause: float = 1.0,
    keep_db: Path | None = None,
    *,
    web: int | None = None,
    until: threading.Event | None = None,
) -> None:
    """The month before, the evening, then the next morning. `keep_db`: the SQLite file to
    leave behind (to try `inventory`, `audit`, `digest` on), instead of a temporary one.
    `web`: then serve the web console on 127.0.0.1 at this port (0: any free one) with the
    simulated account still up, until `until` is set (Ctrl-C)."""
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=120)  # logs and CI: wide enough for the tables
    clock = ManualClock(START)
    with (
        _quiet_logs(),
        _isolated_environment(),
        tempfile.TemporaryDirectory() as tmp,
        Simulator(clock) as sim,
        sim.environment(),
    ):
        cfg = Config.model_validate(
            {
                "mode": "enforce",
                "database_url": f"sqlite:///{keep_db or Path(tmp) / 'cost-guard.db'}",
                "rules": RULES,
                # no thresholds: a line on the console's Spend chart, no messages
                "budgets": [{"id": "ml-month", "period": "month", "limit_usd": 3000}],
                "secrets": Secrets(),
            }
        )
        ken_app = _seed(sim, clock)
        guard = build_guard(cfg, clock, notifier_echo=lambda text: _slack(console, clock, text))
        seed_history(guard, ACCOUNT_ID, START)
        console.print(Divider("cost-guard demo"))
        console.print(
            "A simulated SageMaker account (moto on 127.0.0.1) with five notebook instances, "
            "two endpoints, two training jobs and two Studio apps, watched from Monday 16:00 "
            "to 21:00 UTC in 10-minute cycles.\n"
            "Rules: stop notebooks idle for 2 h (30 min grace) and at 20:00 on weekdays "
            "(15 min grace); flag notebooks over $1/h; delete endpoints without an invocation "
            "for 24 h and Studio apps idle for 3 h (30 min grace); stop training jobs whose GPUs "
            "stayed under 5 % for an hour (15 min grace).\n"
            "[bold]Mode: enforce[/bold] — safe here, every AWS call goes to the simulator.\n",
            highlight=False,
        )
        step, reports = 0, []
        while clock.now() <= END:
            _script(sim, guard, clock, console, step, ken_app)
            reports.append(run_cycle(guard))
            if step == 0:
                _inventory(console, guard, cfg, clock)
            sim.settle()  # a stop takes a few minutes on AWS; by the next cycle it is done
            clock.advance(STEP)
            step += 1
            if pause:
                time.sleep(0.15 * pause)
        clock.set(END)
        _finale(console, guard, cfg, clock, reports)
        _next_morning(console, sim, guard, clock)
        if web is not None:
            _serve_console(console, guard, web, until or threading.Event())
        guard.store.close()
    if keep_db is not None:
        console.print(
            f"The demo's database is kept at {keep_db}: try "
            f"`COST_GUARD_DATABASE_URL=sqlite:///{keep_db} cost-guard inventory` (or audit, "
            "findings, digest).",
            highlight=False,
        )
    if web is None:
        console.print(
            "See it in the web console: `cost-guard demo --console` (it keeps running until "
            "Ctrl-C and prints the URL).",
            highlight=False,
        )


def _serve_console(console: Console, guard: Guard, port: int, until: threading.Event) -> None:
    """The console over the demo's database, the simulated account still up, until `until`."""
    from guard.server import Server

    try:
        server = Server(guard, host="127.0.0.1", port=port).start()
    except OSError as exc:  # the port is taken: any free one will do
        console.print(f"port {port} is not free ({exc.strerror}); using another", highlight=False)
        server = Server(guard, host="127.0.0.1", port=0).start()
    console.print(Divider("the web console"))
    console.print(
        f"Web console: {server.url}/  (Now, Spend, Budgets, Findings, Audit; a month of "
        "simulated history). Press Ctrl-C to stop.",
        highlight=False,
    )
    try:
        while not until.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# --- a month of history ---------------------------------------------------------------
#
# moto cannot replay the past, so the month before the evening is written straight into the
# guard's database through the same Store calls a cycle makes (hourly snapshots, accrued by
# guard/accrual.py, and the audit rows of the guard's stops): the console's charts, the
# digest and `budget` then have a month to show. Everything in it is simulated.

HISTORY_DAYS = 30
_TEAMS = {"alice": "research", "bob": "research", "carol": "platform", "dave": "vision",
          "erin": "research", "frank": "growth", "grace": "search", "heidi": "llm",
          "ivan": "vision", "judy": "research", "ken": "platform"}  # fmt: skip
OTHER_ACCOUNT = "210987654321"  # a second (simulated) account, seen only in the history

# name, kind, instance type, count, owner, region, account, when it ran
_HISTORY: list[tuple[str, str, str, int, str, str, str | None, str]] = [
    ("alice-idle", "notebook", "ml.m5.xlarge", 1, "alice", "us-east-1", None, "workdays"),
    ("bob-busy", "notebook", "ml.t3.medium", 1, "bob", "us-east-1", None, "workdays"),
    ("carol-exempt", "notebook", "ml.m5.4xlarge", 1, "carol", "us-east-1", None, "always"),
    ("erin-snoozed", "notebook", "ml.m5.xlarge", 1, "erin", "us-east-1", None, "late"),
    ("churn-model-staging", "endpoint", "ml.m5.xlarge", 2, "frank", "us-east-1", None,
     "always"),
    ("search-ranker", "endpoint", "ml.g5.xlarge", 1, "grace", "us-east-1", None, "always"),
    # gone before the evening: a GPU notebook left on over two weekends until the guard
    # stopped it, and a nightly retraining endpoint in another account and region
    ("vision-sweep-gpu", "notebook", "ml.g5.xlarge", 1, "dave", "ap-south-1", None,
     "forgotten"),
    ("recs-batch", "endpoint", "ml.m5.2xlarge", 1, "ivan", "us-east-1", OTHER_ACCOUNT,
     "nights"),
]  # fmt: skip
_PATHS = {"notebook": "notebook-instance", "endpoint": "endpoint"}
_EXEMPT = {"carol-exempt"}  # tagged exempt all month, as in the evening (`_seed`)


def _tags(owner: str) -> dict[str, str]:
    return {"owner": f"{owner}@example.com", "team": _TEAMS[owner]}


def _runs(pattern: str, at: datetime, begin: datetime) -> bool:
    """Was a resource with this pattern running at `at` (UTC)? `begin`: the history's start."""
    weekday, hour, day = at.weekday(), at.hour, (at - begin).days
    if pattern == "always":
        return True
    if pattern == "workdays":
        return weekday < 5 and 8 <= hour < 18
    if pattern == "late":  # long days, and left on over one weekend
        return (weekday < 5 and 9 <= hour < 22) or 12 <= day < 15
    if pattern == "nights":
        return hour < 5 and day < HISTORY_DAYS - 2
    if pattern == "forgotten":  # started on day 3, stopped by the guard on day 19
        return 3 <= day < 19
    return False


def seed_history(guard: Guard, account: str, until: datetime, days: int = HISTORY_DAYS) -> None:
    """Write `days` of simulated hourly snapshots, ending just before `until`, with the
    guard's stops of the forgotten GPU notebook (and their audit rows)."""
    store = guard.store
    prices = PriceBook()
    begin = (until - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    policy = accrual.Policy(tz=guard.cfg.tz, max_gap=timedelta(hours=2))
    fleet = []
    for name, kind, itype, count, owner, region, acct, pattern in _HISTORY:
        acct = acct or account
        arn = f"arn:aws:sagemaker:{region}:{acct}:{_PATHS[kind]}/{name}"
        component = KINDS[kind].price_component
        unit = prices.price(itype, region, component).usd_per_hour
        fleet.append((arn, name, kind, itype, count, owner, region, acct, pattern,
                      None if unit is None else unit * count))  # fmt: skip
    started: dict[str, datetime] = {}
    stopped: dict[str, datetime] = {}
    scanned = {(acct, region, kind) for _, _, kind, *_, region, acct, _, _ in fleet}
    exempt = {guard.cfg.tags.exempt: "true"}
    at = begin
    with store.batch():
        while at < until - STEP:
            seen = []
            for arn, name, kind, itype, count, owner, region, acct, pattern, usd in fleet:
                running = _runs(pattern, at, begin)
                if running and arn not in started:
                    started[arn] = at
                    stopped.pop(arn, None)
                if not running and arn in started:
                    del started[arn]
                    stopped[arn] = at
                if not running and kind == "endpoint":
                    continue  # a deleted endpoint is gone; recreated when it runs again
                seen.append(Resource(
                    arn=arn, kind=kind, name=name, account=acct, region=region,
                    status="InService" if running else "Stopped", running=running,
                    instance_type=itype, instance_count=count if running else 0,
                    usd_per_hour=usd if running else None,
                    price_source="bundled" if running else "none",
                    created_at=begin, running_since=started.get(arn),
                    last_activity=at - timedelta(minutes=20) if running else None,
                    activity_source=ActivitySource.JUPYTER_LOG if kind == "notebook"
                    else ActivitySource.INVOCATIONS,
                    tags=_tags(owner) | exempt if name in _EXEMPT else _tags(owner),
                    stopped_since=stopped.get(arn),
                ))  # fmt: skip
            store.save_snapshot(seen, scanned, at, policy)
            at += timedelta(hours=1)
    # the guard's own stops in that month: the forgotten GPU notebook, after a warning
    for arn, *_, pattern, usd in fleet:
        if pattern != "forgotten":
            continue
        res = store.resource(arn)
        if res is None:
            continue
        off = begin + timedelta(days=19)
        warned = off - timedelta(minutes=30)
        for when, action, outcome, detail in (
            (warned, "warn", "warned", "idle for 26h; stop in 30m unless someone clicks Keep"),
            (off, "stop", "done", "stopped (idle-notebooks); the notebook's volume is kept"),
        ):
            shown = dataclasses.replace(res, usd_per_hour=usd, running=True)
            store.record_action(shown, rule_id="idle-notebooks", episode_id=None,
                                action=action, mode="enforce", outcome=outcome,
                                detail=detail, now=when)  # fmt: skip


def _seed(sim: Simulator, clock: ManualClock) -> str:
    """Create the evening's resources; returns Ken's Studio app (he keeps working)."""
    now = clock.now()
    sim.add_notebook("alice-idle", "ml.m5.xlarge", tags=_tags("alice"),
                     in_service_since=now - timedelta(hours=7))  # fmt: skip
    sim.jupyter_activity("alice-idle", now - timedelta(hours=2, minutes=20))
    sim.add_notebook("bob-busy", "ml.t3.medium", tags=_tags("bob"),
                     in_service_since=now - timedelta(hours=3))  # fmt: skip
    sim.add_notebook("carol-exempt", "ml.m5.4xlarge",
                     tags={**_tags("carol"), "cost-guard:exempt": "true"},
                     in_service_since=now - timedelta(days=2))  # fmt: skip
    sim.add_notebook("dave-gpu", "ml.g5.xlarge", tags=_tags("dave"),
                     in_service_since=now - timedelta(hours=1))  # fmt: skip
    sim.add_notebook("erin-snoozed", "ml.m5.xlarge", tags=_tags("erin"),
                     in_service_since=now - timedelta(hours=6))  # fmt: skip
    sim.jupyter_activity("erin-snoozed", now - timedelta(hours=3))
    # Endpoints: a staging model nobody has called since Saturday, and a busy one.
    sim.add_endpoint("churn-model-staging", "ml.m5.xlarge", 2, tags=_tags("frank"),
                     created_at=now - timedelta(days=2))  # fmt: skip
    sim.add_endpoint("search-ranker", "ml.g5.xlarge", tags=_tags("grace"),
                     created_at=now - timedelta(days=9))  # fmt: skip
    # Training: a fine-tune whose data loader hung 90 minutes ago (GPUs idle), and a healthy one.
    sim.add_training_job("llm-finetune", "ml.g5.12xlarge", 2, tags=_tags("heidi"),
                         started_at=now - timedelta(hours=5))  # fmt: skip
    sim.add_training_job("resnet-sweep", "ml.g5.2xlarge", tags=_tags("ivan"),
                         started_at=now - timedelta(hours=2))  # fmt: skip
    _gpu(sim, now - timedelta(hours=2), now)
    # Studio: a domain without built-in idle shutdown; Judy left JupyterLab open at lunch.
    domain = sim.add_domain("ml-studio")
    for user in ("judy", "ken"):
        sim.add_user_profile(domain, user, tags=_tags(user))
        sim.add_space(domain, f"{user}-space", owner=user)
    sim.add_app(domain, space="judy-space", instance_type="ml.g5.xlarge",
                created_at=now - timedelta(hours=4))  # fmt: skip
    return sim.add_app(domain, space="ken-space", instance_type="ml.t3.medium",
                       created_at=now - timedelta(hours=6))  # fmt: skip


def _gpu(sim: Simulator, since: datetime, until: datetime) -> None:
    """GPU utilization per host, once a minute: llm-finetune hung at 14:30, resnet is busy."""
    minutes = int((until - since).total_seconds() // 60)
    times = [since + timedelta(minutes=m) for m in range(minutes)]
    hung = START - timedelta(minutes=90)
    for host in ("algo-1", "algo-2"):
        sim.gpu_utilization(
            "llm-finetune", [(t, 1.0 if t >= hung else 93.0) for t in times], host=host
        )
    sim.gpu_utilization("resnet-sweep", [(t, 85.0) for t in times])


def _script(
    sim: Simulator, guard: Guard, clock: ManualClock, console: Console, step: int, ken_app: str
) -> None:
    """What the people in the story do: Bob and Dave keep working, Erin asks for time."""
    now = clock.now()
    if now < START + timedelta(hours=3, minutes=45):
        sim.jupyter_activity("bob-busy", now - timedelta(minutes=3))
        sim.jupyter_activity("dave-gpu", now - timedelta(minutes=1))
    sim.invocations("search-ranker", [now - timedelta(minutes=m) for m in (2, 6)])
    sim.set_app_tags(ken_app, {"cost-guard:last-activity": now.isoformat()})
    if step:
        _gpu(sim, now - STEP, now)
    if step == 2:
        erin = guard.store.resource_by_name("notebook", "erin-snoozed")
        if erin:
            console.print(
                f"[bold]{clock_time(now, guard.cfg.tz)}[/bold] erin runs "
                "`cost-guard snooze notebook/erin-snoozed --for 4h`",
                highlight=False,
            )
            snooze(guard, erin, timedelta(hours=4), by="erin (cli)", reason="training finishing")


def _slack(console: Console, clock: ManualClock, text: str) -> None:
    title = f"Slack message · {clock_time(clock.now(), ZoneInfo('UTC'))}"
    if "\n" in text:
        console.print(Panel(text, title=title, title_align="left", width=110), highlight=False)
    else:
        console.print(f"[dim]{title}[/dim] {text}", highlight=False)


def _inventory(console: Console, guard: Guard, cfg: Config, clock: ManualClock) -> None:
    now = clock.now()
    items = inventory_for(guard.store, cfg, now)
    console.print(inventory_table(items, cfg, now, console.width))


def _finale(
    console: Console, guard: Guard, cfg: Config, clock: ManualClock, reports: list[dict[str, Any]]
) -> None:
    now = clock.now()
    console.print(Divider("21:00 — the end of the evening"))
    items = inventory_for(guard.store, cfg, now)
    console.print(inventory_table(items, cfg, now, console.width))
    entries = audit_entries(guard.store.audit(START - timedelta(days=1)))
    console.print(audit_table([e for e in entries if e["action"] != "warn"], cfg, console.width))
    done = [a for r in reports for a in r["actions"] if a["outcome"] == "done"]
    saved = sum((Decimal(a["usd_per_hour"] or 0) for a in done), Decimal(0))
    names = ", ".join(f"{a['kind']} {a['name']}" for a in done)
    console.print(
        f"Stopped or deleted {len(done)} resources ({names}): "
        f"[bold green]${saved:.2f}/h[/bold green] no longer billing — about "
        f"${saved * 12:.2f} by 9:00 tomorrow.\n"
        "carol-exempt kept running (tagged cost-guard:exempt=true); every step is in the audit "
        "trail above.",
        highlight=False,
    )
    for finding in (reports[-1].get("findings") or [])[:1]:
        console.print(f"[yellow]Finding[/yellow]: {finding_text(finding)}", highlight=False)


def _next_morning(console: Console, sim: Simulator, guard: Guard, clock: ManualClock) -> None:
    """Frank needs his staging endpoint back: `cost-guard restore endpoint` recreates it."""
    clock.set(START + timedelta(hours=17))  # Tuesday 09:00
    sim.set_endpoint_create_delay(timedelta(minutes=7))  # creating an endpoint takes minutes
    console.print(Divider("Tuesday 09:00 — the morning digest"))
    title, lines = digest.text(digest.build(guard.cfg, guard.store, clock.now()))
    _slack(console, clock, "\n".join([title, *lines]))
    console.print(Divider("Tuesday 09:00 — the way back"))
    console.print("frank runs `cost-guard restore endpoint churn-model-staging`", highlight=False)
    restored = restore_endpoint(
        guard.store,
        lambda account, region: sim.client("sagemaker", region),
        "churn-model-staging",
        clock=clock,
        sleep=lambda seconds: _advance(clock, seconds),
    )
    when = clock_time(restored.in_service_at, guard.cfg.tz) if restored.in_service_at else "-"
    # churn-model-staging is a real-time endpoint, deleted: recreated from its kept config
    console.print(
        f"{restored.recreated(f'{restored.account} {restored.region}')} (kept when it was "
        f"deleted): {restored.message} at {when}.\n"
        "Try it on your account: see the README (dry-run is the default).",
        highlight=False,
    )


def _advance(clock: ManualClock, seconds: float) -> None:
    clock.advance(timedelta(seconds=seconds))  # the restore's wait, in simulated time
