"""Accrued spend: the span rules on their own, then a simulated day against the analytic cost.

The day runs cycles every 5 minutes against the simulator, with a short restart (20 min, under
`accrual.max_gap`) and a long outage (2 h, over it), in a non-UTC timezone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from guard.accrual import Observation, Policy, Span, by_day, spans
from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.pricing import PriceBook
from guard.sim import Simulator
from tests.factories import guard_for

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(max_gap=timedelta(minutes=30))
PRICE = Decimal("2.0")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_running_at_both_ends_accrues_the_interval() -> None:
    prev = Observation(at(0), True, PRICE)
    assert spans(prev, Observation(at(5), True, PRICE), POLICY) == [Span(at(0), at(5), PRICE)]


def test_a_gap_longer_than_the_bound_is_unobserved_not_guessed() -> None:
    prev = Observation(at(0), True, PRICE)
    got = spans(prev, Observation(at(120), True, PRICE), POLICY)
    assert got == [Span(at(0), at(120), None, observed=False)]


def test_a_start_inside_the_interval_counts_from_the_start_even_after_a_long_gap() -> None:
    prev = Observation(at(0), False, None)
    cur = Observation(at(120), True, PRICE, running_since=at(100))
    assert spans(prev, cur, POLICY) == [Span(at(100), at(120), PRICE)]


def test_a_stop_counts_up_to_the_stop_when_aws_dates_it_else_the_middle() -> None:
    prev = Observation(at(0), True, PRICE)
    dated = Observation(at(5), False, None, stopped_since=at(1))
    assert spans(prev, dated, POLICY) == [Span(at(0), at(1), PRICE)]
    undated = Observation(at(5), False, None)
    assert spans(prev, undated, POLICY) == [Span(at(0), at(2.5), PRICE)]


def test_a_restart_between_two_looks_counts_both_runs() -> None:
    prev = Observation(at(0), True, PRICE)
    cur = Observation(at(5), True, PRICE, running_since=at(3))
    # the old run up to the middle of [0, 3] (its stop is undated), the new one from 3
    assert spans(prev, cur, POLICY) == [Span(at(0), at(1.5), PRICE), Span(at(3), at(5), PRICE)]


def test_first_sight_counts_only_what_started_since_the_last_complete_listing() -> None:
    cur = Observation(at(5), True, PRICE, running_since=at(3))
    assert spans(None, cur, POLICY, listed_before=at(0)) == [Span(at(3), at(5), PRICE)]
    # the very first scan: what ran before the guard watched is not counted
    assert spans(None, cur, POLICY, listed_before=None) == []
    older = Observation(at(5), True, PRICE, running_since=at(-600))
    assert spans(None, older, POLICY, listed_before=at(0)) == []


def test_an_unknown_price_is_unpriced_time_never_zero_dollars() -> None:
    prev = Observation(at(0), True, None)
    (day,) = by_day(spans(prev, Observation(at(5), True, None), POLICY), POLICY.tz).values()
    assert (day.usd, day.running_seconds, day.unpriced_seconds) == (Decimal(0), 300, 300)


def test_days_are_cut_at_local_midnight() -> None:
    tz = ZoneInfo("America/New_York")  # 2026-11-24 00:00 EST = 05:00 UTC
    midnight = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    totals = by_day([Span(midnight - timedelta(hours=1), midnight + timedelta(hours=3), PRICE)], tz)
    assert totals[date(2026, 11, 23)].usd == Decimal("2.000000")
    assert totals[date(2026, 11, 24)].usd == Decimal("6.000000")


# --- a simulated day -------------------------------------------------------------------

TZ = ZoneInfo("America/New_York")
DAY = date(2026, 11, 23)
MIDNIGHT = datetime(2026, 11, 23, 0, 0, tzinfo=TZ).astimezone(UTC)
RESTART = (2 * 60, 2 * 60 + 20)  # down 20 minutes: under max_gap, accrued through
OUTAGE = (13 * 60, 15 * 60)  # down 2 hours: over max_gap, recorded as unobserved


def local(minutes: int) -> datetime:
    return MIDNIGHT + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Run:
    """One resource's true life on the day: what it costs per hour, when it ran."""

    kind: str
    name: str
    usd_per_hour: Decimal
    start: int  # minutes after local midnight (0 = running before the day began)
    end: int  # minutes after local midnight (1440 = still running at the day's end)
    # Does AWS say when it stopped (a notebook's LastModifiedTime, a job's end time)? A
    # deleted endpoint's end is not dated: it is placed mid-interval, <= 2.5 min off.
    dated_stop: bool

    def analytic(self) -> tuple[Decimal, int]:
        """(cost of the observed running time, seconds unobserved) on the day."""
        running = self.end - self.start
        lost = max(0, min(self.end, OUTAGE[1]) - max(self.start, OUTAGE[0]))
        hours = Decimal(running - lost) / 60
        return self.usd_per_hour * hours, lost * 60


def test_a_simulated_day_accrues_the_analytic_cost_per_resource(
    sim: Simulator, aws_env: Simulator, clock: ManualClock, db_url: str
) -> None:
    book = PriceBook()

    def price(instance_type: str, component: str, count: int = 1) -> Decimal:
        value = book.price(instance_type, "us-east-1", component).usd_per_hour
        assert value is not None
        return value * count

    runs = [
        Run("notebook", "nb-all-day", price("ml.t3.medium", "Notebook"), 0, 1440, True),
        Run("notebook", "nb-work", price("ml.g5.xlarge", "Notebook"), 8 * 60 + 7, 17 * 60 + 43,
            True),
        Run("training_job", "train-1", price("ml.g5.xlarge", "Training", 2), 3 * 60 + 10,
            12 * 60 + 31, True),
        Run("endpoint", "ep-1", price("ml.m5.xlarge", "Hosting", 2), 6 * 60, 21 * 60 + 52,
            False),
    ]  # fmt: skip
    events: dict[int, Callable[[], object]] = {
        3 * 60 + 10: lambda: sim.add_training_job("train-1", "ml.g5.xlarge", 2),
        6 * 60: lambda: sim.add_endpoint("ep-1", "ml.m5.xlarge", 2),
        8 * 60 + 7: lambda: sim.add_notebook("nb-work", "ml.g5.xlarge"),
        12 * 60 + 31: lambda: _stop_job(sim, "train-1"),
        17 * 60 + 43: lambda: _stop_notebook(sim, "nb-work"),
        21 * 60 + 52: lambda: sim.client("sagemaker").delete_endpoint(EndpointName="ep-1"),
    }
    clock.set(local(0) - timedelta(hours=4))
    sim.add_notebook("nb-all-day", in_service_since=local(0) - timedelta(hours=4))

    # Only the kinds that run today: the other scanners' empty listings add calls, not cover.
    settings: dict[str, Any] = {"timezone": "America/New_York", "pricing": {"source": "bundled"},
                "accrual": {"max_gap": "30m"},
                "kinds": ["notebook", "training_job", "endpoint"]}  # fmt: skip
    guard = guard_for(clock, db_url, [], **settings)
    minute = 0
    while minute <= 1440 + 5:
        for when in sorted(e for e in events if minute - 5 < e <= minute):
            clock.set(local(when))
            events.pop(when)()
        clock.set(local(minute))
        down = RESTART[0] < minute < RESTART[1] or OUTAGE[0] < minute < OUTAGE[1]
        if minute in (RESTART[1], OUTAGE[1]):
            guard.store.close()  # a restarted daemon: a new process on the same database
            guard = guard_for(clock, db_url, [], **settings)
        if not down:
            run_cycle(guard)
        minute += 5

    spent = guard.store.spent(DAY, DAY + timedelta(days=1))
    accrued = {arn.rsplit("/", 1)[-1]: day for arn, day in spent.items()}
    for run in runs:
        expected_usd, expected_unobserved = run.analytic()
        got = accrued[run.name]
        assert abs(got.usd - expected_usd) <= expected_usd * Decimal("0.005"), (
            f"{run.name}: accrued ${got.usd}, analytic ${expected_usd:.6f}"
        )
        if run.dated_stop:  # starts and dated stops are exact to the second; each 5-minute
            # interval is kept to the micro-dollar, so ~290 intervals drift under $0.0002
            assert abs(got.usd - expected_usd) < Decimal("0.0002"), run.name
        assert got.unobserved_seconds == expected_unobserved, run.name
        assert got.unpriced_seconds == 0
    guard.store.close()


def _stop_job(sim: Simulator, name: str) -> None:
    sim.client("sagemaker").stop_training_job(TrainingJobName=name)
    sim.settle_jobs()


def _stop_notebook(sim: Simulator, name: str) -> None:
    sim.client("sagemaker").stop_notebook_instance(NotebookInstanceName=name)
    sim.settle()
