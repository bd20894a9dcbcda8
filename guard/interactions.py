"""What a person asks for about one resource: snooze it, keep it, stop it now.

Slack's buttons, the web console's (guard/web/actions.py) and `cost-guard snooze` come
through here, so a snooze means the same wherever it was asked for: no warning and no action
until it ends, the open warning closed, and its Slack message updated to say who snoozed it,
until when. "Stop now" is the rule's own action taken before its deadline: it passes every
check the cycle's action would (not exempt, not snoozed, not unknown, the rule still matches,
so not recently active), goes through the same dry-run gate and audit trail, and never runs
beside a cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.cycle import Guard
from guard.model import Episode, Resource
from guard.notify import Notice
from guard.rules import ENDS_EPISODE, UNKNOWN, clock_time, hold, human, match_now

log = logging.getLogger(__name__)

# How long "Stop now" waits for a running cycle to finish before telling the person to retry.
LOCK_WAIT_SECONDS = 120


@dataclass(frozen=True)
class Answer:
    """What came of a request, told to the person who asked (thread reply, CLI line)."""

    outcome: str  # snoozed | done | dry-run | failed | skipped | refused
    text: str


def snooze(
    guard: Guard,
    res: Resource,
    duration: timedelta,
    *,
    by: str,
    reason: str = "",
    kept: bool = False,
    click: int | None = None,
) -> Answer:
    """Store the snooze, close the resource's open warnings and update their messages."""
    now = guard.clock.now()
    until = now + duration
    guard.store.snooze(res.arn, until, reason or ("keep" if kept else "snooze"), by, now)
    what = "Kept" if kept else "Snoozed"
    text = (
        f"{what} for {human(duration)} by {by}, until {clock_time(until, guard.cfg.tz)}: "
        "no warning and no action until then"
    )
    for episode in _open_episodes(guard, res.arn):
        guard.store.end_episode(episode.id, now, text)
        _tell(guard, res, episode, "snoozed", detail=text, by=by, click=click)
    log.info("%s %s/%s: %s", what.lower(), res.kind, res.name, text)
    return Answer("snoozed", text + ".")


def stop_now(
    guard: Guard,
    res: Resource,
    episode_id: int,
    *,
    by: str,
    click: int,
    allowed: bool,
    via: str = "Slack",
    allow_list: str = "slack.stop_allowed",
) -> Answer:
    """Take the warning's action now instead of at its deadline, if it may be taken at all;
    `allowed`: the person is on `allow_list`; `via`: where they clicked (Slack, the web
    console), for the audit trail and the answers."""
    found = guard.store.episode(episode_id)
    if found is None or found[0].arn != res.arn:
        log.warning("Stop now by %s for unknown episode %s of %s", by, episode_id, res.arn)
        return Answer("refused", "this warning is not known to cost-guard")
    episode, ended_at = found
    action = _action(guard, episode.rule_id)

    def refuse(why: str) -> Answer:
        _reply(guard, res, episode, click, by, f"{by} clicked Stop now; not done: {why}.")
        return Answer("refused", why)

    if not allowed:
        return refuse(f"only the people on {allow_list} may stop from {via}")
    if episode.acted_at is not None:  # acted (a done action also ends the episode)
        return refuse("cost-guard has already acted on this warning")
    if ended_at is not None:
        return refuse("this warning has already ended")
    if action is None:
        return refuse(f"rule {episode.rule_id} only notifies")
    # A cycle may be acting on the same resource right now: wait for it, then judge afresh.
    with guard.store.cycle_lock(timeout=LOCK_WAIT_SECONDS) as held:
        if not held:
            return refuse("a cycle is running; try again in a minute")
        res = guard.store.resource(res.arn) or res
        now = guard.clock.now()
        if (why := _blocker(guard, res, episode, now)) is not None:
            return refuse(why)
        reason = f"Stop now clicked in {via} by {by}"
        outcome = guard.actions.execute(
            res, action, rule_id=episode.rule_id, episode_id=episode.id, reason=reason
        )
        state = {"dry-run": "would-act", "failed": "failed", "done": "acted"}.get(outcome.outcome)
        if state is None:  # skipped: already stopping, gone...
            return refuse(outcome.detail)
        ended = (
            f"{action} {outcome.outcome} ({reason})" if outcome.outcome in ENDS_EPISODE else None
        )
        guard.store.mark_acted(episode.id, now, outcome.outcome, ended=ended)
        _tell(guard, res, episode, state, detail=outcome.detail, by=by, click=click)
    return Answer(outcome.outcome, outcome.detail)


def deliver_now(guard: Guard, wait: float = 0) -> None:
    """Send what a request queued now, unless a cycle is running: that cycle delivers it at
    its end (two senders of one outbox could post a message twice)."""
    assert guard.notifier is not None
    with guard.store.cycle_lock(timeout=wait) as held:
        if held:
            guard.notifier.deliver()


def _blocker(guard: Guard, res: Resource, episode: Episode, now: datetime) -> str | None:
    """Why the action may not be taken now, or None: the cycle's own checks, asked again."""
    cfg = guard.cfg
    if (why := hold(res, cfg, guard.store.snoozes(now), now)) is not None:
        return "its state could not be read in the last cycle" if why == UNKNOWN else why
    rule = cfg.rule(episode.rule_id)
    if rule is None:  # a budget's episode acts in the cycle that opens it; nothing is pending
        return f"{episode.rule_id} acts by itself"
    result = match_now(rule, res, cfg, now)
    return None if result.matched else f"rule {rule.id} no longer applies ({result.reason})"


def _action(guard: Guard, rule_id: str) -> str | None:
    rule, budget = guard.cfg.rule(rule_id), guard.cfg.budget(rule_id)
    if rule is not None:
        return rule.action if rule.mutates else None
    return budget.action if budget else None


def _open_episodes(guard: Guard, arn: str) -> list[Episode]:
    return [e for (a, _), e in guard.store.open_episodes().items() if a == arn]


def _notice(
    guard: Guard,
    res: Resource,
    episode: Episode,
    state: str,
    *,
    detail: str = "",
    by: str = "",
    click: int | None = None,
) -> Notice:
    cfg, now = guard.cfg, guard.clock.now()
    rule = cfg.rule(episode.rule_id)
    evidence = match_now(rule, res, cfg, now).reason if rule else "over budget"
    return Notice(
        resource=res,
        rule_id=episode.rule_id,
        episode_id=episode.id,
        state=state,
        action=_action(guard, episode.rule_id) or "notify",
        reason=evidence,
        deadline=episode.deadline,
        mode=cfg.mode,
        detail=detail,
        by=by,
        click=click,
    )


def _tell(
    guard: Guard,
    res: Resource,
    episode: Episode,
    state: str,
    *,
    detail: str,
    by: str,
    click: int | None,
) -> None:
    assert guard.notifier is not None
    guard.notifier.notify(_notice(guard, res, episode, state, detail=detail, by=by, click=click))


def _reply(guard: Guard, res: Resource, episode: Episode, click: int, by: str, text: str) -> None:
    assert guard.notifier is not None
    # `by` rides along so the reply keeps that mention while escaping the rest of `text`.
    guard.notifier.reply(_notice(guard, res, episode, "warned", by=by, click=click), text)
