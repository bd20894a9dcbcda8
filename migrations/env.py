"""Alembic environment: batch mode so ALTERs work on SQLite, one metadata for both engines."""

from __future__ import annotations

import os

from alembic import context

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


def run_migrations_online() -> None:
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
