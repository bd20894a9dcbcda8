"""Alembic environment: batch mode so ALTERs work on SQLite, one metadata for both engines."""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import Engine, event

from guard import failpoints
from guard.tables import Base, make_engine, normalize_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or ""
    if config.config_file_name and os.environ.get("COST_GUARD_DATABASE_URL"):
        url = os.environ["COST_GUARD_DATABASE_URL"]
    return normalize_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _transactional_ddl_on_sqlite(engine: Engine) -> None:
    """SQLite can roll DDL back, but Python's sqlite3 commits before each CREATE or ALTER on
    its own: a migration killed midway left its tables behind, unrecorded, and every later
    start failed on "table ... already exists". The driver's own transaction handling off,
    BEGIN where SQLAlchemy begins (SQLAlchemy's documented recipe for the pysqlite driver):
    with `transaction_per_migration`, a kill loses at most the migration under way, whole."""

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def run_migrations_online() -> None:
    engine = make_engine(_url())
    if engine.dialect.name == "sqlite":
        _transactional_ddl_on_sqlite(engine)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            transaction_per_migration=True,
            # a crash test's spot: killed between two migrations (tests/test_store.py)
            on_version_apply=lambda **_: failpoints.reached("migration-after-step"),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
