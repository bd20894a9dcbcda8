from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from guard import failpoints
from guard.model import ActivitySource, Resource
from guard.store import Base, Store, normalize_url, upgrade
from guard.tables import (
    SQLITE_CACHE_KIB,
    SQLITE_POOLED,
    MigrationFailed,
    MigrationKilled,
    head_revision,
    make_engine,
)
from tests.factories import notebook


def _resource(now, **changes) -> Resource:
    return notebook(now, **changes)


def test_migrations_match_models(db_url: str) -> None:
    """Models and migrations agree: autogenerate finds nothing to add, drop or change."""
    upgrade(db_url)  # idempotent on an up-to-date database
    engine = create_engine(normalize_url(db_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def test_head_revision_is_alembics_head() -> None:
    """`upgrade` skips Alembic when the database is at `head_revision`: the files' naming
    convention it reads must give Alembic's own head."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    assert head_revision(MIGRATIONS) == scripts.get_current_head()
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_"), script.path


def _upgrade_in_a_new_process(url: str) -> tuple[bool, str]:
    """Run `upgrade(url)` in a fresh interpreter: whether Alembic was imported in it (never:
    it migrates in a child of its own), and the revision the database is then at."""
    code = (
        "import sys; from guard.tables import upgrade; upgrade(sys.argv[1]); "
        "print('alembic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
    )
    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    return done.stdout.strip() == "True", str(version)


def test_upgrade_migrates_in_a_child_and_never_imports_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    head = head_revision(MIGRATIONS)
    assert _upgrade_in_a_new_process(url) == (False, head)  # a new database: every migration
    assert _upgrade_in_a_new_process(url) == (False, head)  # at head: one query
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "-1")  # one migration behind
    assert _upgrade_in_a_new_process(url) == (False, head)


def test_a_failed_migration_says_what_alembic_said(tmp_path: Path) -> None:
    """A database at a revision this version does not know (a newer cost-guard migrated it):
    the child's error comes back as one line, no traceback, and nothing is changed."""
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0999')"))
    engine.dispose()
    with pytest.raises(MigrationFailed) as failed:
        upgrade(url)
    assert str(failed.value) == "Can't locate revision identified by '0999'"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0999"
        assert inspect(conn).get_table_names() == ["alembic_version"]
    engine.dispose()


def test_a_migration_killed_midway_is_one_line_and_the_next_start_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child SIGKILLed after its third migration (the OOM killer, a node going away):
    the parent says so in one line; the next start migrates to head from what was kept."""
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    monkeypatch.setenv(failpoints.ENV, "migration-after-step@3")
    with pytest.raises(MigrationKilled) as failed:
        upgrade(url)
    assert str(failed.value) == "the migration process was killed by signal 9"
    monkeypatch.delenv(failpoints.ENV)
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert version == head_revision(MIGRATIONS)


def test_sqlite_connections_have_a_small_page_cache_and_two_are_kept(tmp_path: Path) -> None:
    """Each connection has a page cache of its own; the pool keeps two of them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'guard.db'}")
    sizes: list[int] = []
    together = threading.Barrier(3)

    def read() -> None:
        with engine.connect() as conn:
            sizes.append(conn.execute(text("PRAGMA cache_size")).scalar_one())
            together.wait(timeout=30)  # held at once: each thread has a connection of its own

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [-SQLITE_CACHE_KIB] * 3  # negative: KiB, not pages (SQLite's default -2000)
    assert engine.pool.checkedin() == SQLITE_POOLED == 2  # type: ignore[attr-defined]
    engine.dispose()
    # an in-memory database keeps SQLAlchemy's pool of one connection per thread
    for url in ("sqlite://", "sqlite:///:memory:"):
        memory = make_engine(url)
        with memory.connect() as conn:
            assert conn.execute(text("PRAGMA cache_size")).scalar_one() == -SQLITE_CACHE_KIB
        memory.dispose()


def test_snapshot_roundtrip_keeps_utc_and_decimal(store: Store, clock) -> None:
    now = clock.now()
    store.save_snapshot([_resource(now)], {("123456789012", "us-east-1", "notebook")}, now)
    [loaded] = store.resources()
    assert loaded.usd_per_hour == Decimal("0.23")
    assert loaded.running_since == now - timedelta(hours=8)
    assert loaded.running_since.utcoffset() == timedelta(0)
    assert loaded.tags == {"owner": "ada@example.com"}


def test_history_records_changes_only(store: Store, clock) -> None:
    from sqlalchemy import func, select

    from guard.store import ResourceEvent

    now = clock.now()
    scanned = {("123456789012", "us-east-1", "notebook")}
    for _ in range(3):
        store.save_snapshot([_resource(now)], scanned, now)
        now += timedelta(minutes=5)
    store.save_snapshot([_resource(now, status="Stopped", running=False)], scanned, now)
    store.save_snapshot([], scanned, now + timedelta(minutes=5))
    with store.session() as s:
        count = s.scalar(select(func.count()).select_from(ResourceEvent))
    assert count == 3  # first seen, stopped, gone
    assert store.resources() == []
    assert store.resources(include_gone=True)[0].running is False


def test_failed_region_does_not_make_resources_gone(store: Store, clock) -> None:
    now = clock.now()
    store.save_snapshot([_resource(now)], {("123456789012", "us-east-1", "notebook")}, now)
    store.save_snapshot([], set(), now + timedelta(minutes=5))  # the region's scan failed
    assert [r.name for r in store.resources()] == ["nb"]


def test_known_details_of_named_arns_only_gone_ones_included(store: Store, clock) -> None:
    """The describe cache of a job kind is read for the ARNs a scan names, not for every job
    that ever ran; gone ones still answer (an ended job's facts). 2,300 names: three IN lists."""
    now = clock.now()
    scanned = {("123456789012", "us-east-1", "notebook")}
    many = [notebook(now, f"nb-{i:04d}", details={"n": i}) for i in range(2_203)]
    many.append(notebook(now, "bare"))  # no details: not in the cache
    store.save_snapshot(many, scanned, now)
    store.save_snapshot(many[1:], scanned, now + timedelta(minutes=5))  # nb-0000 is gone
    arns = [r.arn for r in many]

    every = store.known_details("notebook", "123456789012", "us-east-1")
    assert len(every) == 2_203 and every[arns[0]] == {"n": 0}
    absent = [f"arn:aws:sagemaker:us-east-1:1:x/none-{i}" for i in range(96)]
    assert store.known_details("notebook", "123456789012", "us-east-1", arns + absent) == every
    wanted = [arns[0], *arns[500:2_202:2], arns[-1], *absent]
    named = store.known_details("notebook", "123456789012", "us-east-1", wanted)
    assert named == {arn: every[arn] for arn in wanted if arn in every}
    assert len(named) == 1 + 851  # the gone one and every other of 500..2201
    assert store.known_details("notebook", "123456789012", "us-west-2", arns) == {}
    assert store.known_details("notebook", "123456789012", "us-east-1", []) == {}


def test_unknown_evidence_keeps_last_known_activity(store: Store, clock) -> None:
    now = clock.now()
    scanned = {("123456789012", "us-east-1", "notebook")}
    store.save_snapshot([_resource(now)], scanned, now)
    store.save_snapshot(
        [
            _resource(
                now,
                last_activity=None,
                activity_source=ActivitySource.UNKNOWN,
                evidence_error="logs down",
            )
        ],
        scanned,
        now,
    )
    [loaded] = store.resources()
    assert loaded.unknown
    assert loaded.last_activity == now - timedelta(hours=3)


def test_outbox_is_idempotent_per_key(store: Store, clock) -> None:
    now = clock.now()
    assert store.enqueue(
        key="k1", arn="a", episode_id=None, operation="post", channel="#c", payload={}, now=now
    )
    assert not store.enqueue(
        key="k1", arn="a", episode_id=None, operation="post", channel="#c", payload={}, now=now
    )
    [message] = store.pending_messages()
    store.message_sent(message.id, now)
    assert store.pending_messages() == []


def test_snoozes_expire(store: Store, clock) -> None:
    now = clock.now()
    store.snooze("arn:x", now + timedelta(hours=4), "demo", "cli", now)
    assert store.snoozes(now) == {"arn:x": now + timedelta(hours=4)}
    assert store.snoozes(now + timedelta(hours=5)) == {}
    assert store.unsnooze("arn:x")
    assert not store.unsnooze("arn:x")


def test_cycle_lock_excludes_a_second_holder(store: Store) -> None:
    other = Store(store.url)
    try:
        with store.cycle_lock() as first:
            assert first
            with other.cycle_lock() as second:
                assert not second
        with other.cycle_lock() as again:
            assert again
        # A waiter gets the lock as soon as the holder lets go, within its timeout.
        released = threading.Event()

        def hold_briefly() -> None:
            with store.cycle_lock() as held:
                assert held
                released.wait(5)

        holder = threading.Thread(target=hold_briefly)
        holder.start()
        threading.Timer(0.3, released.set).start()
        time.sleep(0.1)  # the holder has it by now
        with other.cycle_lock(timeout=5) as waited:
            assert waited and released.is_set()
        holder.join()
    finally:
        other.close()


def test_a_batch_commits_once_and_only_its_own_thread_joins_it(store: Store, clock) -> None:
    import threading

    def queue(key: str) -> None:
        store.enqueue(
            key=key, arn=None, episode_id=None, operation="post", channel=None,
            payload={}, now=clock.now(),
        )  # fmt: skip

    seen_from_other_thread: list[int] = []
    with store.batch():
        queue("a")
        queue("b")
        # Another thread (another connection) sees nothing until the batch commits.
        other = threading.Thread(
            target=lambda: seen_from_other_thread.append(len(store.pending_messages()))
        )
        other.start()
        other.join()
        assert len(store.pending_messages()) == 2  # this thread reads its own writes
    assert seen_from_other_thread == [0]
    assert len(store.pending_messages()) == 2
    try:
        with store.batch():
            queue("c")
            raise RuntimeError("crash mid-batch")
    except RuntimeError:
        pass
    assert len(store.pending_messages()) == 2  # all or nothing


def test_the_history_is_read_a_range_of_arns_at_a_time_and_actions_are_counted(
    store: Store, clock
) -> None:
    """`evidence_arn_ranges` cuts the ARNs into ranges that together hold each exactly once
    (the backtest reads a big fleet's history a range at a time); the digest and backtest
    read the audit trail without the warnings, which a first cycle writes thousands of."""
    now = clock.now()
    names = [f"nb-{i}" for i in range(7)]
    store.save_snapshot(
        [notebook(now, n) for n in names], {("123456789012", "us-east-1", "notebook")}, now
    )
    every = sorted(row.arn for row in store.evidence_since(now - timedelta(hours=1), now))
    assert len(every) == 7
    for size in (1, 3, 7, 50):
        ranges = list(store.evidence_arn_ranges(size))
        assert len(ranges) == -(-7 // size)
        parts = [
            sorted(row.arn for row in store.evidence_since(now - timedelta(hours=1), now, r))
            for r in ranges
        ]
        assert sorted(arn for part in parts for arn in part) == every
        assert all(0 < len(part) <= size for part in parts)
    res = notebook(now, "nb-0")
    for action, outcome in (("warn", "done"), ("stop", "done"), ("stop", "failed")):
        store.record_action(res, rule_id="idle", episode_id=None, action=action, mode="enforce",
                            outcome=outcome, detail="", now=now)  # fmt: skip
    assert [a.action for a in store.audit(now)] == ["warn", "stop", "stop"]
    counts, latest = store.actions_summary(now - timedelta(seconds=1), now, latest=1)
    assert counts == {"stop done": 1, "stop failed": 1}  # warnings left out, in order met
    assert [(a.action, a.outcome) for a in latest] == [("stop", "failed")]
    assert store.actions_summary(now, now + timedelta(hours=1), latest=5) == ({}, [])  # after
    done = store.actions_between(now, now, ("stop", "delete"), ("done", "dry-run"))
    assert [(a.action, a.outcome) for a in done] == [("stop", "done")]
