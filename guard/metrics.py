"""Prometheus metrics, read from the database at scrape time.

Nothing is counted in process memory: `cost-guard serve` in its own process, `run --serve`,
and every replica behind one Service answer the same numbers, whichever ran the cycles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from guard.store import Store
from guard.tables import ActionRow, OutboxRow, ResourceRow

log = logging.getLogger(__name__)


class GuardCollector(Collector):
    """One scrape = four small queries: resources, the audit trail, the outbox, the last
    cycle's report."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "cost_guard_database_up", "1 when the database answered this scrape, else 0"
        )
        try:
            families = list(self._families())
        except Exception:  # a scrape must answer even when the database does not
            log.exception("metrics: database query failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily(
            "cost_guard_scrape_duration_seconds", "Time this scrape spent reading the database"
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _families(self) -> Iterator[Metric]:
        yield from self._resources()
        yield from self._audit()
        yield from self._outbox()
        yield from self._last_cycle(self.store.last_cycle())

    def _resources(self) -> Iterator[Metric]:
        labels = ["kind", "account", "region"]
        running = GaugeMetricFamily(
            "cost_guard_running_resources", "Resources running (billing) now", labels=labels
        )
        usd = GaugeMetricFamily(
            "cost_guard_usd_per_hour",
            "What the running resources of known price cost per hour (resources of unknown "
            "price are not in it: see cost_guard_unpriced_resources; no sample when none is "
            "priced)",
            labels=labels,
        )
        unpriced = GaugeMetricFamily(
            "cost_guard_unpriced_resources",
            "Running resources without a known price (not counted in cost_guard_usd_per_hour)",
            labels=labels,
        )
        stmt = (
            select(
                ResourceRow.kind, ResourceRow.account, ResourceRow.region,
                func.count(), func.sum(ResourceRow.usd_per_hour),
                func.count() - func.count(ResourceRow.usd_per_hour),
            )
            .where(ResourceRow.running.is_(True), ResourceRow.gone_at.is_(None))
            .group_by(ResourceRow.kind, ResourceRow.account, ResourceRow.region)
        )  # fmt: skip
        with self.store.session() as s:
            for kind, account, region, count, total, missing in s.execute(stmt):
                key = [kind, account, region]
                running.add_metric(key, count)
                if total is not None:  # SUM of only NULLs: nothing known, so no $ sample at all
                    usd.add_metric(key, float(Decimal(total)))
                unpriced.add_metric(key, missing)
        yield from (running, usd, unpriced)

    def _audit(self) -> Iterator[Metric]:
        """Warnings and actions ever recorded (the audit trail is never pruned), so these are
        true counters: `increase(cost_guard_actions_total[1d])` is what happened today."""
        warnings = CounterMetricFamily(
            "cost_guard_warnings", "Warnings sent, by rule (or budget)", labels=["rule"]
        )
        actions = CounterMetricFamily(
            "cost_guard_actions",
            "Actions decided, by rule, action, mode and outcome "
            "(dry-run: would have acted; done; failed; ...)",
            labels=["rule", "action", "mode", "outcome"],
        )
        stmt = select(
            ActionRow.rule_id, ActionRow.action, ActionRow.mode, ActionRow.outcome, func.count()
        ).group_by(ActionRow.rule_id, ActionRow.action, ActionRow.mode, ActionRow.outcome)
        with self.store.session() as s:
            rows = list(s.execute(stmt))
        by_rule: dict[str, int] = {}
        for rule, action, mode, outcome, count in rows:
            rule = rule or ""
            if action == "warn":
                by_rule[rule] = by_rule.get(rule, 0) + count
            else:
                actions.add_metric([rule, action, mode, outcome], count)
        for rule, count in sorted(by_rule.items()):
            warnings.add_metric([rule], count)
        yield from (warnings, actions)

    def _outbox(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "cost_guard_outbox_pending", "Slack messages waiting in the outbox (not yet sent)"
        )
        oldest = GaugeMetricFamily(
            "cost_guard_outbox_oldest_pending_timestamp_seconds",
            "When the oldest unsent Slack message was queued (absent when none waits)",
        )
        stmt = select(func.count(), func.min(OutboxRow.created_at)).where(
            OutboxRow.sent_at.is_(None)
        )
        with self.store.session() as s:
            count, first = s.execute(stmt).one()
        depth.add_metric([], count)
        yield depth
        if first is not None:
            oldest.add_metric([], _timestamp(first))
            yield oldest

    def _last_cycle(self, report: dict[str, Any] | None) -> Iterator[Metric]:
        if report is None:
            return
        instance = str(report.get("instance", ""))
        info = GaugeMetricFamily(
            "cost_guard_last_cycle_timestamp_seconds",
            "When the last cycle finished, and which instance (host:pid) ran it",
            labels=["instance", "mode"],
        )
        info.add_metric([instance, str(report.get("mode", ""))], _timestamp(report["finished_at"]))
        yield info
        yield _gauge(
            "cost_guard_cycle_duration_seconds", "How long the last cycle took",
            report.get("duration_seconds", 0),
        )  # fmt: skip
        yield _gauge("cost_guard_cycle_resources", "Resources listed by the last cycle",
                     report.get("resources", 0))  # fmt: skip
        yield _gauge("cost_guard_cycle_errors", "Errors in the last cycle (scans that failed, "
                     "evidence that could not be read)", len(report.get("errors", [])))  # fmt: skip
        calls = GaugeMetricFamily(
            "cost_guard_cycle_aws_calls",
            "AWS API calls the last cycle made, by operation (service:Operation)",
            labels=["operation"],
        )
        for operation, count in sorted(report.get("api_calls", {}).items()):
            calls.add_metric([operation], count)
        yield calls
        errors = GaugeMetricFamily(
            "cost_guard_cycle_aws_errors",
            "AWS API calls of the last cycle that failed, by operation",
            labels=["operation"],
        )
        for operation, count in sorted(report.get("api_errors", {}).items()):
            errors.add_metric([operation], count)
        yield errors


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _timestamp(value: datetime | str) -> float:
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=UTC)
    return at.timestamp()


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuardCollector(store))
    return registry
