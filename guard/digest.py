"""The daily digest: what runs now (by kind and owner), what it cost, who spent it, what sits
idle, what cost-guard did since the last digest and what it saved, and what needs fixing
(unowned resources, settings that bill idle time, regions it cannot see). Sent on the
`slack.digest` cron; `cost-guard digest` prints it.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from guard import cron
from guard.config import Config
from guard.kinds import KINDS
from guard.model import ActivitySource, Resource
from guard.reports import dollars, finding_text, money
from guard.rules import human, owner_of
from guard.store import Store

TOP_IDLE = 5
LISTED = 5  # how many unowned resources / actions are named, beyond their counts
IDLE_AFTER = timedelta(hours=1)  # idle this long to count among the "top idle spenders"
UNOWNED, NO_TEAM = "(no owner)", "(no team)"
OWNER_HINT = "owner tag"


def due(cfg: Config, now: datetime) -> datetime | None:
    """The digest cron's latest fire time in the last day, if any (None: nothing due)."""
    return cron.last_fire(cfg.slack.digest, cfg.tz, now, within=timedelta(days=1))


def build(cfg: Config, store: Store, now: datetime, *, recommend: bool = True) -> dict[str, Any]:
    """The digest as JSON-able data (money as decimal strings). `recommend=False`: without
    the Monday recommendations (a backtest of the history), for views that do not show them."""
    today = now.astimezone(cfg.tz).date()
    month_start = today.replace(day=1)
    yesterday = {arn: x.usd for arn, x in store.spent(today - timedelta(days=1), today).items()}

    # $/h totals sum the known prices only; `unpriced` counts the running resources whose
    # price is unknown, so an unknown is never shown as (or hidden in) a dollar figure.
    by_kind: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "running": 0,
            "usd_per_hour": Decimal(0),
            "unpriced": 0,
            "month_to_date_usd": Decimal(0),
        }
    )
    by_owner: dict[str, Decimal] = defaultdict(Decimal)
    by_team: dict[str, Decimal] = defaultdict(Decimal)
    running_by_owner: dict[str, Decimal] = defaultdict(Decimal)
    unpriced_by_owner: Counter[str] = Counter()
    month_usd = Decimal(0)
    running_usd, running_count, unpriced_running = Decimal(0), 0, 0
    unowned_usd, unowned_count, unowned_unpriced = Decimal(0), 0, 0
    # Only the few named ones are kept, not the fleet (a heap each of (sort key, resource))
    idle: list[tuple[Any, Resource]] = []
    unowned_named: list[tuple[Any, Resource]] = []
    storage: list[tuple[Any, Resource]] = []
    # the running ones and this month's spenders (and the pruned spenders' spend), a page at
    # a time: not every resource ever seen, nor the whole fleet at once
    rows = store.digest_rows(month_start, today + timedelta(days=1))
    for order, (res, usd) in enumerate(rows):
        if usd is not None:  # a spender this month; None: pruned after it was gone
            month_usd += usd
            by_kind[res.kind if res else "(pruned)"]["month_to_date_usd"] += usd
            by_owner[(owner_of(res, cfg) if res else "") or UNOWNED] += usd
            by_team[(res.tags.get(cfg.tags.team) if res else None) or NO_TEAM] += usd
        if res is None or not res.running:
            continue
        price = res.usd_per_hour or Decimal(0)
        by_kind[res.kind]["running"] += 1
        by_kind[res.kind]["usd_per_hour"] += price
        by_kind[res.kind]["unpriced"] += res.usd_per_hour is None
        running_count += 1
        running_usd += price
        unpriced_running += res.usd_per_hour is None
        owner = owner_of(res, cfg)
        running_by_owner[owner or UNOWNED] += price
        unpriced_by_owner[owner or UNOWNED] += res.usd_per_hour is None
        if KINDS[res.kind].idles and (res.idle_for(now) or timedelta(0)) >= IDLE_AFTER:
            _keep(idle, TOP_IDLE, (price, -order), res)
        if not owner:
            unowned_count += 1
            unowned_usd += price
            unowned_unpriced += res.usd_per_hour is None
            _keep(unowned_named, LISTED, (price, -order), res)
        if res.activity_source is ActivitySource.LAST_START:
            oldest = -(res.last_activity or now).timestamp()
            _keep(storage, LISTED, (oldest, -order), res)
    since = store.last_digest_at(before=now) or now - timedelta(days=1)
    # strictly after: an action in the same instant as the last digest was in that one
    action_counts, done = store.actions_summary(since, now, LISTED)
    last = store.last_cycle() or {}
    return {
        "at": now.isoformat(),
        "running": running_count,
        "usd_per_hour": money(running_usd),
        "unpriced_running": unpriced_running,
        "yesterday_usd": money(sum(yesterday.values(), Decimal(0)), 2),
        "month_to_date_usd": money(month_usd, 2),
        "by_kind": {
            kind: {
                "running": v["running"],
                "usd_per_hour": money(v["usd_per_hour"]),
                "unpriced": v["unpriced"],
                "month_to_date_usd": money(v["month_to_date_usd"], 2),
            }
            for kind, v in sorted(by_kind.items())
        },
        "running_by_owner": [
            {"name": name, "usd_per_hour": money(usd), "unpriced": unpriced_by_owner[name]}
            for name, usd in sorted(running_by_owner.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "unowned": {
            "running": unowned_count,
            "usd_per_hour": money(unowned_usd),
            "unpriced": unowned_unpriced,
            "resources": [
                {"kind": r.kind, "name": r.name, "usd_per_hour": money(r.usd_per_hour)}
                for r in _ranked_first(unowned_named)
            ],
        },
        "actions_since": since.isoformat(),
        "action_counts": action_counts,  # "stop done": 3, in the order first met
        "actions_total": sum(action_counts.values()),
        "actions": [  # the latest LISTED
            {
                "at": a.at.isoformat(),
                "kind": a.kind,
                "name": a.name,
                "action": a.action,
                "outcome": a.outcome,
                "rule": a.rule_id,
            }
            for a in done
        ],
        "findings": [finding_text(f) for f in last.get("findings", [])],
        # storage that bills while nothing runs on it, longest unstarted first
        "idle_storage": [
            {
                "kind": r.kind,
                "name": r.name,
                "usd_per_hour": money(r.usd_per_hour),
                "days_since_start": (now - r.last_activity).days if r.last_activity else None,
            }
            for r in _ranked_first(storage)
        ],
        "scan_errors": list(last.get("errors", [])),
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
            for r in _ranked_first(idle)
        ],
        "saved": saved_this_month(store, cfg, now),
        "recommendations": weekly_recommendations(cfg, store, now) if recommend else [],
    }


def _keep(heap: list[tuple[Any, Resource]], size: int, key: Any, res: Resource) -> None:
    """Keep the `size` entries of greatest `key` seen so far in `heap` (`key` ends with
    -order: of equal ones, the first met stays, as a stable sort would keep it)."""
    entry = (key, res)  # keys never tie (-order), so a Resource is never compared
    if len(heap) < size:
        heapq.heappush(heap, entry)
    elif key > heap[0][0]:
        heapq.heapreplace(heap, entry)


def _ranked_first(heap: list[tuple[Any, Resource]]) -> list[Resource]:
    return [res for _, res in sorted(heap, key=lambda e: e[0], reverse=True)]


def weekly_recommendations(cfg: Config, store: Store, now: datetime) -> list[dict[str, Any]]:
    """Monday's digest (local time) carries the rules the history says would save more
    (guard/recommend.py); the other days' digests do not repeat them."""
    if now.astimezone(cfg.tz).weekday() != 0:
        return []
    from guard.recommend import recommendations

    return [r.to_json() for r in recommendations(store, cfg, now)[:3]]


def saved_this_month(store: Store, cfg: Config, now: datetime) -> dict[str, Any]:
    """What cost-guard's actions saved this (local) month, and how that is computed: the
    digest's `saved`, also under `cost-guard inventory`."""
    month_began = datetime.combine(now.astimezone(cfg.tz).date().replace(day=1), time(), cfg.tz)
    savings = store.savings(now)
    # what each action saved this month; None where the price is unknown (listed, not $0)
    amounts = [(s, s.usd(month_began)) for s in savings]
    saved = sum((usd for _, usd in amounts if usd is not None), Decimal(0))
    unknown = [s for s, usd in amounts if usd is None and s.until > month_began]
    return {
        "month_to_date_usd": money(saved, 2),
        "actions": len(savings),
        "still_off": sum(1 for s in savings if s.ongoing),
        "usd_per_hour_still_off": money(
            sum(
                (s.usd_per_hour for s in savings if s.ongoing and s.usd_per_hour is not None),
                Decimal(0),
            )
        ),
        "unpriced_still_off": sum(1 for s in savings if s.ongoing and s.usd_per_hour is None),
        # actions on resources of unknown price: their saving is unknown, not $0, and not
        # in month_to_date_usd
        "unpriced_actions": len(unknown),
        "unknown": [{"kind": s.kind, "name": s.name, "action": s.action} for s in unknown],
        "method": SAVINGS_METHOD,
    }


# How "saved by cost-guard" is computed, said wherever it is shown.
SAVINGS_METHOD = (
    "each done stop/delete/scale-to-zero: its $/h when acted on, times the hours it would "
    "have run: a job until its MaxRuntimeInSeconds, a notebook or app until its owner "
    "started it again, an endpoint until it was restored or its traffic came back, else "
    "until now; an unknown price makes that saving unknown, never $0"
)


def _ranked(totals: dict[str, Decimal]) -> list[dict[str, str | None]]:
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": name, "month_to_date_usd": money(usd, 2)} for name, usd in ordered]


def text(d: dict[str, Any]) -> tuple[str, list[str]]:
    """Title and lines for Slack and the terminal."""
    title = (
        f":moneybag: SageMaker now: {d['running']} running, "
        f"{_hourly(d['usd_per_hour'], d['unpriced_running'])}; "
        f"month to date ${d['month_to_date_usd']}"
    )
    lines = [f"Yesterday: ${d['yesterday_usd']}. Month to date: ${d['month_to_date_usd']}."]
    if d["unpriced_running"]:
        lines.append(
            f"{d['unpriced_running']} running resource(s) have no known price: "
            "not counted in any $/h here."
        )
    kinds = (
        f"{kind} {v['running']} running {_hourly(v['usd_per_hour'], v['unpriced'])}, "
        f"${v['month_to_date_usd']} this month"
        for kind, v in d["by_kind"].items()
    )
    lines.append("By kind: " + _join(kinds))
    lines.append("By owner (month): " + _join(_top(d["by_owner"])))
    lines.append("By team (month): " + _join(_top(d["by_team"])))
    if d.get("idle_storage"):
        lines.append(
            "Storage billing while stopped: "
            + _join(
                f"{i['name']} {_hourly(i['usd_per_hour'])}, {i['days_since_start']} d since "
                "last start"
                for i in d["idle_storage"]
            )
        )
    if d["top_idle"]:
        lines.append("Top idle spenders:")
        lines.extend(
            f"• {i['kind']}/{i['name']} ({i['owner'] or 'no owner'}): "
            f"{_hourly(i['usd_per_hour'])}, idle {human(timedelta(hours=i['idle_hours']))}"
            for i in d["top_idle"]
        )
    owners = (
        f"{o['name']} {_hourly(o['usd_per_hour'], o['unpriced'])}"
        for o in d["running_by_owner"][:5]
    )
    lines.insert(1, "Running now by owner: " + _join(owners))
    unowned = d["unowned"]
    if unowned["running"]:
        names = ", ".join(f"{r['kind']}/{r['name']}" for r in unowned["resources"])
        more = unowned["running"] - len(unowned["resources"])
        lines.append(
            f"Unowned (no {OWNER_HINT}): {unowned['running']} running, "
            f"{_hourly(unowned['usd_per_hour'], unowned['unpriced'])}: {names}"
            + (f" and {more} more" if more else "")
        )
    if d["actions_total"]:
        latest = f" (the latest {LISTED}:)" if d["actions_total"] > LISTED else ""
        counts = _join(f"{o} {n}" for o, n in d["action_counts"].items())
        lines.append(f"Since the last digest: {counts}{latest}")
        lines.extend(
            f"• {a['action']} {a['kind']}/{a['name']}: {a['outcome']} (rule {a['rule']})"
            for a in d["actions"]
        )
    lines.extend(f"Finding: {f}" for f in d["findings"])
    lines.extend(f"Cannot see: {e}" for e in d["scan_errors"])
    lines.extend(saved_lines(d["saved"]))
    if d.get("recommendations"):  # weekly: `cost-guard recommend` has the YAML to paste
        lines.append("Rules to consider (backtested on the last 30 days; nothing is applied):")
        lines.extend(
            f"• +${r['usd_per_month']}/month: {r['title']} ({r['risk'].split(':')[0]} risk)"
            for r in d["recommendations"]
        )
    return title, lines


def saved_lines(saved: dict[str, Any]) -> list[str]:
    """`saved_this_month` for people, and how it is computed (nothing before a first action)."""
    if not saved["actions"]:
        return []
    unknown = (
        f"; unknown for {saved['unpriced_actions']} at an unknown price: "
        + ", ".join(f"{u['kind']}/{u['name']}" for u in saved["unknown"][:LISTED])
        if saved["unpriced_actions"]
        else ""
    )
    return [
        f"Saved by cost-guard this month: ${saved['month_to_date_usd']} "
        f"({saved['actions']} action(s); {saved['still_off']} still off, "
        f"{_hourly(saved['usd_per_hour_still_off'], saved['unpriced_still_off'])}){unknown}.",
        f"Saved = {saved['method']}.",
    ]


def fields(d: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, shown side by side at the top of the Slack message."""
    return [
        ("Running now", f"{d['running']} · {_hourly(d['usd_per_hour'], d['unpriced_running'])}"),
        ("Month to date", f"${d['month_to_date_usd']} (yesterday ${d['yesterday_usd']})"),
        (
            "Unowned",
            f"{d['unowned']['running']} · "
            f"{_hourly(d['unowned']['usd_per_hour'], d['unowned']['unpriced'])}",
        ),
        ("Saved this month", _saved(d["saved"])),
    ]


def _saved(saved: dict[str, Any]) -> str:
    figure = f"${saved['month_to_date_usd']}"
    if saved["unpriced_actions"]:
        return f"{figure} + unknown for {saved['unpriced_actions']}"
    return figure


def _hourly(usd: str | None, unpriced: int = 0) -> str:
    """A $/h figure for people; `unpriced` resources of the total have no known price, so the
    figure covers the others and says so — an unknown is never shown as $0."""
    if usd is None:
        return "unknown $/h"
    if not unpriced:
        return f"{dollars(Decimal(usd))}/h"
    resources = f"{unpriced} resource{'s' if unpriced != 1 else ''}"
    if Decimal(usd) == 0:
        return f"unknown $/h ({resources} without a price)"
    return f"{dollars(Decimal(usd))}/h + unknown for {resources}"


def _top(ranked: list[dict[str, Any]], n: int = 5) -> Iterable[str]:
    return (f"{r['name']} ${r['month_to_date_usd']}" for r in ranked[:n])


def _join(parts: Iterable[str]) -> str:
    return "; ".join(parts) or "nothing"
