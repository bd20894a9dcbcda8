"""Accrued spend: what each resource cost, per day, from consecutive snapshots.

Between two observations of a resource the guard knows its state at both ends, not in
between. The rules below count only time it can vouch for, and say how much it could not:

- running at both ends, observations at most `max_gap` apart: the whole interval, at the
  $/h seen at its start;
- started in between (its `running_since` falls inside the interval): from that start — a
  fact from AWS, so it counts even across a long gap; a restart also counts the old run up to
  the middle of the stretch before the new start;
- stopped in between: up to the stop when AWS says when (`stopped_since`), else up to the
  middle of the interval (at most half a scan interval off, either way);
- running at both ends but observed further apart than `max_gap` (the daemon was down):
  nothing is guessed; the interval is recorded as unobserved;
- running while its $/h is unknown: recorded as unpriced time, never as $0.

Each interval is accrued once, in the same transaction that moves the resource's `last_seen`
past it, so a restart can never count it twice. Days are cut in the configured timezone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

MICRO = Decimal("0.000001")  # money is kept to the micro-dollar
_HOUR = Decimal(3600)
_UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True)
class Policy:
    tz: ZoneInfo = _UTC_ZONE
    max_gap: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class Observation:
    """What one snapshot said about a resource."""

    at: datetime
    running: bool
    usd_per_hour: Decimal | None
    running_since: datetime | None = None
    stopped_since: datetime | None = None  # when it stopped, if AWS says so


@dataclass(frozen=True)
class Span:
    """A stretch of time and what it counts as."""

    start: datetime
    end: datetime
    usd_per_hour: Decimal | None  # None while running = unpriced
    observed: bool = True


@dataclass
class DayTotal:
    usd: Decimal = Decimal(0)
    running_seconds: int = 0
    unpriced_seconds: int = 0
    unobserved_seconds: int = 0

    def add(self, span: Span) -> None:
        seconds = int((span.end - span.start).total_seconds())
        if not span.observed:
            self.unobserved_seconds += seconds
        elif span.usd_per_hour is None:
            self.running_seconds += seconds
            self.unpriced_seconds += seconds
        else:
            self.running_seconds += seconds
            self.usd = self.usd + cost(span.usd_per_hour, span.end - span.start)


def cost(usd_per_hour: Decimal, duration: timedelta) -> Decimal:
    seconds = Decimal(int(duration.total_seconds() * 1_000_000)) / Decimal(1_000_000)
    return (usd_per_hour * seconds / _HOUR).quantize(MICRO)


def spans(
    prev: Observation | None,
    cur: Observation,
    policy: Policy,
    listed_before: datetime | None = None,
) -> list[Span]:
    """The time between the previous observation and this one, as accruable spans.

    `prev` is None for a resource seen for the first time; `listed_before` is then when its
    account/region/kind was last listed completely (None on the very first scan).
    """
    now = cur.at
    if prev is None:
        # New since the last complete listing: its start is known, count from there.
        # On the first scan ever, what ran before the guard watched is not ours to guess.
        start = cur.running_since
        if cur.running and start and listed_before and listed_before <= start < now:
            return [Span(start, now, cur.usd_per_hour)]
        return []
    if now <= prev.at:
        return []
    gap = now - prev.at
    price = prev.usd_per_hour if prev.usd_per_hour is not None else cur.usd_per_hour
    started_inside = cur.running_since is not None and prev.at <= cur.running_since < now
    if cur.running and (started_inside or not prev.running):
        if started_inside:
            assert cur.running_since is not None
            this_run = Span(cur.running_since, now, cur.usd_per_hour)
            if prev.running and gap <= policy.max_gap:  # restarted: the undated stop came
                # between the last look and the new start; split that stretch
                return [Span(prev.at, prev.at + (cur.running_since - prev.at) / 2, price), this_run]
            return [this_run]
        if gap <= policy.max_gap:  # it started at a time AWS did not tell: split the gap
            return [Span(prev.at + gap / 2, now, cur.usd_per_hour)]
        return [Span(prev.at, now, None, observed=False)]
    if prev.running and cur.running:
        if gap <= policy.max_gap:
            return [Span(prev.at, now, price)]
        return [Span(prev.at, now, None, observed=False)]
    if prev.running:  # stopped (or gone) in between
        stop = cur.stopped_since
        if stop is not None and prev.at <= stop <= now:
            return [Span(prev.at, stop, price)]
        if gap <= policy.max_gap:
            return [Span(prev.at, prev.at + gap / 2, price)]
        return [Span(prev.at, now, None, observed=False)]
    return []


def by_day(items: list[Span], tz: ZoneInfo) -> dict[date, DayTotal]:
    """Cut spans at midnight in `tz` and total them per local day."""
    totals: dict[date, DayTotal] = {}
    for span in items:
        start = span.start
        while start < span.end:
            day = start.astimezone(tz).date()
            midnight = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
            end = min(span.end, midnight)
            totals.setdefault(day, DayTotal()).add(
                Span(start, end, span.usd_per_hour, span.observed)
            )
            start = end
    return totals
