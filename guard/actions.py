"""The only code that mutates AWS, behind one dry-run gate.

Every action is recorded as *intended* (and committed) before the AWS call and as
done/skipped/failed after it, so a crash in between is visible and reconciled at the next
start. Just before the call the resource is described live: only a resource in one of the
action's `valid_states` is touched, and one already in a `done_states` state is a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from guard.aws import AWS_ERRORS, Aws, error_text
from guard.config import Config
from guard.kinds import KINDS, ActionSpec, KindSpec
from guard.model import Clock, Resource
from guard.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # done | skipped | failed | dry-run
    detail: str


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
        result = self._call(res, kind, spec)
        self.store.finish_action(action_id, result.outcome, result.detail, self.clock.now())
        log.log(
            logging.ERROR if result.outcome == "failed" else logging.INFO,
            "%s %s %s in %s/%s: %s (%s)",
            result.outcome, action, res.name, res.account, res.region, result.detail, reason,
        )  # fmt: skip
        return result

    def _client(self, res: Resource) -> Any:
        # None = the caller's own account (the default credential chain)
        account = next((a for a in self.cfg.accounts if a.id == res.account), None)
        return self.aws.client(account, res.region, "sagemaker")

    def live_status(self, res: Resource, kind: KindSpec) -> str:
        client = self._client(res)
        described = getattr(client, kind.describe_operation)(**{kind.name_param: res.name})
        return str(described.get(kind.status_field, ""))

    def _call(self, res: Resource, kind: KindSpec, spec: ActionSpec) -> Outcome:
        try:
            status = self.live_status(res, kind)
            if status in spec.done_states:
                return Outcome("skipped", f"already {status}: nothing to do")
            if status not in spec.valid_states:
                return Outcome(
                    "skipped",
                    f"status is {status}; only {', '.join(spec.valid_states)} is {spec.verb_past}",
                )
            getattr(self._client(res), spec.operation)(**{kind.name_param: res.name})
            return Outcome("done", f"{kind.title} {spec.verb_past} (was {status})")
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
            if status in spec.done_states:
                outcome, detail = "done", f"interrupted, but the resource is {status} (reconciled)"
            else:
                outcome, detail = (
                    "failed",
                    f"interrupted before the call took effect; status {status}",
                )
            self.store.finish_action(row.id, outcome, detail, now)
            notes.append(f"action {row.id} ({row.action} {row.name}): {outcome}: {detail}")
        return notes
