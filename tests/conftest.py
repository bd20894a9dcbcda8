"""Shared fixtures: the simulated AWS account, both databases, a manual clock.

Postgres: every test run gets its own database (created on the server named by
COST_GUARD_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test), so parallel
runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Base, Store, normalize_url, upgrade
from guard.tables import migrate

POSTGRES_URL = os.environ.get(
    "COST_GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday morning

pytest_plugins = ["tests.browser"]  # the web console's fixtures: Chromium, a served console


_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


@pytest.fixture(autouse=True)
def _local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches real AWS or Slack: this machine's settings are hidden and any name
    lookup beyond the loopback fails at once."""
    for key in list(os.environ):
        if key.startswith(("COST_GUARD_", "SLACK_")) or key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"tests are local-only: no lookup of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(scope="session")
def _sim_server() -> Iterator[Simulator]:
    sim = Simulator(ManualClock(START)).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(_sim_server: Simulator, clock: ManualClock) -> Iterator[Simulator]:
    """A fresh simulated account on the shared local moto server, on the test's clock."""
    from guard.sim.moto_ext import install

    _sim_server.reset()
    _sim_server.clock = clock
    install(clock)
    yield _sim_server
    _sim_server.heal()


@pytest.fixture
def aws_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """boto3's standard chain, pointed at the simulator (as the docs tell users to)."""
    for key, value in sim.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return sim


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test run's own on the local Postgres server."""
    admin_url = make_url(normalize_url(POSTGRES_URL))
    name = f"cost_guard_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # CI must fail loudly when Postgres is missing
        pytest.fail(f"Postgres at {admin_url.render_as_string()} is not usable: {exc}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "cost-guard.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def emptied(url: str) -> str:
    """The database at `url` with every (migrated) table emptied."""
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs on both engines, starting from empty (migrated) tables."""
    return emptied(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """This run's Postgres database, emptied: for what needs Postgres (replicas, Lambda)."""
    return emptied(postgres_url)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    """A new, migrated SQLite file of this test's own, for tests that are not about storage."""
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    migrate(url)  # in this process: a child per test would cost ~1 s each
    return url


@pytest.fixture
def sqlite_store(fresh_sqlite_url: str) -> Iterator[Store]:
    s = Store(fresh_sqlite_url)
    yield s
    s.close()
