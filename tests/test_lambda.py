"""The Lambda handler: one cycle per invocation against the simulator, state in Postgres."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from guard import aws_lambda
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Store

CONFIG = {
    "pricing": {"source": "bundled"},
    "rules": [
        {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "0s"},
    ],
}
CONTEXT = SimpleNamespace(aws_request_id="req-1", function_name="cost-guard")

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


@pytest.fixture(autouse=True)
def _fresh_handler() -> Iterator[None]:
    """Each test is a cold start."""
    aws_lambda.reset()
    yield
    aws_lambda.reset()


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The function's environment as the SAM template sets it: a config file, no database."""
    path = tmp_path / "cost-guard.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    monkeypatch.setenv("COST_GUARD_CONFIG", str(path))
    return path


def _seed(sim: Simulator, clock: ManualClock) -> None:
    # The handler runs on the system clock, as on Lambda: the simulated account's time is now.
    clock.set(datetime.now(UTC))
    since = clock.now() - timedelta(hours=5)
    sim.add_notebook("idle-nb", "ml.m5.xlarge", in_service_since=since)
    sim.add_notebook("busy-nb", in_service_since=since)
    sim.jupyter_activity("busy-nb", clock.now())
    sim.add_endpoint("ep", created_at=since)


def test_handler_runs_one_cycle_with_state_in_postgres(
    sim: Simulator,
    clock: ManualClock,
    pg_url: str,
    lambda_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(sim, clock)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", pg_url)

    summary = aws_lambda.handler({"source": "aws.events"}, CONTEXT)

    assert summary["mode"] == "dry-run"
    assert summary["resources"] == 3 and summary["running"] == 3
    assert float(summary["usd_per_hour"]) > 0
    assert summary["errors"] == [] and summary["errors_total"] == 0
    assert summary["actions"] == [
        {"kind": "notebook", "name": "idle-nb", "rule": "idle", "action": "stop",
         "outcome": "dry-run"}
    ]  # fmt: skip
    assert summary["warnings"] >= 1
    assert summary["started_at"] <= summary["finished_at"]
    # dry-run: nothing was stopped
    assert sim.notebook_status("idle-nb") == "InService"

    # The state is in Postgres, where the next (cold) invocation finds it.
    store = Store(pg_url)
    try:
        assert {r.name for r in store.resources()} == {"idle-nb", "busy-nb", "ep"}
        assert store.last_cycle() is not None
    finally:
        store.close()

    # Warm: the same Guard is reused; the config is not read again.
    cached = aws_lambda._guard
    lambda_env.write_text("this: [is not read again")
    again = aws_lambda.handler({}, CONTEXT)
    assert aws_lambda._guard is cached
    assert again["resources"] == 3
    assert again["actions"] == []  # already acted on (dry-run) in the first cycle


def test_a_held_cycle_lock_skips_the_invocation(
    sim: Simulator,
    clock: ManualClock,
    pg_url: str,
    lambda_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(sim, clock)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", pg_url)
    other = Store(pg_url)  # another invocation (or a daemon replica) mid-cycle
    try:
        with other.cycle_lock() as held:
            assert held
            summary = aws_lambda.handler({}, CONTEXT)
    finally:
        other.close()
    assert summary["skipped"] == "another replica is running a cycle"
    assert set(summary) == {"started_at", "finished_at", "skipped"}


def test_sqlite_is_refused_with_the_fix_named(
    lambda_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'guard.db'}")
    with pytest.raises(aws_lambda.LambdaSetupError) as refused:
        aws_lambda.handler({}, CONTEXT)
    message = str(refused.value)
    assert "COST_GUARD_DATABASE_URL" in message and "Postgres" in message
    assert aws_lambda.ALLOW_SQLITE_ENV in message
    assert not (tmp_path / "guard.db").exists()  # refused before anything was created
    assert aws_lambda._guard is None  # the next invocation tries again

    # The default database_url (no env at all) is SQLite too.
    monkeypatch.delenv("COST_GUARD_DATABASE_URL")
    with pytest.raises(aws_lambda.LambdaSetupError):
        aws_lambda.handler({}, CONTEXT)


def test_sqlite_allowed_explicitly(
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    lambda_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(sim, clock)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", fresh_sqlite_url)  # e.g. on an EFS mount
    monkeypatch.setenv(aws_lambda.ALLOW_SQLITE_ENV, "1")
    summary = aws_lambda.handler({}, CONTEXT)
    assert summary["resources"] == 3
    assert [a["name"] for a in summary["actions"]] == ["idle-nb"]


def test_an_invalid_config_is_reported(lambda_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COST_GUARD_MODE", "yolo")
    with pytest.raises(aws_lambda.LambdaSetupError, match=r"(?s)invalid configuration.*field mode"):
        aws_lambda.handler({}, CONTEXT)


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_cycle_logs_reach_the_runtime_handler_once_at_info(
    sim: Simulator,
    clock: ManualClock,
    pg_url: str,
    lambda_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed(sim, clock)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", pg_url)
    root = logging.getLogger()
    runtime = _Recorder()  # what the Lambda runtime installs: a root handler, level WARNING
    level = root.level
    root.setLevel(logging.WARNING)
    root.addHandler(runtime)
    handlers_before = list(root.handlers)
    try:
        aws_lambda.handler({}, CONTEXT)
        aws_lambda.handler({}, CONTEXT)
    finally:
        root.removeHandler(runtime)
        root.setLevel(level)
    assert root.handlers == [h for h in handlers_before if h is not runtime]  # none added
    done = [line for line in runtime.lines if line.startswith("cycle done:")]
    assert len(done) == 2, runtime.lines  # INFO got through, once per cycle
    assert not any("botocore" in line for line in runtime.lines)


def test_a_cold_start_while_aws_is_unreachable_answers_with_the_blind_spot(
    sim: Simulator,
    clock: ManualClock,
    pg_url: str,
    lambda_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.factories import notebook

    _seed(sim, clock)
    monkeypatch.setenv("COST_GUARD_DATABASE_URL", pg_url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = Store(pg_url)
    res = notebook(clock.now(), "idle-nb")
    store.save_snapshot([res], set(), clock.now())
    left = store.record_action(
        res, rule_id="idle", episode_id=None, action="stop", mode="enforce",
        outcome="intended", detail="idle", now=clock.now(),
    )  # fmt: skip
    try:
        with sim.outage():  # reconcile at the cold start needs AWS: it must not crash
            summary = aws_lambda.handler({}, CONTEXT)
        assert summary["resources"] == 0 and summary["errors_total"] >= 2
        assert any(f"action {left}" in e for e in summary["errors"])
        assert any("connection refused" in e for e in summary["errors"])
        assert all("Traceback" not in e and "TypeError" not in e for e in summary["errors"])

        summary = aws_lambda.handler({}, CONTEXT)  # AWS is back: the warm guard recovers
        assert summary["errors"] == [] and summary["resources"] == 3
        assert store.unfinished_actions() == []
    finally:
        store.close()
