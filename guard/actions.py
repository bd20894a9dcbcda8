"""The only code that mutates AWS, behind one dry-run gate.

Every action is recorded as *intended* (and committed) before the AWS call and as
done/skipped/failed after it, so a crash in between is visible and reconciled at the next
start. Just before the call the resource is described live: only a resource in one of the
action's `valid_states` is touched, and one already in a `done_states` state is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from guard import endpoint_actions
from guard.aws import AWS_ERRORS, Aws, error_text, not_found
from guard.config import Config
from guard.kinds import KINDS, ActionSpec, KindSpec, keeps, request_key
from guard.model import Clock, Outcome, Resource
from guard.store import Store

log = logging.getLogger(__name__)


GONE = "Gone"  # live status of a resource AWS no longer knows


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
        result = self._call(res, kind, spec, action_id)
        self.store.finish_action(action_id, result.outcome, result.detail, self.clock.now())
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
            handler = HANDLERS.get((kind.name, spec.name))
            if handler is not None:
                return handler(
                    self.client(res), self.store, res, described, action_id, self.clock.now()
                )
            getattr(self.client(res), spec.operation)(**request_key(kind, res))
            done = f"{kind.title} {spec.verb_past} (was {status})"
            return Outcome("done", f"{done}. {keeps(spec, res)}".strip())
        except AWS_ERRORS as exc:
            return Outcome("failed", error_text(exc))

    def reconcile(self) -> list[str]:
        """Settle actions left `intended` by a crash: look at the resource, record the truth."""
        notes = []
        for row in self.store.unfinished_actions():
            kind = KINDS.get(row.kind)
            spec = kind.actions.get(row.action) if kind else None
            if kind is None or spec is None:
                continue
            res = self.store.resource_by_name(row.kind, row.name)
            now = self.clock.now()
            if res is None:
                self.store.finish_action(
                    row.id, "failed", "interrupted; resource no longer known", now
                )
                continue
            try:
                status = self.live_status(res, kind)
            except AWS_ERRORS as exc:
                notes.append(f"cannot reconcile action {row.id} yet: {error_text(exc)}")
                continue
            if status in spec.done_states or (status == GONE and spec.gone_is_done):
                outcome, detail = "done", f"interrupted, but the resource is {status} (reconciled)"
            else:
                outcome, detail = (
                    "failed",
                    f"interrupted before the call took effect; status {status}",
                )
            self.store.finish_action(row.id, outcome, detail, now)
            notes.append(f"action {row.id} ({row.action} {row.name}): {outcome}: {detail}")
        return notes


# Kind-specific actions that need more than one call: (kind, action) -> handler. A handler
# runs after the live checks above, gets the SageMaker client, the store, the resource, its
# live description, the audit row id (to link what it stores, e.g. an endpoint's restore
# record) and now; it returns the outcome.
Handler = Callable[[Any, Store, Resource, dict[str, Any], int, datetime], Outcome]
HANDLERS: dict[tuple[str, str], Handler] = {
    ("endpoint", "delete"): endpoint_actions.delete,
    ("endpoint", "scale-to-zero"): endpoint_actions.scale_to_zero,
}
