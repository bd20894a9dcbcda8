"""A new user's first hour (issue 16): every mistake ends in a sentence and a documented exit
code, never a traceback; tables fit the terminal; blind spots are named; the daemon does not
sit silent after a `once`. Run through the CLI as a user runs it, against the simulator."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from guard.cli import EXIT_AWS, EXIT_DATABASE, EXIT_USAGE, main
from guard.config import load_config
from guard.daemon import Daemon
from guard.sim import Simulator
from guard.wiring import build_guard
from tests.conftest import POSTGRES_URL

RULES = """
database_url: {url}
rules:
  - {{id: idle-notebooks, kind: notebook, idle_for: 2h, action: stop, grace: 30m}}
"""


def write_config(tmp_path: Path, url: str, name: str = "cost-guard.yaml") -> Path:
    path = tmp_path / name
    path.write_text(RULES.format(url=url))
    return path


def cli(args: list[str], env: dict[str, str] | None = None) -> Any:
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    return CliRunner().invoke(main, args, env={**clean, **(env or {})})


def assert_sentence(result: Any, code: int, *words: str) -> None:
    """Exit `code`, the words on the output, no traceback (and no exception escaped)."""
    text = result.output
    assert result.exit_code == code, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    assert "Traceback" not in text
    for word in words:
        assert word in text, text
    assert len(text.strip().splitlines()) <= 6, text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(aws_env: Simulator) -> dict[str, str]:
    return {**aws_env.env(), "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}


@pytest.fixture
def missing_folder_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'g.db'}")


@pytest.mark.parametrize(
    "command",
    [["once"], ["inventory"], ["audit"], ["findings"], ["digest"], ["db", "upgrade"], ["run"],
     ["serve"], ["snooze", "notebook/x"]],
)  # fmt: skip
def test_a_database_folder_that_does_not_exist_is_named(
    command: list[str], missing_folder_config: Path, env: dict[str, str], tmp_path: Path
) -> None:
    result = cli([*command, "--config", str(missing_folder_config)], env)
    folder = tmp_path / "no" / "such" / "folder"
    assert_sentence(result, EXIT_DATABASE, f"the folder {folder} does not exist")


def test_check_config_opens_the_database_and_checks_aws(
    missing_folder_config: Path, env: dict[str, str], tmp_path: Path
) -> None:
    result = cli(["check-config", "--config", str(missing_folder_config)], env)
    assert result.exit_code == EXIT_DATABASE, result.output
    assert "# ✗ database: cannot create the database file" in result.output
    assert "# ✓ AWS credentials: account 123456789012" in result.output
    yaml.safe_load(result.output)  # still valid YAML: the checks are comments

    good = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}", "good.yaml")
    unreachable = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = cli(["check-config", "--config", str(good)], unreachable)
    assert result.exit_code == EXIT_AWS, result.output
    assert "# ✓ database:" in result.output
    assert "# ✗ AWS credentials: AWS failed: sts:GetCallerIdentity" in result.output
    assert "connection refused" in result.output


def test_check_config_output_loads_back(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}")
    first = cli(["check-config", "--config", str(good)], {**env, "SLACK_BOT_TOKEN": "xoxb-1"})
    assert first.exit_code == 0, first.output
    assert "SLACK_BOT_TOKEN" in first.output and "xoxb-1" not in first.output
    printed = tmp_path / "printed.yaml"
    printed.write_text(first.output)
    second = cli(["check-config", "--config", str(printed)], env)
    assert second.exit_code == 0, second.output
    assert load_config(printed).effective() == load_config(good).effective()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/test", ["port {port} failed", "refused"]),
        ("{wrong_db}", ['database "cost_guard_no_such_db" does not exist']),
        ("{wrong_user}", ["cost_guard_no_such_user"]),
    ],
    ids=["wrong-port", "wrong-database", "wrong-user"],
)
def test_a_postgres_url_that_cannot_connect_is_named(
    url: str, words: list[str], tmp_path: Path, env: dict[str, str]
) -> None:
    from sqlalchemy.engine import make_url

    server = make_url(POSTGRES_URL)
    port = free_port()
    url = url.format(
        port=port,
        wrong_db=server.set(database="cost_guard_no_such_db").render_as_string(False),
        wrong_user=server.set(username="cost_guard_no_such_user").render_as_string(False),
    )
    config = write_config(tmp_path, url)
    for command in (["inventory"], ["once"], ["db", "upgrade"]):
        result = cli([*command, "--config", str(config)], env)
        words_here = [w.format(port=port) for w in words]
        assert_sentence(result, EXIT_DATABASE, "cannot open the database at", *words_here)
        assert "Check database_url" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["snooze", "notebook/x", "--for", "2hours"], ["invalid duration '2hours'"]),
        (["snooze", "notebook/x", "--for", "0s"], ["'0s' is too short: use at least 1m"]),
        (["audit", "--since", "yesterday"], ["invalid duration 'yesterday'"]),
        (["restore", "endpoint", "x", "--timeout", "soon"], ["invalid duration 'soon'"]),
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], words: list[str], tmp_path: Path, env: dict[str, str]
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}")
    result = cli([*args, "--config", str(config)], env)
    assert_sentence(result, EXIT_USAGE, *words)


def test_config_is_accepted_before_or_after_the_command(
    aws_env: Simulator, tmp_path: Path, env: dict[str, str]
) -> None:
    aws_env.add_notebook("nb", in_service_since=datetime.now(UTC) - timedelta(hours=1))
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}")
    before = cli(["--config", str(config), "once"], env)
    assert before.exit_code == 0, before.output
    after = cli(["inventory", "--config", str(config)], env)
    assert after.exit_code == 0 and "notebook/nb" in after.output, after.output


def test_verbose_shows_the_traceback(missing_folder_config: Path, env: dict[str, str]) -> None:
    result = cli(["-v", "audit", "--config", str(missing_folder_config)], env)
    assert result.exit_code == EXIT_DATABASE
    assert "Traceback" in result.output and "does not exist" in result.output


def test_demo_without_the_simulator_says_how_to_install_it() -> None:
    code = "import sys; sys.modules['moto'] = None; from guard.cli import main; main(['demo'])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "pip install 'sagemaker-cost-guard[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


# --- tables at 80 columns, on the demo's database ----------------------------------------


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "demo", "--speed", "0", "--keep-db", str(path)],
        capture_output=True, text=True, timeout=180, check=False, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield path, done


@pytest.fixture(scope="module")
def demo_db(demo_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    return demo_run[0]


def test_the_demo_ends_with_the_restore_naming_the_config_it_recreated_from(
    demo_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out = " ".join(demo_run[1].stdout.split())  # rich wraps at the terminal's width
    assert (
        "recreated endpoint churn-model-staging in 123456789012 us-east-1 from endpoint config "
        "churn-model-staging-config (kept when it was deleted)"
    ) in out, out[-600:]
    assert "Traceback" not in demo_run[1].stderr


def _env(**extra: str) -> dict[str, str]:
    keep = {
        k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_", "AWS_"))
    }
    return {**keep, **extra}


def _run(args: list[str], db: Path, columns: int = 80) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env=_env(COLUMNS=str(columns), COST_GUARD_DATABASE_URL=f"sqlite:///{db}"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def _identified(name: str, shown: list[str], everything: list[str]) -> bool:
    """`name` is on the screen whole, or as a middle-shortened form no other name matches."""
    if any(name in line for line in shown):
        return True
    for line in shown:
        for token in re.findall(r"\S+…\S+", line):
            head, tail = token.split("…", 1)
            matching = [n for n in everything if n.startswith(head) and n.endswith(tail)]
            if matching == [name]:
                return True
    return False


def test_inventory_and_audit_at_80_columns_identify_every_resource(demo_db: Path) -> None:
    items = json.loads(_run(["inventory", "--all", "--json"], demo_db))
    names = [f"{i['kind']}/{i['name']}" for i in items]
    assert len(names) >= 8
    table = _run(["inventory", "--all"], demo_db).splitlines()
    assert all(len(line) <= 80 for line in table if "│" in line), "\n".join(table)
    for name in names:
        assert _identified(name, table, names), (name, "\n".join(table))
    assert any(re.search(rf"total: {len(items)}\b", line) for line in table)

    entries = json.loads(_run(["audit", "--since", "30d", "--json"], demo_db))
    audited = sorted({f"{e['kind']}/{e['name']}" for e in entries})
    trail = _run(["audit", "--since", "30d"], demo_db).splitlines()
    assert all(len(line.rstrip()) <= 80 for line in trail), "\n".join(trail)
    for name in audited:
        assert _identified(name, trail, audited), (name, "\n".join(trail))
    # each detail on a line of its own, not wrapped in a narrow column
    stopped = next(e for e in entries if e["action"] == "stop" and e["outcome"] == "done")
    first_words = " ".join(str(stopped["detail"]).split()[:4])
    assert any(line.strip().startswith(first_words) for line in trail), "\n".join(trail)

    wide = _run(["inventory", "--all", "--wide"], demo_db)
    assert all(name in wide for name in names)


def test_the_demo_starts_from_an_empty_account_after_other_simulations_in_its_process(
    sim: Simulator, tmp_path: Path
) -> None:
    """moto's backends and logging are process-wide. The suite runs the demo inside a worker
    among other tests: what they left must not leak into it, nor what it sets into them."""
    import io

    from rich.console import Console

    from guard import demo
    from guard.store import Store

    sim.add_notebook("left-behind", "ml.m5.xlarge")  # in the demo, the guard would stop it
    path = tmp_path / "demo.db"
    quiet = Console(file=io.StringIO(), width=120, force_terminal=True)
    logger = logging.getLogger("guard")
    level = logger.level
    demo.run_demo(quiet, pause=0, keep_db=path)
    assert logger.level == level  # the demo's quiet logging ends with it (later tests log)
    store = Store(f"sqlite:///{path}")
    try:
        running = {r.name for r in store.running_resources()}
        assert store.resource_by_name("notebook", "left-behind") is None
    finally:
        store.close()
    assert {"search-ranker", "alice-idle", "carol-exempt"} <= running, running


def test_inventory_shows_account_region_totals_and_a_summary_for_many_rows() -> None:
    from guard.config import Config, Secrets
    from guard.reports import inventory_summary, inventory_table

    cfg = Config.model_validate(
        {"secrets": Secrets(), "accounts": [{"id": "111111111111", "name": "platform"},
                                            {"id": "222222222222", "name": "research"}]}
    )  # fmt: skip
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    items: list[dict[str, Any]] = [
        {
            "kind": "notebook", "name": f"experiment-notebook-number-{n:03d}-of-the-team",
            "account": "111111111111" if n % 2 else "222222222222",
            "region": "us-east-1" if n % 3 else "eu-west-1", "status": "InService",
            "running": True, "instance_type": "ml.t3.medium", "instance_count": 1,
            "usd_per_hour": "0.0500", "accrued_today_usd": "1.00", "accrued_month_usd": "2.00",
            "activity_source": "jupyter", "last_activity": now.isoformat(), "details": {},
            "evidence_error": None, "owner": "ada@example.com", "exempt": False,
            "snoozed_until": None, "rule_state": [],
        }
        for n in range(40)
    ]  # fmt: skip
    from rich.console import Console

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(inventory_table(items, cfg, now, 80))
    console.print(inventory_summary(items, cfg))
    text = console.export_text()
    assert "platform" in text and "research" in text and "eu-west-1" in text
    assert "total: 40" in text and "2.000" in text and "80.00" in text
    names = [f"notebook/{i['name']}" for i in items]
    lines = text.splitlines()
    assert all(_identified(name, lines, names) for name in names)
    assert re.search(r"notebook\s+│\s+platform\s+│\s+eu-west-1\s+│\s+7\b", text), text


# --- blind spots -----------------------------------------------------------------------


def test_a_region_without_studio_is_a_named_blind_spot(
    aws_env: Simulator, tmp_path: Path, env: dict[str, str]
) -> None:
    aws_env.add_notebook("nb", in_service_since=datetime.now(UTC) - timedelta(hours=1))
    aws_env.inject("html502", "sagemaker:ListDomains", status=500)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}")
    once = cli(["once", "--config", str(config)], env)
    assert once.exit_code == 1
    assert "<" not in once.output and "HTTP 500 Internal Server Error" in once.output
    findings = cli(["findings", "--config", str(config)], env)
    assert findings.exit_code == 0, findings.output
    assert "No findings" not in findings.output
    assert (
        "- not scanned: 123456789012 us-east-1: Studio idle-shutdown check incomplete: "
        "sagemaker:ListDomains in 123456789012/us-east-1: HTTP 500 Internal Server Error"
        in findings.output
    )
    inventory = cli(["inventory", "--config", str(config)], env)
    assert "not seen by the last cycle" in inventory.output
    assert "Studio idle-shutdown check incomplete" in inventory.output
    assert "<" not in inventory.output


# --- the daemon after a `once` --------------------------------------------------------------


def test_the_daemon_runs_its_first_cycle_after_a_cli_once(
    aws_env: Simulator, tmp_path: Path, env: dict[str, str]
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'guard.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "guard.cli", "once", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False, env={**_env(), **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    guard = build_guard(load_config(config), reconcile=False)
    before = guard.store.last_cycle()
    assert before is not None and before["daemon"] is False
    Daemon(guard).cycle()  # another process's `once` is no replica taking this turn
    after = guard.store.last_cycle()
    assert after is not None and after["started_at"] != before["started_at"]
    assert after["daemon"] is True
    guard.store.close()
