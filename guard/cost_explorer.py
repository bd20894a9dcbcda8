"""Optional: Cost Explorer's real figure for closed days, in place of the guard's estimate.

Only with `cost_explorer.enabled` (GetCostAndUsage costs $0.01 per request). Per budget scope
and day at most one fetch: the first cycle of a local day asks for every closed day of the
current periods (so figures Cost Explorer revises settle), and stores them per (scope, day) in
`actual_costs` with the fetch time. The filter is SERVICE = "Amazon SageMaker", ANDed with
the budget's accounts (LINKED_ACCOUNT), regions (REGION) and tags:

- `team: ml` -> `{"Tags": {"Key": "team", "Values": ["ml"]}}` (exact, case-sensitive);
- `team: "*"` -> `{"Not": {"Tags": {"Key": "team", "MatchOptions": ["ABSENT"]}}}`: any value.
  AWS's TagValues reference: "If Key is provided and Values isn't specified, the ABSENT
  MatchOption is applied to the tag Key only. That is, it's filtered on resources without the
  given tag key" — so its negation is "has the key, whatever the value".

Cost Explorer knows a tag only once it is activated as a cost allocation tag, and cannot tell
SageMaker's resource kinds apart, so a budget that narrows `kinds` keeps its estimate.
Cost Explorer's days are UTC days; in another timezone a local day is compared with the UTC
day of the same date (an approximation the README states).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from guard.aws import AWS_ERRORS, Aws, error_text
from guard.config import Budget, BudgetScope, Config
from guard.kinds import KINDS
from guard.store import Store
from guard.tables import ActualCostRow

log = logging.getLogger(__name__)

SERVICE = "Amazon SageMaker"  # Cost Explorer's SERVICE dimension value
ALL = "all"  # the scope of every budget without accounts, regions or tags
CE_REGION = "us-east-1"  # Cost Explorer's endpoint lives there
PERMISSION = "ce:GetCostAndUsage"


def scope_key(budget: Budget) -> str | None:
    """The `actual_costs` scope holding this budget's figures; None when Cost Explorer cannot
    express its scope (it narrows kinds)."""
    scope = budget.scope
    if scope.kinds and set(scope.kinds) != set(KINDS):
        return None
    if not (scope.accounts or scope.regions or scope.tags):
        return ALL
    return budget.id


def cost_filter(scope: BudgetScope) -> dict[str, Any]:
    """The GetCostAndUsage `Filter` for a budget's scope (kinds aside)."""
    parts: list[dict[str, Any]] = [{"Dimensions": {"Key": "SERVICE", "Values": [SERVICE]}}]
    if scope.accounts:
        parts.append({"Dimensions": {"Key": "LINKED_ACCOUNT", "Values": list(scope.accounts)}})
    if scope.regions:
        parts.append({"Dimensions": {"Key": "REGION", "Values": list(scope.regions)}})
    for key, value in sorted(scope.tags.items()):
        if value == "*":
            parts.append({"Not": {"Tags": {"Key": key, "MatchOptions": ["ABSENT"]}}})
        else:
            parts.append({"Tags": {"Key": key, "Values": [value]}})
    return parts[0] if len(parts) == 1 else {"And": parts}


def closed_until(now: datetime, cfg: Config) -> date:
    """Days before this one are over both locally and in UTC (Cost Explorer's days)."""
    return min(now.astimezone(cfg.tz).date(), now.astimezone(UTC).date())


def refresh(
    cfg: Config, aws: Aws, store: Store, now: datetime, starts: Mapping[str, date]
) -> list[str]:
    """Fetch what is due (at most once per scope per local day); return errors for people.

    `starts` maps each budget id to the first day of its current period.
    """
    if not cfg.cost_explorer.enabled:
        return []
    wanted: dict[str, tuple[BudgetScope, date]] = {}
    for budget in cfg.budgets:
        key = scope_key(budget)
        if key is None or budget.id not in starts:
            continue
        start = starts[budget.id]
        if key in wanted:
            start = min(start, wanted[key][1])
        wanted[key] = (budget.scope, start)
    end = closed_until(now, cfg)
    today = datetime.combine(now.astimezone(cfg.tz).date(), time(), cfg.tz).astimezone(UTC)
    errors = []
    for key, (scope, start) in sorted(wanted.items()):
        if start >= end or _fetched_since(store, key, today):
            continue
        try:
            days = _fetch(aws, scope, start, end)
        except AWS_ERRORS as exc:
            why = error_text(exc)
            log.warning("Cost Explorer GetCostAndUsage for %s failed: %s", key, why)
            errors.append(f"Cost Explorer ({key}): {why}; budgets use the estimate")
            continue
        _save(store, key, days, now)
        log.info("Cost Explorer: %d day(s) of actual cost for %s", len(days), key)
    return errors


def actuals(
    store: Store, scopes: Iterable[str], start: date, end: date
) -> dict[str, dict[date, Decimal]]:
    """Stored figures per scope and day, for days in [start, end)."""
    wanted = sorted(set(scopes))
    found: dict[str, dict[date, Decimal]] = {scope: {} for scope in wanted}
    if not wanted:
        return found
    with store.session() as s:
        rows = s.scalars(
            select(ActualCostRow).where(
                ActualCostRow.scope.in_(wanted), ActualCostRow.day >= start, ActualCostRow.day < end
            )
        )
        for row in rows:
            found[row.scope][row.day] = row.usd
    return found


def _fetched_since(store: Store, scope: str, since: datetime) -> bool:
    with store.session() as s:
        last = s.scalar(
            select(func.max(ActualCostRow.fetched_at)).where(ActualCostRow.scope == scope)
        )
    if last is None:
        return False
    last = last if last.tzinfo else last.replace(tzinfo=UTC)  # max() skips the column type
    return bool(last >= since)


def _fetch(aws: Aws, scope: BudgetScope, start: date, end: date) -> dict[date, Decimal]:
    client = aws.client(None, CE_REGION, "ce")
    request: dict[str, Any] = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},  # End exclusive
        "Granularity": "DAILY",
        "Metrics": ["UnblendedCost"],
        "Filter": cost_filter(scope),
    }
    days: dict[date, Decimal] = {}
    while True:
        response = client.get_cost_and_usage(**request)
        for result in response.get("ResultsByTime", []):
            amount = result.get("Total", {}).get("UnblendedCost", {}).get("Amount")
            if amount is not None:
                days[date.fromisoformat(result["TimePeriod"]["Start"])] = Decimal(str(amount))
        token = response.get("NextPageToken")
        if not token:
            return days
        request["NextPageToken"] = token


def _save(store: Store, scope: str, days: Mapping[date, Decimal], now: datetime) -> None:
    with store.session() as s:
        for day, usd in days.items():
            row = s.get(ActualCostRow, (scope, day))
            if row is None:
                s.add(ActualCostRow(scope=scope, day=day, usd=usd, fetched_at=now))
            else:
                row.usd, row.fetched_at = usd, now
