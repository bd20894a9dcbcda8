"""The console's read-only pages: Now, one resource, Spend, Budgets, Findings, Audit.

Every figure comes from the functions the CLI, the digest and Slack use (guard/reports.py,
guard/digest.py, guard/budgets.py, Store.savings), so the console never shows money computed
differently. Every table can be had as CSV with `?format=csv` (and `table=` where a page has
several): the same rows, filters and order as the page, unpaginated.
"""

from __future__ import annotations

import csv
import io
import threading
import time as time_
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from werkzeug.routing import BuildError

from guard import budgets, digest
from guard.accrual import cost
from guard.cycle import Guard
from guard.kinds import KINDS, console_url
from guard.model import Resource
from guard.profiles import resource_profile
from guard.recommend import recommendations
from guard.reports import audit_entries, episode_state, finding_text, money
from guard.rules import is_exempt, owner_of, snoozed_until
from guard.store import Spent

# Templates and static files are the app's own (guard/web/templates, guard/web/static).
blueprint = Blueprint("pages", __name__)

PAGE_SIZE = 50
TIMES = "\N{MULTIPLICATION SIGN}"  # instance type times count
NO_TEAM, UNOWNED = digest.NO_TEAM, digest.UNOWNED
# Rule states a resource can be in on the Now page, most urgent first.
STATES = ("retrying", "would-act", "acted", "warned", "snoozed", "exempt", "ok")
DIMENSIONS = {"kind": "kind", "team": "team", "owner": "owner", "account": "account"}


def _guard() -> Guard:
    guard: Guard = current_app.config["GUARD"]
    return guard


@blueprint.app_template_global()
def action_url(endpoint: str, **values: Any) -> str | None:
    """The URL of an action route, or None while the actions module has no such route."""
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


@blueprint.app_template_filter("usd")
def usd_filter(value: str | Decimal | None, places: int = 2) -> str:
    """Money for people: "$1,234.50"; "unknown" for an unknown price (never "$0")."""
    if value is None or value == "":
        return "unknown"
    return f"${Decimal(value):,.{places}f}"


@blueprint.app_template_filter("when")
def when_filter(value: str | datetime | None) -> str:
    """A time in the configured timezone: "Mon 23 Nov 16:00 UTC"."""
    if not value:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(_guard().cfg.tz).strftime("%a %d %b %H:%M %Z")


def countdown(delta: timedelta) -> str:
    """ "in 25m", "in 3h 10m", "in 2d 4h", or "due" once past."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "due"
    days, rest = divmod(seconds, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    if days:
        return f"in {days}d {hours}h"
    return f"in {hours}h {minutes}m" if hours else f"in {max(minutes, 1)}m"


# --- Now ---------------------------------------------------------------------------------


@dataclass
class _Fleet:
    rows: list[dict[str, Any]]
    options: dict[str, list[str]]  # the values of each filter but the rule state


CACHE_TTL = 300.0  # seconds: a cached read is redone at least this often
_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_lock = threading.Lock()
T = TypeVar("T")


def cached(name: str, guard: Guard, now: datetime, build: Callable[[], T]) -> T:
    """`build()`, kept per app until the store changes (a snapshot, a snooze, an episode, a
    warning or an action), the day changes, or CACHE_TTL passes: at 10,000 resources reading
    them all takes a second or more, and a page view should not. What depends on the minute
    (accrued, countdowns) is computed per view from what is kept."""
    key = (guard.store.console_version(), now.astimezone(guard.cfg.tz).date())
    cache: dict[str, tuple[Any, float, Any]] = current_app.extensions.setdefault(
        "cost_guard_cache", {}
    )
    with _locks_lock:
        lock = _locks[f"{id(cache)}:{name}"]
    with lock:  # one build at a time; the others wait for it and reuse it
        hit = cache.get(name)
        if hit is not None and hit[0] == key and time_.monotonic() - hit[1] < CACHE_TTL:
            return cast(T, hit[2])
        value = build()
        cache[name] = (key, time_.monotonic(), value)
        return value


def fleet(guard: Guard, now: datetime) -> _Fleet:
    """What runs now, one row per resource with the Now page's columns (time-dependent ones
    — accrued, rule state, countdown — added by `live`)."""

    def build() -> _Fleet:
        rows = _build_fleet(guard, now)
        options = {k: sorted({str(r[k]) for r in rows if r[k]}) for k in NOW_FILTERS[:-1]}
        return _Fleet(rows, options)

    return cached("fleet", guard, now, build)


def _known(guard: Guard, now: datetime) -> dict[str, Resource]:
    """Every resource ever seen (gone ones too: what they spent still counts), by ARN."""
    return cached("known", guard, now, lambda: {
        r.arn: r for r in guard.store.resources(include_gone=True)})  # fmt: skip


def _build_fleet(guard: Guard, now: datetime) -> list[dict[str, Any]]:
    """The inventory's figures (the same calls as guard/reports.py's inventory_for)."""
    cfg, store = guard.cfg, guard.store
    today = now.astimezone(cfg.tz).date()
    snoozes = store.snoozes(now)
    rules: dict[str, list[tuple[str, str, datetime | None]]] = defaultdict(list)
    for (arn, rule_id), ep in sorted(store.open_episodes().items()):
        rules[arn].append((rule_id, episode_state(ep), ep.deadline))
    spent_today = store.spent(today, today + timedelta(days=1))
    spent_month = store.spent(today.replace(day=1), today + timedelta(days=1))
    rows = []
    for res in store.running_resources():
        owner, team = owner_of(res, cfg) or None, res.tags.get(cfg.tags.team) or None
        rows.append({
            "res": res, "arn": res.arn, "kind": res.kind, "name": res.name,
            "account": res.account, "region": res.region, "owner": owner, "team": team,
            "instance_type": res.instance_type, "instance_count": res.instance_count,
            "instance": f"{res.instance_type or 'unknown'} {TIMES} {res.instance_count}",
            "usd_per_hour": res.usd_per_hour, "last_activity": res.last_activity,
            "evidence": res.evidence_error or res.activity_source.value,
            "exempt": is_exempt(res, cfg), "snoozed": snoozed_until(res, cfg, snoozes, now),
            "rules": rules.get(res.arn, []),
            "today": _spent(spent_today.get(res.arn, Spent())),
            "month": _spent(spent_month.get(res.arn, Spent())),
            "text": " ".join(str(v) for v in (res.name, res.arn, owner, team,
                             res.instance_type, *res.tags.values()) if v).lower(),
        })  # fmt: skip
    return rows


def _spent(spent: Spent) -> Decimal | None:
    """What a resource spent as shown: None (unknown) when it ran only at an unknown price —
    never $0 for what was not priced."""
    return None if spent.unpriced_seconds and not spent.usd else _cents(spent.usd)


def _cents(usd: Decimal | None) -> Decimal | None:
    """Money as shown (and as `inventory --json` gives it): rounded to the cent."""
    return None if usd is None else Decimal(money(usd, 2) or 0)


def live(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """`row` with what depends on the time: accrued, snoozed, rule state and countdown."""
    snoozed = row["snoozed"] if row["snoozed"] and row["snoozed"] > now else None
    due = [(d, rule) for rule, st, d in row["rules"] if d and st in ("warned", "retrying")]
    nxt = min(due, default=None)
    if row["exempt"]:
        state = "exempt"
    elif snoozed:
        state = "snoozed"
    elif row["rules"]:
        state = min((st for _, st, _ in row["rules"]), key=STATES.index)
    else:
        state = "ok"
    return {
        **row,
        "accrued": _cents(row["res"].accrued_usd(now)),
        "snoozed_until": snoozed,
        "state": state,
        "next_at": nxt[0] if nxt else None,
        "next_rule": nxt[1] if nxt else None,
        "next_in": countdown(nxt[0] - now) if nxt else None,
    }


NOW_FILTERS = ("kind", "account", "region", "team", "owner", "state")
_LAST = datetime.max.replace(tzinfo=UTC)
_FIRST = datetime.min.replace(tzinfo=UTC)
NOW_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "usd_per_hour": lambda r: r["usd_per_hour"] if r["usd_per_hour"] is not None else -1,
    "accrued": lambda r: r["accrued"] if r["accrued"] is not None else -1,
    "month": lambda r: r["month"] if r["month"] is not None else -1,
    "name": lambda r: r["name"].lower(),
    "kind": lambda r: r["kind"],
    "owner": lambda r: r["owner"] or "",
    "team": lambda r: r["team"] or "",
    "account": lambda r: r["account"],
    "region": lambda r: r["region"],
    "activity": lambda r: r["last_activity"] or _FIRST,
    "state": lambda r: STATES.index(r["state"]),
    "next": lambda r: r["next_at"] or _LAST,
}


def _matches(row: Mapping[str, Any], filters: Mapping[str, str], text: str) -> bool:
    for key, want in filters.items():
        if want and str(row.get(key) or "") != want:
            return False
    return not text or text.lower() in row["text"]


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals of the filtered rows as shown: $/h of the priced ones (the unpriced are
    counted, never added as $0), and the sums of the cents shown per row."""

    def total(key: str) -> Decimal:
        return sum((r[key] for r in rows if r[key] is not None), Decimal(0))

    return {
        "count": len(rows),
        "usd_per_hour": total("usd_per_hour"),
        "unpriced": sum(1 for r in rows if r["usd_per_hour"] is None),
        "accrued": total("accrued"),
        "today": total("today"),
        "month": total("month"),
    }


NOW_CSV = (
    ("kind", "kind"), ("name", "name"), ("owner", "owner"), ("team", "team"),
    ("account", "account"), ("region", "region"), ("instance_type", "instance_type"),
    ("instance_count", "instance_count"), ("usd_per_hour", "usd_per_hour"),
    ("accrued", "accrued_usd"), ("today", "today_usd"), ("month", "month_usd"),
    ("last_activity", "last_activity"), ("evidence", "evidence"), ("state", "rule_state"),
    ("next_rule", "next_rule"), ("next_at", "next_action_at"),
    ("snoozed_until", "snoozed_until"), ("exempt", "exempt"), ("arn", "arn"),
)  # fmt: skip


@blueprint.get("/")
def now_page() -> Response | str:
    guard = _guard()
    now = guard.clock.now()
    current = fleet(guard, now)
    filters = {key: request.args.get(key, "") for key in NOW_FILTERS}
    text = request.args.get("q", "").strip()
    fixed = {k: v for k, v in filters.items() if k != "state"}  # the state depends on now
    rows = [live(r, now) for r in current.rows if _matches(r, fixed, text)]
    if filters["state"]:
        rows = [r for r in rows if r["state"] == filters["state"]]
    sort = request.args.get("sort", "usd_per_hour")
    if sort not in NOW_SORTS:
        sort = "usd_per_hour"
    money_first = sort in ("usd_per_hour", "accrued", "month")  # the biggest first
    descending = request.args.get("dir", "desc" if money_first else "asc") == "desc"
    rows.sort(key=lambda r: r["name"])
    rows.sort(key=NOW_SORTS[sort], reverse=descending)
    if request.args.get("format") == "csv":  # money as `inventory --json` writes it
        return _csv("now.csv", NOW_CSV, (
            {**r, "usd_per_hour": money(r["usd_per_hour"]), "accrued": money(r["accrued"], 2),
             "today": money(r["today"], 2), "month": money(r["month"], 2)}
            for r in rows
        ))  # fmt: skip
    page, pages, shown = _paginate(rows)
    return render_template(
        "now.html",
        title="Now",
        rows=shown,
        totals=totals(rows),
        all_count=len(current.rows),
        filters=filters,
        q=text,
        options={**current.options, "state": list(STATES)},
        sort=sort,
        descending=descending,
        page=page,
        pages=pages,
        now=now,
    )


def _paginate(rows: Sequence[Any]) -> tuple[int, int, Sequence[Any]]:
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    try:
        page = min(max(1, int(request.args.get("page", "1"))), pages)
    except ValueError:
        page = 1
    return page, pages, rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]


@blueprint.app_template_global()
def page_url(**changes: Any) -> str:
    """This page's URL with some query arguments changed (None removes one)."""
    args = {k: v for k, v in request.args.items() if v}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return url_for(str(request.endpoint), **{**(request.view_args or {}), **args})


# --- one resource ------------------------------------------------------------------------


@blueprint.get("/resource/<path:arn>")
def resource_page(arn: str) -> Response | str:
    guard = _guard()
    cfg, store, now = guard.cfg, guard.store, guard.clock.now()
    res = store.resource(arn)
    if res is None:
        abort(404)
    item = next((live(r, now) for r in fleet(guard, now).rows if r["arn"] == arn), None)
    today = now.astimezone(cfg.tz).date()
    days = store.spent_by_day_of(arn, today - timedelta(days=29), today + timedelta(days=1))
    spend = [
        {"day": d.isoformat(), "usd": f"{days[d].usd:.2f}" if d in days else "0.00",
         "running_hours": round(days[d].running_seconds / 3600, 2) if d in days else 0}
        for d in (today - timedelta(days=n) for n in range(29, -1, -1))
    ]  # fmt: skip
    history: list[dict[str, Any]] = []
    for ev in store.resource_events(arn):
        price = "unknown" if ev.usd_per_hour is None else f"${ev.usd_per_hour:,.4f}/h"
        history.append({
            "at": ev.at, "what": "state", "title": ev.status,
            "detail": f"{ev.instance_type or 'unknown'} {TIMES} {ev.instance_count}, {price}"
                      + ("" if ev.running else ", not running"),
        })  # fmt: skip
    for act in store.actions_of(arn):
        detail = " · ".join(x for x in (act.rule_id or "", act.mode, act.detail) if x)
        history.append({"at": act.at, "what": "warning" if act.action == "warn" else "action",
                        "title": f"{act.action}: {act.outcome}", "detail": detail})  # fmt: skip
    snooze = store.snooze_row(arn)
    if snooze is not None:
        history.append({
            "at": snooze.created_at, "what": "snooze", "title": f"snoozed by {snooze.by}",
            "detail": f"until {when_filter(snooze.until)}"
                      + (f": {snooze.reason}" if snooze.reason else ""),
        })  # fmt: skip
    history.sort(key=lambda h: h["at"], reverse=True)
    fmt = request.args.get("format")
    if fmt == "csv" and request.args.get("table") == "history":
        return _csv(f"{res.name}-history.csv", (("at", "at"), ("what", "what"),
                    ("title", "title"), ("detail", "detail")), history)  # fmt: skip
    if fmt == "csv":
        return _csv(f"{res.name}-spend.csv", (("day", "day"), ("usd", "usd"),
                    ("running_hours", "running_hours")), spend)  # fmt: skip
    open_episodes = [ep for (a, _), ep in store.open_episodes().items() if a == arn]
    return render_template(
        "resource.html",
        title=f"{res.kind} {res.name}",
        res=res,
        item=item,
        owner=owner_of(res, cfg) or None,
        team=res.tags.get(cfg.tags.team),
        console=console_url(KINDS[res.kind], res) if res.kind in KINDS else None,
        history=history,
        spend=spend,
        chart={"labels": [s["day"] for s in spend],
               "datasets": [{"label": "USD per day", "data": [float(s["usd"]) for s in spend]}]},
        episode=open_episodes[0] if open_episodes else None,
        snooze=store.snooze_of(arn, now),
        usage=resource_profile(store, cfg, arn, now),  # its weekly pattern, if it has one
        now=now,
    )  # fmt: skip


# --- Spend -------------------------------------------------------------------------------


def daily_spend(
    guard: Guard, now: datetime, start: date, end: date, by: str
) -> tuple[list[date], dict[str, dict[date, Decimal]]]:
    """Accrued spend per day in [start, end), grouped by `by` (kind, team, owner, account)."""
    cfg, store = guard.cfg, guard.store
    known = _known(guard, now)
    grouped: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for arn, per_day in store.spent_by_day(start, end).items():
        res = known.get(arn)  # None: pruned after it was gone for the retention
        if res is None:
            group = "(pruned)"
        elif by == "team":
            group = res.tags.get(cfg.tags.team) or NO_TEAM
        elif by == "owner":
            group = owner_of(res, cfg) or UNOWNED
        elif by == "account":
            group = res.account
        else:
            group = res.kind
        for day, usd in per_day.items():
            grouped[group][day] += usd
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    return days, dict(grouped)


def savings_by_team_month(guard: Guard, now: datetime) -> list[dict[str, Any]]:
    """Store.savings split into calendar months (local) and teams: saved in a month is the
    saving from the month's start minus the saving from the next month's start."""
    cfg, store = guard.cfg, guard.store
    known = _known(guard, now)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for s in store.savings(now):
        res = known.get(s.arn)
        team = (res.tags.get(cfg.tags.team) if res else None) or NO_TEAM
        month = s.at.astimezone(cfg.tz).date().replace(day=1)
        while datetime.combine(month, time(), cfg.tz) < s.until:
            begins = datetime.combine(month, time(), cfg.tz)
            following = (month + timedelta(days=32)).replace(day=1)
            ends = datetime.combine(following, time(), cfg.tz)
            row = found.setdefault((month.strftime("%Y-%m"), team), {
                "month": month.strftime("%Y-%m"), "team": team, "saved": Decimal(0),
                "actions": 0, "unpriced": 0})  # fmt: skip
            if s.at < ends and s.at >= begins:
                row["actions"] += 1
            since, after = s.usd(begins), s.usd(ends)
            if since is None or after is None:
                row["unpriced"] += 1
            else:
                row["saved"] += since - after
            month = following
    return [
        {**row, "saved": f"{row['saved']:.2f}"}
        for row in sorted(found.values(), key=lambda r: (r["month"], r["team"]), reverse=True)
    ]


@blueprint.get("/spend")
def spend_page() -> Response | str:
    guard = _guard()
    cfg, store, now = guard.cfg, guard.store, guard.clock.now()
    span = 90 if request.args.get("days") == "90" else 30
    by = request.args.get("by", "kind")
    if by not in DIMENSIONS:
        by = "kind"
    today = now.astimezone(cfg.tz).date()
    start, end = today - timedelta(days=span - 1), today + timedelta(days=1)
    days, grouped = daily_spend(guard, now, start, end, by)
    order = sorted(grouped, key=lambda g: (-sum(grouped[g].values()), g))
    daily = [
        {"day": d.isoformat(), **{g: f"{grouped[g].get(d, Decimal(0)):.2f}" for g in order},
         "total": f"{sum((grouped[g].get(d, Decimal(0)) for g in order), Decimal(0)):.2f}"}
        for d in days
    ]  # fmt: skip
    # the digest's figures (month to date, burn, top idle, saved), as Slack gets them
    # (not its Monday recommendations: a backtest, shown on their own page)
    data = cached("digest", guard, now, lambda: digest.build(cfg, store, now, recommend=False))
    month = budgets.period_of("month", now, cfg.tz)
    hours_left = Decimal(int(max((month.end_at - now).total_seconds(), 0))) / 3600
    burn = Decimal(data["usd_per_hour"])
    mtd = Decimal(data["month_to_date_usd"])
    forecast = mtd + burn * hours_left  # as a budget's forecast: spend + burn x hours left
    monthly = [st for st in budgets.statuses(cfg, store, now) if st.budget.period == "month"]
    saved = savings_by_team_month(guard, now)
    tables: dict[str, tuple[Sequence[tuple[str, str]], list[dict[str, Any]]]] = {
        "daily": ((("day", "day"), *((g, g) for g in order), ("total", "total")), daily),
        "idle": ((("kind", "kind"), ("name", "name"), ("owner", "owner"),
                  ("usd_per_hour", "usd_per_hour"), ("idle_hours", "idle_hours"),
                  ("arn", "arn")), data["top_idle"]),
        "saved": ((("month", "month"), ("team", "team"), ("saved", "saved_usd"),
                   ("actions", "actions"), ("unpriced", "unpriced_actions")), saved),
    }  # fmt: skip
    if request.args.get("format") == "csv":
        name = request.args.get("table", "daily")
        if name not in tables:
            abort(404)
        columns, rows = tables[name]
        return _csv(f"spend-{name}-{span}d-by-{by}.csv", columns, rows)
    month_days = [month.start + timedelta(days=n) for n in range((month.end - month.start).days)]
    mtd_by_day = store.spent_by_day(month.start, min(month.end, today + timedelta(days=1)))
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    for spent in mtd_by_day.values():
        for day, usd in spent.items():
            per_day[day] += usd
    running = Decimal(0)
    cumulative: list[float | None] = []
    projected: list[float | None] = []
    for day in month_days:
        if day <= today:
            running += per_day.get(day, Decimal(0))
            cumulative.append(float(running))
            projected.append(float(running) if day == today else None)
        else:
            cumulative.append(None)
            ahead = datetime.combine(day + timedelta(days=1), time(), cfg.tz) - now
            projected.append(float(running + cost(burn, ahead)))
    month_chart = {
        "labels": [d.isoformat() for d in month_days],
        "datasets": [
            {"label": "month to date", "data": cumulative},
            {"label": "forecast at the current burn", "data": projected, "dashed": True},
            *({"label": f"budget {st.budget.id}",
               "data": [float(st.budget.limit_usd)] * len(month_days), "flat": True}
              for st in monthly),
        ],
    }  # fmt: skip
    chart = {
        "labels": [d.isoformat() for d in days],
        "datasets": [
            {"label": g, "data": [float(grouped[g].get(d, Decimal(0))) for d in days]}
            for g in order
        ],
    }
    return render_template(
        "spend.html",
        title="Spend",
        span=span,
        by=by,
        groups=order,
        daily=list(reversed(daily)),
        chart=chart,
        month_chart=month_chart,
        digest=data,
        mtd=mtd,
        burn=burn,
        forecast=forecast,
        monthly=monthly,
        saved=saved,
        method=digest.SAVINGS_METHOD,
        now=now,
    )


# --- Budgets, Findings, Audit -----------------------------------------------------------


@blueprint.get("/budgets")
def budgets_page() -> Response | str:
    guard = _guard()
    now = guard.clock.now()
    rows = [st.to_json() for st in budgets.statuses(guard.cfg, guard.store, now)]
    for row in rows:
        row["crossed"] = ", ".join(f"{t['at']:.0%}" for t in row["thresholds"] if t["crossed"])
    columns = (("id", "id"), ("period", "period"), ("period_start", "period_start"),
               ("limit_usd", "limit_usd"), ("spend_usd", "spend_usd"),
               ("fraction", "fraction"), ("forecast_usd", "forecast_usd"),
               ("burn_usd_per_hour", "burn_usd_per_hour"),
               ("crossed", "thresholds_crossed"))  # fmt: skip
    if request.args.get("format") == "csv":
        return _csv("budgets.csv", columns, rows)
    return render_template("budgets.html", title="Budgets", rows=rows, now=now,
                           configured=bool(guard.cfg.budgets))  # fmt: skip


@blueprint.get("/findings")
def findings_page() -> Response | str:
    from guard.cli import _blind_spots  # the same test as `cost-guard findings`

    guard = _guard()
    last = guard.store.last_cycle()
    found = [
        {"type": "finding", "account": f.get("account", ""), "region": f.get("region", ""),
         "subject": f.get("subject", ""), "text": finding_text(f)}
        for f in (last or {}).get("findings", [])
    ] + [
        {"type": "blind spot", "account": "", "region": "", "subject": "", "text": error}
        for error in _blind_spots([str(e) for e in (last or {}).get("errors", [])])
    ]  # fmt: skip
    columns = (("type", "type"), ("account", "account"), ("region", "region"),
               ("subject", "subject"), ("text", "text"))  # fmt: skip
    if request.args.get("format") == "csv":
        return _csv("findings.csv", columns, found)
    return render_template("findings.html", title="Findings", rows=found, last=last,
                           now=guard.clock.now())  # fmt: skip


RECOMMENDATION_COLUMNS = (("title", "title"), ("usd_per_month", "usd_per_month"),
                          ("risk", "risk"), ("why", "why"), ("yaml", "yaml"))  # fmt: skip


@blueprint.get("/recommendations")
def recommendations_page() -> Response | str:
    """`cost-guard recommend`: rules the backtest proves would save more without a busy
    stop. Only shown: nothing is applied without a person pasting it into the config."""
    guard = _guard()
    now = guard.clock.now()
    found = cached(
        "recommendations",
        guard,
        now,
        lambda: [r.to_json() for r in recommendations(guard.store, guard.cfg, now)],
    )
    if request.args.get("format") == "csv":
        return _csv("recommendations.csv", RECOMMENDATION_COLUMNS, found)
    return render_template("recommendations.html", title="Recommendations", rows=found,
                           now=now)  # fmt: skip


AUDIT_FILTERS = ("action", "outcome", "mode", "kind", "rule")
AUDIT_COLUMNS = (("at", "at"), ("kind", "kind"), ("name", "name"), ("account", "account"),
                 ("region", "region"), ("rule", "rule"), ("action", "action"),
                 ("mode", "mode"), ("outcome", "outcome"), ("detail", "detail"),
                 ("arn", "arn"))  # fmt: skip


@blueprint.get("/audit")
def audit_page() -> Response | str:
    guard = _guard()
    now = guard.clock.now()
    try:
        span = max(1, min(int(request.args.get("days", "7")), 400))
    except ValueError:
        span = 7
    everything = list(reversed(audit_entries(guard.store.audit(now - timedelta(days=span)))))
    filters = {key: request.args.get(key, "") for key in AUDIT_FILTERS}
    text = request.args.get("q", "").strip().lower()
    rows = [
        e for e in everything
        if all(not want or str(e.get(key) or "") == want for key, want in filters.items())
        and (not text or text in f"{e['name']} {e['arn']} {e['detail']}".lower())
    ]  # fmt: skip
    if request.args.get("format") == "csv":
        return _csv(f"audit-{span}d.csv", AUDIT_COLUMNS, rows)
    options = {k: sorted({str(e[k]) for e in everything if e.get(k)}) for k in AUDIT_FILTERS}
    page, pages, shown = _paginate(rows)
    return render_template("audit.html", title="Audit", rows=shown, count=len(rows),
                           filters=filters, q=request.args.get("q", ""), options=options,
                           span=span, page=page, pages=pages, now=now)  # fmt: skip


# --- CSV ---------------------------------------------------------------------------------


def _csv(
    filename: str, columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]
) -> Response:
    """`rows` as CSV: one header of the columns' names, then the same values as the page
    (money as decimal strings, times as ISO-8601). Cells that a spreadsheet would run as a
    formula are prefixed with ' (names and details are other people's text)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header for _, header in columns])
    for row in rows:
        writer.writerow([_cell(row.get(key)) for key, _ in columns])
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.isoformat()
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True
