"""Plain data passed between the modules: what was seen, what the rules decided.

Nothing here talks to AWS, Slack or the database. Datetimes are always UTC-aware; money is
`Decimal` (never float sums).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol


class Clock(Protocol):
    """Where "now" comes from. Injected so tests and the demo can move time by hand."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, demo, benchmark)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when


# Times a person may write into a tag, after conversion to UTC. Anything outside is a typo or
# a "forever" (9999-12-31): taken as-is it overflows datetime arithmetic, the zone conversions
# of every message and the database's timestamp types, so it is ignored instead.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2201, 1, 1, tzinfo=UTC)
_MAX_TIME_TEXT = 64  # longer than any ISO-8601 time with nanoseconds and an offset


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from a tag, in UTC: `2026-12-01T10:00:00Z`, `…+01:00`, `…+0100`, a
    space instead of `T`, lowercase `t`/`z`, up to nanoseconds (cut to microseconds), a bare
    date (midnight); no offset = UTC. None if absent, malformed, or outside 2000..2200 in UTC
    (`EARLIEST_TIME`, `LATEST_TIME`): such a value is ignored, never an error."""
    if not value or len(text := value.strip()) > _MAX_TIME_TEXT:
        return None
    text = text.upper()
    if not re.fullmatch(r"[0-9TWZ:.,+\- ]+", text):  # fromisoformat skips over some junk
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python 3.11 reads at most 6 fractional digits: cut nanoseconds to microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        when = datetime.fromisoformat(text)
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+14:00 and the like
        return None
    return when if EARLIEST_TIME <= when < LATEST_TIME else None


class ActivitySource(enum.StrEnum):
    """Where a resource's `last_activity` came from, best evidence first."""

    HEARTBEAT_TAG = "heartbeat-tag"  # written by the shipped lifecycle script
    JUPYTER_LOG = "jupyter-log"  # last event of the notebook's jupyter.log stream
    INVOCATIONS = "invocations-metric"  # last CloudWatch Invocations datapoint (endpoints)
    NO_INVOCATIONS = "no-invocations"  # no Invocations datapoint in the whole window looked at
    IN_SERVICE_SINCE = "in-service-since"  # no activity seen: idle since it started
    # the last period a node was busy (HyperPod: Container Insights GPU/CPU utilization)
    NODE_UTILIZATION = "node-utilization"
    LAST_SCALED = "last-scaled"  # no utilization published: when an instance group last resized
    # storage that bills while stopped: when its notebook instance or space was last started
    LAST_START = "last-start"
    UNKNOWN = "unknown"  # a call failed: nothing may act on this resource this cycle


@dataclass(frozen=True, slots=True)
class Resource:
    """One SageMaker resource as seen in this cycle, with its price and its evidence.

    Slotted: a cycle holds one per resource of the fleet, and a backtest one per recorded
    change; without a `__dict__` each is ~0.5 KB smaller."""

    arn: str
    kind: str
    name: str
    account: str
    region: str
    status: str
    running: bool
    instance_type: str | None
    instance_count: int
    # what the whole resource costs per hour (all its instances); None = unknown, never $0
    usd_per_hour: Decimal | None
    price_source: str  # "api", "bundled", "spot-estimate", "none" (not running), "unknown"
    created_at: datetime | None
    running_since: datetime | None
    last_activity: datetime | None
    activity_source: ActivitySource
    tags: dict[str, str] = field(default_factory=dict)
    evidence_error: str | None = None  # why the evidence is unknown
    # Kind-specific facts, stored with the snapshot and reused by the next scan as a cache
    # (endpoint config and variants, a job's MaxRuntimeInSeconds, a Studio app's domain).
    # `details["key"]`, when present, holds the request parameters naming the resource.
    details: dict[str, Any] = field(default_factory=dict)
    # Peak utilization seen over a rule's window, keyed by `utilization_key(metric, window)`
    # ("gpu/3600"). A key is present only when the metrics cover the whole window.
    utilization: dict[str, float] = field(default_factory=dict)
    # When it stopped running, where AWS says so (a stopped notebook's LastModifiedTime);
    # lets the accrual end at the real stop instead of estimating it. Not stored.
    stopped_since: datetime | None = None

    @property
    def unknown(self) -> bool:
        return self.activity_source is ActivitySource.UNKNOWN

    def idle_for(self, now: datetime) -> timedelta | None:
        """How long nothing happened; None when that is not known."""
        if self.unknown or not self.running:
            return None
        # Activity from before the current run does not count: a restart is activity too.
        known = [t for t in (self.last_activity, self.running_since) if t is not None]
        if not known:
            return None
        since = max(known)
        return max(now - since, timedelta(0))

    def running_for(self, now: datetime) -> timedelta | None:
        if not self.running or self.running_since is None:
            return None
        return max(now - self.running_since, timedelta(0))

    def accrued_usd(self, now: datetime) -> Decimal | None:
        """Cost of the current run so far: $/h x hours since it started running."""
        running_for = self.running_for(now)
        if running_for is None or self.usd_per_hour is None:
            return None
        hours = Decimal(int(running_for.total_seconds())) / Decimal(3600)
        return (self.usd_per_hour * hours).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class UsagePattern:
    """A resource's weekly usage pattern (guard/profiles.py), for `schedule: learned`."""

    usual: frozenset[int]  # hours of the week it is usually used (0 = Monday 00-01, local)
    weeks: float  # of recorded history it was learned from
    confidence: float  # 0..1: the share of its uses in those hours, less while history is short
    text: str = ""  # for people: "used weekdays 09-18; idle every night ..."


def utilization_key(metric: str, window: timedelta) -> str:
    return f"{metric}/{int(window.total_seconds())}"


class Step(enum.StrEnum):
    """What the rules decided for one (resource, rule) pair in this cycle."""

    WARN = "warn"  # first match of an episode: tell the owner, start the grace period
    ACT = "act"  # grace is over and the resource still matches: do the rule's action
    RESOLVE = "resolve"  # the episode ended: it became active, stopped, or was snoozed
    # An episode that ended in a dry-run "would stop" while the guard now enforces: give the
    # owner a fresh grace period (the deadline) before acting for real.
    REARM = "rearm"


@dataclass(frozen=True)
class Decision:
    resource: Resource
    rule_id: str
    action: str  # notify | stop | delete | scale-to-zero
    step: Step
    reason: str  # the evidence, for people: "no Jupyter activity for 3 h 10 min"
    deadline: datetime | None = None  # when the action happens, for WARN
    episode_id: int | None = None  # the open episode this decision continues
    attempts: int = 0  # the episode's failed attempts at the action so far


@dataclass(frozen=True)
class Outcome:
    """What one action did."""

    outcome: str  # done | skipped | failed | dry-run
    detail: str
    snoozed: bool = False  # skipped because a snooze arrived after the cycle judged it


@dataclass(frozen=True)
class Episode:
    """Stored state of one (resource, rule) match, from first match until it ends."""

    id: int
    arn: str
    rule_id: str
    started_at: datetime
    warned_at: datetime | None
    deadline: datetime | None  # when to act (after a failed action: when to try again)
    acted_at: datetime | None
    # How the last action went: "done", "skipped", "dry-run" (re-armed when the guard starts
    # enforcing), "failed" (retried at `deadline` while it still qualifies), None = not yet.
    acted_outcome: str | None = None
    attempts: int = 0  # failed attempts so far in this episode


@dataclass(frozen=True)
class Finding:
    """Something worth fixing that is not one resource's cost: e.g. a Studio domain with no
    built-in idle shutdown. Shown in the inventory, the cycle report and the digest."""

    account: str
    region: str
    subject: str  # "domain d-abc123", "user profile alice in d-abc123"
    problem: str  # what is wrong, for people
    fix: str = ""  # what to do about it
    usd: Decimal | None = None  # the money at stake, where there is a figure (reserved capacity)


@dataclass
class ScanResult:
    """What a scan of all regions and accounts produced, with its cost in API calls."""

    resources: list[Resource] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (account, region, kind) whose listing completed: only those may mark resources gone
    scanned: set[tuple[str, str, str]] = field(default_factory=set)
    # activity-scan cursors to persist once the snapshot is saved: (account, region, source, at)
    cursors: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # Its place in the scan: (target, kind) by the config's order of accounts x regions and
    # of kinds. Parts are handed over as each is done; the cycle keeps what it made of them
    # in this order.
    order: tuple[int, int] = (0, 0)
