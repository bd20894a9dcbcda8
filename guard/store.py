"""The queries the rest of the guard needs, over the tables in `guard.tables`.

This module knows tables and queries, not AWS or Slack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import filelock
from sqlalchemy import Table, bindparam, delete, func, insert, select, text, update
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from guard import accrual
from guard.model import ActivitySource, Episode, Resource
from guard.tables import (
    AccountLeaseRow,
    AccrualRow,
    ActionRow,
    Base,
    BilledCostRow,
    CycleRow,
    EpisodeRow,
    EvidenceRow,
    EvidenceSnapshotRow,
    OutboxRow,
    ResourceEvent,
    ResourceRow,
    RestoreRecordRow,
    ScanCursorRow,
    ShardReplicaRow,
    SlackInteractionRow,
    SlackUserRow,
    SnoozeRow,
    UTCDateTime,
    make_engine,
    normalize_url,
    upgrade,
)

__all__ = [
    "ActionRow",
    "Base",
    "OutboxRow",
    "ResourceEvent",
    "RestoreRecordRow",
    "Store",
    "UTCDateTime",  # referenced by migration 0001
    "instance_id",
    "normalize_url",
    "upgrade",
]


def _resource_row_values(res: Resource) -> dict[str, Any]:
    return {
        "kind": res.kind,
        "name": res.name,
        "account": res.account,
        "region": res.region,
        "status": res.status,
        "running": res.running,
        "instance_type": res.instance_type,
        "instance_count": res.instance_count,
        "usd_per_hour": res.usd_per_hour,
        "price_source": res.price_source,
        "created_at": res.created_at,
        "running_since": res.running_since,
        "last_activity": res.last_activity,
        "activity_source": res.activity_source.value,
        "evidence_error": res.evidence_error,
        "tags": dict(res.tags),
        "details": dict(res.details),
        "utilization": dict(res.utilization),
    }


def row_to_resource(row: ResourceRow) -> Resource:
    return Resource(
        arn=row.arn,
        kind=row.kind,
        name=row.name,
        account=row.account,
        region=row.region,
        status=row.status,
        running=row.running,
        instance_type=row.instance_type,
        instance_count=row.instance_count,
        usd_per_hour=row.usd_per_hour,
        price_source=row.price_source,
        created_at=row.created_at,
        running_since=row.running_since,
        last_activity=row.last_activity,
        activity_source=(
            ActivitySource.UNKNOWN if row.evidence_error else ActivitySource(row.activity_source)
        ),
        tags=dict(row.tags or {}),
        evidence_error=row.evidence_error,
        details=dict(row.details or {}),
        utilization={k: float(v) for k, v in (row.utilization or {}).items()},
    )


def _episode(row: EpisodeRow) -> Episode:
    return Episode(
        id=row.id,
        arn=row.arn,
        rule_id=row.rule_id,
        started_at=row.started_at,
        warned_at=row.warned_at,
        deadline=row.deadline,
        acted_at=row.acted_at,
        acted_outcome=row.acted_outcome,
        attempts=row.attempts or 0,
    )


@dataclass(frozen=True)
class Spent:
    """Accrued spend of one resource over some days (local days in the configured timezone)."""

    usd: Decimal = Decimal(0)
    running_seconds: int = 0
    unpriced_seconds: int = 0  # running while its $/h was unknown: spend not counted
    unobserved_seconds: int = 0  # a gap in observation: not counted either

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.usd + other.usd,
            self.running_seconds + other.running_seconds,
            self.unpriced_seconds + other.unpriced_seconds,
            self.unobserved_seconds + other.unobserved_seconds,
        )


STORED_ENTRIES = 100  # of a cycle report's warned / actions / resolved, in the cycles table

# How long a resource would have kept costing money had cost-guard not acted: the stated
# counterfactual per kind (README "Saved by cost-guard").
SAVING_BASES = {
    "ran-again": "until it ran again (its owner restarted it, `restore`, or traffic came back)",
    "max-runtime": "until its MaxRuntimeInSeconds would have ended it",
    "now": "until now (still off)",
}


@dataclass(frozen=True)
class Saving:
    """One action's effect on the bill: `usd_per_hour` off it from `at` to `until`, the end
    of the counterfactual run (`basis`: "ran-again", "max-runtime" or "now")."""

    arn: str
    kind: str
    name: str
    action: str
    at: datetime
    until: datetime
    came_back: bool  # it ran again at `until` (restored, restarted)
    usd_per_hour: Decimal | None  # None: its price was unknown, so the saving is too
    basis: str = "now"

    @property
    def ongoing(self) -> bool:
        """Still saving money by the hour (off, and it would still be running)."""
        return self.basis == "now"

    def usd(self, since: datetime) -> Decimal | None:
        """Saved from `since` (or the action, if later) to `until`; None when unknown."""
        if self.usd_per_hour is None:
            return None
        start = max(self.at, since)
        return accrual.cost(self.usd_per_hour, max(self.until - start, timedelta(0)))


def job_limit(details: dict[str, Any] | None) -> datetime | None:
    """When a job's MaxRuntimeInSeconds would have stopped it (None: no limit known)."""
    if not details:
        return None
    started, limit = details.get("started_at"), details.get("max_runtime_seconds")
    if not started or not limit:
        return None
    try:
        began = datetime.fromisoformat(str(started))
    except ValueError:
        return None
    if began.tzinfo is None:
        began = began.replace(tzinfo=UTC)
    return began + timedelta(seconds=int(limit))


class Store:
    """All reads and writes of the guard's state. One instance per process."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._batch: tuple[int, Session] | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction, committed on exit; inside `batch()` (same thread), the batch's."""
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            yield batch[1]
            # Written, then forgotten: a session that kept thousands of objects would make
            # every later flush walk all of them.
            batch[1].flush()
            batch[1].expunge_all()
            return
        with self._sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group many small writes into one transaction (a cycle's warnings: thousands on a
        first run over a big estate). Never around an AWS mutation: an action's intent must be
        committed before its call, so actions run outside any batch."""
        with self._sessions.begin() as session:
            self._batch = (threading.get_ident(), session)
            try:
                yield
            finally:
                self._batch = None

    def close(self) -> None:
        self.engine.dispose()

    # --- one cycle at a time per database ------------------------------------------------

    @contextlib.contextmanager
    def cycle_lock(self, timeout: float = 0) -> Iterator[bool]:
        """Hold the database's cycle lock, waiting up to `timeout` seconds for it; yields False
        when another process holds it.

        Postgres: a session-level advisory lock, released by the server if we crash.
        SQLite: a lock file beside the database file.
        """
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                deadline = time.monotonic() + timeout
                while True:  # try, then poll until `timeout` (a wait that cannot hang)
                    got = bool(
                        conn.execute(
                            text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}
                        ).scalar()
                    )
                    if got or time.monotonic() >= deadline:
                        break
                    time.sleep(min(_LOCK_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
                try:
                    yield got
                finally:
                    if got:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                    conn.commit()
            return
        database = make_url(self.url).database
        lock_path = f"{database}.lock" if database and database != ":memory:" else None
        if lock_path is None:
            yield True
            return
        lock = filelock.FileLock(lock_path)
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    # --- resources -------------------------------------------------------------------

    # Resources per statement batch of a snapshot: what a chunk holds in memory (its rows'
    # stored columns, its events, accruals and evidence) is bounded by this, not the fleet.
    snapshot_chunk = 1000

    def save_snapshot(
        self,
        resources: Sequence[Resource],
        scanned: set[tuple[str, str, str]],
        now: datetime,
        policy: accrual.Policy | None = None,
    ) -> None:
        """Upsert the latest snapshot; log changes; mark as gone what a complete scan missed;
        accrue each resource's spend since its previous snapshot (see `guard.accrual`).

        `scanned` holds the (account, region, kind) triples whose listing completed, so a
        failed region never makes its resources look gone. Accrual shares this transaction:
        an interval is counted exactly when `last_seen` moves past it.

        One transaction, written `snapshot_chunk` resources at a time with Core executemany
        statements: no ORM object per resource, and nothing of a chunk is kept once it is
        written but its ARN (a complete listing's gone detection needs the ARNs seen).
        """
        with self.session() as s:
            snapshot = Snapshot(self, s, now, policy)
            snapshot.write(s, resources)
            snapshot.finish_in(s, scanned)

    def snapshot(self, now: datetime, policy: accrual.Policy | None = None) -> Snapshot:
        """A snapshot written in parts (the cycle's, a kind of a scan target at a time): `add` each
        part, then `finish` (see `Snapshot`)."""
        with self.session() as s:
            return Snapshot(self, s, now, policy)

    def resources(self, include_gone: bool = False) -> list[Resource]:
        # Core rows, not ORM objects: the session would hold every row's object (and its
        # JSON) until it closes, beside the Resources made from them.
        table = ResourceRow.__table__
        query = select(table).order_by(table.c.kind, table.c.name)
        if not include_gone:
            query = query.where(table.c.gone_at.is_(None))
        with self.session() as s:
            return [row_to_resource(cast(ResourceRow, row)) for row in s.execute(query)]

    def resource(self, arn: str) -> Resource | None:
        """The latest snapshot of one resource (also after it is gone)."""
        with self.session() as s:
            row = s.get(ResourceRow, arn)
            return row_to_resource(row) if row else None

    def resource_by_name(self, kind: str, name: str) -> Resource | None:
        with self.session() as s:
            row = s.scalars(
                select(ResourceRow)
                .where(ResourceRow.kind == kind, ResourceRow.name == name)
                .order_by(ResourceRow.last_seen.desc())
            ).first()
            return row_to_resource(row) if row else None

    def last_activity(
        self, kind: str, account: str, region: str
    ) -> dict[str, tuple[datetime, ActivitySource]]:
        """Last known activity per resource of a kind in one account and region, to continue
        an incremental log scan."""
        with self.session() as s:
            query = select(
                ResourceRow.arn, ResourceRow.last_activity, ResourceRow.activity_source
            ).where(
                ResourceRow.kind == kind,
                ResourceRow.account == account,
                ResourceRow.region == region,
                ResourceRow.last_activity.is_not(None),
            )
            return {
                arn: (at, ActivitySource(source))
                for arn, at, source in s.execute(query)
                if at is not None and source in _ACTIVITY_EVIDENCE
            }

    def running_names(self, kind: str, account: str, region: str) -> dict[str, str]:
        """ARN -> name of what the last snapshot saw running, for a kind in one place."""
        with self.session() as s:
            query = select(ResourceRow.arn, ResourceRow.name).where(
                ResourceRow.kind == kind,
                ResourceRow.account == account,
                ResourceRow.region == region,
                ResourceRow.running.is_(True),
                ResourceRow.gone_at.is_(None),
            )
            return {arn: name for arn, name in s.execute(query)}

    def known_details(
        self, kind: str, account: str, region: str, arns: Collection[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Stored `details` per ARN of a kind in one account and region (gone ones included):
        the cache that spares a Describe of what cannot have changed. `arns`: only these
        (a job kind's, whose rows are every job that ever ran: read whole, the cycle's
        memory would grow with the fleet's past)."""
        c = ResourceRow.__table__.c
        where = (c.kind == kind, c.account == account, c.region == region)
        # each row's JSON is decoded into a dict of its own: nothing to copy
        with self.session() as s:
            if arns is None:
                query = select(c.arn, c.details).where(*where)
                return {arn: details for arn, details in s.execute(query) if details}
            found: dict[str, dict[str, Any]] = {}
            for chunk in _arn_chunks(arns):
                query = select(c.arn, c.details).where(*where, c.arn.in_(chunk))
                found.update((arn, details) for arn, details in s.execute(query) if details)
            return found

    # --- accrued spend ----------------------------------------------------------------

    def spent(
        self, start: date, end: date, only: Collection[date] | None = None
    ) -> dict[str, Spent]:
        """Accrued totals per resource over the days in [start, end) — or only the days in
        `only` — summed in the database (a month of a big fleet is 300k rows)."""
        where = [AccrualRow.day >= start, AccrualRow.day < end]
        if only is not None:
            where.append(AccrualRow.day.in_(sorted(only)))
        query = (
            select(
                AccrualRow.arn,
                func.sum(AccrualRow.usd),
                func.sum(AccrualRow.running_seconds),
                func.sum(AccrualRow.unpriced_seconds),
                func.sum(AccrualRow.unobserved_seconds),
            )
            .where(*where)
            .group_by(AccrualRow.arn)
        )
        with self.session() as s:
            return {
                arn: Spent(Decimal(usd or 0), int(run or 0), int(unpriced or 0), int(gap or 0))
                for arn, usd, run, unpriced, gap in s.execute(query)
            }

    def savings(self, now: datetime) -> list[Saving]:
        """What each done stop/delete/scale-to-zero took off the bill: its $/h from the
        action until the resource ran again (a restore, a restart) or `now`."""
        with self.session() as s:
            acts = list(
                s.scalars(
                    select(ActionRow)
                    .where(
                        ActionRow.outcome == "done",
                        ActionRow.action.in_(_MUTATIONS),
                        ActionRow.at < now,
                    )
                    .order_by(ActionRow.at)
                )
            )
            arns = {a.arn for a in acts}
            back: dict[str, list[datetime]] = {}
            details: dict[str, dict[str, Any]] = {}
            if arns:
                query = select(ResourceEvent.arn, ResourceEvent.at).where(
                    ResourceEvent.arn.in_(arns), ResourceEvent.running.is_(True)
                )
                for arn, at in s.execute(query):
                    back.setdefault(arn, []).append(at)
                rows = select(ResourceRow.arn, ResourceRow.details).where(ResourceRow.arn.in_(arns))
                details = {arn: dict(d or {}) for arn, d in s.execute(rows)}
            found = []
            counted: set[int] = set()
            for act in acts:
                # One saving per episode: a second done action in it (an interrupted one
                # settled as done by reconcile) takes nothing more off the bill.
                if act.episode_id is not None:
                    if act.episode_id in counted:
                        continue
                    counted.add(act.episode_id)
                done = act.finished_at or act.at
                # The counterfactual: it would have run on until it ran again anyway (its
                # owner restarted it, it was restored, its traffic came back), a job until its
                # MaxRuntimeInSeconds ended it, else until now.
                returns = [t for t in back.get(act.arn, []) if done < t <= now]
                ends = [(min(returns), "ran-again")] if returns else []
                limit = job_limit(details.get(act.arn)) if act.kind.endswith("_job") else None
                if limit is not None and limit < now:
                    ends.append((max(limit, done), "max-runtime"))
                until, basis = min(ends, default=(now, "now"))
                found.append(
                    Saving(
                        arn=act.arn,
                        kind=act.kind,
                        name=act.name,
                        action=act.action,
                        at=done,
                        until=until,
                        came_back=basis == "ran-again",
                        usd_per_hour=act.usd_per_hour,
                        basis=basis,
                    )
                )
            return found

    # --- billed costs (AWS Data Exports) ------------------------------------------------

    def save_billed(self, rows: Mapping[tuple[str, date], Decimal], now: datetime) -> None:
        """Replace the billed figures of the days `rows` covers (an export restates days)."""
        days = sorted({day for _, day in rows})
        with self.session() as s:
            if days:
                s.execute(delete(BilledCostRow).where(BilledCostRow.day.in_(days)))
            s.add_all(
                BilledCostRow(arn=arn, day=day, usd=usd, fetched_at=now)
                for (arn, day), usd in sorted(rows.items())
            )

    def billed(self, start: date, end: date) -> dict[str, dict[date, Decimal]]:
        """Billed figures per resource and UTC day, for days in [start, end)."""
        return self._usd_by_day(BilledCostRow, start, end)

    def spent_by_day(self, start: date, end: date) -> dict[str, dict[date, Decimal]]:
        """Accrued USD per resource and local day, for days in [start, end)."""
        return self._usd_by_day(AccrualRow, start, end)

    def _usd_by_day(
        self, table: type[BilledCostRow] | type[AccrualRow], start: date, end: date
    ) -> dict[str, dict[date, Decimal]]:
        query = select(table.arn, table.day, table.usd).where(table.day >= start, table.day < end)
        found: dict[str, dict[date, Decimal]] = {}
        with self.session() as s:
            for arn, day, usd in s.execute(query):
                found.setdefault(arn, {})[day] = Decimal(usd or 0)
        return found

    def billed_fetched_at(self) -> datetime | None:
        with self.session() as s:
            return s.scalar(select(func.max(BilledCostRow.fetched_at)))

    # --- restore records ---------------------------------------------------------------

    def save_restore_record(
        self, res: Resource, record: dict[str, Any], action_id: int | None, now: datetime
    ) -> int:
        """Store what is needed to recreate `res`; committed before the deleting call."""
        with self.session() as s:
            row = RestoreRecordRow(
                arn=res.arn,
                kind=res.kind,
                name=res.name,
                account=res.account,
                region=res.region,
                saved_at=now,
                action_id=action_id,
                record=json.loads(json.dumps(record, default=str)),
                restored_at=None,
            )
            s.add(row)
            s.flush()
            return row.id

    def restore_record(self, kind: str, name: str) -> RestoreRecordRow | None:
        """The latest record saved for a resource of `kind` named `name`."""
        with self.session() as s:
            row = s.scalars(
                select(RestoreRecordRow)
                .where(RestoreRecordRow.kind == kind, RestoreRecordRow.name == name)
                .order_by(RestoreRecordRow.id.desc())
            ).first()
            if row is not None:
                s.expunge(row)
            return row

    def mark_restored(self, record_id: int, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(RestoreRecordRow)
                .where(RestoreRecordRow.id == record_id)
                .values(restored_at=now)
            )

    def scan_cursor(self, account: str, region: str, source: str) -> datetime | None:
        with self.session() as s:
            row = s.get(ScanCursorRow, (account, region, source))
            return row.scanned_until if row else None

    def set_scan_cursor(self, account: str, region: str, source: str, until: datetime) -> None:
        with self.session() as s:
            row = s.get(ScanCursorRow, (account, region, source))
            if row is None:
                s.add(
                    ScanCursorRow(
                        account=account, region=region, source=source, scanned_until=until
                    )
                )
            else:
                row.scanned_until = until

    # --- episodes ----------------------------------------------------------------------

    def open_episodes(self) -> dict[tuple[str, str], Episode]:
        with self.session() as s:
            rows = s.scalars(select(EpisodeRow).where(EpisodeRow.ended_at.is_(None)))
            return {(row.arn, row.rule_id): _episode(row) for row in rows}

    def start_episode(
        self, arn: str, rule_id: str, now: datetime, deadline: datetime | None
    ) -> int:
        with self.session() as s:
            row = EpisodeRow(
                arn=arn, rule_id=rule_id, started_at=now, warned_at=now, deadline=deadline
            )
            s.add(row)
            s.flush()
            return row.id

    def episode(self, episode_id: int) -> tuple[Episode, datetime | None] | None:
        """An episode and when it ended (None: still open)."""
        with self.session() as s:
            row = s.get(EpisodeRow, episode_id)
            return (_episode(row), row.ended_at) if row else None

    def mark_acted(
        self, episode_id: int, now: datetime, outcome: str = "done", ended: str | None = None
    ) -> None:
        """Record how the episode's action went; with `ended` (the reason), the episode ends
        in the same write, so no crash can leave a done episode open."""
        values: dict[str, Any] = {"acted_at": now, "acted_outcome": outcome}
        if ended is not None:
            values |= {"ended_at": now, "end_reason": ended}
        with self.session() as s:
            s.execute(update(EpisodeRow).where(EpisodeRow.id == episode_id).values(**values))

    def retry_later(self, episode_id: int, attempts: int, retry_at: datetime) -> None:
        """A failed action: try again at `retry_at` if the resource still qualifies then."""
        with self.session() as s:
            s.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id)
                .values(acted_at=None, acted_outcome="failed", attempts=attempts, deadline=retry_at)
            )

    def rearm(self, episode_id: int, deadline: datetime) -> None:
        """A dry-run episode under enforce: a fresh grace period, then the action for real."""
        with self.session() as s:
            s.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id)
                .values(acted_at=None, acted_outcome=None, attempts=0, deadline=deadline)
            )

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside `batch()`: undo only what the block wrote if it raises (one decision's
        warning, not the whole cycle's). Outside a batch each write commits on its own."""
        batch = self._batch
        if batch is None or batch[0] != threading.get_ident():
            yield
            return
        with batch[1].begin_nested():
            yield

    def end_episode(self, episode_id: int, now: datetime, reason: str) -> None:
        with self.session() as s:
            s.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id, EpisodeRow.ended_at.is_(None))
                .values(ended_at=now, end_reason=reason)
            )

    def episode_message(self, episode_id: int) -> tuple[str | None, str | None]:
        """(channel, ts) of the Slack message that tells this episode's story, if sent."""
        with self.session() as s:
            row = s.get(EpisodeRow, episode_id)
            return (row.slack_channel, row.slack_ts) if row else (None, None)

    def set_episode_message(self, episode_id: int, channel: str, ts: str) -> None:
        with self.session() as s:
            s.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id)
                .values(slack_channel=channel, slack_ts=ts)
            )

    # --- actions (the audit trail) -----------------------------------------------------

    def record_action(
        self,
        res: Resource,
        *,
        rule_id: str | None,
        episode_id: int | None,
        action: str,
        mode: str,
        outcome: str,
        detail: str,
        now: datetime,
    ) -> int:
        """Write an audit row and commit it before anything else happens."""
        with self.session() as s:
            row = ActionRow(
                at=now,
                arn=res.arn,
                kind=res.kind,
                name=res.name,
                account=res.account,
                region=res.region,
                rule_id=rule_id,
                episode_id=episode_id,
                action=action,
                mode=mode,
                outcome=outcome,
                detail=detail,
                finished_at=None if outcome == "intended" else now,
                usd_per_hour=res.usd_per_hour,
            )
            s.add(row)
            s.flush()
            return row.id

    def finish_action(self, action_id: int, outcome: str, detail: str, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(ActionRow)
                .where(ActionRow.id == action_id)
                .values(outcome=outcome, detail=detail, finished_at=now)
            )

    def mark_action_sending(self, action_id: int, now: datetime) -> None:
        """Committed right before an action's mutating AWS call: from here on, the call may
        have reached AWS (what `Actions.reconcile` needs to know after a crash)."""
        with self.session() as s:
            s.execute(
                update(ActionRow)
                .where(ActionRow.id == action_id, ActionRow.outcome == "intended")
                .values(outcome="sending")
            )

    def unfinished_actions(self) -> list[ActionRow]:
        """Actions whose outcome never arrived (a crash in between, or a lost answer):
        `intended` (the call was not sent yet) or `sending` (it may have been)."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(ActionRow)
                    .where(ActionRow.outcome.in_(("intended", "sending")))
                    .order_by(ActionRow.id)
                )
            )

    def done_action_like(self, row: ActionRow) -> int | None:
        """Id of another done action of the same kind on the same resource in the same
        episode (or, without an episode, at or after `row`), if any."""
        query = select(ActionRow.id).where(
            ActionRow.id != row.id,
            ActionRow.arn == row.arn,
            ActionRow.action == row.action,
            ActionRow.outcome == "done",
        )
        if row.episode_id is not None:
            query = query.where(ActionRow.episode_id == row.episode_id)
        else:
            query = query.where(ActionRow.at >= row.at)
        with self.session() as s:
            return s.scalar(query.order_by(ActionRow.id).limit(1))

    def audit(self, since: datetime) -> list[ActionRow]:
        """The audit rows from `since`, oldest first."""
        with self.session() as s:
            query = select(ActionRow).where(ActionRow.at >= since).order_by(ActionRow.id)
            return list(s.scalars(query))

    def actions_summary(
        self, after: datetime, until: datetime, latest: int
    ) -> tuple[dict[str, int], list[ActionRow]]:
        """The actions (not the warnings) in (`after`, `until`]: how many of each "action
        outcome" (in the order first met), and the `latest` of them, oldest first. Counted by
        the database: a first cycle may stop or would-stop thousands (the digest names five)."""
        window = (ActionRow.at > after, ActionRow.at <= until, ActionRow.action != "warn")
        with self.session() as s:
            counts = s.execute(
                select(ActionRow.action, ActionRow.outcome, func.count())
                .where(*window)
                .group_by(ActionRow.action, ActionRow.outcome)
                .order_by(func.min(ActionRow.id))
            ).all()
            rows = list(
                s.scalars(
                    select(ActionRow).where(*window).order_by(ActionRow.id.desc()).limit(latest)
                )
            )
        return {f"{action} {outcome}": n for action, outcome, n in counts}, rows[::-1]

    # --- snoozes -----------------------------------------------------------------------

    def snooze(self, arn: str, until: datetime, reason: str, by: str, now: datetime) -> None:
        with self.session() as s:
            row = s.get(SnoozeRow, arn)
            if row is None:
                s.add(SnoozeRow(arn=arn, until=until, reason=reason, by=by, created_at=now))
            else:
                row.until, row.reason, row.by, row.created_at = until, reason, by, now

    def unsnooze(self, arn: str) -> bool:
        with self.session() as s:
            result = s.execute(delete(SnoozeRow).where(SnoozeRow.arn == arn))
            return bool(cast(CursorResult[Any], result).rowcount)

    def snoozes(self, now: datetime) -> dict[str, datetime]:
        """Active stored snoozes: arn -> until."""
        with self.session() as s:
            rows = s.scalars(select(SnoozeRow).where(SnoozeRow.until > now))
            return {row.arn: row.until for row in rows}

    def snooze_of(self, arn: str, now: datetime) -> SnoozeRow | None:
        """The stored snooze of one resource, if it still runs."""
        with self.session() as s:
            row = s.get(SnoozeRow, arn)
            return row if row is not None and row.until > now else None

    # --- Slack users and button clicks -------------------------------------------------

    def slack_user(self, email: str) -> tuple[str | None, datetime] | None:
        """(the user id Slack gave, None if it had no such user; when it was asked), or None
        if this email was never looked up."""
        with self.session() as s:
            row = s.get(SlackUserRow, email.lower())
            return None if row is None else (row.user_id, row.looked_up_at)

    def remember_slack_user(self, email: str, user_id: str | None, now: datetime) -> None:
        with self.session() as s:
            s.merge(SlackUserRow(email=email.lower(), user_id=user_id, looked_up_at=now))

    def claim_interaction(
        self,
        key: str,
        *,
        user_id: str,
        action: str,
        arn: str,
        episode_id: int | None,
        now: datetime,
    ) -> int | None:
        """Record a click before acting on it; None when this click was recorded before (Slack
        retried it, or someone replayed it)."""
        try:
            with self.session() as s:
                row = SlackInteractionRow(
                    key=key, at=now, user_id=user_id, action=action, arn=arn, episode_id=episode_id
                )
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:  # the unique key: a concurrent copy of the same click won
            return None

    def finish_interaction(self, interaction_id: int, outcome: str, detail: str) -> None:
        with self.session() as s:
            s.execute(
                update(SlackInteractionRow)
                .where(SlackInteractionRow.id == interaction_id)
                .values(outcome=outcome, detail=detail)
            )

    # --- Slack outbox ------------------------------------------------------------------

    def enqueue(
        self,
        *,
        key: str,
        arn: str | None,
        episode_id: int | None,
        operation: str,
        channel: str | None,
        payload: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Queue a message once per idempotency key; False if that key was queued before."""
        with self.session() as s:
            if s.scalar(select(OutboxRow.id).where(OutboxRow.key == key)) is not None:
                return False
            s.add(
                OutboxRow(
                    key=key,
                    arn=arn,
                    episode_id=episode_id,
                    operation=operation,
                    channel=channel,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
            return True

    def last_digest_at(self, before: datetime) -> datetime | None:
        """When the latest digest before `before` was queued (its "since the last digest")."""
        with self.session() as s:
            return s.scalar(
                select(func.max(OutboxRow.created_at)).where(
                    OutboxRow.key.startswith("digest:"), OutboxRow.created_at < before
                )
            )

    def queued(self, key: str) -> bool:
        """Was a message with this idempotency key ever queued?"""
        with self.session() as s:
            return s.scalar(select(OutboxRow.id).where(OutboxRow.key == key)) is not None

    def pending_messages(self, after: int = 0, limit: int | None = None) -> list[OutboxRow]:
        """Undelivered messages, oldest first (so each resource's story stays in order); with
        `limit`, one page of them after message id `after`."""
        query = select(OutboxRow).where(OutboxRow.sent_at.is_(None), OutboxRow.id > after)
        with self.session() as s:
            return list(s.scalars(query.order_by(OutboxRow.id).limit(limit)))

    def message_sent(self, message_id: int, now: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == message_id)
                .values(sent_at=now, attempts=OutboxRow.attempts + 1, last_error=None)
            )

    def message_failed(
        self, message_id: int, error: str, retry_at: datetime, *, maybe_sent: bool = False
    ) -> None:
        """A send that failed; unless it `maybe_sent` (a timeout, a reset: Slack may have
        posted it), Slack's answer proved nothing was posted and the sending mark goes."""
        values: dict[str, Any] = {
            "attempts": OutboxRow.attempts + 1,
            "last_error": error[:2000],
            "next_attempt_at": retry_at,
        }
        if not maybe_sent:
            values["sending_at"] = None
        with self.session() as s:
            s.execute(update(OutboxRow).where(OutboxRow.id == message_id).values(**values))

    def message_sending(self, message_id: int, now: datetime) -> datetime:
        """Mark a message as being sent, committed before the call to Slack; returns when its
        first unconfirmed send began (the start of the window to look for it in Slack)."""
        with self.session() as s:
            s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == message_id)
                .values(sending_at=func.coalesce(OutboxRow.sending_at, now))
            )
            since = s.scalar(select(OutboxRow.sending_at).where(OutboxRow.id == message_id))
        return since or now

    # --- cycles ------------------------------------------------------------------------

    def save_cycle(self, report: dict[str, Any], mode: str) -> None:
        """The report, with at most `STORED_ENTRIES` of its `warned`, `actions` and `resolved`
        (and `<list>_total` where there were more): each is in the audit or episodes table, and
        every reader of `last_cycle` (digest, readiness, metrics, findings) parses this row. A
        first cycle's 6,164 would-stops made it 4 MB, ~15 MB in memory at each read."""
        stored = dict(report)
        for key in ("warned", "actions", "resolved"):
            entries = report.get(key) or []
            if len(entries) > STORED_ENTRIES:
                stored[key], stored[f"{key}_total"] = entries[:STORED_ENTRIES], len(entries)
        with self.session() as s:
            s.add(
                CycleRow(
                    started_at=datetime.fromisoformat(report["started_at"]),
                    finished_at=datetime.fromisoformat(report["finished_at"]),
                    mode=mode,
                    report=json.loads(json.dumps(stored, default=str)),
                )
            )

    def last_cycle(self) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.scalars(select(CycleRow).order_by(CycleRow.id.desc())).first()
            return dict(row.report) if row else None

    def prune(self, now: datetime, keep: timedelta) -> int:
        """Drop history older than the retention window; current state is never pruned."""
        cutoff = now - keep
        removed = 0
        with self.session() as s:
            for stmt in (
                delete(ResourceEvent).where(ResourceEvent.at < cutoff),
                delete(CycleRow).where(CycleRow.started_at < cutoff),
                delete(OutboxRow).where(OutboxRow.sent_at < cutoff),
                delete(ResourceRow).where(ResourceRow.gone_at < cutoff),
                delete(AccrualRow).where(AccrualRow.day < cutoff.date()),
                *_evidence_pruning(cutoff),  # backtest history (migration 0009)
            ):
                removed += cast(CursorResult[Any], s.execute(stmt)).rowcount or 0
        return removed

    # --- web console (guard/web/pages.py): one resource's history -------------------------

    def resource_events(self, arn: str) -> list[ResourceEvent]:
        """One resource's changes of status, type, count or price, oldest first."""
        with self.session() as s:
            query = select(ResourceEvent).where(ResourceEvent.arn == arn)
            return list(s.scalars(query.order_by(ResourceEvent.at, ResourceEvent.id)))

    def actions_of(self, arn: str) -> list[ActionRow]:
        """One resource's warnings and actions (the audit trail's rows for it), oldest first."""
        with self.session() as s:
            query = select(ActionRow).where(ActionRow.arn == arn).order_by(ActionRow.id)
            return list(s.scalars(query))

    def spent_by_day_of(self, arn: str, start: date, end: date) -> dict[date, Spent]:
        """One resource's accrued spend per local day in [start, end)."""
        query = select(AccrualRow).where(
            AccrualRow.arn == arn, AccrualRow.day >= start, AccrualRow.day < end
        )
        with self.session() as s:
            return {
                row.day: Spent(
                    Decimal(row.usd or 0),
                    int(row.running_seconds or 0),
                    int(row.unpriced_seconds or 0),
                    int(row.unobserved_seconds or 0),
                )
                for row in s.scalars(query.order_by(AccrualRow.day))
            }

    def running_resources(self) -> list[Resource]:
        """`resources()` of what runs now, read without the ORM (the Now page reads it on
        every view: at 10,000 resources the ORM's identity map costs most of a second)."""
        table = ResourceRow.__table__
        query = (
            select(table)
            .where(table.c.gone_at.is_(None), table.c.running.is_(True))
            .order_by(table.c.kind, table.c.name)
        )
        with self.engine.connect() as conn:
            return [row_to_resource(cast(ResourceRow, row)) for row in conn.execute(query)]

    def console_version(self) -> tuple[Any, ...]:
        """Changes whenever what the Now page shows may have: a snapshot, a snooze, an
        episode opened or closed, a warning or an action. One cheap query."""
        live = ResourceRow.gone_at.is_(None)
        query = select(
            select(func.max(ResourceRow.last_seen)).where(live).scalar_subquery(),
            select(func.count()).select_from(ResourceRow).where(live).scalar_subquery(),
            select(func.max(SnoozeRow.created_at)).scalar_subquery(),
            select(func.count()).select_from(SnoozeRow).scalar_subquery(),
            select(func.max(EpisodeRow.id)).scalar_subquery(),
            select(func.count())
            .select_from(EpisodeRow)
            .where(EpisodeRow.ended_at.is_(None))
            .scalar_subquery(),
            select(func.max(ActionRow.id)).scalar_subquery(),
        )
        with self.engine.connect() as conn:
            return tuple(conn.execute(query).one())

    def snooze_row(self, arn: str) -> SnoozeRow | None:
        """The stored snooze of one resource, also an expired one (its last snooze)."""
        with self.session() as s:
            return s.get(SnoozeRow, arn)

    # --- backtest history (guard/backtest.py, guard/profiles.py; migration 0009) ----------

    def evidence_since(
        self, since: datetime, until: datetime, arns: tuple[str, str] | None = None
    ) -> list[Any]:
        """Every evidence row in (since, until], plus each resource's latest row at or before
        `since` (its state when the window opens); by time, then id. Plain rows with the
        `evidence` columns as attributes (a month of a big fleet is a million of them: no ORM
        objects). `arns`: only the resources whose ARN is in [first, last] (a range from
        `evidence_arn_ranges`), so a big fleet's history can be read a part at a time."""
        columns = EvidenceRow.__table__.c
        within = (columns.arn >= arns[0], columns.arn <= arns[1]) if arns else ()
        with self.session() as s:
            latest = (
                select(EvidenceRow.arn, func.max(EvidenceRow.id).label("id"))
                .where(EvidenceRow.at <= since, *within)
                .group_by(EvidenceRow.arn)
                .subquery()
            )
            before = list(s.execute(select(*columns).join(latest, columns.id == latest.c.id)))
            after = s.execute(
                select(*columns)
                .where(columns.at > since, columns.at <= until, *within)
                .order_by(columns.at, columns.id)
            )
            return [*before, *after]

    def evidence_arn_ranges(self, size: int) -> Iterator[tuple[str, str]]:
        """The ARNs with recorded evidence, in order, as (first, last) ranges of at most
        `size` resources each (the `arns` of `evidence_since`): the backtest's readers take a
        big fleet's history a range at a time rather than all of it at once. Each range is
        read when asked for (keyset pagination on the (arn, at) index)."""
        column = EvidenceRow.__table__.c.arn
        after: str | None = None
        while True:
            query = select(column).group_by(column).order_by(column).limit(size)
            if after is not None:
                query = query.where(column > after)
            with self.session() as s:
                found = list(s.scalars(query))
            if not found:
                return
            yield found[0], found[-1]
            if len(found) < size:
                return
            after = found[-1]

    def evidence_of(self, arn: str, since: datetime, until: datetime) -> list[EvidenceRow]:
        """One resource's evidence rows in (since, until], after its latest row at or before
        `since`; oldest first."""
        with self.session() as s:
            first = s.scalars(
                select(EvidenceRow)
                .where(EvidenceRow.arn == arn, EvidenceRow.at <= since)
                .order_by(EvidenceRow.at.desc(), EvidenceRow.id.desc())
                .limit(1)
            ).all()
            rest = s.scalars(
                select(EvidenceRow)
                .where(EvidenceRow.arn == arn, EvidenceRow.at > since, EvidenceRow.at <= until)
                .order_by(EvidenceRow.at, EvidenceRow.id)
            ).all()
            return [*first, *rest]

    def evidence_snapshots(self, since: datetime, until: datetime) -> dict[datetime, list[str]]:
        """Each recorded snapshot in [since, until] -> the known resources it did not list."""
        with self.session() as s:
            rows = s.scalars(
                select(EvidenceSnapshotRow).where(
                    EvidenceSnapshotRow.at >= since, EvidenceSnapshotRow.at <= until
                )
            )
            return {row.at: list((row.missed or {}).get("arns", [])) for row in rows}

    def last_evidence_at(self, until: datetime) -> datetime | None:
        """The latest recorded snapshot at or before `until`."""
        with self.session() as s:
            return s.scalar(
                select(func.max(EvidenceSnapshotRow.at)).where(EvidenceSnapshotRow.at <= until)
            )

    def first_evidence_at(self) -> datetime | None:
        with self.session() as s:
            return s.scalar(select(func.min(EvidenceSnapshotRow.at)))

    def resources_by_arn(self, arns: Collection[str]) -> dict[str, Resource]:
        """The latest snapshot of each of these resources (gone ones too)."""
        found: dict[str, Resource] = {}
        table = ResourceRow.__table__
        with self.session() as s:  # Core rows: no ORM object per resource kept in the session
            for chunk in _arn_chunks(arns):
                query = select(table).where(table.c.arn.in_(chunk))
                found.update(
                    (row.arn, row_to_resource(cast(ResourceRow, row))) for row in s.execute(query)
                )
        return found

    def names_by_arn(self, arns: Collection[str]) -> dict[str, tuple[str, str]]:
        """arn -> (kind, name) of these resources (gone ones too), without their details."""
        found: dict[str, tuple[str, str]] = {}
        c = ResourceRow.__table__.c
        with self.session() as s:
            for chunk in _arn_chunks(arns):
                query = select(c.arn, c.kind, c.name).where(c.arn.in_(chunk))
                found.update((arn, (kind, name)) for arn, kind, name in s.execute(query))
        return found

    def actions_between(
        self,
        since: datetime,
        until: datetime,
        actions: Collection[str] | None = None,
        outcomes: Collection[str] | None = None,
    ) -> list[ActionRow]:
        """The audit rows (warnings and actions) in [since, until], oldest first; only these
        `actions` and `outcomes` when given (the backtest reads stops and deletes, not the
        warnings, which a big fleet has many more of)."""
        query = select(ActionRow).where(ActionRow.at >= since, ActionRow.at <= until)
        if actions is not None:
            query = query.where(ActionRow.action.in_(sorted(actions)))
        if outcomes is not None:
            query = query.where(ActionRow.outcome.in_(sorted(outcomes)))
        with self.session() as s:
            return list(s.scalars(query.order_by(ActionRow.at, ActionRow.id)))

    # --- sharding: per-account leases (guard/shards.py; migration 0008) -----------------

    def replica_seen(self, holder: str, now: datetime) -> None:
        """Record that replica `holder` runs a cycle now."""
        with self.session() as s:
            row = s.get(ShardReplicaRow, holder)
            if row is None:
                s.add(ShardReplicaRow(holder=holder, seen_at=now))
            else:
                row.seen_at = now

    def live_replicas(self, since: datetime) -> list[str]:
        """The replicas that ran a cycle after `since`, by name."""
        with self.session() as s:
            query = select(ShardReplicaRow.holder).where(ShardReplicaRow.seen_at > since)
            return sorted(s.scalars(query))

    def forget_replicas(self, before: datetime) -> None:
        with self.session() as s:
            s.execute(delete(ShardReplicaRow).where(ShardReplicaRow.seen_at < before))

    def ensure_leases(self, accounts: Collection[str]) -> None:
        """A free lease row for every account that has none yet."""
        with self.session() as s:
            known = set(s.scalars(select(AccountLeaseRow.account)))
            missing = sorted(set(accounts) - known)
        for account in missing:  # one transaction each: another replica may insert it too
            try:
                with self.session() as s:
                    s.add(AccountLeaseRow(account=account))
            except IntegrityError:
                pass

    def take_leases(
        self, holder: str, accounts: Collection[str], now: datetime, until: datetime
    ) -> list[str]:
        """Renew `holder`'s leases on these accounts and take every free or expired one;
        return the accounts it holds.

        On Postgres the rows are first locked in account order, skipping those another
        replica is taking this instant (it gets them). A bare multi-row UPDATE locks them in
        the order its plan visits them, which differs between replicas racing for the same
        rows: eight replicas starting together deadlocked, and Postgres aborted one cycle.
        SQLite lets one writer at a time in, and ignores FOR UPDATE."""
        wanted = sorted(set(accounts))
        takeable = (
            (AccountLeaseRow.holder == holder)
            | AccountLeaseRow.holder.is_(None)
            | (AccountLeaseRow.expires_at <= now)
        )
        with self.session() as s:
            locked = list(
                s.scalars(
                    select(AccountLeaseRow.account)
                    .where(AccountLeaseRow.account.in_(wanted), takeable)
                    .order_by(AccountLeaseRow.account)
                    .with_for_update(skip_locked=True)
                )
            )
            if locked:
                s.execute(
                    update(AccountLeaseRow)
                    .where(AccountLeaseRow.account.in_(locked), takeable)
                    .values(holder=holder, expires_at=until)
                    .execution_options(synchronize_session=False)
                )
        return self.leases_of(holder, wanted)

    def leases_of(self, holder: str, accounts: Collection[str] | None = None) -> list[str]:
        with self.session() as s:
            query = select(AccountLeaseRow.account).where(AccountLeaseRow.holder == holder)
            if accounts is not None:
                query = query.where(AccountLeaseRow.account.in_(sorted(accounts)))
            return sorted(s.scalars(query))

    def mark_scanned(self, holder: str, accounts: Collection[str], slot: int) -> list[str]:
        """Of `holder`'s leased accounts, those not yet scanned in interval `slot`, now marked
        as scanned in it (each by a conditional UPDATE: never two replicas in one slot)."""
        marked = []
        with self.session() as s:
            for account in sorted(accounts):
                done = s.execute(
                    update(AccountLeaseRow)
                    .where(
                        AccountLeaseRow.account == account,
                        AccountLeaseRow.holder == holder,
                        AccountLeaseRow.scanned_slot.is_(None)
                        | (AccountLeaseRow.scanned_slot < slot),
                    )
                    .values(scanned_slot=slot)
                    .execution_options(synchronize_session=False)
                )
                if cast(CursorResult[Any], done).rowcount:
                    marked.append(account)
        return marked

    def hand_over(self, account: str, holder: str, to: str, until: datetime) -> bool:
        """Give `holder`'s lease on `account` to replica `to` (rebalancing)."""
        with self.session() as s:
            done = s.execute(
                update(AccountLeaseRow)
                .where(AccountLeaseRow.account == account, AccountLeaseRow.holder == holder)
                .values(holder=to, expires_at=until)
                .execution_options(synchronize_session=False)
            )
            return bool(cast(CursorResult[Any], done).rowcount)

    def leases(self) -> list[AccountLeaseRow]:
        with self.session() as s:
            return list(s.scalars(select(AccountLeaseRow).order_by(AccountLeaseRow.account)))

    # --- memory that does not grow with the fleet's past (issue 15) ----------------------

    def digest_rows(
        self, start: date, end: date
    ) -> Iterator[tuple[Resource | None, Decimal | None]]:
        """What the digest reads, page by page: every running resource and every resource
        that accrued spend in [start, end) (gone ones included), each with that spend (None:
        none accrued), without their `details` and `utilization`; then (None, spend) for each
        resource pruned since that accrued some. Never the whole fleet at once."""
        table = cast(Table, ResourceRow.__table__)
        accruals = cast(Table, AccrualRow.__table__)
        spent = (
            select(accruals.c.arn, func.sum(accruals.c.usd).label("usd"))
            .where(accruals.c.day >= start, accruals.c.day < end)
            .group_by(accruals.c.arn)
            .subquery()
        )
        columns = [c for c in table.c if c.name not in ("details", "utilization")]
        query = (
            select(*columns, spent.c.usd.label("month_usd"), spent.c.arn.label("spender"))
            .outerjoin(spent, spent.c.arn == table.c.arn)
            .where(
                (table.c.running.is_(True) & table.c.gone_at.is_(None)) | spent.c.arn.is_not(None)
            )
        )
        pruned = select(spent.c.usd).where(spent.c.arn.not_in(select(table.c.arn)))
        with self.engine.connect() as conn:
            for row in conn.execute(query, execution_options={"yield_per": 1000}):
                values = {k: v for k, v in row._mapping.items() if k not in _DIGEST_EXTRA}
                light = SimpleNamespace(**values, details={}, utilization={})
                usd = Decimal(row.month_usd or 0) if row.spender is not None else None
                yield row_to_resource(cast(ResourceRow, light)), usd
            for usd in conn.scalars(pruned):
                yield None, Decimal(usd or 0)


class Snapshot:
    """One snapshot of the fleet, written in parts so that no part of the process holds the
    whole fleet: `add` each part of the listing (its own transaction: a part's rows, change
    events, accruals and evidence commit together, a chunk of `Store.snapshot_chunk`
    resources at a time), then `finish` once with the (account, region, kind) triples whose
    listing completed: what they missed is marked gone, and the listing times recorded.

    A process that dies between parts leaves each resource either saved with its accrual or
    not at all, and nothing marked gone: the next snapshot accrues from each row's own last
    sighting, as if this one had listed only those parts. `Store.save_snapshot` writes all
    of it in one transaction."""

    def __init__(
        self, store: Store, s: Session, now: datetime, policy: accrual.Policy | None = None
    ) -> None:
        self.store, self.now, self.policy = store, now, policy or accrual.Policy()
        self.seen: set[str] = set()  # ARNs listed so far: what `finish` must not mark gone
        listed = select(ScanCursorRow).where(ScanCursorRow.source.startswith(_LISTED))
        # when each kind was last listed completely, before this snapshot
        self.listed_before: dict[tuple[str, str, str], datetime | None] = {
            (row.account, row.region, row.source.removeprefix(_LISTED)): row.scanned_until
            for row in s.scalars(listed)
        }
        self.snoozed = {
            arn: until
            for arn, until in s.execute(select(SnoozeRow.arn, SnoozeRow.until))
            if until > now
        }

    def add(self, resources: Sequence[Resource]) -> None:
        with self.store.session() as s:
            self.write(s, resources)

    def finish(self, scanned: set[tuple[str, str, str]]) -> None:
        with self.store.session() as s:
            self.finish_in(s, scanned)

    def write(self, s: Session, resources: Sequence[Resource]) -> None:
        chunk = self.store.snapshot_chunk
        for start in range(0, len(resources), chunk):
            # The last occurrence of an ARN listed twice in a chunk wins.
            part = {res.arn: res for res in resources[start : start + chunk]}
            _save_chunk(
                s, list(part.values()), self.seen, self.listed_before, self.snoozed,
                self.now, self.policy,
            )  # fmt: skip

    def finish_in(self, s: Session, scanned: set[tuple[str, str, str]]) -> None:
        now = self.now
        _mark_gone(s, self.seen, scanned, now, self.policy)
        listed = {
            (row.account, row.region, row.source.removeprefix(_LISTED)): row
            for row in s.scalars(
                select(ScanCursorRow).where(ScanCursorRow.source.startswith(_LISTED))
            )
        }
        for account, region, kind in scanned:
            cursor = listed.get((account, region, kind))
            if cursor is None:
                s.add(
                    ScanCursorRow(
                        account=account, region=region, source=_LISTED + kind, scanned_until=now
                    )
                )
            else:
                cursor.scanned_until = now


# What a snapshot reads of a stored resource row: never its JSON (compared by `snapshot_hash`).
_STORED = (
    "arn", "account", "region", "kind", "status", "running", "instance_type", "instance_count",
    "usd_per_hour", "running_since", "last_seen", "gone_at", "snapshot_hash", "evidence_key",
)  # fmt: skip


def _arn_chunks(arns: Collection[str]) -> Iterator[list[str]]:
    """The distinct ARNs, sorted, `_CHUNK_IN` at a time: bounded IN lists (SQLite caps a
    statement's parameters; Postgres plans a huge IN list slowly)."""
    wanted = sorted(set(arns))
    for start in range(0, len(wanted), _CHUNK_IN):
        yield wanted[start : start + _CHUNK_IN]


def _by_arn(table: Table, values: Sequence[str]) -> Any:
    """UPDATE `table` ... WHERE arn = :k_arn, for an executemany of `values` columns."""
    return (
        update(table)
        .where(table.c.arn == bindparam("k_arn"))
        .values({name: bindparam(name) for name in values})
    )


def _save_chunk(
    s: Session,
    chunk: Sequence[Resource],
    seen: set[str],
    listed_before: Mapping[tuple[str, str, str], datetime | None],
    snoozed: Mapping[str, datetime],
    now: datetime,
    policy: accrual.Policy,
) -> None:
    """One chunk of a snapshot (distinct ARNs): its stored rows read by ARN, then one
    executemany per kind of write (new rows, changed rows, rows only seen again, change
    events, accruals, backtest evidence)."""
    table = cast(Table, ResourceRow.__table__)
    query = select(*(table.c[name] for name in _STORED))
    stored = {
        row.arn: row for row in s.execute(query.where(table.c.arn.in_([r.arn for r in chunk])))
    }
    spent: dict[str, list[accrual.Span]] = {}
    added: list[dict[str, Any]] = []
    changed_rows: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    touched: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []  # resource_events rows: what changed
    evidence: list[dict[str, Any]] = []  # backtest history: whose evidence changed
    keys: list[dict[str, Any]] = []
    for res in chunk:
        seen.add(res.arn)
        row = stored.get(res.arn)
        spent[res.arn] = accrual.spans(
            _observed(row) if row is not None else None,
            accrual.Observation(
                at=now,
                running=res.running,
                usd_per_hour=res.usd_per_hour if res.running else None,
                running_since=res.running_since,
                stopped_since=res.stopped_since,
            ),
            policy,
            listed_before=listed_before.get((res.account, res.region, res.kind)),
        )
        values = _resource_row_values(res)
        seen_values = _evidence_values(res, snoozed.get(res.arn))
        key = _evidence_key(seen_values)
        if row is None:
            added.append(
                {"arn": res.arn, "first_seen": now, "last_seen": now,
                 "snapshot_hash": _snapshot_hash(values), "evidence_key": key, **values}
            )  # fmt: skip
            changed = True
        else:
            changed = row.gone_at is not None or any(
                getattr(row, name) != values[name]
                for name in ("status", "instance_type", "instance_count", "usd_per_hour")
            )
            if res.unknown:
                # Keep the last known evidence for later cycles; `evidence_error` marks the
                # row unknown for readers of this snapshot.
                values.pop("last_activity")
                values.pop("activity_source")
            digest = _snapshot_hash(values)
            if row.snapshot_hash != digest:  # else every value is as stored
                update_values = {**values, "snapshot_hash": digest, "last_seen": now,
                                 "gone_at": None}  # fmt: skip
                changed_rows.setdefault(tuple(update_values), []).append(
                    {"k_arn": res.arn, **update_values}
                )
            else:
                touched.append({"k_arn": res.arn, "last_seen": now, "gone_at": None})
            if row.evidence_key != key:
                keys.append({"k_arn": res.arn, "evidence_key": key})
        if row is None or row.evidence_key != key:
            evidence.append({"arn": res.arn, "at": now, **seen_values})
        if changed:
            events.append(_event_values(res, now))
    if added:
        s.execute(insert(table), added)
    for names, rows in changed_rows.items():
        s.execute(_by_arn(table, [n for n in names if n != "k_arn"]), rows)
    if touched:
        s.execute(_by_arn(table, ["last_seen", "gone_at"]), touched)
    if keys:
        s.execute(_by_arn(table, ["evidence_key"]), keys)
    if events:
        s.execute(insert(cast(Table, ResourceEvent.__table__)), events)
    if evidence:
        s.execute(insert(cast(Table, EvidenceRow.__table__)), evidence)
    _add_accruals(s, spent, policy.tz)


def _mark_gone(
    s: Session,
    seen: set[str],
    scanned: set[tuple[str, str, str]],
    now: datetime,
    policy: accrual.Policy,
) -> None:
    """After the listed chunks: mark gone what a complete listing missed (with its last
    accrual and a "Gone" event), record the backtest evidence of what went, and the snapshot's
    time with the known resources it did not list. Reads the stored rows' columns page by
    page, never all rows at once."""
    table = cast(Table, ResourceRow.__table__)
    query = select(*(table.c[name] for name in _STORED)).where(
        table.c.gone_at.is_(None) | (table.c.gone_at == now)
    )
    gone: list[Any] = []
    went: list[str] = []  # gone at this snapshot's time, with evidence recorded before
    missed: list[str] = []  # known, not gone, not listed: its kind's listing failed
    for row in s.execute(query, execution_options={"yield_per": 1000}):
        if row.arn in seen:
            continue
        if row.gone_at is None and (row.account, row.region, row.kind) in scanned:
            gone.append(row)
            if row.evidence_key is not None:
                went.append(row.arn)
        elif row.evidence_key is not None:
            # gone at this very time (an earlier snapshot of a clock standing still) or missed
            (went if row.gone_at is not None else missed).append(row.arn)
    for start in range(0, len(gone), _CHUNK_IN):
        part = gone[start : start + _CHUNK_IN]
        s.execute(
            _by_arn(table, ["gone_at", "running", "snapshot_hash"]),
            [{"k_arn": row.arn, "gone_at": now, "running": False, "snapshot_hash": None}
             for row in part],
        )  # fmt: skip
        s.execute(
            insert(cast(Table, ResourceEvent.__table__)),
            [{"arn": row.arn, "at": now, "status": "Gone", "running": False,
              "instance_type": row.instance_type, "instance_count": 0,
              "usd_per_hour": row.usd_per_hour} for row in part],
        )  # fmt: skip
        spent = {
            row.arn: accrual.spans(_observed(row), accrual.Observation(now, False, None), policy)
            for row in part
        }
        _add_accruals(s, spent, policy.tz)
    del gone
    for chunk in _arn_chunks(went):
        rows, keys = [], []
        for arn, instance_type, last_activity, source, tags in s.execute(
            select(
                table.c.arn, table.c.instance_type, table.c.last_activity,
                table.c.activity_source, table.c.tags,
            ).where(table.c.arn.in_(chunk))
        ):  # fmt: skip
            values = {
                "status": "Gone", "running": False, "instance_type": instance_type,
                "instance_count": 0, "usd_per_hour": None, "running_since": None,
                "last_activity": last_activity, "activity_source": source,
                "tags": dict(tags or {}), "utilization": {}, "snoozed_until": None,
            }  # fmt: skip
            rows.append({"arn": arn, "at": now, **values})
            keys.append({"k_arn": arn, "evidence_key": _evidence_key(values)})
        if rows:
            s.execute(insert(cast(Table, EvidenceRow.__table__)), rows)
            s.execute(_by_arn(table, ["evidence_key"]), keys)
    s.merge(EvidenceSnapshotRow(at=now, missed={"arns": sorted(missed)}))


_CHUNK_IN = 1000  # ARNs per IN list / executemany outside the listed chunks
_DIGEST_EXTRA = ("month_usd", "spender")  # digest_rows' columns that are not the row's


def _evidence_values(res: Resource, snoozed_until: datetime | None) -> dict[str, Any]:
    return {
        "status": res.status,
        "running": res.running,
        "instance_type": res.instance_type,
        "instance_count": res.instance_count,
        "usd_per_hour": res.usd_per_hour,
        "running_since": res.running_since,
        "last_activity": res.last_activity,
        "activity_source": res.activity_source.value,
        "tags": dict(res.tags),
        "utilization": dict(res.utilization),
        "snoozed_until": snoozed_until,
    }


def _evidence_pruning(cutoff: datetime) -> tuple[Any, ...]:
    """Evidence older than `cutoff`, except each resource's latest row before it (its state
    from then on, still needed to replay what follows)."""
    latest = (
        select(func.max(EvidenceRow.id)).where(EvidenceRow.at < cutoff).group_by(EvidenceRow.arn)
    )
    return (
        delete(EvidenceRow).where(EvidenceRow.at < cutoff, EvidenceRow.id.not_in(latest)),
        delete(EvidenceSnapshotRow).where(EvidenceSnapshotRow.at < cutoff),
    )


def _evidence_key(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# Sources that describe real activity (not "in-service-since" or "unknown").
_ACTIVITY_EVIDENCE = {
    ActivitySource.HEARTBEAT_TAG.value,
    ActivitySource.JUPYTER_LOG.value,
    ActivitySource.INVOCATIONS.value,
}
_LOCK_KEY = 0x636F7374  # "cost": the advisory lock id shared by every replica
_LOCK_POLL_SECONDS = 0.5


_MUTATIONS = ("stop", "delete", "scale-to-zero")  # actions that take a resource off the bill
_LISTED = "listed:"  # scan_cursors source of "this kind was last listed completely at"


def _snapshot_hash(values: Mapping[str, Any]) -> str:
    """A hash of what a snapshot writes to a resource row (all but the times it was seen)."""
    text = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _observed(row: Any) -> accrual.Observation:
    """What the stored snapshot said (a gone resource was last seen not running); `row`
    has the resource columns as attributes (a Core row of `_STORED`)."""
    if row.gone_at is not None:
        return accrual.Observation(row.gone_at, False, None)
    return accrual.Observation(
        at=row.last_seen,
        running=row.running,
        usd_per_hour=row.usd_per_hour if row.running else None,
        running_since=row.running_since,
    )


def _add_accruals(s: Session, spent: dict[str, list[accrual.Span]], tz: ZoneInfo) -> None:
    """Add this snapshot's spans to the per-day totals: one query for the (resource, day)
    keys already there, then one executemany of increments and one of new rows (no ORM
    object per resource: a big fleet's day would otherwise sit in the session)."""
    totals = {
        (arn, day): total
        for arn, items in spent.items()
        if items
        for day, total in accrual.by_day(items, tz).items()
    }
    if not totals:
        return
    days = {day for _, day in totals}
    table = cast(Table, AccrualRow.__table__)
    # the keys of these resources only: a chunk of a snapshot never reads the whole day
    have = {
        (arn, day)
        for chunk in _arn_chunks({arn for arn, _ in totals})
        for arn, day in s.execute(
            select(table.c.arn, table.c.day).where(table.c.day.in_(days), table.c.arn.in_(chunk))
        )
    }
    added, grown = [], []
    for (arn, day), total in totals.items():
        values = {
            "usd": total.usd,
            "running_seconds": total.running_seconds,
            "unpriced_seconds": total.unpriced_seconds,
            "unobserved_seconds": total.unobserved_seconds,
        }
        if (arn, day) in have:
            grown.append({"k_arn": arn, "k_day": day, **{f"d_{k}": v for k, v in values.items()}})
        else:
            added.append({"arn": arn, "day": day, **values})
    if grown:
        s.execute(
            update(table)
            .where(table.c.arn == bindparam("k_arn"), table.c.day == bindparam("k_day"))
            .values({k: table.c[k] + bindparam(f"d_{k}") for k in _ACCRUED}),
            grown,
        )
    if added:
        s.execute(insert(table), added)


_ACCRUED = ("usd", "running_seconds", "unpriced_seconds", "unobserved_seconds")


def _event_values(res: Resource, now: datetime) -> dict[str, Any]:
    return {
        "arn": res.arn,
        "at": now,
        "status": res.status,
        "running": res.running,
        "instance_type": res.instance_type,
        "instance_count": res.instance_count,
        "usd_per_hour": res.usd_per_hour,
    }


def instance_id() -> str:
    """Which process ran a cycle (host:pid), for the cycle report."""
    return f"{socket.gethostname()}:{os.getpid()}"
