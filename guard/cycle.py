"""One cycle: scan -> save -> evaluate -> act -> notify, returning a report.

The scan is taken a kind of an (account, region) at a time, as each is listed: each part is
saved and judged, then dropped, so a cycle's memory follows the largest kind of a target,
not the fleet (`_judge`).

The cycle holds the database's cycle lock, so two replicas never act twice. Everything it
needs arrives in one `Guard` bundle (config, clock, clients, store); it never reads the
wall clock or the environment itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from guard import billing, budgets, digest, shards
from guard.actions import Actions, Reconciled
from guard.aws import Aws
from guard.config import Config
from guard.inventory import ScanContext, scan, scan_targets
from guard.model import (
    Clock,
    Decision,
    Episode,
    Finding,
    Resource,
    ScanResult,
    Step,
    UsagePattern,
)
from guard.notify import Notice, Notifier
from guard.organizations import Members
from guard.pricing import PriceBook, RefreshResult, cycle_prices, prices_report
from guard.reports import money
from guard.rules import ENDS_EPISODE, LEARNED, evaluate, retry_at
from guard.store import Store, instance_id

log = logging.getLogger(__name__)


@dataclass
class Guard:
    """Everything a cycle needs, built once by the CLI / daemon / Lambda wiring."""

    cfg: Config
    clock: Clock
    store: Store
    aws: Aws = field(default_factory=Aws)
    notifier: Notifier | None = None
    # None: each cycle loads its prices from the database, refreshing them from the AWS Price
    # List API first when due; a book given here is used as is (tests).
    prices: PriceBook | None = None
    # True in the daemon (`cost-guard run`), which runs the digest, the price refresh and the
    # history retention as scheduler jobs of their own (guard/daemon.py): the cycle then skips
    # them. False (`once`, the Lambda handler): the cycle does all three itself, when due.
    scheduled_separately: bool = False
    # organisation mode: the member accounts found by the last listing (guard/organizations.py)
    members: Members = field(default_factory=Members)
    replica: str = field(default_factory=shards.new_holder)  # this replica's name in leases
    # (local day, patterns by ARN) for `schedule: learned` rules: relearned once a day
    learned: tuple[date, dict[str, UsagePattern]] | None = None

    def __post_init__(self) -> None:
        if self.notifier is None:
            self.notifier = Notifier(self.cfg, self.store, self.clock)
        self.actions = Actions(self.cfg, self.aws, self.store, self.clock)


def _learned(guard: Guard, now: datetime) -> dict[str, UsagePattern] | None:
    """The weekly usage patterns `schedule: learned` rules read (None without such a rule),
    learned from the recorded evidence once a local day: a pattern is weeks of history, and
    reading them is the heaviest query a cycle would make."""
    if not any(rule.schedule == LEARNED for rule in guard.cfg.rules):
        return None
    day = now.astimezone(guard.cfg.tz).date()
    if guard.learned is None or guard.learned[0] != day:
        from guard.profiles import profiles

        found = profiles(guard.store, guard.cfg, now)
        guard.learned = (day, {arn: p.pattern for arn, p in found.items()})
    return guard.learned[1]


# A Slack click holds the lock for a moment (its action, its confirmation): worth a short
# wait rather than a skipped interval. A replica's whole cycle outlasts it: then skip.
LOCK_WAIT_SECONDS = 2.0


# Sharded replicas scan in parallel, then take turns for the rest of the cycle (saving,
# deciding, acting), which takes seconds: worth waiting for, up to a part of the interval.
SHARD_LOCK_WAIT_FRACTION = 0.5


def run_cycle(guard: Guard) -> dict[str, Any]:
    """Run one cycle if no other process is running one; return the cycle report.

    Sharded (`sharding.enabled`): scan this replica's accounts first, outside the lock (the
    replicas scan in parallel), then wait for the lock for the rest of the cycle."""
    scanned, wait = None, LOCK_WAIT_SECONDS
    if guard.cfg.sharding.enabled:
        guard.aws.counter.reset()
        scanned = _scan(guard, guard.clock.now(), time.perf_counter(), sharded=True)
        wait = guard.cfg.scan_interval.total_seconds() * SHARD_LOCK_WAIT_FRACTION
    with guard.store.cycle_lock(timeout=wait) as held:
        if not held:
            now = guard.clock.now().isoformat()
            log.info("another replica holds the cycle lock; skipping this cycle")
            return {
                "started_at": now,
                "finished_at": now,
                "skipped": "another replica is running a cycle",
            }
        report = _cycle(guard) if scanned is None else _cycle(guard, scanned)
    if scanned is not None and scanned.claim is not None:
        report["shard"] = {
            "replica": guard.replica,
            "held": list(scanned.claim.held),
            "scanned": [a.id for a in scanned.claim.scan],
            "handed_over": shards.rebalance(
                guard.cfg, guard.store, scanned.claim, guard.clock.now()
            ),
        }
    return report


@dataclass
class _Scanned:
    """The scan half of a cycle: what was seen, at what prices, in which accounts."""

    started: datetime
    wall_start: float
    prices: PriceBook
    refreshed: RefreshResult | None
    # The scan, an (account, region) at a time: lazily (the cycle saves and judges each
    # target before the next is taken, never holding the fleet), or, sharded, all of it
    # scanned before the lock was taken.
    batches: Iterable[ScanResult]
    errors: list[str]  # the accounts' listing (organisation mode), besides the scan's
    claim: shards.Claim | None = None


def _scan(guard: Guard, started: datetime, wall_start: float, sharded: bool) -> _Scanned:
    """List the accounts (organisation mode: the members now), take this replica's leases
    (sharded), load or refresh the prices, scan."""
    cfg, store = guard.cfg, guard.store
    found = guard.members.refresh(cfg, guard.aws)
    if found.accounts != cfg.accounts:
        # Everything after the scan (actions, Slack clicks, reports) reaches an account
        # through `cfg.accounts`: the members found now.
        cfg = guard.cfg = cfg.model_copy(update={"accounts": found.accounts})
        guard.actions.cfg = cfg
    claim = None
    if sharded and cfg.accounts:
        claim = shards.claim(cfg, store, guard.replica, cfg.accounts, started)
    elif sharded:
        log.warning("sharding needs accounts to share (a list or an organisation): not sharded")
    prices, refreshed = (
        (guard.prices, None)
        if guard.prices is not None
        else (PriceBook.load(store, cfg), None)  # the daemon's price job refreshes
        if guard.scheduled_separately
        else cycle_prices(cfg, guard.aws, store, started)
    )
    batches: Iterable[ScanResult]
    if not sharded:
        batches = scan_targets(ScanContext(cfg, guard.aws, store, prices, started))
    elif claim is None:
        batches = [scan(ScanContext(cfg, guard.aws, store, prices, started))]
    elif claim.scan:  # only the accounts this replica holds and nobody scanned this interval
        shard_cfg = cfg.model_copy(update={"accounts": claim.scan})
        batches = [scan(ScanContext(shard_cfg, guard.aws, store, prices, started))]
    else:
        batches = []
    return _Scanned(started, wall_start, prices, refreshed, batches, found.errors, claim)


def _cycle(guard: Guard, scanned: _Scanned | None = None) -> dict[str, Any]:
    store, clock = guard.store, guard.clock
    assert guard.notifier is not None
    started = scanned.started if scanned else clock.now()
    # the injected clock may stand still (tests, demo)
    wall_start = scanned.wall_start if scanned else time.perf_counter()
    if scanned is None:
        guard.aws.counter.reset()
    log.info("cycle started", extra={"event": "cycle_started", "instance": instance_id()})
    settled = reconcile(guard)  # actions a crash or a lost answer left unsettled

    scanned = scanned or _scan(guard, started, wall_start, sharded=False)
    cfg, prices, refreshed = guard.cfg, scanned.prices, scanned.refreshed
    seen = _judge(guard, scanned, started)
    now = clock.now()
    # Budgets: warnings queued here; act_at decisions go through the same path as the rules'
    # (never a second action on what a rule acts on this cycle).
    spend = budgets.check(
        cfg, store, guard.notifier, guard.aws, seen.for_budgets, seen.decisions, seen.episodes,
        seen.snoozes, now,
    )  # fmt: skip
    with _reported("billing", spend.errors):  # the bill per resource, once a day if set
        spend.errors.extend(billing.refresh(cfg, guard.aws, store, now))
    applied = _apply(guard, seen.decisions + spend.decisions)
    errors = settled.errors + scanned.errors + seen.errors + spend.errors
    errors += [e["error"] for e in applied.pop("errors")]
    guard.notifier.notify_scan_health(errors, seen.findings)
    if not guard.scheduled_separately:  # the daemon has a digest job and a retention job
        with _reported("digest", errors):
            send_digest(guard, now)
    delivery = guard.notifier.deliver()
    if not guard.scheduled_separately:
        store.prune(now, cfg.history_retention)

    report = _report(guard, seen, started, clock.now(), applied, errors)
    report["prices"] = seen.prices_report(prices, refreshed)
    report["budgets"] = spend.report(applied["actions"])
    report["findings"] = [asdict(finding) for finding in seen.findings]
    report["duration_seconds"] = round(time.perf_counter() - wall_start, 3)
    report["api_calls"] = guard.aws.counter.snapshot()
    report["api_calls_total"] = sum(report["api_calls"].values())
    report["api_errors"] = guard.aws.counter.errors()  # failed after retries, by operation
    report["slack"] = delivery
    store.save_cycle(report, cfg.mode)
    unpriced = sum(k["unpriced"] for k in report["by_kind"].values())
    fields = {  # one structured line per cycle (top-level keys with log_format: json)
        "event": "cycle", "instance": report["instance"], "mode": cfg.mode,
        "resources": report["resources"], "running": report["running"],
        "usd_per_hour": report["usd_per_hour"], "unpriced": unpriced,
        "warnings": report["warnings"],
        "actions": len(report["actions"]), "errors": len(report["errors"]),
        "api_calls": report["api_calls_total"], "duration_seconds": report["duration_seconds"],
    }  # fmt: skip
    log.info(
        "cycle done: %d resources, %d running, $%s/h%s, %d warnings, %d actions, %d errors, "
        "%d AWS calls, %.1fs",
        report["resources"], report["running"], report["usd_per_hour"],
        f" + unknown for {unpriced}" if unpriced else "", report["warnings"],
        len(report["actions"]), len(report["errors"]), report["api_calls_total"],
        report["duration_seconds"], extra=fields,
    )  # fmt: skip
    return report


def _kind_entry() -> dict[str, Any]:
    return {"listed": 0, "running": 0, "unknown": 0, "unpriced": 0, "usd_per_hour": Decimal(0)}


@dataclass
class _Part:
    """What one part of the scan gave the cycle (`_Seen.settle` puts the parts in order)."""

    decisions: list[Decision] = field(default_factory=list)
    for_budgets: list[Resource] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    cursors: list[tuple[str, str, str, datetime]] = field(default_factory=list)


@dataclass
class _Seen:
    """What a cycle keeps of its scan once each part is saved and judged: the decisions,
    the resources a budget could act on, counts for the report; not the fleet."""

    episodes: dict[tuple[str, str], Episode]
    snoozes: dict[str, datetime]
    # Filled by `settle` once every part is in, in the scan's order (`ScanResult.order`):
    # parts are judged as they come, whichever target finishes first, but a cycle's
    # decisions, errors and messages come in the same order every time.
    decisions: list[Decision] = field(default_factory=list)
    for_budgets: list[Resource] = field(default_factory=list)  # budgets.may_decide
    errors: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    cursors: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    parts: dict[tuple[int, int], _Part] = field(default_factory=dict)  # by order, until then
    scanned: set[tuple[str, str, str]] = field(default_factory=set)
    count: int = 0
    by_kind: defaultdict[str, dict[str, Any]] = field(
        default_factory=lambda: defaultdict(_kind_entry)
    )
    prices: dict[str, Any] | None = None  # prices_report summed over the targets

    def part(self, order: tuple[int, int]) -> _Part:
        return self.parts.setdefault(order, _Part())

    def add(self, batch: ScanResult, book: PriceBook) -> None:
        out = self.part(batch.order)
        out.errors += batch.errors
        out.findings += batch.findings
        out.cursors += batch.cursors
        self.scanned |= batch.scanned
        self.count += len(batch.resources)
        for res in batch.resources:
            entry = self.by_kind[res.kind]
            entry["listed"] += 1
            if res.running:
                entry["running"] += 1
                entry["unknown"] += int(res.unknown)
                if res.usd_per_hour is None:
                    entry["unpriced"] += 1
                else:
                    entry["usd_per_hour"] += res.usd_per_hour
        part = prices_report(book, batch.resources)
        if self.prices is None:
            self.prices = part
        else:
            self.prices["unknown"] += part["unknown"]
            for source, n in part["by_source"].items():
                self.prices["by_source"][source] = self.prices["by_source"].get(source, 0) + n

    def judge(
        self,
        guard: Guard,
        resources: list[Resource],
        now: datetime,
        learned: dict[str, UsagePattern] | None,
        order: tuple[int, int],
    ) -> None:
        part = self.part(order)
        part.decisions += evaluate(resources, self.episodes, self.snoozes, guard.cfg, now, learned)
        if guard.cfg.budgets:
            part.for_budgets += [
                r for r in resources if budgets.may_decide(guard.cfg, r, self.episodes)
            ]

    def settle(self) -> None:
        """Every part is in: what they gave, in the scan's order."""
        for _, part in sorted(self.parts.items()):
            self.decisions += part.decisions
            self.for_budgets += part.for_budgets
            self.errors += part.errors
            self.findings += part.findings
            self.cursors += part.cursors
        self.parts.clear()

    def prices_report(self, book: PriceBook, refreshed: RefreshResult | None) -> dict[str, Any]:
        report = prices_report(book, [], refreshed)
        if self.prices is not None:
            report["unknown"] = self.prices["unknown"]
            report["by_source"] = dict(sorted(self.prices["by_source"].items()))
        return report


def _judge(guard: Guard, scanned: _Scanned, started: datetime) -> _Seen:
    """Save and judge the scan a part (a kind of a target) at a time, as the scan hands them
    over: each part's resources are run through the rules and written to the snapshot
    (`Store.snapshot`: a transaction per save; small parts are saved together), then
    dropped; what the rules decided is kept. The snapshot is finished (gone marks, listing
    times) once every part is in. Episodes and snoozes change only under the cycle lock,
    which this cycle holds: read once."""
    cfg, store, clock = guard.cfg, guard.store, guard.clock
    now = clock.now()
    seen = _Seen(store.open_episodes(), store.snoozes(now))
    snapshot = store.snapshot(started, cfg.accrual_policy)
    # `schedule: learned` patterns due to be relearned (a new local day) are learned from
    # the evidence including this snapshot's: then the rules run once it is all saved.
    learning = any(rule.schedule == LEARNED for rule in cfg.rules) and (
        guard.learned is None or guard.learned[0] != now.astimezone(cfg.tz).date()
    )
    held: list[tuple[tuple[int, int], list[Resource]]] = []
    # Parts are saved a whole chunk (`Store.snapshot_chunk`) at a time: a kind with a few
    # resources in one account and region costs no statements of its own, so a cycle's
    # statements follow its resources, not kinds x targets.
    unsaved: list[Resource] = []
    batches = scanned.batches
    try:
        for batch in batches:
            unsaved += batch.resources
            if len(unsaved) >= store.snapshot_chunk:  # whole chunks; the rest waits
                cut = len(unsaved) - len(unsaved) % store.snapshot_chunk
                snapshot.add(unsaved[:cut])
                del unsaved[:cut]
            seen.add(batch, scanned.prices)
            if learning:
                held.append((batch.order, batch.resources))
            else:
                now = clock.now()
                seen.judge(guard, batch.resources, now, _learned(guard, now), batch.order)
            del batch
        if unsaved:
            snapshot.add(unsaved)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:  # a generator: stop scanning ahead if saving failed
            close()
    snapshot.finish(seen.scanned)
    if learning:
        now = clock.now()
        learned = _learned(guard, now)
        for order, resources in held:
            seen.judge(guard, resources, now, learned, order)
    seen.settle()
    for account, region, source, at in seen.cursors:
        store.set_scan_cursor(account, region, source, at)
    return seen


def _apply(guard: Guard, decisions: list[Decision]) -> dict[str, list[dict[str, Any]]]:
    """Carry out the decisions: open/close episodes, act, queue Slack messages.

    Warnings and resolutions only touch our database, so they share one transaction (a first
    cycle over a big estate may warn about thousands). Actions come after them, each outside
    any batch: its intent is committed before its AWS call.

    Each decision is isolated: one that raises (a bug, an odd value) is reported in the cycle's
    errors and undone alone (a savepoint), and every other decision, the digest and the cycle
    report still happen.
    """
    applied: dict[str, list[dict[str, Any]]] = {
        "warnings": [], "actions": [], "resolved": [], "errors": [],
    }  # fmt: skip
    opened: dict[tuple[str, str], int] = {}
    with guard.store.batch():
        for d in decisions:
            if d.step is Step.ACT:
                continue
            with _isolated(guard, d, applied["errors"]):
                if d.step is Step.WARN:
                    opened[(d.resource.arn, d.rule_id)] = _warn(guard, d)
                    applied["warnings"].append(_entry(d))
                elif d.step is Step.REARM and d.episode_id is not None:
                    _rearm(guard, d, d.episode_id)
                    applied["warnings"].append(_entry(d))
                elif d.step is Step.RESOLVE and d.episode_id is not None:
                    guard.store.end_episode(d.episode_id, guard.clock.now(), d.reason)
                    _tell(guard, d, d.episode_id, "resolved", d.reason)
                    applied["resolved"].append(_entry(d))
    for d in decisions:
        if d.step is Step.ACT:
            episode_id = d.episode_id or opened.get((d.resource.arn, d.rule_id))
            if episode_id is None:  # its warning failed above (reported there): no action
                continue
            with _isolated(guard, d, applied["errors"]):
                applied["actions"].append(_act(guard, d, episode_id))
    return applied


@contextlib.contextmanager
def _isolated(guard: Guard, d: Decision, errors: list[dict[str, Any]]) -> Iterator[None]:
    """Run one decision's step; if it raises, undo its writes and report it, once."""
    try:
        with guard.store.savepoint():
            yield
    except SQLAlchemyError:
        raise  # the database itself failed: the cycle cannot go on pretending
    except Exception as exc:
        res = d.resource
        where = f"{d.step.value} {res.kind} {res.name} in {res.account}/{res.region}"
        text = f"{where} (rule {d.rule_id}): internal error {type(exc).__name__}: {exc}"
        # A bug, not a condition we expect: the traceback is for whoever fixes it.
        log.error("%s; the rest of the cycle goes on", text, exc_info=True)
        errors.append({**_entry(d), "error": text})


def reconcile(guard: Guard) -> Reconciled:
    """Settle the actions a crash or a lost answer left open (`Actions.reconcile`), and end
    the episodes of those found done, their messages saying so, as if the answer had come in
    time. Every cycle starts with it; a process also runs it at start. Call under the cycle
    lock."""
    settled = guard.actions.reconcile()
    _settle(guard, settled)
    return settled


def _settle(guard: Guard, settled: Reconciled) -> None:
    assert guard.notifier is not None
    now = guard.clock.now()
    for episode_id, res, row in settled.acted:
        found = guard.store.episode(episode_id)
        if found is None or found[1] is not None or found[0].acted_outcome == "done":
            continue  # ended, or already told
        guard.store.mark_acted(episode_id, now, "done", ended=f"{row.action} done")
        guard.notifier.notify(
            Notice(
                resource=res, rule_id=row.rule_id or "", episode_id=episode_id, state="acted",
                action=row.action, reason=row.detail, deadline=None, mode=row.mode,
                detail="found done at the next check (its answer was never recorded)",
            )
        )  # fmt: skip


@contextlib.contextmanager
def _reported(what: str, errors: list[str]) -> Iterator[None]:
    """A step whose bug must not cost the rest of the cycle (its report above all)."""
    try:
        yield
    except SQLAlchemyError:
        raise
    except Exception as exc:
        text = f"{what}: internal error {type(exc).__name__}: {exc}"
        log.error("%s; the rest of the cycle goes on", text, exc_info=True)
        errors.append(text)


def _rearm(guard: Guard, d: Decision, episode_id: int) -> None:
    """The guard now enforces: the episode's dry-run "would stop" becomes a real deadline."""
    assert d.deadline is not None
    cfg, now = guard.cfg, guard.clock.now()
    guard.store.rearm(episode_id, d.deadline)
    detail = (
        f"cost-guard now enforces (it was in dry-run): {d.action} due at {d.deadline.isoformat()}"
    )
    guard.store.record_action(
        d.resource, rule_id=d.rule_id, episode_id=episode_id, action="warn",
        mode=cfg.mode, outcome="warned", detail=f"{d.reason}; {detail}", now=now,
    )  # fmt: skip
    _tell(guard, d, episode_id, "rearmed", "cost-guard now enforces (it was in dry-run)")


def send_digest(guard: Guard, now: datetime) -> None:
    """Queue the money digest once per `slack.digest` fire time (the first cycle after it;
    in the daemon, its digest job)."""
    assert guard.notifier is not None
    fired = digest.due(guard.cfg, now)
    key = f"digest:{fired.isoformat()}" if fired else ""
    if fired is None or guard.store.queued(key):
        return
    if guard.store.last_cycle() is None:
        # A new database knows no spend yet: "month to date $0.00, nothing by owner" would
        # be a wrong first impression. The next cycle (still due) sends it, with a snapshot.
        log.info("digest deferred: no cycle has finished on this database yet")
        return
    data = digest.build(guard.cfg, guard.store, now)
    title, lines = digest.text(data)
    guard.notifier.notify_digest(key, title, lines, digest.fields(data))


def _entry(d: Decision) -> dict[str, Any]:
    res = d.resource
    return {"arn": res.arn, "kind": res.kind, "name": res.name, "rule": d.rule_id,
            "reason": d.reason}  # fmt: skip


def _warn(guard: Guard, d: Decision) -> int:
    cfg, store, now, res = guard.cfg, guard.store, guard.clock.now(), d.resource
    episode_id = store.start_episode(res.arn, d.rule_id, now, d.deadline)
    due = ""
    if d.deadline and d.action != "notify":
        due = f"; {d.action} due at {d.deadline.isoformat()}"
    store.record_action(
        res, rule_id=d.rule_id, episode_id=episode_id, action="warn",
        mode=cfg.mode, outcome="warned", detail=d.reason + due, now=now,
    )  # fmt: skip
    _tell(guard, d, episode_id, "warned")
    return episode_id


def _act(guard: Guard, d: Decision, episode_id: int) -> dict[str, Any]:
    res, mode = d.resource, guard.cfg.mode
    outcome = guard.actions.execute(
        res, d.action, rule_id=d.rule_id, episode_id=episode_id, reason=d.reason
    )
    if outcome.snoozed:  # the snooze has closed the episode and told Slack
        pass
    elif outcome.outcome == "failed":
        # Tried again at a later cycle if the resource still qualifies then (rules._decide).
        now = guard.clock.now()
        attempts = (d.attempts or 0) + 1
        retry = retry_at(attempts, now)
        guard.store.retry_later(episode_id, attempts, retry)
        detail = f"{outcome.detail}; trying again at {retry.isoformat()} (attempt {attempts + 1})"
        _tell(guard, d, episode_id, "failed", detail, attempt=attempts)
    else:
        # Done (or done by someone else): the episode ends on what cost-guard did, and its
        # message with it; if the resource comes back, a new episode starts. A dry-run stays
        # open (re-armed when the guard enforces).
        ended = f"{d.action} {outcome.outcome}" if outcome.outcome in ENDS_EPISODE else None
        guard.store.mark_acted(episode_id, guard.clock.now(), outcome.outcome, ended=ended)
        state = "would-act" if outcome.outcome == "dry-run" else "acted"
        _tell(guard, d, episode_id, state, outcome.detail)
    return {
        **_entry(d),
        "action": d.action,
        "mode": mode,
        "outcome": outcome.outcome,
        "detail": outcome.detail,
        # what it cost per hour when acted on: what a done action saves
        "usd_per_hour": money(res.usd_per_hour),
    }


def _tell(
    guard: Guard, d: Decision, episode_id: int, state: str, detail: str = "", attempt: int = 0
) -> None:
    assert guard.notifier is not None
    guard.notifier.notify(_notice(d, episode_id, state, guard.cfg.mode, detail, attempt))


def _notice(
    d: Decision, episode_id: int, state: str, mode: str, detail: str = "", attempt: int = 0
) -> Notice:
    return Notice(
        resource=d.resource,
        rule_id=d.rule_id,
        episode_id=episode_id,
        state=state,
        action=d.action,
        reason=d.reason,
        deadline=d.deadline,
        mode=mode,
        detail=detail,
        attempt=attempt,
    )


def _report(
    guard: Guard,
    seen: _Seen,
    started: datetime,
    finished: datetime,
    applied: dict[str, list[dict[str, Any]]],
    errors: list[str],
) -> dict[str, Any]:
    by_kind = seen.by_kind
    total = sum((k["usd_per_hour"] for k in by_kind.values()), Decimal(0))
    return {
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "mode": guard.cfg.mode,
        "instance": instance_id(),
        "daemon": guard.scheduled_separately,  # a `run` replica's turn, not a one-off `once`
        "resources": seen.count,
        "running": sum(k["running"] for k in by_kind.values()),
        "by_kind": {
            kind: {**v, "usd_per_hour": str(v["usd_per_hour"])}
            for kind, v in sorted(by_kind.items())
        },
        "usd_per_hour": money(total),
        "warnings": len(applied["warnings"]),
        "warned": applied["warnings"],
        "actions": applied["actions"],
        "resolved": applied["resolved"],
        "errors": errors,
    }
