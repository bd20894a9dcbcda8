"""Weekly usage profiles: the hours of the week each resource (and each owner) is used.

Built from the recorded evidence (migration 0009): every new last-activity time a snapshot saw
(Jupyter log, heartbeat, endpoint invocations) and every start is a use in that hour of the
week, in the configured timezone. An hour of the week is "usual" when it was used in at least
half the weeks observed; the confidence is the share of uses that fell in usual hours, scaled
down while fewer than `FULL_WEEKS` weeks were observed. Nothing is inferred from time the
guard did not see: a profile covers only the span evidence was recorded for.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from guard.config import Config
from guard.model import ActivitySource, UsagePattern
from guard.rules import owner_of
from guard.store import Store

WEEK = timedelta(days=7)
HOURS = 168  # hours in a week; slot 0 = Monday 00:00-01:00 local time
FULL_WEEKS = 3  # observed this long, a consistent pattern gets full confidence
MIN_SPAN = timedelta(days=7)  # shorter: no profile at all (one week says nothing of the next)
LOOK_BACK = timedelta(days=28)
STABLE = 0.8  # a pattern: at least this share of the uses fell in its usual hours
USE_SOURCES = frozenset(
    {
        ActivitySource.HEARTBEAT_TAG.value,
        ActivitySource.JUPYTER_LOG.value,
        ActivitySource.INVOCATIONS.value,
    }
)
DASH = "\N{EN DASH}"  # in hour and day ranges ("09-18", "Mon-Thu" with en dashes)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Profile:
    """One resource's (or owner's) weekly pattern over the observed span."""

    subject: str  # "notebook/ada-nb" or "owner ada@example.com"
    usual: frozenset[int]  # hours of the week (0 = Monday 00-01 local) used most weeks
    uses: int  # (week, hour) cells with a use
    weeks: float  # observed span in weeks
    confidence: float  # 0..1
    text: str

    @property
    def stable(self) -> bool:
        """A weekly pattern worth acting on: usual hours that explain most uses, seen for
        `FULL_WEEKS` weeks."""
        return bool(self.usual) and self.confidence >= STABLE

    @property
    def pattern(self) -> UsagePattern:
        """As `schedule: learned` rules read it (guard/rules.py)."""
        return UsagePattern(self.usual, self.weeks, self.confidence, self.text)

    def covers(self, when: datetime, tz: ZoneInfo) -> bool:
        return slot(when, tz) in self.usual

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "usual_hours": sorted(self.usual),
            "weeks": round(self.weeks, 1),
            "uses": self.uses,
            "confidence": round(self.confidence, 2),
        }


def slot(when: datetime, tz: ZoneInfo) -> int:
    local = when.astimezone(tz)
    return local.weekday() * 24 + local.hour


def uses_of(rows: Sequence[Any]) -> list[datetime]:
    """The uses one resource's evidence rows show: new activity times and starts."""
    found: set[datetime] = set()
    for row in rows:
        if row.activity_source in USE_SOURCES and row.last_activity is not None:
            found.add(row.last_activity)
        if row.running and row.running_since is not None and row.running_since > rows[0].at:
            found.add(row.running_since)
    return sorted(found)


def profile(
    subject: str, uses: Iterable[datetime], start: datetime, end: datetime, tz: ZoneInfo
) -> Profile | None:
    """The pattern of `uses` observed over [start, end); None when that is under a week."""
    if end - start < MIN_SPAN:
        return None
    weeks = (end - start) / WEEK
    cells = {(_week(u, start), slot(u, tz)) for u in uses if start <= u < end}
    observed = _observed(start, end, tz)
    used: dict[int, int] = defaultdict(int)
    for _, h in cells:
        used[h] += 1
    usual = frozenset(h for h, n in used.items() if n / max(observed[h], 1) >= 0.5)
    inside = sum(1 for _, h in cells if h in usual)
    scale = min(1.0, weeks / FULL_WEEKS)
    confidence = (inside / len(cells) if cells else 1.0) * scale
    # Chance makes a few hours of random use look "usual": say so, never a schedule.
    shown = usual if inside >= STABLE * len(cells) else frozenset()
    return Profile(subject, usual, len(cells), weeks, confidence, describe(shown, cells, weeks))


def _week(when: datetime, start: datetime) -> int:
    return int((when - start) / WEEK)


def _observed(start: datetime, end: datetime, tz: ZoneInfo) -> list[int]:
    """How many times each hour of the week occurs in [start, end)."""
    counts = [0] * HOURS
    hour = start.replace(minute=0, second=0, microsecond=0)
    full = int((end - hour) / WEEK)
    for h in range(HOURS):
        counts[h] = full
    rest = hour + full * WEEK
    while rest < end:
        counts[slot(rest, tz)] += 1
        rest += timedelta(hours=1)
    return counts


def describe(usual: frozenset[int], cells: set[tuple[int, int]], weeks: float) -> str:
    """`used weekdays 09-18; idle every night and weekend for 3 weeks` (with en dashes)."""
    span = _weeks_text(weeks)
    if not cells:
        return f"not used in {span}"
    if not usual:
        return f"used at irregular hours ({len(cells)} hours in {span}); no stable weekly pattern"
    days = [_ranges(usual, d) for d in range(7)]
    groups: list[tuple[int, int, str]] = []  # (first day, last day, ranges)
    for d, ranges in enumerate(days):
        if groups and groups[-1][2] == ranges and groups[-1][1] == d - 1:
            groups[-1] = (groups[-1][0], d, ranges)
        else:
            groups.append((d, d, ranges))
    parts = [f"{_day_span(a, b)} {r}" for a, b, r in groups if r]
    weekend_idle = not days[5] and not days[6]
    nights_idle = not any(h % 24 < 6 for h in usual)  # nothing usual from 00:00 to 06:00
    outside = sum(1 for _, h in cells if h not in usual)
    if weekend_idle and nights_idle:
        idle = "idle every night and weekend"
    elif nights_idle:
        idle = "idle every night"
    else:
        idle = "idle outside those hours"
    exceptions = f" (and {outside} hour{'s' * (outside != 1)} outside them)" if outside else ""
    return f"used {', '.join(parts)}; {idle} for {span}{exceptions}"


def _weeks_text(weeks: float) -> str:
    whole = max(1, math.floor(weeks + 0.05))
    return f"{whole} week{'s' * (whole != 1)}"


def _day_span(first: int, last: int) -> str:
    if (first, last) == (0, 4):
        return "weekdays"
    if (first, last) == (0, 6):
        return "every day"
    if (first, last) == (5, 6):
        return "weekends"
    return _DAYS[first] if first == last else f"{_DAYS[first]}{DASH}{_DAYS[last]}"


def _ranges(usual: frozenset[int], day: int) -> str:
    hours = sorted(h - day * 24 for h in usual if day * 24 <= h < (day + 1) * 24)
    runs: list[tuple[int, int]] = []
    for h in hours:
        if runs and runs[-1][1] == h:
            runs[-1] = (runs[-1][0], h + 1)
        else:
            runs.append((h, h + 1))
    return ", ".join(f"{a:02d}{DASH}{b:02d}" for a, b in runs)


RANGE = 1000  # resources whose evidence is read at once (a month of 50,000 is GBs of rows)


def profiles(
    store: Store,
    cfg: Config,
    now: datetime,
    look_back: timedelta = LOOK_BACK,
    arns: tuple[str, str] | None = None,
) -> dict[str, Profile]:
    """A profile per resource with at least a week of recorded evidence (arn -> profile).
    `arns`: only those whose ARN is in [first, last]; else all, read `RANGE` at a time."""
    if arns is None:
        found: dict[str, Profile] = {}
        end = _seen_until(store, now)
        for part in store.evidence_arn_ranges(RANGE):
            found.update(_profiles(store, cfg, now, look_back, part, end))
        return found
    return _profiles(store, cfg, now, look_back, arns, _seen_until(store, now))


def _profiles(
    store: Store,
    cfg: Config,
    now: datetime,
    look_back: timedelta,
    arns: tuple[str, str],
    end: datetime,
) -> dict[str, Profile]:
    rows: dict[str, list[Any]] = defaultdict(list)
    for row in store.evidence_since(now - look_back, now, arns):
        rows[row.arn].append(row)
    found: dict[str, Profile] = {}
    known = store.names_by_arn(rows)  # not whole resources: the fleet's details add up
    for arn, items in rows.items():
        if arn not in known:
            continue
        kind, name = known[arn]
        start = max(items[0].at, now - look_back)
        made = profile(f"{kind}/{name}", uses_of(items), start, end, cfg.tz)
        if made is not None:
            found[arn] = made
    return found


def owner_profiles(
    store: Store, cfg: Config, now: datetime, look_back: timedelta = LOOK_BACK
) -> dict[str, Profile]:
    """A profile per owner: the uses of all their resources together."""
    rows: dict[str, list[Any]] = defaultdict(list)
    for row in store.evidence_since(now - look_back, now):
        rows[row.arn].append(row)
    known = store.resources_by_arn(rows)
    uses: dict[str, list[datetime]] = defaultdict(list)
    starts: dict[str, datetime] = {}
    for arn, items in rows.items():
        res = known.get(arn)
        owner = owner_of(res, cfg) if res is not None else ""
        if not owner:
            continue
        uses[owner].extend(uses_of(items))
        first = max(items[0].at, now - look_back)
        starts[owner] = min(starts.get(owner, first), first)
    found = {}
    end = _seen_until(store, now)
    for owner, times in uses.items():
        made = profile(f"owner {owner}", times, starts[owner], end, cfg.tz)
        if made is not None:
            found[owner] = made
    return found


MAX_LISTED = 200  # `inventory` profiles at most this many resources (one query each)


def profiles_of(
    store: Store, cfg: Config, arns: Sequence[str], now: datetime
) -> dict[str, Profile]:
    """The profiles of a few resources (arn -> profile), one query each."""
    found = {}
    for arn in arns:
        if (made := resource_profile(store, cfg, arn, now)) is not None:
            found[arn] = made
    return found


def resource_profile(store: Store, cfg: Config, arn: str, now: datetime) -> Profile | None:
    """One resource's profile (for its Slack message); None under a week of evidence."""
    items = store.evidence_of(arn, now - LOOK_BACK, now)
    if not items:
        return None
    res = store.resource(arn)
    subject = f"{res.kind}/{res.name}" if res else arn
    start = max(items[0].at, now - LOOK_BACK)
    return profile(subject, uses_of(items), start, _seen_until(store, now), cfg.tz)


def _seen_until(store: Store, now: datetime) -> datetime:
    """The end of what was observed: just past the latest snapshot (time the guard did not
    run is not time nothing happened)."""
    last = store.last_evidence_at(now)
    return now if last is None else min(now, last + timedelta(seconds=1))


def by_arn_text(found: Mapping[str, Profile]) -> dict[str, str]:
    return {arn: p.text for arn, p in found.items()}
