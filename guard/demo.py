"""`cost-guard demo`: a simulated SageMaker account walked through one evening.

Everything is local: moto's server on 127.0.0.1 (the simulator), SQLite in a temporary
directory, Slack messages rendered in the terminal. Nothing real is touched, so the demo
runs in enforce mode to show real stops and deletes — of simulated resources — and the way
back (`restore endpoint`) the next morning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
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

from guard import digest
from guard.config import Config, Secrets
from guard.cycle import Guard, run_cycle
from guard.endpoint_actions import restore_endpoint
from guard.interactions import snooze
from guard.model import ManualClock
from guard.reports import (
    audit_entries,
    audit_table,
    finding_text,
    inventory_for,
    inventory_table,
)
from guard.rules import clock_time
from guard.sim import Simulator
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


def run_demo(console: Console, pause: float = 1.0, keep_db: Path | None = None) -> None:
    """The evening, then the next morning. `keep_db`: the SQLite file to leave behind (to try
    `inventory`, `audit`, `digest` on), instead of a temporary one."""
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=120)  # logs and CI: wide enough for the tables
    logging.getLogger("guard").setLevel(logging.WARNING)  # the story is told in the panels
    clock = ManualClock(START)
    with (
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
                "secrets": Secrets(),
            }
        )
        ken_app = _seed(sim, clock)
        guard = build_guard(cfg, clock, notifier_echo=lambda text: _slack(console, clock, text))
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
        guard.store.close()
    if keep_db is not None:
        console.print(
            f"The demo's database is kept at {keep_db}: try "
            f"`COST_GUARD_DATABASE_URL=sqlite:///{keep_db} cost-guard inventory` (or audit, "
            "findings, digest).",
            highlight=False,
        )


def _seed(sim: Simulator, clock: ManualClock) -> str:
    """Create the evening's resources; returns Ken's Studio app (he keeps working)."""
    now = clock.now()
    sim.add_notebook("alice-idle", "ml.m5.xlarge", tags={"owner": "alice@example.com"},
                     in_service_since=now - timedelta(hours=7))  # fmt: skip
    sim.jupyter_activity("alice-idle", now - timedelta(hours=2, minutes=20))
    sim.add_notebook("bob-busy", "ml.t3.medium", tags={"owner": "bob@example.com"},
                     in_service_since=now - timedelta(hours=3))  # fmt: skip
    sim.add_notebook("carol-exempt", "ml.m5.4xlarge",
                     tags={"owner": "carol@example.com", "cost-guard:exempt": "true"},
                     in_service_since=now - timedelta(days=2))  # fmt: skip
    sim.add_notebook("dave-gpu", "ml.g5.xlarge", tags={"owner": "dave@example.com"},
                     in_service_since=now - timedelta(hours=1))  # fmt: skip
    sim.add_notebook("erin-snoozed", "ml.m5.xlarge", tags={"owner": "erin@example.com"},
                     in_service_since=now - timedelta(hours=6))  # fmt: skip
    sim.jupyter_activity("erin-snoozed", now - timedelta(hours=3))
    # Endpoints: a staging model nobody has called since Saturday, and a busy one.
    sim.add_endpoint("churn-model-staging", "ml.m5.xlarge", 2, tags={"owner": "frank@example.com"},
                     created_at=now - timedelta(days=2))  # fmt: skip
    sim.add_endpoint("search-ranker", "ml.g5.xlarge", tags={"owner": "grace@example.com"},
                     created_at=now - timedelta(days=9))  # fmt: skip
    # Training: a fine-tune whose data loader hung 90 minutes ago (GPUs idle), and a healthy one.
    sim.add_training_job("llm-finetune", "ml.g5.12xlarge", 2, tags={"owner": "heidi@example.com"},
                         started_at=now - timedelta(hours=5))  # fmt: skip
    sim.add_training_job("resnet-sweep", "ml.g5.2xlarge", tags={"owner": "ivan@example.com"},
                         started_at=now - timedelta(hours=2))  # fmt: skip
    _gpu(sim, now - timedelta(hours=2), now)
    # Studio: a domain without built-in idle shutdown; Judy left JupyterLab open at lunch.
    domain = sim.add_domain("ml-studio")
    for user in ("judy", "ken"):
        sim.add_user_profile(domain, user, tags={"owner": f"{user}@example.com"})
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
    console.print(
        f"{restored.message}: recreated from endpoint config {restored.config_name} "
        f"(kept when it was deleted), InService at {when}.\n"
        "Try it on your account: see the README (dry-run is the default).",
        highlight=False,
    )


def _advance(clock: ManualClock, seconds: float) -> None:
    clock.advance(timedelta(seconds=seconds))  # the restore's wait, in simulated time
