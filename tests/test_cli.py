"""The command line, end to end: real config files, the simulator over HTTP, SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from guard.cli import EXIT_DATABASE, main
from guard.sim import Simulator

RULES = """
mode: dry-run
database_url: sqlite:///{db}
rules:
  - id: idle-notebooks
    kind: notebook
    idle_for: 2h
    action: stop
    grace: 30m
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cost-guard.yaml"
    path.write_text(RULES.format(db=tmp_path / "guard.db"))
    return path


@pytest.fixture
def env(sim: Simulator) -> dict[str, str]:
    """What a user's shell would hold: credentials and endpoint for the (simulated) account."""
    return {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}


def cli(args: list[str], env: dict[str, str]) -> Any:
    # Never the machine's Slack or cost-guard settings: unset them for the command.
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    result = CliRunner().invoke(main, args, env={**clean, **env}, catch_exceptions=False)
    return result


def seed(sim: Simulator) -> None:
    now = datetime.now(UTC)  # the CLI runs on the system clock
    sim.add_notebook(
        "idle-nb", tags={"owner": "ada@example.com"}, in_service_since=now - timedelta(hours=5)
    )
    sim.add_notebook("busy-nb", in_service_since=now - timedelta(hours=5))
    sim.jupyter_activity("busy-nb", now - timedelta(minutes=5))


def test_once_json_reports_calls_by_operation(
    sim: Simulator, config_file: Path, env: dict[str, str]
) -> None:
    seed(sim)
    result = cli(["once", "--json", "--config", str(config_file)], env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) >= {
        "started_at", "finished_at", "resources", "by_kind", "usd_per_hour",
        "warnings", "actions", "errors", "api_calls",
    }  # fmt: skip
    assert report["resources"] == 2 and report["warnings"] == 1
    assert report["api_calls"]["sagemaker:ListNotebookInstances"] == 1
    assert report["usd_per_hour"] == "0.1000"


def test_inventory_audit_and_snooze(sim: Simulator, config_file: Path, env: dict[str, str]) -> None:
    seed(sim)
    assert cli(["once", "--config", str(config_file)], env).exit_code == 0
    items = json.loads(cli(["inventory", "--json", "--config", str(config_file)], env).output)
    by_name = {item["name"]: item for item in items}
    idle = by_name["idle-nb"]
    for key in (
        "arn", "kind", "name", "account", "region", "status", "instance_type", "instance_count",
        "usd_per_hour", "running_since", "last_activity", "activity_source", "accrued_usd",
        "owner", "exempt", "snoozed_until",
    ):  # fmt: skip
        assert key in idle, key
    assert idle["owner"] == "ada@example.com" and idle["usd_per_hour"] == "0.0500"
    assert idle["rule_state"][0]["rule"] == "idle-notebooks"
    assert by_name["busy-nb"]["activity_source"] == "jupyter-log"

    out = cli(
        [
            "snooze",
            "notebook/idle-nb",
            "--for",
            "4h",
            "--reason",
            "demo",
            "--config",
            str(config_file),
        ],
        env,
    )
    assert out.exit_code == 0 and "Snoozed for 4 h by " in out.output
    items = json.loads(cli(["inventory", "--json", "--config", str(config_file)], env).output)
    assert next(i for i in items if i["name"] == "idle-nb")["snoozed_until"]
    out = cli(["unsnooze", "notebook/idle-nb", "--config", str(config_file)], env)
    assert "snooze removed" in out.output

    entries = json.loads(
        cli(["audit", "--since", "1d", "--json", "--config", str(config_file)], env).output
    )
    assert [(e["name"], e["action"], e["outcome"]) for e in entries] == [
        ("idle-nb", "warn", "warned")
    ]
    assert set(entries[0]) >= {
        "at",
        "arn",
        "kind",
        "name",
        "rule",
        "action",
        "mode",
        "outcome",
        "detail",
    }


def test_snooze_of_unknown_resource_explains(config_file: Path, env: dict[str, str]) -> None:
    out = cli(["snooze", "notebook/nope", "--config", str(config_file)], env)
    assert out.exit_code != 0 and "not known yet" in out.output


def test_invalid_config_exits_2_naming_file_rule_and_field(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - id: r1\n    kind: notebook\n    grace: soon\n")
    out = cli(["check-config", "--config", str(path)], env)
    assert out.exit_code == 2
    assert f"{path}: rule 'r1' field grace: invalid duration 'soon'" in out.output


def test_an_in_memory_database_is_refused_in_one_line(
    config_file: Path, env: dict[str, str]
) -> None:
    """The migrations run in a process of their own: they would fill a database of theirs."""
    env = {**env, "COST_GUARD_DATABASE_URL": "sqlite://"}
    out = cli(["check-config", "--config", str(config_file)], env)
    assert out.exit_code == 3, out.output
    assert "✗ database: sqlite://: an in-memory SQLite database cannot be" in out.output
    out = cli(["once", "--config", str(config_file)], env)
    assert out.exit_code == 3 and "Traceback" not in out.output, out.output
    assert "Error: cannot migrate the database: an in-memory SQLite database" in out.output


def test_secrets_in_the_file_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "leaky.yaml"
    path.write_text("slack_bot_token: xoxb-123\n")
    out = cli(["check-config", "--config", str(path)], env)
    assert out.exit_code == 2 and "environment only" in out.output and "xoxb-123" not in out.output


def test_check_config_masks_secrets_and_applies_env_overrides(
    config_file: Path, env: dict[str, str]
) -> None:
    env = {
        **env,
        "SLACK_BOT_TOKEN": "xoxb-very-secret",
        "COST_GUARD_DATABASE_URL": "postgresql://guard:hunter2@db.internal/guard",
        "COST_GUARD_MODE": "enforce",
        "COST_GUARD_SLACK__CHANNEL": "#ml-costs",
    }
    out = cli(["check-config", "--config", str(config_file)], env)
    assert out.exit_code == 3, out.output  # db.internal cannot be reached from the tests
    assert "xoxb-very-secret" not in out.output and "hunter2" not in out.output
    assert "# secrets (from the environment only): SLACK_BOT_TOKEN" in out.output
    assert "mode: enforce" in out.output and "channel: '#ml-costs'" in out.output
    assert "database_url: postgresql://guard:***@db.internal/guard" in out.output
    assert (
        "# ✗ database: cannot open the database at postgresql://guard:***@db.internal/guard"
        in out.output
    )


def test_db_upgrade(config_file: Path, env: dict[str, str]) -> None:
    out = cli(["db", "upgrade", "--config", str(config_file)], env)
    assert out.exit_code == 0 and "latest schema" in out.output


def test_db_upgrade_on_a_database_a_newer_version_migrated(
    config_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """The migrations run in a child process: what failed there is one sentence here."""
    engine = create_engine(f"sqlite:///{tmp_path / 'guard.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('0999')"))
    engine.dispose()
    out = cli(["db", "upgrade", "--config", str(config_file)], env)
    assert out.exit_code == EXIT_DATABASE
    assert out.output.strip().splitlines() == [
        "Error: cannot migrate the database: Can't locate revision identified by '0999'. "
        "Check database_url."
    ]


def test_db_upgrade_killed_midway_says_so_and_the_next_one_finishes(
    config_file: Path, env: dict[str, str]
) -> None:
    killed = cli(
        ["db", "upgrade", "--config", str(config_file)],
        {**env, "COST_GUARD_FAILPOINT": "migration-after-step@2"},
    )
    assert killed.exit_code == EXIT_DATABASE
    assert killed.output.strip().splitlines() == [
        "Error: cannot migrate the database: the migration process was killed by signal 9. "
        "Each migration is applied whole or not at all: start again to finish it."
    ]
    again = cli(["db", "upgrade", "--config", str(config_file)], env)
    assert again.exit_code == 0 and "latest schema" in again.output


def test_run_finishes_the_cycle_on_sigterm_and_exits_0(
    sim: Simulator, tmp_path: Path, postgres_url: str
) -> None:
    """The daemon as a process: Postgres, the simulator over HTTP, SIGTERM mid-run."""
    seed(sim)
    config = tmp_path / "daemon.yaml"
    config.write_text("scan_interval: 1s\nrules:\n  - {id: idle, kind: notebook, idle_for: 2h}\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_", "AWS_"))
    }
    env.update(sim.env(), AWS_DEFAULT_REGION="us-east-1", COST_GUARD_DATABASE_URL=postgres_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.cli", "run", "--config", str(config)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while sum("cycle done" in line for line in lines) < 2 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
    # Catch the next cycle mid-flight: its listing call is in the (now slow) simulator.
    listed = sim.request_counts.get("sagemaker:ListNotebookInstances", 0)
    sim.slow("sagemaker:ListNotebookInstances", seconds=2)
    while sim.request_counts.get("sagemaker:ListNotebookInstances", 0) == listed:
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    lines.extend(rest.splitlines())
    assert proc.returncode == 0, "".join(lines)
    signalled = next(i for i, line in enumerate(lines) if "received SIGTERM" in line)
    assert any("cycle done" in line for line in lines[signalled:]), "the cycle was cut short"
    assert sum("cycle done" in line for line in lines) == 3
    assert lines[-1].rstrip().endswith("stopped")


def test_findings_are_listed_after_a_cycle(
    sim: Simulator, config_file: Path, env: dict[str, str]
) -> None:
    sim.add_domain("ml-team")  # no built-in idle shutdown
    sim.add_domain("careful-team", idle_shutdown=True)
    assert cli(["once", "--config", str(config_file)], env).exit_code == 0
    result = cli(["findings", "--json", "--config", str(config_file)], env)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert len(found) == 1 and "ml-team" in found[0]["subject"], found
    assert "idle shutdown" in found[0]["problem"].lower() and found[0]["fix"]
    text = cli(["inventory", "--scan", "--config", str(config_file)], env).output
    assert "finding" in text and "ml-team" in text
