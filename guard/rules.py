"""Rules as pure functions: (snapshot, stored state, now) -> decisions.

No AWS, no Slack, no database here: everything arrives as data, time as `now`, so every
rule is tested with fixed datetimes. The escalation of one resource under one rule is
`match -> warned (deadline = now + grace) -> acted`; an episode ends when the resource stops
matching, stops running, or is snoozed or exempted.

Safety lives here too: exempt, snoozed and `unknown` resources never get a decision to act,
and a resource that became active ends its episode instead of being acted on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from guard import cron
from guard.config import Config, Rule
from guard.model import (
    ActivitySource,
    Decision,
    Episode,
    Resource,
    Step,
    UsagePattern,
    parse_time,
    utilization_key,
)

_METRIC_LABEL = {"gpu": "GPU", "gpu_memory": "GPU memory", "cpu": "CPU", "memory": "memory"}


def human(delta: timedelta) -> str:
    """`3 h 10 min`, `2 d 4 h`, `45 min`: durations as people say them."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def clock_time(when: datetime, tz: ZoneInfo) -> str:
    try:
        local = when.astimezone(tz)
    except (OverflowError, ValueError):  # at the edge of datetime's range: say it in UTC
        return f"{when:%Y-%m-%d %H:%M} UTC"
    return f"{local:%a %H:%M} {local.tzname()}"


def is_exempt(res: Resource, cfg: Config) -> bool:
    return res.tags.get(cfg.tags.exempt, "").strip().lower() == "true"


def owner_of(res: Resource, cfg: Config) -> str:
    """Who is told: the owner tag, else an owner the scanner found (a Studio space's)."""
    return (res.tags.get(cfg.tags.owner) or str(res.details.get("owner") or "")).strip()


def snoozed_until(
    res: Resource, cfg: Config, snoozes: Mapping[str, datetime], now: datetime
) -> datetime | None:
    """The later of the snooze tag and a stored snooze, if still in the future."""
    candidates = [snoozes[res.arn]] if res.arn in snoozes else []
    # A malformed tag snoozes nothing; the inventory still shows the raw tag.
    if (tagged := parse_time(res.tags.get(cfg.tags.snooze))) is not None:
        candidates.append(tagged)
    future = [u for u in candidates if u > now]
    return max(future) if future else None


def last_fire(schedule: str, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The latest time at or before `now` at which the cron `schedule` fired (standard
    crontab semantics: see `guard.cron`); None for `schedule: learned`."""
    if schedule == LEARNED:
        return None
    return cron.last_fire(schedule, tz, now)


# "This answer holds for as long as the resource's evidence stays as it is."
FOREVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Match:
    """Whether a rule selects a resource: True, False, or None when that cannot be known.
    `until`: while the resource stays as it is, the answer holds at least until then (the
    passing of time alone cannot change it sooner); None when it may change by any later
    time. Only the backtest uses it, to skip cycles in which nothing could happen."""

    matched: bool | None
    reason: str
    until: datetime | None = None


def _idle_reason(res: Resource, idle: timedelta, tz: ZoneInfo) -> str:
    if res.activity_source is ActivitySource.JUPYTER_LOG and res.last_activity:
        return (
            f"no Jupyter activity for {human(idle)} (last at {clock_time(res.last_activity, tz)})"
        )
    if res.activity_source is ActivitySource.HEARTBEAT_TAG and res.last_activity:
        # the heartbeat says which evidence was last seen ("terminal used", "GPU 87 %")
        last = res.details.get("evidence")
        seen = f"; last: {last} at {clock_time(res.last_activity, tz)}" if last else ""
        what = "no kernel, terminal, process or GPU activity"
        return f"{what} for {human(idle)} (heartbeat{seen})"
    if res.activity_source is ActivitySource.INVOCATIONS and res.last_activity:
        return f"no invocations for {human(idle)} (last at {clock_time(res.last_activity, tz)})"
    if res.activity_source is ActivitySource.NO_INVOCATIONS:
        return f"no invocations at all in the last {human(idle)}"
    if res.activity_source is ActivitySource.NODE_UTILIZATION:
        # details from the scanner: what a busy node is, and when one was last seen
        busy = res.details.get("busy_when") or "busy node"
        last = parse_time(res.details.get("last_busy"))
        seen = f"; last at {clock_time(last, tz)}" if last else ""
        return f"no {busy} for {human(idle)} (node utilization{seen})"
    if res.activity_source is ActivitySource.LAST_SCALED and res.last_activity:
        when = clock_time(res.last_activity, tz)
        return (
            f"no instance group changed size for {human(idle)} (last at {when}; "
            "no node utilization published)"
        )
    if res.activity_source is ActivitySource.LAST_START and res.last_activity:
        # storage: `last_started_from` says whether that is its last start or its stop
        when = clock_time(res.last_activity, tz)
        seen = res.details.get("last_started_from") or "last start"
        return f"not started for {human(idle)} ({seen}: {when}); its storage keeps billing"
    return f"no activity seen in the {human(idle)} since it started"


UNKNOWN = "unknown"  # `hold`'s answer for a resource whose state could not be read


def hold(res: Resource, cfg: Config, snoozes: Mapping[str, datetime], now: datetime) -> str | None:
    """Why nothing may warn about or act on `res` now — not running, `UNKNOWN`, exempt,
    snoozed — or None. Rules, budgets and "Stop now" all ask this first."""
    if not res.running:
        return f"no longer running ({res.status})"
    if res.unknown:
        return UNKNOWN
    if is_exempt(res, cfg):
        return f"exempted (tag {cfg.tags.exempt}=true)"
    if (until := snoozed_until(res, cfg, snoozes, now)) is not None:
        return f"snoozed until {clock_time(until, cfg.tz)}"
    return None


def match_now(rule: Rule, res: Resource, cfg: Config, now: datetime) -> Match:
    """`match` at `now`, with the rule's schedule's latest fire time worked out."""
    fired = last_fire(rule.schedule, cfg.tz, now) if rule.schedule else None
    return match(rule, res, cfg, now, fired)


def tags_match(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """A tag selector (rules, budget scopes): every key present, with that value or any ("*")."""
    return all(key in tags and wanted in ("*", tags[key]) for key, wanted in selector.items())


def match(
    rule: Rule,
    res: Resource,
    cfg: Config,
    now: datetime,
    fired: datetime | None,
    usage: UsagePattern | None = None,
) -> Match:
    """Apply every selector of `rule` to `res` (ANDed). `usage`: its learned weekly pattern,
    for `schedule: learned`."""
    if res.kind != rule.kind:
        return Match(False, "other kind", FOREVER)
    if rule.accounts and res.account not in rule.accounts:
        return Match(False, "other account", FOREVER)
    if rule.regions and res.region not in rule.regions:
        return Match(False, "other region", FOREVER)
    if rule.instance_types and not any(
        fnmatch.fnmatchcase(res.instance_type or "", glob) for glob in rule.instance_types
    ):
        return Match(False, "other instance type", FOREVER)
    if rule.names and not any(fnmatch.fnmatchcase(res.name, glob) for glob in rule.names):
        return Match(False, "other name", FOREVER)
    if not tags_match(rule.tags, res.tags):
        return Match(False, "tags do not match", FOREVER)
    reasons: list[str] = []
    # A learned schedule's answer changes with the hour of the week: it holds only for now.
    timeless = FOREVER if rule.schedule != LEARNED else None
    idle_for = rule.idle_for
    learned = _learned(usage, cfg, now) if rule.schedule == LEARNED else None
    if learned is not None:  # outside its usual hours; while unsure, the idle rule (idle_for)
        if not learned[0]:
            return Match(False, learned[1])
        idle_for = min(LEARNED_QUIET, idle_for or LEARNED_QUIET)
        reasons.append(learned[1])
    if idle_for is not None:
        idle = res.idle_for(now)
        if idle is None:
            return Match(None, "activity unknown", timeless)
        if idle < idle_for:
            return Match(False, "active recently", timeless and _later(now, idle_for - idle))
        reasons.append(_idle_reason(res, idle, cfg.tz))
    if rule.running_for is not None:
        running = res.running_for(now)
        if running is None:
            return Match(False, "not running long enough", timeless)
        if running < rule.running_for:
            until = timeless and _later(now, rule.running_for - running)
            return Match(False, "not running long enough", until)
        reasons.append(f"running for {human(running)}")
    if rule.cost_per_hour_over is not None:
        if res.usd_per_hour is None or res.usd_per_hour <= rule.cost_per_hour_over:
            return Match(False, "not over the hourly cost", timeless)
        reasons.append(f"costs ${res.usd_per_hour:.2f}/h (over ${rule.cost_per_hour_over}/h)")
    if rule.accrued_cost_over is not None:
        accrued = res.accrued_usd(now)
        if accrued is None or accrued <= rule.accrued_cost_over:
            return Match(False, "not over the accrued cost")
        reasons.append(f"${accrued:.2f} spent since it started (over ${rule.accrued_cost_over})")
    if rule.utilization_below is not None:
        window = rule.utilization_below.window
        for metric, limit in rule.utilization_below.thresholds.items():
            peak = res.utilization.get(utilization_key(metric, window))
            if peak is None:
                # No datapoints over the whole window is missing data, not a stalled job.
                return Match(None, f"{metric} utilization over {human(window)} unknown", timeless)
            if peak >= limit:
                return Match(False, f"{metric} utilization reached {peak:.0f} %", timeless)
            reasons.append(
                f"{_METRIC_LABEL[metric]} at most {peak:.1f} % over the last {human(window)} "
                f"(under {limit:g} %)"
            )
    if rule.schedule is not None and rule.schedule != LEARNED:
        if fired is None or res.running_since is None or res.running_since >= fired:
            return Match(False, "started after the scheduled time")
        reasons.append(
            f"still running after the schedule {rule.schedule!r} ({clock_time(fired, cfg.tz)})"
        )
    return Match(True, "; ".join(reasons) or f"selected by rule {rule.id}")


def _later(now: datetime, delta: timedelta) -> datetime:
    try:
        return min(now + delta, FOREVER)
    except OverflowError:  # a rule's threshold past the end of the calendar
        return FOREVER


def evaluate(
    resources: Sequence[Resource],
    episodes: Mapping[tuple[str, str], Episode],
    snoozes: Mapping[str, datetime],
    cfg: Config,
    now: datetime,
    learned: Mapping[str, UsagePattern] | None = None,
    quiet: dict[str, datetime] | None = None,
) -> list[Decision]:
    """Every rule over every resource: what to warn about, act on, or resolve now.
    `learned`: weekly usage patterns by ARN, for `schedule: learned` rules (without one, such
    a rule is its idle rule). `quiet`, if given, is filled for the resources with no open
    episode on which nothing was decided: the earliest time any rule could decide something
    if the resource stays as it is (the backtest skips the cycles before it)."""
    decisions: list[Decision] = []
    patterns = learned or {}
    calm: dict[str, datetime | None] | None = {} if quiet is not None else None
    for rule in cfg.rules:
        fired = last_fire(rule.schedule, cfg.tz, now) if rule.schedule else None
        for res in resources:
            if res.kind == rule.kind:
                episode = episodes.get((res.arn, rule.id))
                usage = patterns.get(res.arn)
                made = _decide(rule, res, episode, snoozes, cfg, now, fired, usage, calm)
                decisions.extend(made)
    if quiet is not None and calm is not None:
        for res in resources:  # no rule for its kind: nothing will ever be decided
            until = calm.get(res.arn, FOREVER)
            if until is not None:
                quiet[res.arn] = until
    return decisions


def _calm(calm: dict[str, datetime | None] | None, arn: str, until: datetime | None) -> None:
    """Note that one rule decided nothing on `arn` and cannot before `until` (None: it may
    at any time, or it has an episode); the resource's answer is the earliest over rules."""
    if calm is None or (arn in calm and calm[arn] is None):
        return
    calm[arn] = None if until is None else min(calm.get(arn) or FOREVER, until)


def _decide(
    rule: Rule,
    res: Resource,
    episode: Episode | None,
    snoozes: Mapping[str, datetime],
    cfg: Config,
    now: datetime,
    fired: datetime | None,
    usage: UsagePattern | None = None,
    calm: dict[str, datetime | None] | None = None,
) -> Iterable[Decision]:
    def decision(step: Step, reason: str, deadline: datetime | None = None) -> Decision:
        return Decision(
            resource=res,
            rule_id=rule.id,
            action=rule.action,
            step=step,
            reason=reason,
            deadline=deadline,
            episode_id=episode.id if episode else None,
            attempts=episode.attempts if episode else 0,
        )

    if episode is not None:
        _calm(calm, res.arn, None)
    if (why := hold(res, cfg, snoozes, now)) is not None:
        # Missing data is never evidence: an unknown resource neither escalates nor ends.
        if episode and why != UNKNOWN:
            yield decision(Step.RESOLVE, why)
        # not running, unknown and exempt stay so while it does; a snooze ends
        _calm(calm, res.arn, snoozed_until(res, cfg, snoozes, now) or FOREVER)
        return
    result = match(rule, res, cfg, now, fired, usage)
    if result.matched is None:
        _calm(calm, res.arn, result.until)
        return
    if not result.matched:
        if episode:
            yield decision(Step.RESOLVE, f"no longer matches: {result.reason}")
        _calm(calm, res.arn, result.until)
        return
    _calm(calm, res.arn, None)
    if episode is None:
        deadline = now + rule.grace if rule.mutates else None
        yield decision(Step.WARN, result.reason, deadline)
        if rule.mutates and rule.grace <= timedelta(0):
            yield decision(Step.ACT, result.reason)
        return
    if not rule.mutates:
        return
    if episode.acted_outcome == "dry-run" and cfg.enforce:
        # Trialled in dry-run, now enforcing: the owner was told "would stop", never "will
        # stop", so they get a fresh grace period before anything happens.
        yield decision(Step.REARM, result.reason, now + rule.grace)
        if rule.grace <= timedelta(0):
            yield decision(Step.ACT, result.reason, now)
        return
    if episode.acted_at is None and episode.deadline and now >= episode.deadline:
        yield decision(Step.ACT, result.reason, episode.deadline)


# `schedule: learned` (opt-in): a resource is stopped outside the hours of the week it is
# usually used, once its pattern is known well enough; until then the rule is its idle rule.
LEARNED = "learned"
LEARNED_MIN_WEEKS = 3.0  # of recorded history
LEARNED_MIN_CONFIDENCE = 0.8  # share of the uses that fell in the usual hours
LEARNED_QUIET = timedelta(minutes=30)  # outside its hours, still never stop it mid-work


def _learned(usage: UsagePattern | None, cfg: Config, now: datetime) -> tuple[bool, str] | None:
    """(outside its usual hours?, why) once the pattern is sure; None while it is not."""
    if usage is None or not usage.usual:
        return None
    if usage.weeks < LEARNED_MIN_WEEKS or usage.confidence < LEARNED_MIN_CONFIDENCE:
        return None
    local = now.astimezone(cfg.tz)
    if local.weekday() * 24 + local.hour in usage.usual:
        return False, "inside its learned usage hours"
    return True, f"outside its learned usage hours ({usage.text})"


# An episode ends at its action when the action is done (or found done by someone else):
# its message's last word is what cost-guard did, and a later match is a new episode. A
# dry-run ("would stop") stays open, to be re-armed under enforce; a failure stays open, to
# be retried.
ENDS_EPISODE = ("done", "skipped")

# A failed action is tried again at later cycles while the resource still qualifies, waiting
# twice as long after each failure: 5 min, 10 min, 20 min … at most 2 h apart.
RETRY_FIRST = timedelta(minutes=5)
RETRY_CAP = timedelta(hours=2)


def retry_at(attempts: int, now: datetime) -> datetime:
    """When to try a failed action again, after `attempts` failures so far."""
    doublings = min(max(attempts - 1, 0), 16)  # past 16 the cap has long been reached
    return now + min(RETRY_FIRST * (1 << doublings), RETRY_CAP)
