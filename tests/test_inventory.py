"""`cost-guard inventory --scan` beside a running daemon: one snapshot writer at a time."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.sim import Simulator
from guard.store import Store, upgrade

pytestmark = pytest.mark.usefixtures("aws_env")


def cli(args: list[str], env: dict[str, str]) -> Any:
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    return CliRunner().invoke(main, args, env={**clean, **env})


def test_scan_takes_the_cycle_lock_and_says_when_another_process_holds_it(
    sim: Simulator, db_url: str, tmp_path: Path
) -> None:
    sim.add_notebook("nb", in_service_since=datetime.now(UTC) - timedelta(hours=1))
    path = tmp_path / "cost-guard.yaml"
    path.write_text(f"regions: [us-east-1]\ndatabase_url: '{db_url}'\n")
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    upgrade(db_url)
    daemon = Store(db_url)  # a daemon mid-cycle, in another process as far as the lock knows
    try:
        with daemon.cycle_lock() as held:
            assert held
            refused = cli(["inventory", "--scan", "--config", str(path)], env)
            assert refused.exit_code == 1, refused.output
            assert "not scanned: another cost-guard process" in refused.output
            assert daemon.resources() == []  # no snapshot, no accrual written beside it
        scanned = cli(["inventory", "--scan", "--json", "--config", str(path)], env)
        assert scanned.exit_code == 0, scanned.output
        assert [r.name for r in daemon.resources()] == ["nb"]
    finally:
        daemon.close()
