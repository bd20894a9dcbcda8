"""Strings people control (tag values, names, error texts) printed by the CLI's tables: they
are shown as typed, never read as rich markup (which fails on a stray closing tag)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from guard.sim import Simulator
from tests.test_cli import cli, config_file, env  # noqa: F401 - fixtures

HOSTILE = "[/bold] <!channel> [red]x"


def test_inventory_and_audit_print_markup_in_tags_as_typed(
    sim: Simulator,
    config_file: Path,  # noqa: F811
    env: dict[str, str],  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    sim.add_notebook(
        "odd-owner", tags={"owner": HOSTILE}, in_service_since=now - timedelta(hours=5)
    )
    assert cli(["once", "--config", str(config_file)], env).exit_code == 0
    out = cli(["inventory", "--config", str(config_file)], env)
    assert out.exit_code == 0, out.output
    assert "[/" in out.output  # shown as typed (the owner column may be cut), not interpreted
    items = json.loads(cli(["inventory", "--json", "--config", str(config_file)], env).output)
    assert items[0]["owner"] == HOSTILE
    audit = cli(["audit", "--since", "1d", "--config", str(config_file)], env)
    assert audit.exit_code == 0 and "warn" in audit.output
