"""What people and scripts read: inventory items, audit entries, tables.

The JSON shapes here are the stable interface documented in the README.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from guard.config import Config
from guard.model import Episode, Resource
from guard.rules import clock_time, is_exempt, owner_of, snoozed_until
from guard.store import ActionRow, Spent, Store


def iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def money(value: Decimal | None, places: int = 4) -> str | None:
    """Money in JSON: a decimal string with fixed places ("0.2300"), never a float."""
    return None if value is None else f"{value:.{places}f}"


def dollars(value: Decimal, places: int = 2) -> str:
    """Money for people: "$1,234.50"."""
    return f"${value:,.{places}f}"


def inventory_for(
    store: Store, cfg: Config, now: datetime, show_all: bool = False
) -> list[dict[str, Any]]:
    """The inventory from the last snapshot: running resources (all with `show_all`)."""
    today = now.astimezone(cfg.tz).date()
    return inventory_items(
        [r for r in store.resources() if show_all or r.running],
        cfg,
        store.snoozes(now),
        store.open_episodes(),
        now,
        today=store.spent(today, today + timedelta(days=1)),
        month=store.spent(today.replace(day=1), today + timedelta(days=1)),
    )


def episode_state(ep: Episode) -> str:
    """What a rule's episode is at: warned, acted, would-act (dry-run: re-armed when the
    guard enforces), retrying (its action failed; tried again at the deadline)."""
    if ep.acted_outcome == "failed" and ep.acted_at is None:
        return "retrying"
    if ep.acted_at is None:
        return "warned"
    return "would-act" if ep.acted_outcome == "dry-run" else "acted"


def inventory_items(
    resources: Sequence[Resource],
    cfg: Config,
    snoozes: Mapping[str, datetime],
    episodes: Mapping[tuple[str, str], Episode],
    now: datetime,
    today: Mapping[str, Spent] | None = None,
    month: Mapping[str, Spent] | None = None,
) -> list[dict[str, Any]]:
    """One JSON object per resource (money as decimal strings, times as ISO-8601 UTC)."""
    items = []
    today, month = today or {}, month or {}
    for res in resources:
        until = snoozed_until(res, cfg, snoozes, now)
        states = [
            {
                "rule": rule_id,
                "state": episode_state(ep),
                "since": iso(ep.warned_at),
                "deadline": iso(ep.deadline),
            }
            for (arn, rule_id), ep in sorted(episodes.items())
            if arn == res.arn
        ]
        items.append(
            {
                "arn": res.arn,
                "kind": res.kind,
                "name": res.name,
                "account": res.account,
                "region": res.region,
                "status": res.status,
                "running": res.running,
                "instance_type": res.instance_type,
                "instance_count": res.instance_count,
                "usd_per_hour": money(res.usd_per_hour),
                "price_source": res.price_source,
                "running_since": iso(res.running_since),
                "last_activity": iso(res.last_activity),
                "activity_source": res.activity_source.value,
                "evidence_error": res.evidence_error,
                "utilization": res.utilization,  # peak % per "metric/window-seconds"
                "details": res.details,  # kind-specific facts (endpoint variants, job limits)
                "accrued_usd": money(res.accrued_usd(now), 2),  # the current run so far
                # spend the guard observed, per local day (see "Accrued spend" in the README)
                "accrued_today_usd": money(today.get(res.arn, Spent()).usd, 2),
                "accrued_month_usd": money(month.get(res.arn, Spent()).usd, 2),
                "owner": owner_of(res, cfg) or None,
                "exempt": is_exempt(res, cfg),
                "snoozed_until": iso(until),
                "rule_state": states,
                "tags": res.tags,
            }
        )
    return items


def finding_text(finding: Mapping[str, Any]) -> str:
    """One finding (as stored in the cycle report) as a line for people."""
    problem = str(finding["problem"]).rstrip(".")
    fix = f". Fix: {finding['fix']}" if finding.get("fix") else "."
    where = f"{finding['account']} {finding['region']}"
    return f"{where} {finding['subject']}: {problem}{fix}"


def inventory_table(items: Sequence[dict[str, Any]], cfg: Config, now: datetime) -> Table:
    table = Table(title=f"SageMaker resources at {clock_time(now, cfg.tz)}")
    for column in (
        "resource",
        "status",
        "instance",
        "$/h",
        "today $",
        "month $",
        "last activity",
        "owner",
        "state",
    ):
        table.add_column(column, justify="right" if "$" in column else "left")
    for item in items:
        price = item["usd_per_hour"]
        state = ", ".join(f"{s['rule']}: {s['state']}" for s in item["rule_state"])
        if item["exempt"]:
            state = "exempt"
        elif item["snoozed_until"]:
            state = f"snoozed to {_short(item['snoozed_until'], cfg)}"
        if item["activity_source"] == "unknown":
            activity = f"unknown: {item['evidence_error']}"
        elif not item["running"]:
            activity = ""
        elif item["last_activity"] and item["activity_source"] != "in-service-since":
            source = item["activity_source"]
            if evidence := (item.get("details") or {}).get("evidence"):
                source = f"{source}: {evidence}"  # which evidence counted ("GPU 87 %")
            activity = f"{_short(item['last_activity'], cfg)} ({source})"
        else:
            activity = "none since start"
        table.add_row(
            *_cells(
                f"{item['kind']}/{item['name']}",
                item["status"],
                f"{item['instance_type']} x{item['instance_count']}",
                "unknown" if price is None else f"{Decimal(price):.3f}",
                item["accrued_today_usd"],
                item["accrued_month_usd"],
                activity,
                item["owner"] or "",
                state,
            )
        )
    return table


def _cells(*values: Any) -> list[Text]:
    """Table cells as plain text: names, tags and details are people's strings, and rich
    would read `[/bold]` in an owner tag as markup (and fail on it)."""
    return [Text("" if v is None else str(v)) for v in values]


def _short(iso: str, cfg: Config) -> str:
    return f"{datetime.fromisoformat(iso).astimezone(cfg.tz):%a %H:%M}"


def audit_entries(rows: Sequence[ActionRow]) -> list[dict[str, Any]]:
    return [
        {
            "at": iso(row.at),
            "arn": row.arn,
            "kind": row.kind,
            "name": row.name,
            "account": row.account,
            "region": row.region,
            "rule": row.rule_id,
            "action": row.action,
            "mode": row.mode,
            "outcome": row.outcome,
            "detail": row.detail,
        }
        for row in rows
    ]


def audit_table(entries: Sequence[dict[str, Any]], cfg: Config) -> Table:
    table = Table(title="cost-guard audit trail")
    for column in ("at", "resource", "rule", "action", "mode", "outcome", "detail"):
        table.add_column(column)
    for e in entries:
        table.add_row(*_cells(
            _short(e["at"], cfg), f"{e['kind']}/{e['name']}", e["rule"] or "",
            e["action"], e["mode"], e["outcome"], e["detail"],
        ))  # fmt: skip
    return table


def cycle_summary(report: Mapping[str, Any]) -> str:
    """The cycle in one line, for the terminal and the on-call's logs."""
    if "skipped" in report:
        return f"cycle skipped: {report['skipped']}"
    outcomes: dict[str, int] = {}
    for action in report.get("actions", []):
        outcomes[action["outcome"]] = outcomes.get(action["outcome"], 0) + 1
    acted = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "none"
    unpriced = sum(int(k.get("unpriced", 0)) for k in report.get("by_kind", {}).values())
    rate = f"${Decimal(report['usd_per_hour']):.2f}/h"
    if unpriced:  # an unknown price is never a $0 one
        rate += f" + unknown for {unpriced}"
    line = (
        f"{report['mode']} cycle: {report['running']} running of {report['resources']} resources, "
        f"{rate}, {report['warnings']} new warnings, "
        f"actions: {acted}, {len(report['errors'])} errors, {report['api_calls_total']} AWS calls"
    )
    prices = report.get("prices")
    return f"{line}\n{prices_line(prices)}" if isinstance(prices, Mapping) else line


def prices_line(prices: Mapping[str, Any]) -> str:
    """Where prices come from (`report["prices"]`), and what has none, as a line for people."""
    line = f"prices: {prices['status']}"
    unknown = int(prices.get("unknown") or 0)
    if unknown:
        what = "resource has" if unknown == 1 else "resources have"
        line += f" {unknown} running {what} no known price (shown as unknown, not $0)."
    return line
