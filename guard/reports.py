"""What people and scripts read: inventory items, audit entries, tables.

The JSON shapes here are the stable interface documented in the README.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import RenderableType
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
        billed=_billed(store, cfg, today),
    )


def _billed(store: Store, cfg: Config, today: date) -> dict[str, list[dict[str, Any]]] | None:
    """Per resource: estimated vs billed per day this month (None: no billing export set)."""
    if not cfg.billing.enabled:
        return None
    from guard.billing import reconcile

    start, end = today.replace(day=1), today + timedelta(days=1)
    estimated = store.spent_by_day(start, end)
    return {
        arn: reconcile(estimated.get(arn, {}), days, cfg.billing.threshold)
        for arn, days in store.billed(start, end).items()
    }


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
    billed: Mapping[str, list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """One JSON object per resource (money as decimal strings, times as ISO-8601 UTC).
    `billed` (a billing export is configured): per resource, estimated vs billed per day."""
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
                # hours today / this month at an unknown price: not in the figures above
                "unpriced_today_hours": round(
                    today.get(res.arn, Spent()).unpriced_seconds / 3600, 2
                ),
                "unpriced_month_hours": round(
                    month.get(res.arn, Spent()).unpriced_seconds / 3600, 2
                ),
                "owner": owner_of(res, cfg) or None,
                "exempt": is_exempt(res, cfg),
                "snoozed_until": iso(until),
                "rule_state": states,
                "tags": res.tags,
            }
        )
        if billed is not None:  # a billing export is configured: what the bill says
            days = billed.get(res.arn, [])
            items[-1]["billed_usd"] = (
                money(sum((Decimal(d["billed_usd"]) for d in days), Decimal(0)), 2)
                if days
                else None
            )
            items[-1]["billing"] = days  # per day: estimated_usd, billed_usd, flagged
    return items


def finding_text(finding: Mapping[str, Any]) -> str:
    """One finding (as stored in the cycle report) as a line for people."""
    problem = str(finding["problem"]).rstrip(".")
    fix = f". Fix: {finding['fix']}" if finding.get("fix") else "."
    where = f"{finding['account']} {finding['region']}"
    return f"{where} {finding['subject']}: {problem}{fix}"


# Inventory columns, most important first: at a narrow width the last ones are dropped.
# (key, header, right-aligned, widest before the cell wraps)
_INVENTORY_COLUMNS: tuple[tuple[str, str, bool, int], ...] = (
    ("account", "account", False, 16),
    ("region", "region", False, 14),
    ("state", "state", False, 18),
    ("usd_per_hour", "$/h", True, 8),
    ("month", "month $", True, 9),
    ("billed", "billed $", True, 10),  # only with a billing export (`billing:`)
    ("owner", "owner", False, 18),
    ("activity", "last activity", False, 20),
    ("status", "status", False, 10),
    ("instance", "instance", False, 16),
    ("today", "today $", True, 8),
)
MIN_NAME_WIDTH = 24  # the resource column never gets narrower than this
SUMMARY_FROM = 30  # rows from which `inventory` adds a summary per kind and account


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by `…`: the start and the
    end of a name are what tell resources apart."""
    if len(text) <= width:
        return text
    if width < 3:
        return text[:width]
    tail = (width - 1) // 2
    return f"{text[: width - 1 - tail]}…{text[len(text) - tail :]}"


def resource_labels(items: Sequence[Mapping[str, Any]], width: int | None) -> list[str]:
    """`kind/name` per item, the name shortened in the middle to fit `width` (None: never),
    widening until no two different resources read the same."""
    full = [f"{i['kind']}/{i['name']}" for i in items]
    if width is None or not full:
        return full
    longest = max(len(f) for f in full)
    for w in range(min(width, longest), longest + 1):
        labels = [f if len(f) <= w else _shorten_label(f, w) for f in full]
        if len(set(labels)) == len(set(full)):
            return labels
    return full


def _shorten_label(label: str, width: int) -> str:
    kind, _, name = label.partition("/")
    room = width - len(kind) - 1
    if room >= 8:  # keep the kind whole: commands take KIND/NAME
        return f"{kind}/{shorten_middle(name, room)}"
    return shorten_middle(label, width)


_WRAPPABLE = ("state", "owner", "activity", "account")


def _squeeze(widths: dict[str, int], keys: Sequence[tuple[str, str, bool, int]], room: int) -> bool:
    """Fit `keys` into `room` columns by narrowing the text columns that may wrap (each by at
    most a third, never under 12) — or say it cannot, and a column has to go."""
    need = _table_width([widths[k[0]] for k in keys]) - 1 - room
    if need <= 0:
        return True
    wrappable = sorted((k[0] for k in keys if k[0] in _WRAPPABLE), key=lambda k: -widths[k])
    slack = {k: widths[k] - max(12, widths[k] - widths[k] // 3) for k in wrappable}
    if sum(max(v, 0) for v in slack.values()) < need:
        return False
    while need > 0:  # one column at a time from the widest, so they end up alike
        key = max(wrappable, key=lambda k: (slack[k] > 0, widths[k]))
        widths[key] -= 1
        slack[key] -= 1
        need -= 1
    return True


def _table_width(widths: Sequence[int]) -> int:
    """What a rich box table with these column widths needs: padding 1+1, borders between."""
    return sum(w + 3 for w in widths) + 1


def account_label(cfg: Config, account: str) -> str:
    found = next((a for a in cfg.accounts if a.id == account), None)
    return found.name if found and found.name else account


def inventory_table(
    items: Sequence[dict[str, Any]], cfg: Config, now: datetime, width: int | None = None
) -> Table:
    """The inventory for a terminal `width` columns wide: every resource's full name, or its
    name shortened in the middle where no two read the same; the less important columns
    dropped first; account and region when there are several; a totals row. `width=None`
    (`--wide`): every column, nothing shortened."""
    rows = [_inventory_cells(item, cfg) for item in items]
    several = {k: len({item[k] for item in items}) > 1 for k in ("account", "region")}
    several["billed"] = any("billed_usd" in item for item in items)
    keys = [c for c in _INVENTORY_COLUMNS if several.get(c[0], True)]

    def natural(key: str, header: str, cap: int) -> int:
        longest = max([len(r[key]) for r in rows] + [len(header)])
        return longest if width is None else min(longest, max(cap, len(header)))

    widths = {key: natural(key, header, cap) for key, header, _, cap in keys}
    total_label = f"total: {len(items)}"
    names_natural = max([len(f"{i['kind']}/{i['name']}") for i in items] + [len(total_label), 8])
    name_width = names_natural
    if width is not None:
        name_width = min(names_natural, max(MIN_NAME_WIDTH, width * 2 // 5))
        while len(keys) > 2 and not _squeeze(widths, keys, width - _table_width([name_width])):
            keys.pop()  # the least important column left
        spare = width - _table_width([name_width, *(widths[k[0]] for k in keys)])
        name_width = min(names_natural, name_width + max(spare, 0))
    labels = resource_labels(items, None if width is None else name_width)
    name_width = max([len(label) for label in labels] + [len(total_label), 8])
    table = Table(title=f"SageMaker resources at {clock_time(now, cfg.tz)}")
    table.add_column("resource", no_wrap=True, min_width=name_width, max_width=name_width)
    for key, header, right, _ in keys:
        table.add_column(
            header,
            justify="right" if right else "left",
            no_wrap=right,
            min_width=widths[key] if width is not None else None,
            max_width=widths[key] if width is not None else None,
            overflow="fold",
        )
    for label, row in zip(labels, rows, strict=True):
        table.add_row(*_cells(label, *(row[k[0]] for k in keys)))
    table.add_section()
    table.add_row(*_cells(total_label, *(_total(items, k[0]) for k in keys)), style="bold")
    return table


def _inventory_cells(item: Mapping[str, Any], cfg: Config) -> dict[str, str]:
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
    count = int(item["instance_count"] or 1)
    return {
        "account": account_label(cfg, str(item["account"])),
        "region": str(item["region"]),
        "state": state,
        "usd_per_hour": "unknown" if price is None else f"{Decimal(price):.3f}",
        "status": str(item["status"]),
        "owner": item["owner"] or "",
        "month": _spent_cell(item["accrued_month_usd"], item.get("unpriced_month_hours")),
        "billed": _billed_cell(item),
        "activity": activity,
        "instance": f"{item['instance_type']}" + (f" x{count}" if count != 1 else ""),
        "today": _spent_cell(item["accrued_today_usd"], item.get("unpriced_today_hours")),
    }


def _spent_cell(usd: str, unpriced_hours: float | None) -> str:
    """A resource's spend for people: "unknown" when it ran only at an unknown price, "+?"
    when part of it was — never $0 for hours nobody priced."""
    if not unpriced_hours:
        return str(usd)
    return "unknown" if Decimal(usd) == 0 else f"{usd}+?"


def _billed_cell(item: Mapping[str, Any]) -> str:
    """This month's billed figure, marked `!` when a day of it differs from the estimate by
    more than `billing.threshold`; blank when the bill has no line for the resource yet."""
    if item.get("billed_usd") is None:
        return ""
    flagged = any(day["flagged"] for day in item.get("billing", ()))
    return f"{item['billed_usd']}{' !' if flagged else ''}"


def billing_differences(items: Sequence[Mapping[str, Any]], cfg: Config) -> list[str]:
    """A line per resource-day whose estimate and bill differ by more than the threshold:
    what `!` in the inventory's billed column stands for."""
    lines = []
    for item in items:
        for day in item.get("billing", ()):
            if not day["flagged"]:
                continue
            est, bill = Decimal(day["estimated_usd"]), Decimal(day["billed_usd"])
            off = f" ({(est - bill) / bill:+.0%} of the bill)" if bill else ""
            lines.append(
                f"{item['kind']}/{item['name']} {day['day']}: estimated ${est:,.2f}, "
                f"billed ${bill:,.2f}{off}"
            )
    if lines:
        lines.insert(0, f"estimate and bill differ by more than {cfg.billing.threshold:.0%}:")
    return lines


def _total(items: Sequence[Mapping[str, Any]], key: str) -> str:
    if key == "billed":  # what the bill has lines for (blank ones are not $0: not billed yet)
        billed = [Decimal(i["billed_usd"]) for i in items if i.get("billed_usd") is not None]
        return f"{sum(billed, Decimal(0)):.2f}" if billed else ""
    field = {"usd_per_hour": "usd_per_hour", "month": "accrued_month_usd"}.get(key)
    field = field or ("accrued_today_usd" if key == "today" else None)
    if field is None:
        return ""
    known = [Decimal(i[field]) for i in items if i[field] is not None]
    places = 3 if key == "usd_per_hour" else 2
    text = f"{sum(known, Decimal(0)):.{places}f}"
    unknown = len(items) - len(known)
    if key in ("month", "today"):  # spend of hours at an unknown price is not in the figure
        unknown += sum(1 for i in items if i.get(f"unpriced_{key}_hours"))
    return f"{text}+?" if unknown else text  # some have no known price


def inventory_summary(items: Sequence[dict[str, Any]], cfg: Config) -> Table:
    """Per kind (and account and region, when there are several): how many, $/h, spend."""
    several = {k: len({item[k] for item in items}) > 1 for k in ("account", "region")}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        key = (
            item["kind"],
            *([account_label(cfg, str(item["account"]))] if several["account"] else []),
            *([str(item["region"])] if several["region"] else []),
        )
        groups.setdefault(key, []).append(item)
    table = Table(title="By kind" + (", account" if several["account"] else "")
                  + (", region" if several["region"] else ""))  # fmt: skip
    table.add_column("kind", no_wrap=True)
    if several["account"]:
        table.add_column("account", no_wrap=True)
    if several["region"]:
        table.add_column("region", no_wrap=True)
    for header in ("resources", "$/h", "today $", "month $"):
        table.add_column(header, justify="right", no_wrap=True)
    for key, group in sorted(groups.items()):
        table.add_row(*_cells(
            *key, len(group), _total(group, "usd_per_hour"), _total(group, "today"),
            _total(group, "month"),
        ))  # fmt: skip
    table.add_section()
    blanks = [""] * (len(next(iter(groups), ("",))) - 1)
    table.add_row(*_cells(
        "total", *blanks, len(items), _total(items, "usd_per_hour"), _total(items, "today"),
        _total(items, "month"),
    ), style="bold")  # fmt: skip
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


def audit_table(
    entries: Sequence[dict[str, Any]], cfg: Config, width: int | None = None
) -> RenderableType:
    """The audit trail for a terminal `width` wide (None: `--wide`): one line per entry, its
    resource's name shortened in the middle only where it must be, and its detail on a line
    of its own below, indented and wrapped to the width."""
    from rich.console import Group
    from rich.padding import Padding

    if not entries:
        return Text("No warnings or actions in that period.")
    several = {k: len({e[k] for e in entries}) > 1 for k in ("account", "region")}
    rows = [
        {
            "at": _short(e["at"], cfg),
            "account": account_label(cfg, str(e["account"])),
            "region": str(e["region"]),
            "rule": e["rule"] or "",
            "action": str(e["action"]),
            "mode": str(e["mode"]),
            "outcome": str(e["outcome"]),
        }
        for e in entries
    ]
    keys = ["at", *(k for k in ("account", "region") if several[k]), "rule", "action", "mode",
            "outcome"]  # fmt: skip
    widths = {k: max([len(r[k]) for r in rows] + [len(k)]) for k in keys}
    names = max(len(f"{e['kind']}/{e['name']}") for e in entries)
    if width is not None:
        for droppable in ("mode", "region", "account"):
            if sum(widths[k] + 2 for k in keys) + min(names, MIN_NAME_WIDTH) <= width:
                break
            if droppable in keys:
                keys.remove(droppable)
        names = max(min(names, width - sum(widths[k] + 2 for k in keys)), MIN_NAME_WIDTH)
    labels = resource_labels(entries, None if width is None else names)
    names = max([len(label) for label in labels] + [len("resource")])
    columns = [("at", widths["at"]), ("resource", names), *((k, widths[k]) for k in keys[1:])]

    def line(values: Sequence[str], style: str = "") -> Text:
        cells = [v.ljust(w) for v, (_, w) in zip(values, columns, strict=True)]
        return Text("  ".join(cells).rstrip(), style=style, no_wrap=True, overflow="ellipsis")

    indent = widths["at"] + 2
    out: list[RenderableType] = [
        Text("cost-guard audit trail", style="italic"),
        line([name for name, _ in columns], "bold"),
    ]
    for label, row, e in zip(labels, rows, entries, strict=True):
        out.append(line([row["at"], label, *(row[k] for k in keys[1:])]))
        if e["detail"]:
            out.append(Padding(Text(str(e["detail"]), style="dim"), (0, 0, 0, indent)))
    return Group(*out)


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
