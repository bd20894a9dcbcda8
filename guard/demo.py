"""`cost-guard demo`: a simulated SageMaker account walked through one evening.

Everything is local: moto's server on 127.0.0.1 (the simulator), SQLite in a temporary
directory, Slack messages rendered in the terminal. Nothing real is touched, so the demo
runs in enforce mode to show real stops — of simulated notebooks.
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
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule as Divider

from guard.config import Config, Secrets
from guard.cycle import Guard, run_cycle
from guard.kinds import KINDS
from guard.model import ManualClock
from guard.reports import audit_entries, audit_table, inventory_items, inventory_table
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


def run_demo(console: Console, pause: float = 1.0) -> None:
    if not console.is_terminal:
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
                "database_url": f"sqlite:///{Path(tmp) / 'cost-guard.db'}",
                "rules": RULES,
                "secrets": Secrets(),
            }
        )
        _seed(sim, clock)
        guard = build_guard(cfg, clock, notifier_echo=lambda text: _slack(console, clock, text))
        console.print(Divider("cost-guard demo"))
        console.print(
            "A simulated SageMaker account (moto on 127.0.0.1) with five notebook instances, "
            "watched from Monday 16:00 to 21:00 UTC in 10-minute cycles.\n"
            "Rules: stop notebooks idle for 2 h (30 min grace), stop everything at 20:00 on "
            "weekdays (15 min grace), and flag notebooks over $1/h.\n"
            "[bold]Mode: enforce[/bold] — safe here, every AWS call goes to the simulator.\n",
            highlight=False,
        )
        step = 0
        while clock.now() <= END:
            _script(sim, guard, clock, console, step)
            run_cycle(guard)
            if step == 0:
                _inventory(console, guard, cfg, clock)
            sim.settle()  # a stop takes a few minutes on AWS; by the next cycle it is done
            clock.advance(STEP)
            step += 1
            if pause:
                time.sleep(0.15 * pause)
        clock.set(END)
        _finale(console, guard, cfg, clock)


def _seed(sim: Simulator, clock: ManualClock) -> None:
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


def _script(sim: Simulator, guard: Guard, clock: ManualClock, console: Console, step: int) -> None:
    """What the people in the story do: Bob and Dave keep working, Erin asks for time."""
    now = clock.now()
    if now < START + timedelta(hours=3, minutes=45):
        sim.jupyter_activity("bob-busy", now - timedelta(minutes=3))
        sim.jupyter_activity("dave-gpu", now - timedelta(minutes=1))
    if step == 2:
        erin = guard.store.resource_by_name("notebook", "erin-snoozed")
        if erin:
            guard.store.snooze(
                erin.arn, now + timedelta(hours=4), "training run finishing", "erin", now
            )
            console.print(
                f"[bold]{clock_time(now, guard.cfg.tz)}[/bold] erin runs "
                "`cost-guard snooze notebook/erin-snoozed --for 4h`",
                highlight=False,
            )


def _slack(console: Console, clock: ManualClock, text: str) -> None:
    title = f"Slack message · {clock_time(clock.now(), ZoneInfo('UTC'))}"
    if "\n" in text:
        console.print(Panel(text, title=title, title_align="left", width=110), highlight=False)
    else:
        console.print(f"[dim]{title}[/dim] {text}", highlight=False)


def _inventory(console: Console, guard: Guard, cfg: Config, clock: ManualClock) -> None:
    now = clock.now()
    items = inventory_items(
        guard.store.resources(), cfg, guard.store.snoozes(now), guard.store.open_episodes(), now
    )
    console.print(inventory_table(items, cfg, now))


def _finale(console: Console, guard: Guard, cfg: Config, clock: ManualClock) -> None:
    now = clock.now()
    console.print(Divider("21:00 — the end of the evening"))
    resources = guard.store.resources()
    items = inventory_items(
        resources, cfg, guard.store.snoozes(now), guard.store.open_episodes(), now
    )
    console.print(inventory_table(items, cfg, now))
    entries = audit_entries(guard.store.audit(START - timedelta(days=1)))
    console.print(audit_table([e for e in entries if e["action"] != "warn"], cfg))
    stopped = {e["name"] for e in entries if e["action"] == "stop" and e["outcome"] == "done"}
    prices = guard.prices
    saved = sum(
        (
            prices.price(r.instance_type, r.region, KINDS[r.kind].price_component).usd_per_hour
            or Decimal(0)
        )
        for r in resources
        if r.name in stopped
    )
    console.print(
        f"Stopped {len(stopped)} notebooks ({', '.join(sorted(stopped))}): "
        f"[bold green]${saved:.2f}/h[/bold green] no longer billing — about "
        f"${saved * 13:.2f} by 9:00 tomorrow.\n"
        "carol-exempt kept running (tagged cost-guard:exempt=true); every step is in the audit "
        "trail above. Try it on your account: see the README (dry-run is the default).",
        highlight=False,
    )
