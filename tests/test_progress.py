"""A first scan shows its progress on a terminal (and nothing of it when piped): the CLI run
as a user runs it, in a pseudo-terminal, against the simulator."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from guard.sim import Simulator

CONFIG = """
database_url: sqlite:///{db}
kinds: [notebook, endpoint]
regions: [us-east-1, eu-west-1]
pricing: {{source: bundled}}
"""


def run_cost_guard(args: list[str], env: dict[str, str], tty: bool) -> str:
    """`cost-guard ARGS`, its stdout and stderr on a pseudo-terminal (or a pipe); what it
    printed."""
    command = [sys.executable, "-m", "guard.cli", *args]
    full_env = {**os.environ, **env, "COLUMNS": "100", "TERM": "xterm"}
    if not tty:
        done = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=120)
        return done.stdout + done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, env=full_env, stdout=follower, stderr=follower, stdin=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_first_scan_shows_progress_on_a_terminal_only(sim: Simulator, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    sim.add_notebook("nb", in_service_since=now - timedelta(hours=1))
    config = tmp_path / "cost-guard.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "guard.db"))
    env = {**sim.env(), "AWS_DEFAULT_REGION": "us-east-1"}
    args = ["inventory", "--scan", "--config", str(config)]

    on_terminal = run_cost_guard(args, env, tty=True)
    assert "scann" in on_terminal  # "scanning" / "scanned notebook in …": the bar
    assert "4/4" in on_terminal or "/4" in on_terminal  # 2 regions x 2 kinds
    assert "Traceback" not in on_terminal

    piped = run_cost_guard(args, env, tty=False)
    assert "scann" not in piped and "Traceback" not in piped
    assert "notebook/nb" in piped or "nb" in piped
