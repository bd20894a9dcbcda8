"""The database schema: typed tables, the engine, and the Alembic upgrade.

SQLite (one file, zero setup) or Postgres. The schema changes only through the Alembic
migrations in `migrations/`; `upgrade()` applies them. Queries live in `guard.store`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns timezone-aware UTC datetimes on both SQLite and Postgres."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Money = Numeric(14, 6)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        date: Date(),
        Decimal: Money,
        dict[str, Any]: JSON,
    }


class ResourceRow(Base):
    """Every resource ever seen, with its latest snapshot."""

    __tablename__ = "resources"

    arn: Mapped[str] = mapped_column(String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(256))
    account: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    running: Mapped[bool]
    instance_type: Mapped[str | None] = mapped_column(String(64))
    instance_count: Mapped[int]
    usd_per_hour: Mapped[Decimal | None]
    price_source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime | None]
    running_since: Mapped[datetime | None]
    last_activity: Mapped[datetime | None]
    activity_source: Mapped[str] = mapped_column(String(32))
    evidence_error: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    utilization: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    gone_at: Mapped[datetime | None]  # set when a scan of its region no longer lists it
    # fingerprint of its latest `evidence` row (backtest history, migration 0009)
    evidence_key: Mapped[str | None] = mapped_column(String(64))
    # hash of the snapshot's values (migration 0008): an unchanged resource is recognised
    # without loading its JSON columns (guard/store.py save_snapshot)
    snapshot_hash: Mapped[str | None] = mapped_column(String(64))


class ResourceEvent(Base):
    """History kept compactly: one row per change of status, type, count or price."""

    __tablename__ = "resource_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    arn: Mapped[str] = mapped_column(String(512), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(32))
    running: Mapped[bool]
    instance_type: Mapped[str | None] = mapped_column(String(64))
    instance_count: Mapped[int]
    usd_per_hour: Mapped[Decimal | None]


class EpisodeRow(Base):
    """One (resource, rule) match from first match until it ends; carries its Slack message."""

    __tablename__ = "episodes"
    __table_args__ = (Index("ix_episodes_open", "arn", "rule_id", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    arn: Mapped[str] = mapped_column(String(512))
    rule_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    warned_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    acted_at: Mapped[datetime | None]
    # "done" | "skipped" | "dry-run" | "failed": a dry-run one is re-armed under enforce, a
    # failed one retried at `deadline` (guard/rules.py)
    acted_outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    slack_channel: Mapped[str | None] = mapped_column(String(128))
    slack_ts: Mapped[str | None] = mapped_column(String(64))


class ActionRow(Base):
    """The audit trail: every warning and action, recorded as intended before the AWS call."""

    __tablename__ = "actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    arn: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(256))
    account: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(128))
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))
    action: Mapped[str] = mapped_column(String(32))  # warn | stop | ...
    mode: Mapped[str] = mapped_column(String(16))  # dry-run | enforce
    # intended -> done | failed | skipped; dry-run; warned
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None]
    # what the resource cost per hour when acted on: what a done stop/delete saves per hour
    usd_per_hour: Mapped[Decimal | None]


class SnoozeRow(Base):
    __tablename__ = "snoozes"

    arn: Mapped[str] = mapped_column(String(512), primary_key=True)
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime]


class OutboxRow(Base):
    """A Slack message waiting to be sent: retried until delivered, never sent twice."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(256), unique=True)  # idempotency key
    arn: Mapped[str | None] = mapped_column(String(512), index=True)
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))
    operation: Mapped[str] = mapped_column(String(16))  # post | update | reply
    channel: Mapped[str | None] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Set (and committed) before a send that Slack may accept without us hearing back; cleared
    # when Slack's answer proves it was not posted. A row found with it set and no `sent_at`
    # is looked up in the channel's history before it is posted again.
    sending_at: Mapped[datetime | None]


class SlackUserRow(Base):
    """users.lookupByEmail answers, so each owner's email is asked once, not every cycle."""

    __tablename__ = "slack_users"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(32))  # None: Slack has no such user
    looked_up_at: Mapped[datetime]


class SlackInteractionRow(Base):
    """A button click, recorded before it takes effect: its unique key makes a replayed or
    retried click a no-op, and the rows say who snoozed, kept or stopped what."""

    __tablename__ = "slack_interactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(256), unique=True)  # action_ts:user:action
    at: Mapped[datetime]
    user_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))  # snooze_4h | keep_24h | stop_now
    arn: Mapped[str] = mapped_column(String(512))
    episode_id: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class CycleRow(Base):
    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime]
    mode: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]]


class ScanCursorRow(Base):
    """Where the last complete activity scan of one account/region/source ended."""

    __tablename__ = "scan_cursors"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    scanned_until: Mapped[datetime]


class RestoreRecordRow(Base):
    """What is needed to bring back a resource the guard deleted, saved before deleting it."""

    __tablename__ = "restore_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    arn: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(256), index=True)
    account: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32))
    saved_at: Mapped[datetime]
    action_id: Mapped[int | None] = mapped_column(ForeignKey("actions.id"))
    record: Mapped[dict[str, Any]]  # e.g. endpoint name, config name, variants, tags
    restored_at: Mapped[datetime | None]


class AccrualRow(Base):
    """Estimated spend of one resource on one day (in the configured timezone).

    Built from consecutive snapshots: $/h x time running between two observations. Time the
    guard could not see (a gap longer than `accrual.max_gap`) is counted, not guessed.
    """

    __tablename__ = "accruals"

    arn: Mapped[str] = mapped_column(String(512), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True, index=True)
    usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    running_seconds: Mapped[int] = mapped_column(default=0)
    unpriced_seconds: Mapped[int] = mapped_column(default=0)  # running, but $/h unknown
    unobserved_seconds: Mapped[int] = mapped_column(default=0)  # a gap the guard did not see

    @classmethod
    def zero(cls, arn: str, day: date) -> AccrualRow:
        """A new day's row, ready to be added to (column defaults apply only at flush)."""
        return cls(
            arn=arn,
            day=day,
            usd=Decimal(0),
            running_seconds=0,
            unpriced_seconds=0,
            unobserved_seconds=0,
        )


class PriceRow(Base):
    """An on-demand price from the AWS Price List API, cached with its fetch time."""

    __tablename__ = "prices"

    instance_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    usd_per_hour: Mapped[Decimal]
    usage_type: Mapped[str] = mapped_column(String(128), default="")
    fetched_at: Mapped[datetime]


class PriceRefreshRow(Base):
    """One attempt to refresh prices from the Price List API, successful or not."""

    __tablename__ = "price_refreshes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    ok: Mapped[bool]
    prices: Mapped[int] = mapped_column(default=0)  # how many prices were stored
    detail: Mapped[str] = mapped_column(Text, default="")


class BudgetAlertRow(Base):
    """A budget threshold (or the forecast) crossed in one period: told once per period."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("budget_id", "period_start", "threshold"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    budget_id: Mapped[str] = mapped_column(String(128))
    period_start: Mapped[date]
    threshold: Mapped[str] = mapped_column(String(32))  # "0.5", "1.0", or "forecast"
    at: Mapped[datetime]
    spend_usd: Mapped[Decimal]
    forecast_usd: Mapped[Decimal | None]


class ActualCostRow(Base):
    """Cost Explorer's figure for one closed day and scope (a budget, or "all")."""

    __tablename__ = "actual_costs"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    usd: Mapped[Decimal]
    fetched_at: Mapped[datetime]


class BilledCostRow(Base):
    """What the bill (a CUR 2.0 / FOCUS data export) says one resource cost on one UTC day."""

    __tablename__ = "billed_costs"

    arn: Mapped[str] = mapped_column(String(512), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    usd: Mapped[Decimal]
    fetched_at: Mapped[datetime]


class EvidenceRow(Base):
    """Backtest history (migration 0009): one resource's evidence as a snapshot saw it,
    written only when it changed since the previous row, so a cycle can be replayed."""

    __tablename__ = "evidence"
    __table_args__ = (Index("ix_evidence_arn_at", "arn", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    arn: Mapped[str] = mapped_column(String(512))
    at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(32))
    running: Mapped[bool]
    instance_type: Mapped[str | None] = mapped_column(String(64))
    instance_count: Mapped[int]
    usd_per_hour: Mapped[Decimal | None]
    running_since: Mapped[datetime | None]
    last_activity: Mapped[datetime | None]
    activity_source: Mapped[str] = mapped_column(String(32))  # "unknown": evidence failed
    tags: Mapped[dict[str, Any]]
    utilization: Mapped[dict[str, Any]]
    snoozed_until: Mapped[datetime | None]  # the stored snooze at that snapshot


class EvidenceSnapshotRow(Base):
    """Backtest history (migration 0009): each snapshot's time and the known resources it
    did not list (a region or kind whose scan failed): a replay skips those, like the cycle."""

    __tablename__ = "evidence_snapshots"

    at: Mapped[datetime] = mapped_column(primary_key=True)
    missed: Mapped[dict[str, Any]]  # {"arns": [...]}


class AccountLeaseRow(Base):
    """Sharding (migration 0008): which replica scans an account, until when, and the last
    scan interval (slot) it was scanned in, so no account is scanned twice in one."""

    __tablename__ = "account_leases"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None]
    scanned_slot: Mapped[int | None]


class ShardReplicaRow(Base):
    """Sharding (migration 0008): each replica's last cycle, to share the accounts fairly."""

    __tablename__ = "shard_replicas"

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime]


SQLITE_CACHE_KIB = 256
SQLITE_POOLED = 2


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        # A file database: two pooled connections (the cycle's and one more); a scan
        # worker's beyond them is closed when handed back, its page cache, schema and
        # statements with it (the default pool kept five: 5-6 MB more peak RSS on the
        # bench). 15 at once, as before. An in-memory one keeps SQLAlchemy's
        # SingletonThreadPool, which has no overflow to size.
        sized: dict[str, int] = {}
        if not in_memory(url):
            sized = {"pool_size": SQLITE_POOLED, "max_overflow": 15 - SQLITE_POOLED}
        engine = create_engine(url, connect_args={"timeout": 30}, **sized)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # SQLite's page cache is per connection (2 MiB by default): ~10 MB of the
            # daemon's peak RSS on the 10,000-resource bench with the default pool. The OS
            # caches the file anyway; 256 KiB each measured no slower.
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the driver we install)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def in_memory(url: str) -> bool:
    """An in-memory SQLite database, as SQLAlchemy tells it from a file (which it pools)."""
    parsed = make_url(url)
    dialect = parsed.get_dialect()
    return (
        parsed.get_backend_name() == "sqlite"
        and issubclass(dialect, DefaultDialect)
        and dialect.get_pool_class(parsed) is not QueuePool
    )


class MigrationFailed(Exception):
    """The migrations failed (in their own process); the message is what Alembic said."""


class MigrationKilled(MigrationFailed):
    """The migration process was killed: each migration is applied whole or not at all, so
    running it again finishes it."""


def upgrade(url: str) -> None:
    """Apply the Alembic migrations up to head (idempotent), in a process of its own.

    A database already at head is left alone with one query. Otherwise Alembic runs in a
    child interpreter: its import (Mako and Pygments with it) is ~11 MB that this process
    would keep for its whole life, the daemon's or a Lambda container's, after every first
    start and every upgrade of cost-guard that adds a migration. The child's RSS is its own
    and gone before the first cycle starts."""
    if in_memory(url):  # the child would migrate a database of its own, then gone
        raise MigrationFailed(
            "an in-memory SQLite database lives in one process, and the migrations run in "
            "a process of their own; use a file, e.g. sqlite:///cost-guard.db"
        )
    scripts = migration_scripts()
    head, at = head_revision(scripts), _revision(url)
    if at == head:
        return
    env = {
        **os.environ,
        MIGRATE_URL_ENV: url,  # not in argv: a password would show in `ps`
        # the parent's import path, whatever set it up (a source checkout, a Lambda's
        # /var/task, pytest's rootdir)
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    done = subprocess.run(
        [sys.executable, "-c", "from guard.tables import _migrate_child; _migrate_child()"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode < 0:  # killed (the OOM killer, a SIGKILL): nothing it said explains it
        raise MigrationKilled(f"the migration process was killed by signal {-done.returncode}")
    if done.returncode:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise MigrationFailed(lines[-1] if lines else f"exit code {done.returncode}")
    log.info("database migrated from %s to revision %s", f"revision {at}" if at else "empty", head)


MIGRATE_URL_ENV = "COST_GUARD_MIGRATE_URL"


def migrate(url: str) -> None:
    """Alembic's upgrade to head, in this process: `upgrade`'s child runs it, and tests,
    which migrate a new database per test and need no child for it."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migration_scripts()))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")


def _migrate_child() -> None:
    """The child `upgrade` starts: the URL from `MIGRATE_URL_ENV`; an error is its first
    line on stderr and exit code 1, which `upgrade` raises as `MigrationFailed`."""
    try:
        migrate(os.environ[MIGRATE_URL_ENV])
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(first, file=sys.stderr)
        raise SystemExit(1) from None


def migration_scripts() -> Path:
    here = Path(__file__).resolve().parent
    # installed: guard/migrations (see pyproject.toml); a source checkout: ./migrations
    return next(p for p in (here / "migrations", here.parent / "migrations") if p.is_dir())


def head_revision(scripts: Path) -> str:
    """The newest migration's revision: each file in `versions/` is named after its revision
    ("0009_backtest_evidence.py" is "0009"), one after another (checked against Alembic's own
    head in tests/test_store.py)."""
    return max(path.name.split("_", 1)[0] for path in (scripts / "versions").glob("[0-9]*_*.py"))


def _revision(url: str) -> str | None:
    """The revision the database is at; None for a database Alembic never touched."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
