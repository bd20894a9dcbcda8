"""Backtest: replay the recorded history through a rule set and count what it would have done.

`cost-guard backtest --rules candidate.yaml` rebuilds, for every recorded cycle, the snapshot
that cycle saw (from the `evidence` rows each snapshot writes when a resource's evidence
changes, migration 0009) and passes it to the very functions a live cycle calls
(`guard.rules.evaluate`), with episodes kept the way the cycle keeps them. No AWS call; only
the database is read.

The world replayed is the fleet *without* cost-guard: where the real guard stopped or deleted
something, the resource is taken to have run on, idle and at the same price, until it really
ran again (its owner restarted it, traffic came back), a job until its MaxRuntimeInSeconds,
else until the end of the window (the counterfactual of "Saved by cost-guard"). Over that
world the rules under test act; a resource they stop stays off until its next recorded use
(its owner would have started it again then), or until it would have stopped anyway. What that
saves is its $/h over the time it was off. A stop followed by a use within the rule's grace
(at least one cycle interval) is a would-be busy stop, listed with both times.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import heapq
import itertools
import operator
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from guard import accrual, profiles
from guard.config import Config, ConfigError, Rule
from guard.config import _describe as describe
from guard.model import ActivitySource, Episode, Resource, Step, UsagePattern
from guard.rules import FOREVER, LEARNED, evaluate, human
from guard.store import Store, job_limit

MUTATIONS = ("stop", "delete", "scale-to-zero")  # actions that take a resource off the bill
# Evidence of a person or a client using the resource (not "in service since" or "unknown").
USE_SOURCES = frozenset(
    {ActivitySource.HEARTBEAT_TAG, ActivitySource.JUPYTER_LOG, ActivitySource.INVOCATIONS}
)
WARM_UP_CAP = timedelta(days=7)
LISTED = 10  # differences from the real actions shown in the text report


@dataclass(frozen=True)
class Point:
    """One resource's state from `at` on, until its next point (a no-guard timeline)."""

    at: datetime
    res: Resource
    snoozed_until: datetime | None = None


@dataclass
class History:
    """What the database recorded, ready to replay: cycle times, each resource's no-guard
    timeline, the snapshots' blind spots, and what the guard really did."""

    since: datetime
    until: datetime
    start: datetime  # the replay starts here (a warm-up before `since`, within the evidence)
    cycles: list[datetime]  # every recorded snapshot from `start`: the replay's cycles
    timelines: dict[str, list[Point]]
    missed: dict[datetime, set[str]] = field(default_factory=dict)
    real: list[dict[str, Any]] = field(default_factory=list)  # real actions in [since, until]
    real_saved: Decimal = Decimal(0)  # "Saved by cost-guard" of those actions, to `until`
    cannot_tell: list[str] = field(default_factory=list)
    # arn -> when the guard's done stops/deletes took effect, in order: a timeline read later
    # (`load_part`) is made the no-guard one with these
    acted: dict[str, list[datetime]] = field(default_factory=dict)
    recorded: bool = True  # False: no evidence at all in the window, no timeline to read

    def subset(self, arns: Iterable[str]) -> History:
        """The same history with only these resources: rules act per resource, so what a rule
        for one resource does is replayed over its own timeline alone."""
        wanted = set(arns)
        timelines = {arn: tl for arn, tl in self.timelines.items() if arn in wanted}
        real = [r for r in self.real if r["arn"] in wanted]
        return replace(self, timelines=timelines, real=real)

    @functools.cached_property
    def times(self) -> dict[str, list[datetime]]:
        """Each timeline's point times, for bisecting."""
        return {arn: [p.at for p in tl] for arn, tl in self.timelines.items()}

    @functools.cached_property
    def interval(self) -> timedelta:
        """The usual time between two cycles (the median gap)."""
        times = self.cycles
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times) if b > a]
        return timedelta(seconds=statistics.median(gaps)) if gaps else timedelta(minutes=5)


@dataclass(frozen=True)
class Stop:
    """One action the replayed rules took, and what it took off the bill."""

    arn: str
    kind: str
    name: str
    rule_id: str
    action: str
    at: datetime
    until: datetime  # back on (its next use), stopped anyway, or the end of the window
    basis: str  # "used again" | "stopped anyway" | "end of window"
    usd_per_hour: Decimal | None
    used_at: datetime | None = None  # its next recorded use, if any
    busy: bool = False  # used again within the rule's grace (at least one cycle)

    @property
    def usd(self) -> Decimal | None:
        if self.usd_per_hour is None:
            return None
        return accrual.cost(self.usd_per_hour, max(self.until - self.at, timedelta(0)))


@dataclass
class Replay:
    """What a rule set did over the history: its stops (from `since`) and warnings."""

    stops: list[Stop] = field(default_factory=list)
    warnings: int = 0


# --- loading the history --------------------------------------------------------------------


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cyclic garbage collector off while a history is loaded or replayed: both
    allocate hundreds of thousands of small objects that reference counting frees, and each
    collection walked the whole history again (a third of the time, measured)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_cycle_collection()
def load_history(store: Store, since: datetime, until: datetime, warm_up: timedelta) -> History:
    """Read the recorded evidence, cycles and actions from `since - warm_up` to `until`."""
    frame = load_frame(store, since, until, warm_up)
    return load_part(store, frame) if frame.recorded else frame


def load_frame(store: Store, since: datetime, until: datetime, warm_up: timedelta) -> History:
    """The history without its timelines: cycles, blind spots, what the guard did. Rules act
    per resource, so a big fleet is replayed a part at a time: `load_part` adds the
    timelines of a range of ARNs (guard/recommend.py), never the whole fleet's at once."""
    cannot: list[str] = []
    first = store.first_evidence_at()
    if first is None or first > until:
        cannot.append(
            "no evidence was recorded in this window: history before migration 0009 (or "
            "before the first cycle after it) keeps only the latest snapshot, not what each "
            "cycle saw, so it cannot be replayed"
        )
        return History(since, until, since, [], {}, cannot_tell=cannot, recorded=False)
    start = max(since - min(warm_up, max(WARM_UP_CAP, profiles.LOOK_BACK)), first)
    if first > since:
        cannot.append(
            f"evidence is recorded only from {first:%Y-%m-%d %H:%M} UTC (migration 0009): the "
            "replay starts there; what came before cannot be replayed"
        )
    snapshots = store.evidence_snapshots(start, until)
    # Every recorded snapshot is a replay point: a cycle's (it decided right after it) or an
    # `inventory --scan`'s (where no rule ran: replayed as if one had).
    cycles = sorted(snapshots)
    # only what the replay reads: the done stops and deletes, and the real (or dry-run) ones
    actions = store.actions_between(start, until, MUTATIONS, ("done", "dry-run"))
    acted: dict[str, list[datetime]] = defaultdict(list)
    for act in actions:  # oldest first: each undone in turn, as they happened
        if act.action in MUTATIONS and act.outcome == "done":
            acted[act.arn].append(act.finished_at or act.at)
    real = [
        {
            "arn": a.arn,
            "kind": a.kind,
            "name": a.name,
            "rule": a.rule_id,
            "action": a.action,
            "at": a.at,
            "outcome": a.outcome,
        }
        for a in actions
        if a.at >= since and a.action in MUTATIONS and a.outcome in ("done", "dry-run")
    ]
    del actions
    saved = sum(
        ((s.usd(since) or Decimal(0)) for s in store.savings(until) if since <= s.at <= until),
        Decimal(0),
    )
    missed = {at: set(arns) for at, arns in snapshots.items() if arns}
    if missed:
        cannot.append(
            f"{len(missed)} snapshot(s) did not list some known resources (a scan failed): "
            "those cycles skip them, as the real cycles did"
        )
    times = cycles
    history = History(
        since, until, start, cycles, {}, missed, real, saved, cannot, acted=dict(acted)
    )
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a > 3 * history.interval]
    if gaps:
        lost = sum((b - a for a, b in gaps), timedelta(0))
        cannot.append(
            f"{len(gaps)} gap(s) without cycles ({human(lost)} in all): no evidence exists "
            "for them; the replay acts only at recorded cycles"
        )
    cannot.extend(_always_unknown())
    return history


@_no_cycle_collection()
def load_part(store: Store, frame: History, arns: tuple[str, str] | None = None) -> History:
    """`frame` (from `load_frame`) with the no-guard timelines of the resources whose ARN is
    in [first, last] (`Store.evidence_arn_ranges`); all of them when `arns` is None."""
    if not frame.recorded:
        return frame
    rows = store.evidence_since(frame.start, frame.until, arns)
    statics = store.resources_by_arn({row.arn for row in rows})
    timelines: dict[str, list[Point]] = defaultdict(list)
    sources = {s.value: s for s in ActivitySource}
    for row in rows:
        base = statics.get(row.arn)
        if base is None:
            continue
        source = sources[row.activity_source]
        tags = dict(row.tags or {})
        utilization = {k: float(v) for k, v in (row.utilization or {}).items()}
        if timelines[row.arn]:  # share what did not change: a month is millions of rows
            prev = timelines[row.arn][-1].res
            tags = prev.tags if prev.tags == tags else tags
            utilization = prev.utilization if prev.utilization == utilization else utilization
        # What the row recorded, on the resource's latest static facts. Every field is named
        # (a new Resource field must be added here: a default would hide what it holds).
        res = Resource(
            arn=base.arn,
            kind=base.kind,
            name=base.name,
            account=base.account,
            region=base.region,
            status=row.status,
            running=row.running,
            instance_type=row.instance_type,
            instance_count=row.instance_count,
            usd_per_hour=row.usd_per_hour,
            price_source=base.price_source,
            created_at=base.created_at,
            running_since=row.running_since,
            last_activity=row.last_activity,
            activity_source=source,
            tags=tags,
            evidence_error="unknown in this cycle" if source is ActivitySource.UNKNOWN else None,
            details=base.details,
            utilization=utilization,
        )
        timelines[row.arn].append(Point(row.at, res, row.snoozed_until))
    del rows, statics
    for arn, times in frame.acted.items():
        if arn in timelines:
            for acted in times:
                timelines[arn] = _without_guard(timelines[arn], acted)
    return replace(frame, timelines=dict(timelines))


def _always_unknown() -> list[str]:
    return [
        "what people would have done differently is not recorded: a resource stopped by a "
        "rule is taken to be started again at its next recorded use, and one the guard really "
        "stopped to have run on idle until it really ran again",
        "budgets, Slack clicks and snoozes are not replayed: snoozes and exemptions are as "
        "recorded; budget actions are undone like the rules' own",
        "each cycle is replayed at its snapshot time (the real cycle decided seconds later)",
    ]


def _without_guard(points: list[Point], acted: datetime) -> list[Point]:
    """The timeline had the guard not acted at `acted`: its points where it was off (from
    the action until it next ran) removed, so its state before the action runs on; a job
    ends at its MaxRuntimeInSeconds instead."""
    before = [p for p in points if p.at <= acted]
    if not before or not before[-1].res.running:
        return points
    last = before[-1]
    after = [p for p in points if p.at > acted]
    back = next((i for i, p in enumerate(after) if p.res.running), len(after))
    kept = after[back:]
    limit = job_limit(last.res.details) if last.res.kind.endswith("_job") else None
    if limit is not None:
        end = max(limit, acted)
        if not kept or kept[0].at > end:
            ended = _with(last.res, running=False, status="Completed (MaxRuntimeInSeconds)")
            kept = [Point(end, ended), *kept]
    return [*before, *kept]


# --- the replay -----------------------------------------------------------------------------


@_no_cycle_collection()
def replay(
    history: History,
    cfg: Config,
    *,
    unexempt: frozenset[str] = frozenset(),
    judge_all: bool = False,
) -> Replay:
    """Run `cfg.rules` over the history, as enforcing: the same `evaluate` a cycle calls, at
    every recorded cycle, with episodes kept as the cycle keeps them. `unexempt`: ARNs whose
    exemption tag is taken away (to price an exemption). `judge_all`: pass every resource to
    `evaluate` at every cycle, not only those that could be decided on (slower, the same
    result: the reference the tests hold the fast path to)."""
    busy_window = max(history.interval, timedelta(0))
    rules = {rule.id: rule for rule in cfg.rules}
    points = sorted(
        ((p.at, i, arn, p) for arn, tl in history.timelines.items() for i, p in enumerate(tl)),
        key=lambda x: (x[0], x[1]),
    )
    current: dict[str, Point] = {}
    off: dict[str, Stop] = {}  # stopped by the replayed rules, not yet used again
    back_on: list[tuple[datetime, str]] = []  # (when, arn) of those: a heap
    restarted: dict[str, datetime] = {}  # started again (by its owner) after such a stop
    started: dict[tuple[int, datetime], Resource] = {}
    episodes: dict[tuple[str, str], Episode] = {}
    result = Replay()
    next_point, next_id = 0, 1
    learning = any(rule.schedule == LEARNED for rule in cfg.rules)
    uses = {arn: uses_in(tl) for arn, tl in history.timelines.items()} if learning else {}
    learned: dict[str, UsagePattern] = {}
    learned_on = None
    # Only what could be decided on is judged at a cycle: a resource whose state changed (a
    # new point, back on after a replayed stop, missed by the last snapshot), one with an
    # open episode, and one whose quiet time is up. A resource on which the rules decided
    # nothing is quiet until `evaluate` says time alone could change that: arn -> (the
    # state judged, that time), and the time in `wakes`. Same decisions, far fewer calls.
    due: set[str] = set()
    quiet: dict[str, tuple[Resource, datetime]] = {}
    wakes: list[tuple[datetime, str]] = []  # a heap
    unexempted: dict[int, tuple[Resource, Resource]] = {}  # id(res) -> (res, its copy)
    for now in history.cycles:
        if learning and learned_on != (day := now.astimezone(cfg.tz).date()):
            # relearned once a day, from what was recorded before `now` only
            learned, learned_on = patterns(history, uses, now, cfg), day
        while next_point < len(points) and points[next_point][0] <= now:
            _, _, arn, point = points[next_point]
            next_point += 1
            current[arn] = point
            due.add(arn)
        while back_on and back_on[0][0] <= now:  # used again (or stopped anyway) by now
            _, arn = heapq.heappop(back_on)
            stop = off.pop(arn)
            if stop.basis == "used again" and stop.used_at is not None:
                restarted[arn] = stop.used_at
            due.add(arn)
        while wakes and wakes[0][0] <= now:
            due.add(heapq.heappop(wakes)[1])
        missed = history.missed.get(now, set())
        with_episode = {arn for arn, _ in episodes}
        judged, due = (set(current) if judge_all else due) | with_episode, set()
        shown: list[Resource] = []
        snoozes: dict[str, datetime] = {}
        for arn in judged:
            if arn in missed:
                due.add(arn)  # as the real cycle: not judged until listed again
                continue
            if arn not in current:
                continue
            point = current[arn]
            res = point.res
            if arn in off:
                if arn not in with_episode:
                    continue  # stopped, nothing open: `evaluate` would say nothing
                res = _with(res, running=False, status="Stopped (backtest)")
            elif arn in restarted:
                again = restarted[arn]
                if not res.running or (res.running_since and res.running_since >= again):
                    del restarted[arn]
                else:
                    state = (id(point), again)  # one copy per state, not one per cycle
                    if state not in started:
                        started[state] = _with(res, running_since=again)
                    res = started[state]
            if arn in unexempt:
                if id(res) not in unexempted:  # one copy per state, kept with its original
                    tags = {k: v for k, v in res.tags.items() if k != cfg.tags.exempt}
                    unexempted[id(res)] = (res, _with(res, tags=tags))
                res = unexempted[id(res)][1]
            calm = quiet.get(arn) if arn not in with_episode else None
            if calm is not None and calm[0] is res and now < calm[1] and not judge_all:
                continue  # woken early (an older wake time): still quiet
            shown.append(res)
            if point.snoozed_until is not None:
                snoozes[arn] = point.snoozed_until
        untils: dict[str, datetime] = {}
        decisions = evaluate(shown, episodes, snoozes, cfg, now, learned, untils)
        for res in shown:
            if (until := untils.get(res.arn)) is not None:
                quiet[res.arn] = (res, until)
                if until < FOREVER:
                    heapq.heappush(wakes, (until, res.arn))
            else:  # an episode, a decision, or an answer time alone may change
                quiet.pop(res.arn, None)
                due.add(res.arn)
        for d in decisions:
            key = (d.resource.arn, d.rule_id)
            if d.step is Step.WARN:
                episodes[key] = Episode(next_id, key[0], key[1], now, now, d.deadline, None)
                next_id += 1
                result.warnings += now >= history.since
            elif d.step is Step.RESOLVE:
                episodes.pop(key, None)
            elif d.step is Step.ACT:
                episodes.pop(key, None)
                if key[0] in off:
                    continue  # another rule stopped it in this cycle
                rule = rules[d.rule_id]
                stop = _stop(history, d.resource, rule, now, max(rule.grace, busy_window))
                off[key[0]] = stop
                heapq.heappush(back_on, (stop.until, key[0]))
                restarted.pop(key[0], None)
                if now >= history.since:
                    result.stops.append(stop)
    return result


_FIELDS = tuple(f.name for f in fields(Resource))
_POSITION = {name: i for i, name in enumerate(_FIELDS)}
_VALUES = operator.attrgetter(*_FIELDS)


def _with(res: Resource, **changes: Any) -> Resource:
    """`dataclasses.replace` at two thirds of its cost (a month of a fleet is 10^5-10^6
    copies); a misspelt field is a KeyError."""
    values = list(_VALUES(res))
    for name, value in changes.items():
        values[_POSITION[name]] = value
    return Resource(*values)


def uses_in(timeline: Sequence[Point]) -> list[datetime]:
    """Every use a no-guard timeline shows (new activity times, starts), oldest first."""
    found = set()
    for point in timeline:
        res = point.res
        if res.activity_source in USE_SOURCES and res.last_activity is not None:
            found.add(res.last_activity)
        if res.running and res.running_since is not None and res.running_since > timeline[0].at:
            found.add(res.running_since)  # a start is a use (not the run it was first seen in)
    return sorted(found)


def patterns(
    history: History, uses: Mapping[str, list[datetime]], now: datetime, cfg: Config
) -> dict[str, UsagePattern]:
    """Each resource's weekly pattern as it could be learned at `now` (no look ahead)."""
    found = {}
    for arn, times in uses.items():
        timeline = history.timelines[arn]
        start = max(timeline[0].at, history.start, now - profiles.LOOK_BACK)
        seen = [t for t in times if start <= t < now]
        made = profiles.profile(arn, seen, start, now, cfg.tz)
        if made is not None:
            found[arn] = made.pattern
    return found


def _stop(
    history: History, res: Resource, rule: Rule, at: datetime, busy_window: timedelta
) -> Stop:
    """A stop at `at`: off until the next recorded use, or until it stopped anyway."""
    until, basis, used = history.until, "end of window", None
    timeline = history.timelines.get(res.arn, [])
    for point in timeline[bisect.bisect_right(history.times.get(res.arn, []), at) :]:
        if not point.res.running:
            until, basis = point.at, "stopped anyway"
            break
        use = _use_after(point.res, at)
        if use is not None:
            until, basis, used = use, "used again", use
            break
    until = min(max(until, at), history.until)
    return Stop(
        arn=res.arn, kind=res.kind, name=res.name, rule_id=rule.id, action=rule.action,
        at=at, until=until, basis=basis, usd_per_hour=res.usd_per_hour, used_at=used,
        busy=used is not None and used - at <= busy_window,
    )  # fmt: skip


def _use_after(res: Resource, at: datetime) -> datetime | None:
    """The first use `res`'s evidence shows after `at`: activity, or a (re)start."""
    uses = []
    if res.activity_source in USE_SOURCES and res.last_activity and res.last_activity > at:
        uses.append(res.last_activity)
    if res.running_since is not None and res.running_since > at:
        uses.append(res.running_since)
    return min(uses) if uses else None


# --- the report -----------------------------------------------------------------------------


def load_rules(path: Path, cfg: Config) -> Config:
    """`cfg` with its rules replaced by those in `path`: a YAML list of rules, or a mapping
    with a `rules:` list (a whole config file: only its rules are taken)."""
    source = str(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    rules = loaded.get("rules") if isinstance(loaded, dict) else loaded
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: expected a list of rules, or a mapping with `rules:`")
    try:
        return cfg.with_overrides(rules=rules)
    except ValidationError as exc:
        raise ConfigError(describe(source, {"rules": rules}, exc)) from None


def warm_up_for(*configs: Config) -> timedelta:
    """How far before the window to start replaying, so episodes open at its start exist."""
    longest = timedelta(hours=1)
    for cfg in configs:
        if any(rule.schedule == LEARNED for rule in cfg.rules):
            return profiles.LOOK_BACK  # a pattern is learned from the weeks before
        for rule in cfg.rules:
            spans = [rule.idle_for, rule.running_for]
            if rule.utilization_below is not None:
                spans.append(rule.utilization_below.window)
            longest = max([longest, *(s + rule.grace for s in spans if s is not None)])
    return min(longest + timedelta(hours=1), WARM_UP_CAP)


def summary(result: Replay, cfg: Config) -> dict[str, Any]:
    """Per rule and per kind: actions, $ saved (unknown where the price was), busy stops."""
    by_rule: dict[str, dict[str, Any]] = {}
    for rule in cfg.rules:
        by_rule[rule.id] = {"kind": rule.kind, "action": rule.action, **_totals([])}
    by_kind: dict[str, list[Stop]] = defaultdict(list)
    grouped: dict[str, list[Stop]] = defaultdict(list)
    for stop in result.stops:
        grouped[stop.rule_id].append(stop)
        by_kind[stop.kind].append(stop)
    for rule_id, stops in grouped.items():
        by_rule[rule_id].update(_totals(stops))
    return {
        "saved_usd": _totals(result.stops)["saved_usd"],
        "actions": len(result.stops),
        "warnings": result.warnings,
        "busy_stops": _totals(result.stops)["busy_stops"],
        "rules": by_rule,
        "kinds": {kind: _totals(stops) for kind, stops in sorted(by_kind.items())},
    }


def _totals(stops: Sequence[Stop]) -> dict[str, Any]:
    known = [s.usd for s in stops if s.usd is not None]
    return {
        "actions": len(stops),
        "saved_usd": str(sum(known, Decimal(0)).quantize(Decimal("0.01"))),
        "unpriced": sorted({f"{s.kind}/{s.name}" for s in stops if s.usd is None}),
        "busy_stops": [_busy(s) for s in stops if s.busy],
    }


def _busy(stop: Stop) -> dict[str, Any]:
    assert stop.used_at is not None
    return {
        "resource": f"{stop.kind}/{stop.name}",
        "rule": stop.rule_id,
        "action": stop.action,
        "at": stop.at.isoformat(),
        "used_at": stop.used_at.isoformat(),
    }


def backtest(
    store: Store, current: Config, candidate: Config, since: datetime, until: datetime
) -> dict[str, Any]:
    """The candidate rules next to the current ones over the recorded history (JSON-able)."""
    history = load_history(store, since, until, warm_up_for(current, candidate))
    now_replay = replay(history, current)
    cand_replay = replay(history, candidate)
    return report(history, current, now_replay, candidate, cand_replay)


def report(
    history: History, current: Config, now_replay: Replay, candidate: Config, cand: Replay
) -> dict[str, Any]:
    return {
        "since": history.since.isoformat(),
        "until": history.until.isoformat(),
        "replayed_from": history.start.isoformat(),
        "cycles": sum(1 for at in history.cycles if at >= history.since),
        "resources": len(history.timelines),
        "busy_window": f"the rule's grace, at least {human(history.interval)} (one cycle)",
        "current": summary(now_replay, current),
        "candidate": summary(cand, candidate),
        "real": reproduction(history, now_replay),
        "cannot_tell": history.cannot_tell,
    }


def reproduction(history: History, replayed: Replay) -> dict[str, Any]:
    """The real actions against the replay of the current rules: which match (same resource,
    rule and action within half a cycle), which the replay missed or added."""
    tolerance = history.interval / 2
    left = list(replayed.stops)
    missing = []
    for real in history.real:
        hit = next(
            (
                s
                for s in left
                if (s.arn, s.rule_id, s.action) == (real["arn"], real["rule"], real["action"])
                and abs(s.at - real["at"]) <= tolerance
            ),
            None,
        )
        if hit is None:
            missing.append(_named(real["kind"], real["name"], real["rule"], real["at"]))
        else:
            left.remove(hit)
    return {
        "actions": len(history.real),
        "saved_usd": str(history.real_saved.quantize(Decimal("0.01"))),
        "matched": len(history.real) - len(missing),
        "not_replayed": missing,
        "only_in_replay": [_named(s.kind, s.name, s.rule_id, s.at) for s in left],
    }


def _named(kind: str, name: str, rule: str | None, at: datetime) -> str:
    return f"{kind}/{name} ({rule}) at {at:%Y-%m-%d %H:%M} UTC"


def text(data: Mapping[str, Any], label: str = "candidate") -> list[str]:
    """The report for people: one line per rule, the busy stops, what cannot be told."""
    since, until = data["since"][:16].replace("T", " "), data["until"][:16].replace("T", " ")
    lines = [
        f"Backtest {since} → {until} UTC: {data['cycles']} cycles, {data['resources']} "
        "resources, replayed through the rules as enforcing.",
    ]
    for title, part in (("current rules", data["current"]), (label, data["candidate"])):
        lines.append("")
        lines.append(
            f"{title}: ${part['saved_usd']} saved, {part['actions']} actions, "
            f"{len(part['busy_stops'])} would-be busy stops"
        )
        for rule_id, r in part["rules"].items():
            unpriced = f" + unknown for {len(r['unpriced'])}" if r["unpriced"] else ""
            lines.append(
                f"  {rule_id:<24} {r['kind']:<14} {r['action']:<13} "
                f"{r['actions']:>4} actions  ${r['saved_usd']:>10}{unpriced}  "
                f"{len(r['busy_stops'])} busy"
            )
        for kind, k in part["kinds"].items():
            lines.append(f"  by kind {kind:<15} {k['actions']:>4} actions  ${k['saved_usd']:>10}")
        for busy in part["busy_stops"][:LISTED]:
            lines.append(f"  busy stop: {_busy_text(busy)}")
        if len(part["busy_stops"]) > LISTED:
            more = len(part["busy_stops"]) - LISTED
            lines.append(f"  … and {more} more busy stops (--json lists them all)")
    real = data["real"]
    lines.append("")
    lines.append(
        f"what the guard really did: {real['actions']} actions, ${real['saved_usd']} saved; "
        f"the replay of the current rules matches {real['matched']} of them"
    )
    for label, items in (("not replayed", real["not_replayed"]),
                         ("only in the replay", real["only_in_replay"])):  # fmt: skip
        lines.extend(f"  {label}: {x}" for x in items[:LISTED])
        if len(items) > LISTED:
            lines.append(f"  … and {len(items) - LISTED} more {label} (--json lists them all)")
    lines.append(f"would-be busy stop: used again within {data['busy_window']}")
    lines.append("what the history cannot tell:")
    lines.extend(f"  - {x}" for x in data["cannot_tell"])
    return lines


def _busy_text(busy: Mapping[str, Any]) -> str:
    at, used = datetime.fromisoformat(busy["at"]), datetime.fromisoformat(busy["used_at"])
    return (
        f"{busy['resource']} ({busy['rule']}): {busy['action']} at {at:%Y-%m-%d %H:%M}, "
        f"used again {human(used - at)} later"
    )


def busy_stops(result: Replay) -> Iterable[Stop]:
    return (s for s in result.stops if s.busy)
