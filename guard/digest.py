"""The daily money digest: what runs now, what it cost, who spent it, what sits idle, and
what cost-guard saved. Sent on the `slack.digest` cron; `cost-guard digest` prints it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from guard.config import Config
from guard.kinds import KINDS
from guard.reports import dollars, money
from guard.rules import human, owner_of
from guard.store import Store

TOP_IDLE = 5
IDLE_AFTER = timedelta(hours=1)  # idle this long to count among the "top idle spenders"
UNOWNED, NO_TEAM = "(no owner)", "(no team)"


def due(cfg: Config, now: datetime) -> datetime | None:
    """The digest cron's latest fire time in the last day, if any (None: nothing due)."""
    trigger = CronTrigger.from_crontab(cfg.slack.digest, timezone=cfg.tz)
    latest, fire = None, trigger.get_next_fire_time(None, now - timedelta(days=1))
    while fire is not None and fire <= now:
        latest, fire = fire, trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest


def build(cfg: Config, store: Store, now: datetime) -> dict[str, Any]:
    """The digest as JSON-able data (money as decimal strings)."""
    today = now.astimezone(cfg.tz).date()
    month_start = today.replace(day=1)
    everything = {r.arn: r for r in store.resources(include_gone=True)}
    running = [r for r in everything.values() if r.running]
    month = {arn: x.usd for arn, x in store.spent(month_start, today + timedelta(days=1)).items()}
    yesterday = {arn: x.usd for arn, x in store.spent(today - timedelta(days=1), today).items()}

    by_kind: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"running": 0, "usd_per_hour": Decimal(0), "month_to_date_usd": Decimal(0)}
    )
    for res in running:
        by_kind[res.kind]["running"] += 1
        by_kind[res.kind]["usd_per_hour"] += res.usd_per_hour or 0
    by_owner: dict[str, Decimal] = defaultdict(Decimal)
    by_team: dict[str, Decimal] = defaultdict(Decimal)
    for arn, usd in month.items():
        spender = everything.get(arn)  # None: pruned after it was gone for the retention
        by_kind[spender.kind if spender else "(pruned)"]["month_to_date_usd"] += usd
        by_owner[(owner_of(spender, cfg) if spender else "") or UNOWNED] += usd
        by_team[(spender.tags.get(cfg.tags.team) if spender else None) or NO_TEAM] += usd

    idle = sorted(
        (
            r
            for r in running
            if KINDS[r.kind].idles and (r.idle_for(now) or timedelta(0)) >= IDLE_AFTER
        ),
        key=lambda r: r.usd_per_hour or Decimal(0),
        reverse=True,
    )[:TOP_IDLE]
    month_began = datetime.combine(month_start, time(), cfg.tz)
    savings = store.savings(now)
    saved = sum((s.usd(month_began) or Decimal(0) for s in savings), Decimal(0))
    return {
        "at": now.isoformat(),
        "running": len(running),
        "usd_per_hour": money(sum((r.usd_per_hour or Decimal(0) for r in running), Decimal(0))),
        "unpriced_running": sum(1 for r in running if r.usd_per_hour is None),
        "yesterday_usd": money(sum(yesterday.values(), Decimal(0)), 2),
        "month_to_date_usd": money(sum(month.values(), Decimal(0)), 2),
        "by_kind": {
            kind: {
                "running": v["running"],
                "usd_per_hour": money(v["usd_per_hour"]),
                "month_to_date_usd": money(v["month_to_date_usd"], 2),
            }
            for kind, v in sorted(by_kind.items())
        },
        "by_owner": _ranked(by_owner),
        "by_team": _ranked(by_team),
        "top_idle": [
            {
                "arn": r.arn,
                "kind": r.kind,
                "name": r.name,
                "owner": owner_of(r, cfg) or None,
                "usd_per_hour": money(r.usd_per_hour),
                "idle_hours": round((r.idle_for(now) or timedelta(0)).total_seconds() / 3600, 1),
            }
            for r in idle
        ],
        "saved": {
            "month_to_date_usd": money(saved, 2),
            "actions": len(savings),
            "still_off": sum(1 for s in savings if not s.came_back),
            "usd_per_hour_still_off": money(
                sum((s.usd_per_hour or Decimal(0) for s in savings if not s.came_back), Decimal(0))
            ),
        },
    }


def _ranked(totals: dict[str, Decimal]) -> list[dict[str, str | None]]:
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": name, "month_to_date_usd": money(usd, 2)} for name, usd in ordered]


def text(d: dict[str, Any]) -> tuple[str, list[str]]:
    """Title and lines for Slack and the terminal."""
    title = (
        f":moneybag: SageMaker now: {d['running']} running, {_hourly(d['usd_per_hour'])}; "
        f"month to date ${d['month_to_date_usd']}"
    )
    lines = [f"Yesterday: ${d['yesterday_usd']}. Month to date: ${d['month_to_date_usd']}."]
    if d["unpriced_running"]:
        lines.append(f"{d['unpriced_running']} running resource(s) have no known price.")
    kinds = (
        f"{kind} {v['running']} running {_hourly(v['usd_per_hour'])}, "
        f"${v['month_to_date_usd']} this month"
        for kind, v in d["by_kind"].items()
    )
    lines.append("By kind: " + _join(kinds))
    lines.append("By owner (month): " + _join(_top(d["by_owner"])))
    lines.append("By team (month): " + _join(_top(d["by_team"])))
    if d["top_idle"]:
        lines.append("Top idle spenders:")
        lines.extend(
            f"• {i['kind']}/{i['name']} ({i['owner'] or 'no owner'}): "
            f"{_hourly(i['usd_per_hour'])}, idle {human(timedelta(hours=i['idle_hours']))}"
            for i in d["top_idle"]
        )
    saved = d["saved"]
    if saved["actions"]:
        lines.append(
            f"Saved by cost-guard this month: ${saved['month_to_date_usd']} "
            f"({saved['actions']} action(s); {saved['still_off']} still off, "
            f"{_hourly(saved['usd_per_hour_still_off'])})."
        )
    return title, lines


def _hourly(usd: str | None) -> str:
    return "unknown $/h" if usd is None else f"{dollars(Decimal(usd))}/h"


def _top(ranked: list[dict[str, Any]], n: int = 5) -> Iterable[str]:
    return (f"{r['name']} ${r['month_to_date_usd']}" for r in ranked[:n])


def _join(parts: Iterable[str]) -> str:
    return "; ".join(parts) or "nothing"
