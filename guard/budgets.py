"""Budgets: spend per period against a limit, a forecast, warnings, and `act_at`.

Spend is the guard's own estimate: the accrued $ (`accruals`, per resource and local day) of
the resources in the budget's scope over the period's days; with Cost Explorer enabled its
figure replaces the estimate for closed days it has. The forecast adds the current burn rate
(Σ $/h of what runs in scope now) until the period ends.

Each cycle `check` tells Slack once per threshold per period (a `budget_alerts` row, unique per
budget, period and threshold, is written in the same transaction as the outbox message), once
per period when the forecast goes over the limit before spend does, and — over `act_at` —
returns decisions that give idle resources in scope the budget's action without grace, most
expensive first, through the same path as rules (episode, audit row, live re-check, dry-run).
"""

from __future__ import annotations

import calendar
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from guard import cost_explorer
from guard.aws import Aws
from guard.config import Budget, BudgetScope, Config
from guard.kinds import KINDS
from guard.model import Decision, Episode, Resource, Step
from guard.notify import Notifier
from guard.reports import dollars, iso, money
from guard.rules import UNKNOWN, hold, human, tags_match
from guard.store import Spent, Store
from guard.tables import BudgetAlertRow

log = logging.getLogger(__name__)

FORECAST = "forecast"  # the budget_alerts threshold of the forecast warning
_HOUR = Decimal(3600)
_ADJECTIVE = {"day": "daily", "week": "weekly", "month": "monthly"}


# --- periods ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Days [start, end) in the configured timezone, and the same span as UTC datetimes."""

    start: date
    end: date
    start_at: datetime
    end_at: datetime

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


def period_of(kind: str, now: datetime, tz: ZoneInfo) -> Period:
    """The day, ISO week (from Monday) or calendar month containing `now`, in `tz`."""
    today = now.astimezone(tz).date()
    if kind == "day":
        start, end = today, today + timedelta(days=1)
    elif kind == "week":
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    elif kind == "month":
        start = today.replace(day=1)
        end = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        raise ValueError(f"unknown budget period {kind!r}")
    return Period(start, end, _midnight(start, tz), _midnight(end, tz))


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tz).astimezone(UTC)


# --- scope ------------------------------------------------------------------------------


def in_scope(scope: BudgetScope, res: Resource) -> bool:
    return (
        (not scope.accounts or res.account in scope.accounts)
        and (not scope.regions or res.region in scope.regions)
        and (not scope.kinds or res.kind in scope.kinds)
        and tags_match(scope.tags, res.tags)
    )


# --- status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """One budget at `now`: what was spent, what runs, where it is heading."""

    budget: Budget
    period: Period
    now: datetime
    estimate_usd: Decimal  # the guard's estimate for the period so far
    actual_usd: Decimal | None  # Cost Explorer's figure for `actual_days`
    actual_days: tuple[date, ...]
    estimate_on_actual_days_usd: Decimal  # the estimate for the same days, to compare
    burn_usd_per_hour: Decimal  # Σ $/h of the priced resources in scope running now
    resources_in_scope: int
    running_in_scope: int
    unpriced_running: int  # running in scope with an unknown $/h: not in the burn rate
    unpriced_hours: float  # running time in the period whose $/h was unknown
    unobserved_hours: float  # time in the period the guard did not see (it was down)
    alerts: Mapping[str, datetime] = field(default_factory=dict)  # threshold -> when told
    # where `actual_usd` comes from: "cost-explorer" (per scope) or "billing-export" (the
    # CUR 2.0 / FOCUS export, per resource in scope); None without actual figures
    actual_source: str | None = None

    @property
    def spend_usd(self) -> Decimal:
        if self.actual_usd is None:
            return self.estimate_usd
        return self.estimate_usd - self.estimate_on_actual_days_usd + self.actual_usd

    @property
    def hours_left(self) -> Decimal:
        seconds = max((self.period.end_at - self.now).total_seconds(), 0)
        return Decimal(int(seconds)) / _HOUR

    @property
    def forecast_usd(self) -> Decimal:
        return self.spend_usd + self.burn_usd_per_hour * self.hours_left

    @property
    def fraction(self) -> Decimal:
        return self.spend_usd / self.budget.limit_usd

    def reached(self, fraction: float) -> bool:
        return self.spend_usd >= self.budget.limit_usd * Decimal(str(fraction))

    @property
    def over_act_at(self) -> bool:
        return self.budget.act_at is not None and self.reached(self.budget.act_at)

    def to_json(self) -> dict[str, Any]:
        b = self.budget
        return {
            "id": b.id,
            "period": b.period,
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),  # exclusive: the next period's start
            "limit_usd": money(b.limit_usd, 2),
            "spend_usd": money(self.spend_usd, 2),
            "fraction": round(float(self.fraction), 4),
            "forecast_usd": money(self.forecast_usd, 2),
            "burn_usd_per_hour": money(self.burn_usd_per_hour),
            "thresholds": [
                {
                    "at": at,
                    "crossed": self.reached(at),
                    "alerted_at": iso(self.alerts.get(_threshold_key(at))),
                }
                for at in sorted(b.warn_at)
            ],
            "forecast_alerted_at": iso(self.alerts.get(FORECAST)),
            "act_at": b.act_at,
            "action": b.action,
            "idle_for": int(b.idle_for.total_seconds()),
            "over_act_at": self.over_act_at,
            "scope": b.scope.model_dump(mode="json"),
            "resources_in_scope": self.resources_in_scope,
            "running_in_scope": self.running_in_scope,
            "unpriced_running": self.unpriced_running,
            "unpriced_hours": self.unpriced_hours,
            "unobserved_hours": self.unobserved_hours,
            "estimate_usd": money(self.estimate_usd, 2),
            "actual_usd": money(self.actual_usd, 2),
            "actual_days": [d.isoformat() for d in self.actual_days],
            "actual_source": self.actual_source,  # "cost-explorer" | "billing-export" | null
            "estimate_on_actual_days_usd": (
                money(self.estimate_on_actual_days_usd, 2) if self.actual_days else None
            ),
        }


def statuses(
    cfg: Config, store: Store, now: datetime, known: Sequence[Resource] | None = None
) -> list[Status]:
    """Every budget's status. `known`: every resource ever seen (gone ones included, so what
    they spent this period still counts); read from the store when not given."""
    if not cfg.budgets:
        return []
    if known is None:
        known = store.resources(include_gone=True)
    periods = {b.id: period_of(b.period, now, cfg.tz) for b in cfg.budgets}
    first = min(p.start for p in periods.values())
    last = max(p.end for p in periods.values())
    actual: dict[str, dict[date, Decimal]] = {}
    if cfg.cost_explorer.enabled:
        scopes = [k for b in cfg.budgets if (k := cost_explorer.scope_key(b)) is not None]
        actual = cost_explorer.actuals(store, scopes, first, last)
    alerts = _alerts(store, periods)
    closed = cost_explorer.closed_until(now, cfg)
    # The bill per resource (a billing export), for closed days where Cost Explorer has none.
    billed = store.billed(first, min(last, closed)) if cfg.billing.enabled else {}
    by_day = store.spent_by_day(first, min(last, closed)) if billed else {}
    sums: dict[tuple[date, date, tuple[date, ...] | None], dict[str, Spent]] = {}

    def spent(start: date, end: date, only: tuple[date, ...] | None = None) -> dict[str, Spent]:
        if (start, end, only) not in sums:  # budgets of the same period are summed once
            sums[(start, end, only)] = store.spent(start, end, only)
        return sums[(start, end, only)]

    result = []
    for budget in cfg.budgets:
        period = periods[budget.id]
        members = [r for r in known if in_scope(budget.scope, r)]
        key = cost_explorer.scope_key(budget)
        figures = {
            day: usd
            for day, usd in actual.get(key or "", {}).items()
            if period.start <= day < min(period.end, closed)
        }
        whole = spent(period.start, period.end)
        on_actual_days = spent(period.start, period.end, tuple(sorted(figures))) if figures else {}
        total, on_figures = Spent(), Spent()
        for res in members:
            total = total + whole.get(res.arn, Spent())
            on_figures = on_figures + on_actual_days.get(res.arn, Spent())
        actual_usd = sum(figures.values(), Decimal(0)) if figures else None
        actual_days, on_actual = tuple(sorted(figures)), on_figures.usd
        source = "cost-explorer" if figures else None
        if not figures and billed:
            # per resource in scope: the billed figure replaces its estimate on that day
            bill, on_bill, days = Decimal(0), Decimal(0), set()
            for res in members:
                for day, usd in billed.get(res.arn, {}).items():
                    if period.start <= day < min(period.end, closed):
                        bill += usd
                        on_bill += by_day.get(res.arn, {}).get(day, Decimal(0))
                        days.add(day)
            if days:
                actual_usd, actual_days, on_actual = bill, tuple(sorted(days)), on_bill
                source = "billing-export"
        running = [r for r in members if r.running]
        priced = [r.usd_per_hour for r in running if r.usd_per_hour is not None]
        result.append(
            Status(
                budget=budget,
                period=period,
                now=now,
                estimate_usd=total.usd,
                actual_usd=actual_usd,
                actual_days=actual_days,
                estimate_on_actual_days_usd=on_actual,
                actual_source=source,
                burn_usd_per_hour=sum(priced, Decimal(0)),
                resources_in_scope=len(members),
                running_in_scope=len(running),
                unpriced_running=len(running) - len(priced),
                unpriced_hours=round(total.unpriced_seconds / 3600, 2),
                unobserved_hours=round(total.unobserved_seconds / 3600, 2),
                alerts=alerts.get(budget.id, {}),
            )
        )
    return result


def _alerts(store: Store, periods: Mapping[str, Period]) -> dict[str, dict[str, datetime]]:
    found: dict[str, dict[str, datetime]] = defaultdict(dict)
    with store.session() as s:
        rows = s.scalars(
            select(BudgetAlertRow).where(
                BudgetAlertRow.budget_id.in_(list(periods)),
                BudgetAlertRow.period_start.in_(sorted({p.start for p in periods.values()})),
            )
        )
        for row in rows:
            if row.period_start == periods[row.budget_id].start:
                found[row.budget_id][row.threshold] = row.at
    return found


def _threshold_key(fraction: float) -> str:
    return str(float(fraction))  # 0.5 -> "0.5", 1 -> "1.0"


# --- the cycle's budget step ------------------------------------------------------------


@dataclass
class Check:
    """What the budget step of one cycle found and queued."""

    statuses: list[Status]
    decisions: list[Decision]
    alerts_sent: dict[str, list[str]]  # budget id -> thresholds told this cycle
    errors: list[str]

    def report(self, actions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The cycle report's `budgets` entries; `actions` are the cycle's applied actions."""
        return [
            {
                "id": st.budget.id,
                "period_start": st.period.start.isoformat(),
                "spend_usd": money(st.spend_usd, 2),
                "limit_usd": money(st.budget.limit_usd, 2),
                "forecast_usd": money(st.forecast_usd, 2),
                "alerts_sent": self.alerts_sent.get(st.budget.id, []),
                "acted": [
                    f"{a['kind']}/{a['name']}"
                    for a in actions
                    if a.get("rule") == st.budget.rule_id
                ],
            }
            for st in self.statuses
        ]


def check(
    cfg: Config,
    store: Store,
    notifier: Notifier,
    aws: Aws,
    resources: Sequence[Resource],
    rule_decisions: Sequence[Decision],
    episodes: Mapping[tuple[str, str], Episode],
    snoozes: Mapping[str, datetime],
    now: datetime,
) -> Check:
    """The budget step of a cycle, after the snapshot is saved and the rules evaluated.

    Refreshes Cost Explorer figures when due, queues the warnings due, and returns the
    `act_at` decisions (and the resolutions of earlier budget episodes) for the cycle to apply.
    `resources` is this cycle's scan: only what it saw with fresh evidence is acted on.
    """
    if not cfg.budgets:
        return Check([], [], {}, [])
    starts = {b.id: period_of(b.period, now, cfg.tz).start for b in cfg.budgets}
    errors = cost_explorer.refresh(cfg, aws, store, now, starts)
    found = statuses(cfg, store, now)
    sent = {st.budget.id: _warn(cfg, store, notifier, st) for st in found}
    # A resource a rule acts on this cycle is not acted on again by a budget.
    taken = {d.resource.arn for d in rule_decisions if d.step is Step.ACT}
    decisions: list[Decision] = []
    for st in found:
        decisions.extend(_decide(cfg, st, resources, episodes, snoozes, now, taken))
    return Check(found, decisions, sent, errors)


def may_decide(cfg: Config, res: Resource, episodes: Mapping[tuple[str, str], Episode]) -> bool:
    """Whether the budget step (`check`) could decide anything about `res` this cycle: it
    is in the scope of a budget that acts (`act_at`) and could be idle there, or has an open
    episode of a budget. The cycle keeps only these of its scan for that step, not the
    fleet (a superset of `_decide`'s candidates: it does not know the budgets' spend yet)."""
    for budget in cfg.budgets:
        if not in_scope(budget.scope, res):
            continue
        if (res.arn, budget.rule_id) in episodes:
            return True
        spec = KINDS.get(res.kind)
        acts = budget.action is not None and spec is not None and budget.action in spec.actions
        if acts and res.running and spec is not None and spec.idles:
            return True
    return False


# --- warnings ---------------------------------------------------------------------------


def _warn(cfg: Config, store: Store, notifier: Notifier, st: Status) -> list[str]:
    """Queue what is due for this budget; returns the thresholds told now."""
    budget = st.budget
    crossed = [t for t in sorted(budget.warn_at) if st.reached(t)]
    new = [_threshold_key(t) for t in crossed if _threshold_key(t) not in st.alerts]
    told: list[str] = []
    if new:
        # Several thresholds passed at once (a first cycle, a big job): one message, for the
        # highest; the lower ones are recorded too, so they are never told later.
        highest = max(crossed)
        title = (
            f":moneybag: Budget {budget.id} passed {_pct(Decimal(str(highest)))} "
            f"of its {_ADJECTIVE[budget.period]} limit"
        )
        if _record(store, notifier, st, new, title, _lines(cfg, st), budget.channel):
            told.extend(new)
    if (
        FORECAST not in st.alerts
        and st.forecast_usd > budget.limit_usd
        and st.spend_usd < budget.limit_usd
    ):
        title = f":crystal_ball: Budget {budget.id} is on course to exceed its limit"
        if _record(store, notifier, st, [FORECAST], title, _lines(cfg, st), budget.channel):
            told.append(FORECAST)
    return told


def _record(
    store: Store,
    notifier: Notifier,
    st: Status,
    thresholds: list[str],
    title: str,
    lines: list[str],
    channel: str | None,
) -> bool:
    """Write the alert rows and queue the message in one transaction; False when another
    cycle recorded one of them first (the unique constraint says so)."""
    now = st.now
    try:
        with store.batch():
            with store.session() as s:
                for threshold in thresholds:
                    s.add(
                        BudgetAlertRow(
                            budget_id=st.budget.id,
                            period_start=st.period.start,
                            threshold=threshold,
                            at=now,
                            spend_usd=st.spend_usd,
                            forecast_usd=st.forecast_usd,
                        )
                    )
            key = f"budget:{st.budget.id}:{st.period.start.isoformat()}:{thresholds[-1]}"
            notifier.notify_budget(key, title, lines, channel)
    except IntegrityError:
        log.info("budget %s: %s already told this period", st.budget.id, ", ".join(thresholds))
        return False
    log.info("budget %s: told %s", st.budget.id, lines[0])
    return True


def summary(cfg: Config, st: Status) -> str:
    """ "Budget ml-team-month: $1,012.40 of $2,000.00 spent (51 %) by Nov 24; at the current
    $3.10/h it will reach $2,310 by Nov 30 — over the limit." """
    b = st.budget
    today = st.now.astimezone(cfg.tz).date()
    over = st.forecast_usd > b.limit_usd
    forecast = dollars(st.forecast_usd, 0 if st.forecast_usd >= 100 else 2)  # "$2,310", "$7.21"
    return (
        f"Budget {b.id}: {dollars(st.spend_usd)} of {dollars(b.limit_usd)} spent "
        f"({_pct(st.fraction)}) by {_day(today)}; at the current "
        f"{dollars(st.burn_usd_per_hour)}/h it will reach {forecast} by "
        f"{_day(st.period.last_day)}" + (" \N{EM DASH} over the limit." if over else ".")
    )


def _lines(cfg: Config, st: Status) -> list[str]:
    b = st.budget
    lines = [summary(cfg, st)]
    scope = b.scope.model_dump(exclude_defaults=True)
    lines.append(
        f"In scope: {st.running_in_scope} running of {st.resources_in_scope} resources"
        + (f" ({_scope_text(b.scope)})" if scope else " (everything the guard watches)")
        + "."
    )
    missing = []
    if st.unpriced_running:
        missing.append(f"{st.unpriced_running} running resource(s) have no known price")
    if st.unpriced_hours or st.unobserved_hours:
        missing.append(
            f"{st.unpriced_hours:g} h unpriced and {st.unobserved_hours:g} h unobserved "
            "this period are not counted"
        )
    if missing:
        lines.append("The estimate misses: " + "; ".join(missing) + ".")
    if st.actual_usd is not None:
        estimate = dollars(st.estimate_on_actual_days_usd)
        lines.append(
            f"{_actual_label(st)}: {dollars(st.actual_usd)} for the {len(st.actual_days)} "
            f"closed day(s) it reports (the guard's estimate for them: {estimate})."
        )
    if b.act_at is not None and b.action is not None:
        at = _pct(Decimal(str(b.act_at)))
        dry = "" if cfg.enforce else " (dry-run: nothing is changed)"
        when = "Now over" if st.over_act_at else "At"
        lines.append(
            f"{when} {at}, resources in scope idle for {human(b.idle_for)} or more get "
            f"`{b.action}` without grace, most expensive first{dry}."
        )
    return lines


def _scope_text(scope: BudgetScope) -> str:
    parts = []
    if scope.accounts:
        parts.append("accounts " + ", ".join(scope.accounts))
    if scope.regions:
        parts.append("regions " + ", ".join(scope.regions))
    if scope.kinds:
        parts.append("kinds " + ", ".join(scope.kinds))
    if scope.tags:
        parts.append("tags " + ", ".join(f"{k}={v}" for k, v in sorted(scope.tags.items())))
    return "; ".join(parts)


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).quantize(Decimal(1))} %"


def _day(day: date) -> str:
    return f"{day:%b} {day.day}"


# --- act_at -----------------------------------------------------------------------------


def _decide(
    cfg: Config,
    st: Status,
    resources: Sequence[Resource],
    episodes: Mapping[tuple[str, str], Episode],
    snoozes: Mapping[str, datetime],
    now: datetime,
    taken: set[str],
) -> list[Decision]:
    """Budget episodes: resolve the ones that ended, open-and-act on new idle candidates.

    Like a rule with `grace: 0s`: the episode opens (warned) and acts in the same cycle, once
    per episode; it ends when the resource stops running, becomes active, is exempted or
    snoozed, or the budget is back under `act_at` (a new period).
    """
    budget = st.budget
    rule_id = budget.rule_id
    decisions: list[Decision] = []
    candidates: list[tuple[Resource, timedelta]] = []
    for res in resources:
        if not in_scope(budget.scope, res):
            continue
        episode = episodes.get((res.arn, rule_id))
        why_not = _not_a_candidate(cfg, budget, st, res, snoozes, now)
        if episode is not None:
            if why_not and why_not != UNKNOWN:
                decisions.append(_decision(res, budget, Step.RESOLVE, why_not, episode.id))
            continue
        if why_not is None and res.arn not in taken:
            idle = res.idle_for(now)
            assert idle is not None
            candidates.append((res, idle))
    # Most expensive first: if the cycle is cut short, the biggest savings came first.
    candidates.sort(key=lambda c: (-(c[0].usd_per_hour or Decimal(0)), c[0].arn))
    for res, idle in candidates:
        reason = (
            f"budget {budget.id} at {dollars(st.spend_usd)} of {dollars(budget.limit_usd)} "
            f"({_pct(st.fraction)}, acts at {_pct(Decimal(str(budget.act_at)))}); "
            f"idle for {human(idle)}; "
            + ("price unknown" if res.usd_per_hour is None else f"{dollars(res.usd_per_hour)}/h")
        )
        assert budget.action is not None
        decisions.append(_decision(res, budget, Step.WARN, reason, None, deadline=now))
        decisions.append(_decision(res, budget, Step.ACT, reason, None))
        taken.add(res.arn)
    return decisions


def _not_a_candidate(
    cfg: Config,
    budget: Budget,
    st: Status,
    res: Resource,
    snoozes: Mapping[str, datetime],
    now: datetime,
) -> str | None:
    """Why `res` is not (or no longer) to be acted on by this budget; None if it is."""
    if (why := hold(res, cfg, snoozes, now)) is not None:
        return why  # UNKNOWN included: missing data is never evidence
    if not st.over_act_at:
        return f"budget {budget.id} is under its act_at"
    if budget.action not in KINDS[res.kind].actions:
        return f"{res.kind} has no {budget.action}"
    if not KINDS[res.kind].idles:  # a job is busy until it ends; a rule judges its utilization
        return f"a {KINDS[res.kind].title} is never idle by time"
    if res.usd_per_hour is None or res.usd_per_hour <= 0:
        return "no known cost"
    idle = res.idle_for(now)
    if idle is None:
        return "activity unknown"
    if idle < budget.idle_for:
        return "active recently"
    return None


def _decision(
    res: Resource,
    budget: Budget,
    step: Step,
    reason: str,
    episode_id: int | None,
    deadline: datetime | None = None,
) -> Decision:
    return Decision(
        resource=res,
        rule_id=budget.rule_id,
        action=budget.action or "notify",
        step=step,
        reason=reason,
        deadline=deadline,
        episode_id=episode_id,
    )


# --- for people -------------------------------------------------------------------------


def budget_table(found: Sequence[Status], cfg: Config) -> Table:
    """One row per budget (see `budget_notes` for what the estimates miss)."""
    now = found[0].now if found else None
    when = f" at {now.astimezone(cfg.tz):%a %d %b %H:%M %Z}" if now else ""
    table = Table(title=f"cost-guard budgets{when}")
    table.add_column("budget", no_wrap=True)
    table.add_column("spent $", justify="right", no_wrap=True)
    table.add_column("forecast $", justify="right")
    table.add_column("$/h now", justify="right")
    table.add_column("thresholds", no_wrap=True)
    for st in found:
        b = st.budget
        marks = []
        for at in sorted(b.warn_at):
            told = _threshold_key(at) in st.alerts
            mark = " told" if told else " crossed" if st.reached(at) else ""
            marks.append(f"{_pct(Decimal(str(at)))}{mark}")
        if b.act_at is not None:
            over = " (over)" if st.over_act_at else ""
            marks.append(f"{b.action} at {_pct(Decimal(str(b.act_at)))}{over}")
        days = _day(st.period.start)
        if b.period != "day":
            days += f"\N{EN DASH}{_day(st.period.last_day)}"
        table.add_row(
            f"{b.id}\n{b.period} {days}\n{st.running_in_scope} of {st.resources_in_scope} running",
            f"{st.spend_usd:,.2f}\nof {b.limit_usd:,.2f}\n{_pct(st.fraction)}",
            f"{st.forecast_usd:,.2f}",
            f"{st.burn_usd_per_hour:,.2f}",
            "\n".join(marks),
        )
    return table


def _actual_label(st: Status) -> str:
    return "the billing export" if st.actual_source == "billing-export" else "Cost Explorer"


def budget_notes(found: Sequence[Status], threshold: float | None = None) -> list[str]:
    """What each estimate misses, and where Cost Explorer's or the bill's figure replaced it;
    flagged when the estimate of those days is off the bill by more than `threshold`."""
    notes = []
    for st in found:
        if st.actual_usd is not None:
            est = st.estimate_on_actual_days_usd
            flag = ""
            if threshold is not None and st.actual_source == "billing-export" and st.actual_usd:
                off = (est - st.actual_usd) / st.actual_usd
                if abs(off) > Decimal(str(threshold)):
                    flag = (
                        f": the estimate is {off:+.0%} off the bill (flagged over {threshold:.0%})"
                    )
            notes.append(
                f"{st.budget.id}: {len(st.actual_days)} closed day(s) from {_actual_label(st)}, "
                f"{dollars(st.actual_usd)} (estimate {dollars(est)}){flag}"
            )
        if st.unpriced_running or st.unpriced_hours or st.unobserved_hours:
            notes.append(
                f"{st.budget.id}: not counted: {st.unpriced_running} running without a price, "
                f"{st.unpriced_hours:g} h unpriced, {st.unobserved_hours:g} h unobserved"
            )
    return notes
