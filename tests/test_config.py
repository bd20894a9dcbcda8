"""Config values people get wrong in ways that must not hurt: a password with an `@` in it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.config import Config, mask_url

SECRET_HEAD, SECRET_TAIL = "s3cr", "tPART"
PASSWORD = f"{SECRET_HEAD}@{SECRET_TAIL}"  # an unescaped @, as people paste it


def cli(args: list[str], env: dict[str, str]) -> Any:
    clean: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COST_GUARD_", "SLACK_"))
    }
    return CliRunner().invoke(main, args, env={**clean, **env})


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            f"postgresql://guard:{PASSWORD}@db.internal/guard",
            "postgresql://guard:***@db.internal/guard",
        ),
        (
            f"postgresql://guard:{PASSWORD}@@x@127.0.0.1:5432/guard?sslmode=require",
            "postgresql://guard:***@127.0.0.1:5432/guard?sslmode=require",
        ),
        (
            "postgresql://guard:hunter2@db.internal/guard",
            "postgresql://guard:***@db.internal/guard",
        ),
        ("postgresql://db.internal/guard", "postgresql://db.internal/guard"),
        ("sqlite:///cost-guard.db", "sqlite:///cost-guard.db"),
    ],
)
def test_mask_url_splits_at_the_last_at_sign(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    # The config keeps what the URL means, escaped, so the driver finds the right host.
    effective = Config.model_validate({"database_url": url})
    assert mask_url(effective.database_url) == masked
    assert effective.effective()["database_url"] == masked


def test_a_password_with_an_at_sign_connects_to_the_right_host() -> None:
    from sqlalchemy.engine import make_url

    cfg = Config.model_validate({"database_url": f"postgresql://guard:{PASSWORD}@127.0.0.1/db"})
    url = make_url(cfg.database_url)
    assert (url.username, url.password, url.host) == ("guard", PASSWORD, "127.0.0.1")


def test_check_config_and_a_failing_connection_never_show_the_password(tmp_path: Path) -> None:
    path = tmp_path / "cost-guard.yaml"
    path.write_text("regions: [us-east-1]\n")
    # Port 1: nothing listens, the connection is refused at once.
    env = {"COST_GUARD_DATABASE_URL": f"postgresql://guard:{PASSWORD}@127.0.0.1:1/guard"}
    shown = cli(["check-config", "--config", str(path)], env)
    assert shown.exit_code == 3, shown.output  # printed, then the database check failed
    assert "database_url: postgresql://guard:***@127.0.0.1:1/guard" in shown.output
    assert (
        "# ✗ database: cannot open the database at postgresql://guard:***@127.0.0.1:1/guard"
        in shown.output
    )
    failed = cli(["inventory", "--config", str(path)], env)
    assert failed.exit_code != 0
    said = f"{failed.output}\n{failed.exception!r}\n{failed.exception}"
    assert "127.0.0.1" in said  # the error does say where it tried
    for part in (SECRET_HEAD, SECRET_TAIL, PASSWORD):
        assert part not in shown.output and part not in said
