"""The only code that mutates AWS, behind one dry-run gate.

Every action is recorded as *intended* (and committed) before anything is called, then
described live: only a resource in one of the action's `valid_states` is touched, and one
already in a `done_states` state is a no-op. Right before the mutating call the row becomes
*sending* (committed), and done/skipped/failed after it. So a row left behind says whether
its call may have gone out: `reconcile()`, at the start of every cycle, settles it from the
resource's live state (the call never went out: failed; the resource reached the action's
state: done, once).

A mutating call that gets no answer (a reset, a timeout) may still have been applied by AWS:
the resource is described again at once, and if that fails too the row stays *sending* for
the next cycle's reconcile, which records what really happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from guard import failpoints
from guard.aws import AWS_ERRORS, Aws, connection_failed, error_text, not_found
from guard.config import Config
from guard.kinds import KINDS, ActionSpec, KindSpec, keeps, load, request_key
from guard.model import Clock, Outcome, Resource
from guard.store import ActionRow, Store

log = logging.getLogger(__name__)


GONE = "Gone"  # live status of a resource AWS no longer knows
SENDING = "sending"  # the row's outcome while its mutating call is in flight


@dataclass
class Reconciled:
    """What `Actions.reconcile()` did: `notes` (rows settled) and `errors` (rows that could
    not be settled yet because AWS did not answer: retried at the next cycle)."""

    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Actions found done, with their episode: (episode id, resource, the audit row): the cycle
    # marks those episodes acted and tells their message, as if the answer had arrived.
    acted: list[tuple[int, Resource, ActionRow]] = field(default_factory=list)


class Actions:
    def __init__(self, cfg: Config, aws: Aws, store: Store, clock: Clock) -> None:
        self.cfg = cfg
        self.aws = aws
        self.store = store
        self.clock = clock

    def execute(
        self,
        res: Resource,
        action: str,
        *,
        rule_id: str | None,
        episode_id: int | None,
        reason: str,
    ) -> Outcome:
        kind = KINDS[res.kind]
        spec = kind.actions[action]
        now = self.clock.now()
        # A snooze stored since this cycle judged the resource (a Slack click, the CLI) wins:
        # checked here, just before anything is recorded or called.
        if (snooze := self.store.snooze_of(res.arn, now)) is not None:
            detail = f"snoozed by {snooze.by or 'someone'} until {snooze.until.isoformat()}"
            self.store.record_action(
                res, rule_id=rule_id, episode_id=episode_id, action=action,
                mode=self.cfg.mode, outcome="skipped", detail=detail, now=now,
            )  # fmt: skip
            log.info("skipped %s %s %s: %s", action, res.kind, res.name, detail)
            return Outcome("skipped", detail, snoozed=True)
        if not self.cfg.enforce:
            # The dry-run gate: nothing below this line runs without `mode: enforce`.
            detail = f"{spec.verb_would}: {reason} (dry-run: nothing was changed)"
            self.store.record_action(
                res, rule_id=rule_id, episode_id=episode_id, action=action,
                mode=self.cfg.mode, outcome="dry-run", detail=detail, now=self.clock.now(),
            )  # fmt: skip
            log.info("dry-run: %s %s %s (%s)", spec.verb_would, res.kind, res.name, reason)
            return Outcome("dry-run", detail)

        action_id = self.store.record_action(
            res, rule_id=rule_id, episode_id=episode_id, action=action,
            mode=self.cfg.mode, outcome="intended", detail=reason, now=self.clock.now(),
        )  # fmt: skip
        failpoints.reached("action-after-intent")
        result = self._call(res, kind, spec, action_id)
        failpoints.reached("action-after-call")
        if result.outcome != SENDING:  # else settled by the next cycle's reconcile
            self.store.finish_action(action_id, result.outcome, result.detail, self.clock.now())
        else:
            result = Outcome("failed", result.detail)
        log.log(
            logging.ERROR if result.outcome == "failed" else logging.INFO,
            "%s %s %s in %s/%s: %s (%s)",
            result.outcome, action, res.name, res.account, res.region, result.detail, reason,
        )  # fmt: skip
        return result

    def client(self, res: Resource, service: str = "sagemaker") -> Any:
        # None = the caller's own account (the default credential chain)
        account = next((a for a in self.cfg.accounts if a.id == res.account), None)
        return self.aws.client(account, res.region, service)

    def describe(self, res: Resource, kind: KindSpec) -> dict[str, Any] | None:
        """The resource as AWS sees it now; None when AWS says it does not exist."""
        try:
            described = getattr(self.client(res), kind.describe_operation)(**request_key(kind, res))
        except ClientError as exc:
            if not_found(exc):
                return None
            raise
        return dict(described)

    def live_status(self, res: Resource, kind: KindSpec) -> str:
        described = self.describe(res, kind)
        return GONE if described is None else str(described.get(kind.status_field, ""))

    def _call(self, res: Resource, kind: KindSpec, spec: ActionSpec, action_id: int) -> Outcome:
        try:
            described = self.describe(res, kind)
            if described is None:
                if spec.gone_is_done:
                    kept = keeps(spec, res)
                    return Outcome("skipped", f"already gone: nothing to do. {kept}".strip())
                return Outcome("skipped", f"the {kind.title} no longer exists")
            status = str(described.get(kind.status_field, ""))
            if status in spec.done_states:
                return Outcome("skipped", f"already {status}: nothing to do")
            if status not in spec.valid_states:
                return Outcome(
                    "skipped",
                    f"status is {status}; only {', '.join(spec.valid_states)} is {spec.verb_past}",
                )
        except AWS_ERRORS as exc:  # nothing was sent
            return Outcome("failed", error_text(exc))
        # From here the call may reach AWS: committed first, so a crash leaves a row that
        # says so.
        failpoints.reached("action-after-describe")
        # resolved before the row says *sending*: nothing has gone out if this raises
        handler: Handler | None = load(spec.handler) if spec.handler else None
        self.store.mark_action_sending(action_id, self.clock.now())
        failpoints.reached("action-before-call")
        try:
            if handler is not None:
                return handler(
                    self.client(res), self.store, res, described, action_id, self.clock.now()
                )
            getattr(self.client(res), spec.operation)(**request_key(kind, res))
            done = f"{kind.title} {spec.verb_past} (was {status})"
            return Outcome("done", f"{done}. {keeps(spec, res)}".strip())
        except AWS_ERRORS as exc:
            return self._after_failed_call(res, kind, spec, status, exc)

    def _after_failed_call(
        self, res: Resource, kind: KindSpec, spec: ActionSpec, before: str, exc: Exception
    ) -> Outcome:
        """The mutating call failed. An error answer on the first attempt means AWS did not
        apply it; no answer (reset, timeout), or an error after botocore retried, may hide an
        attempt that was applied: look at the resource again before saying so."""
        why = error_text(exc)
        retried = isinstance(exc, ClientError) and bool(
            exc.response.get("ResponseMetadata", {}).get("RetryAttempts")
        )
        if not (connection_failed(exc) or retried):
            return Outcome("failed", why)
        try:
            status = self.live_status(res, kind)
        except AWS_ERRORS as again:
            detail = (
                f"{why}; AWS may have applied it, and the resource cannot be checked now "
                f"({error_text(again)}): the next cycle settles it"
            )
            return Outcome(SENDING, detail) if connection_failed(exc) else Outcome("failed", detail)
        if status in spec.done_states or (status == GONE and spec.gone_is_done):
            done = f"{kind.title} {spec.verb_past} (was {before}; now {status})"
            return Outcome("done", f"{done}; AWS applied it, its answer was lost: {why}")
        return Outcome("failed", f"{why}; the resource is still {status}: not applied")

    def reconcile(self) -> Reconciled:
        """Settle actions left *intended* or *sending* by a crash (or a lost answer) from the
        resource's live state; called at the start of every cycle, under the cycle lock.

        - its call never went out (*intended*) and the resource is as it was: failed;
        - its call never went out and the resource is in the action's target state anyway:
          skipped (someone else did it; a "done" would count the saving twice);
        - the call went out (*sending*) and the resource reached the target state: done;
        - the call went out but the resource did not change: failed.

        AWS not answering leaves the row for the next cycle, reported in `errors`, never
        raised: a guard must start while AWS is unreachable.
        """
        done = Reconciled()
        for row in self.store.unfinished_actions():
            kind = KINDS.get(row.kind)
            spec = kind.actions.get(row.action) if kind else None
            now = self.clock.now()
            sent = row.outcome == SENDING
            if kind is None or spec is None:
                self.store.finish_action(
                    row.id, "failed", f"interrupted; unknown action {row.kind}/{row.action}", now
                )
                continue
            res = self.store.resource(row.arn) or self.store.resource_by_name(row.kind, row.name)
            if res is None:
                self.store.finish_action(
                    row.id, "failed", "interrupted; resource no longer known", now
                )
                continue
            try:
                status = self.live_status(res, kind)
            except AWS_ERRORS as exc:
                done.errors.append(
                    f"action {row.id} ({row.action} {row.kind} {row.name}) left unsettled by an "
                    f"interruption; cannot check it yet: {error_text(exc)}"
                )
                continue
            reached = status in spec.done_states or (status == GONE and spec.gone_is_done)
            if reached and not sent:
                # Our call never went out: whoever stopped it, it was not this action (a
                # "done" here would be a second stop in the audit and a saving counted twice).
                other = self.store.done_action_like(row)
                by = f"action {other} did it" if other is not None else "not by this action"
                outcome = "skipped"
                detail = f"interrupted before the call was sent; the resource is {status}: {by}"
            elif reached:
                outcome = "done"
                detail = (
                    f"interrupted after the call was sent; the resource is {status} (reconciled)"
                )
            elif sent:
                outcome = "failed"
                detail = (
                    f"interrupted after the call was sent, but it took no effect; status {status}"
                )
            else:
                outcome = "failed"
                detail = f"interrupted before the call was sent; status {status}"
            self.store.finish_action(row.id, outcome, detail, now)
            if outcome == "done" and row.episode_id is not None:
                done.acted.append((row.episode_id, res, row))
            note = f"action {row.id} ({row.action} {row.kind} {row.name}): {outcome}: {detail}"
            log.warning("reconciled %s", note)
            done.notes.append(note)
        return done


# An action that needs more than one call names its handler in its registry entry
# (`ActionSpec.handler`). A handler runs after the live checks above, gets the SageMaker client,
# the store, the resource, its live description, the audit row id (to link what it stores, e.g.
# an endpoint's restore record) and now; it returns the outcome.
Handler = Callable[[Any, Store, Resource, dict[str, Any], int, datetime], Outcome]
