"""Recommendations: rules the recorded history proves would have saved more, safely.

Each proposal is backtested (guard/backtest.py) over the same history as the current rules
and kept only if it saves more *and* none of its stops would have hit a resource used again
within the rule's grace (a would-be busy stop). Nothing here changes the config: the output is
YAML for a person to read and paste.

- a tighter `idle_for` for an idle rule, the tightest one whose stops were never followed by
  a use within the busy window;
- a schedule for each resource with a stable weekly pattern (guard/profiles.py): stop it an
  hour after its usual last hour on the days it is used (`0 19 * * 1-5`); for an endpoint
  that can scale to zero, `scale-to-zero` instead of `delete`;
- an exemption (`cost-guard:exempt=true`) on a resource nobody used over the history: what
  the current rules would have saved without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import yaml

from guard import backtest
from guard.backtest import History, Replay
from guard.config import Config, format_duration
from guard.kinds import KINDS
from guard.profiles import Profile, profiles
from guard.rules import human, is_exempt
from guard.store import Store

IDLE_STEPS = tuple(
    timedelta(minutes=m) for m in (15, 30, 60, 120, 180, 240, 360, 480, 720, 1440)
)  # the idle_for values tried, tightest first
SCHEDULE_GRACE = timedelta(minutes=30)
LOOK_BACK = timedelta(days=30)
MONTH = timedelta(days=30)
_CRON_DAYS = ("1", "2", "3", "4", "5", "6", "0")  # Monday..Sunday in crontab's numbering


@dataclass(frozen=True)
class Recommendation:
    what: str  # "idle_for" | "schedule" | "exemption"
    title: str
    yaml: str  # ready to paste (a rule), or what to run (an exemption)
    usd_per_month: Decimal  # more saved per 30 days than the current rules
    saved_usd: Decimal  # more saved over the history replayed
    actions: int
    risk: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "title": self.title,
            "yaml": self.yaml,
            "usd_per_month": str(self.usd_per_month),
            "saved_usd": str(self.saved_usd),
            "actions": self.actions,
            "risk": self.risk,
            "why": self.why,
        }


PART = 1000  # resources replayed at once: the history of a part, never the whole fleet's


def recommendations(
    store: Store,
    cfg: Config,
    now: datetime,
    look_back: timedelta = LOOK_BACK,
    part: int = PART,
) -> list[Recommendation]:
    """Every proposal the history supports, most $ per month first (a plain function: the CLI,
    the digest and a console page all call this).

    Rules act per resource (`evaluate` judges each on its own timeline, the backtest's stops
    are per resource), so the fleet is replayed `part` resources at a time, in ARN order, and
    only totals are kept across parts: a month of a big fleet's history is never held at
    once. The same proposals as one replay of the whole fleet (tests/test_recommend.py)."""
    since = now - look_back
    frame = backtest.load_frame(store, since, now, backtest.warm_up_for(cfg))
    if not frame.cycles:
        return []
    replayed = max(now - max(since, frame.start), timedelta(hours=1))
    trials = _idle_trials(cfg)
    schedules: list[tuple[str, str, Recommendation]] = []
    exemptions: list[tuple[str, Recommendation]] = []
    for arns in store.evidence_arn_ranges(part):
        history = backtest.load_part(store, frame, arns)
        if not history.timelines:
            continue
        usage = profiles(store, cfg, now, arns=arns)
        base = backtest.replay(history, cfg)
        _try_idle(history, base, trials)
        schedules.extend(_schedules(history, cfg, replayed, usage))
        exemptions.extend(_exemptions(history, cfg, replayed, usage))
        del history, base, usage
    # each kind in the order one replay of the fleet listed it (schedules by subject, ARN
    # breaking a tie of two same-named resources; exemptions by ARN), before the final sort
    found = [
        *_tighter_idle(cfg, trials, frame.interval, replayed),
        *(rec for _, _, rec in sorted(schedules, key=lambda x: (x[0], x[1]))),
        *(rec for _, rec in sorted(exemptions, key=lambda x: x[0])),
    ]
    return sorted(found, key=lambda r: (-r.usd_per_month, r.title))


def _usd(result: Replay) -> Decimal:
    return sum((s.usd for s in result.stops if s.usd is not None), Decimal(0))


def _new_busy(result: Replay, base: Replay) -> bool:
    """A would-be busy stop the current rules do not already make."""
    known = {(s.arn, s.at) for s in base.stops if s.busy}
    return any(s.busy and (s.arn, s.at) not in known for s in result.stops)


def _per_month(extra: Decimal, replayed: timedelta) -> Decimal:
    return (extra * Decimal(MONTH / replayed)).quantize(Decimal("0.01"))


def _risk(stops: Sequence[backtest.Stop], window: timedelta, days: float, extra: str = "") -> str:
    gaps = [s.used_at - s.at for s in stops if s.used_at is not None]
    return _risk_text(len(stops), min(gaps) if gaps else None, window, days, extra)


def _risk_text(
    count: int, closest: timedelta | None, window: timedelta, days: float, extra: str = ""
) -> str:
    near = f"; the closest use came {human(closest)} after a stop" if closest is not None else ""
    return (
        f"low: {count} stops in {days:.0f} days, none followed by a use within "
        f"{human(window)}{near}{extra}"
    )


@dataclass
class _Trial:
    """One tighter `idle_for` for one rule, its replays' totals over the parts so far."""

    index: int  # the rule's place in cfg.rules
    step: timedelta
    cfg: Config  # the rules with this one tightened
    busy: bool = False  # a busy stop of its own, or one the current rules do not make
    extra: Decimal = Decimal(0)  # saved beyond the current rules
    actions: int = 0  # the rule's stops
    closest: timedelta | None = None  # the shortest time from one of those to a use


def _idle_trials(cfg: Config) -> dict[tuple[int, timedelta], _Trial]:
    """Each rule's tighter `idle_for` values (those `_tighter_idle` may try)."""
    trials = {}
    for index, rule in enumerate(cfg.rules):
        if rule.idle_for is None or not rule.mutates:
            continue
        for step in IDLE_STEPS:
            if step >= rule.idle_for:
                break
            rules = list(cfg.rules)
            rules[index] = rule.model_copy(update={"idle_for": step})
            trial = cfg.model_copy(update={"rules": tuple(rules)})
            trials[(index, step)] = _Trial(index, step, trial)
    return trials


def _try_idle(history: History, base: Replay, trials: dict[tuple[int, timedelta], _Trial]) -> None:
    """Add one part's replays to each tighter `idle_for`'s totals. A tightened rule changes
    what happens to its kind's resources only: the others' stops are the current rules'
    (rules act per resource), so only its kind is replayed again, and the difference is its
    kind's. A trial found busy in an earlier part is not replayed again (it is never
    proposed)."""
    by_kind: dict[str, list[str]] = {}
    for arn, timeline in history.timelines.items():
        by_kind.setdefault(timeline[-1].res.kind, []).append(arn)
    for trial in trials.values():
        if trial.busy:
            continue
        rule = trial.cfg.rules[trial.index]
        arns = by_kind.get(rule.kind)
        if not arns:
            continue
        mine = set(arns)
        alone = history.subset(arns)
        kind_base = Replay([s for s in base.stops if s.arn in mine], base.warnings)
        result = backtest.replay(alone, trial.cfg)
        if any(s.busy for s in result.stops if s.rule_id == rule.id) or _new_busy(
            result, kind_base
        ):
            trial.busy = True  # this tight, it would stop someone mid-work
            continue
        trial.extra += _usd(result) - _usd(kind_base)
        for stop in result.stops:
            if stop.rule_id != rule.id:
                continue
            trial.actions += 1
            if stop.used_at is not None:
                gap = stop.used_at - stop.at
                trial.closest = gap if trial.closest is None else min(trial.closest, gap)


def _tighter_idle(
    cfg: Config,
    trials: dict[tuple[int, timedelta], _Trial],
    interval: timedelta,
    replayed: timedelta,
) -> list[Recommendation]:
    """For each idle rule, the tightest `idle_for` that saves more without a would-be busy
    stop (from the totals `_try_idle` kept over every part)."""
    found = []
    days = replayed / timedelta(days=1)
    by_rule: dict[int, list[_Trial]] = {}  # each rule's trials, tightest first
    for trial in trials.values():
        by_rule.setdefault(trial.index, []).append(trial)
    for index, tried in by_rule.items():
        rule = cfg.rules[index]
        assert rule.idle_for is not None  # `_idle_trials` tries only idle rules
        for trial in tried:
            if trial.busy:
                continue  # this tight, it would stop someone mid-work
            step, extra = trial.step, trial.extra
            if extra <= 0:
                break
            window = max(rule.grace, interval)
            text = _rule_yaml(rule.model_dump(mode="json", exclude_defaults=True))
            found.append(
                Recommendation(
                    what="idle_for",
                    title=(
                        f"rule {rule.id}: idle_for {format_duration(rule.idle_for)} -> "
                        f"{format_duration(step)}"
                    ),
                    yaml=text.replace(
                        f"idle_for: {format_duration(rule.idle_for)}",
                        f"idle_for: {format_duration(step)}",
                    ),
                    usd_per_month=_per_month(extra, replayed),
                    saved_usd=extra.quantize(Decimal("0.01")),
                    actions=trial.actions,
                    risk=_risk_text(trial.actions, trial.closest, window, days),
                    why=(
                        f"no resource it stops was used again within {human(window)} of a "
                        f"stop at {format_duration(step)} idle, over {days:.0f} days"
                    ),
                )
            )
            break
    return found


def _schedules(
    history: History, cfg: Config, replayed: timedelta, usage: dict[str, Profile]
) -> list[tuple[str, str, Recommendation]]:
    """(subject, arn, proposal) for each of this part's resources with a stable pattern."""
    found = []
    days = replayed / timedelta(days=1)
    for arn, found_profile in sorted(usage.items(), key=lambda item: item[1].subject):
        timeline = history.timelines.get(arn)
        if not found_profile.stable or not timeline:
            continue
        res = timeline[-1].res
        cron = schedule_for(found_profile)
        if cron is None or is_exempt(res, cfg):
            continue
        actions = KINDS[res.kind].actions
        action: str | None = next((a for a in ("stop", "delete") if a in actions), None)
        if "scale-to-zero" in actions and _scales_to_zero(res):
            action = "scale-to-zero"
        if action is None:
            continue
        rule = {
            "id": f"schedule-{res.name}"[:100], "kind": res.kind, "names": [res.name],
            "schedule": cron, "action": action, "grace": format_duration(SCHEDULE_GRACE),
        }  # fmt: skip
        try:
            trial = cfg.with_overrides(rules=[*cfg.model_dump(mode="python")["rules"], rule])
        except ValueError:
            continue  # an id clash or a kind the config cannot take: nothing to propose
        alone = history.subset([arn])  # the new rule selects it alone: replay it alone
        mine = backtest.replay(alone, cfg)
        result = backtest.replay(alone, trial)
        ours = [s for s in result.stops if s.rule_id == rule["id"]]
        extra = _usd(result) - _usd(mine)
        if not ours or _new_busy(result, mine) or extra <= 0:
            continue
        window = max(SCHEDULE_GRACE, history.interval)
        found.append(
            (
                found_profile.subject,
                arn,
                Recommendation(
                    what="schedule",
                    title=f"{res.kind}/{res.name}: {action} on schedule {cron!r}",
                    yaml=_rule_yaml(rule),
                    usd_per_month=_per_month(extra, replayed),
                    saved_usd=extra.quantize(Decimal("0.01")),
                    actions=len(ours),
                    risk=_risk(
                        ours,
                        window,
                        days,
                        f"; pattern seen for {found_profile.weeks:.0f} weeks, confidence "
                        f"{found_profile.confidence:.2f}",
                    ),
                    why=found_profile.text,
                ),
            )
        )
    return found


def schedule_for(found: Profile) -> str | None:
    """A cron stopping it an hour after its latest usual hour, on the days it is used (in
    the configured timezone); None when the latest usual hour ends past 22:00 on some day
    (no evening to stop it in)."""
    days = sorted({h // 24 for h in found.usual})
    last = max(h % 24 for h in found.usual) + 1  # the end of its latest usual hour
    stop = last + 1
    if not days or stop > 23:
        return None
    return f"0 {stop} * * {_cron_days(days)}"


def _cron_days(days: list[int]) -> str:
    if days == list(range(days[0], days[-1] + 1)) and len(days) > 1:
        first, end = _CRON_DAYS[days[0]], _CRON_DAYS[days[-1]]
        if days[-1] < 6:
            return f"{first}-{end}"
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_DAYS[d] for d in days)


def _scales_to_zero(res: Any) -> bool:
    """An endpoint whose managed scaling may go to zero instances."""
    details = res.details or {}
    return any(
        v.get("min_instance_count") == 0 for v in details.get("variants", []) if isinstance(v, dict)
    )


def _exemptions(
    history: History, cfg: Config, replayed: timedelta, usage: dict[str, Profile]
) -> list[tuple[str, Recommendation]]:
    """(arn, proposal) for each of this part's exempt resources nobody used."""
    found = []
    days = replayed / timedelta(days=1)
    for arn, timeline in sorted(history.timelines.items()):
        res = timeline[-1].res
        if not res.running or not is_exempt(res, cfg):
            continue
        used = usage.get(arn)
        if used is None or used.uses:
            continue  # used (or too little history to tell): the exemption may be earning it
        alone = history.subset([arn])
        mine = backtest.replay(alone, cfg)
        result = backtest.replay(alone, cfg, unexempt=frozenset({arn}))
        extra = _usd(result) - _usd(mine)
        if extra <= 0 or _new_busy(result, mine):
            continue
        ours = [s for s in result.stops if s.arn == arn]
        rec = Recommendation(
            what="exemption",
            title=f"{res.kind}/{res.name}: remove its unused exemption",
            yaml=(
                f"# {res.kind}/{res.name} is exempt ({cfg.tags.exempt}=true) but was not "
                f"used in {used.weeks:.0f} weeks; the current rules would then act on it:\n"
                f"# aws sagemaker delete-tags --resource-arn {res.arn} "
                f"--tag-keys {cfg.tags.exempt}\n"
            ),
            usd_per_month=_per_month(extra, replayed),
            saved_usd=extra.quantize(Decimal("0.01")),
            actions=len(ours),
            risk=_risk(ours, max(history.interval, timedelta(0)), days),
            why=used.text,
        )
        found.append((arn, rec))
    return found


def _rule_yaml(rule: dict[str, Any]) -> str:
    return str(yaml.safe_dump([rule], sort_keys=False, allow_unicode=True))


def text(found: Sequence[Recommendation], limit: int | None = None) -> list[str]:
    """For people: each proposal with its $ per month, risk, evidence and YAML."""
    if not found:
        return [
            "No recommendation: no rule change the history supports would save more without "
            "a would-be busy stop."
        ]
    lines = []
    for rec in found[:limit]:
        lines.append(f"+${rec.usd_per_month}/month: {rec.title}")
        lines.append(f"  why: {rec.why}")
        lines.append(f"  risk: {rec.risk}")
        lines.extend(f"  {line}" for line in rec.yaml.rstrip().splitlines())
    return lines
