"""The on-instance heartbeat against a local fake Jupyter server and the simulator."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from guard.config import Config, Secrets
from guard.cycle import run_cycle
from guard.heartbeat import (
    NOTEBOOK_SERVER,
    STUDIO_SERVER,
    TAG,
    beat,
    last_activity,
    resource_arn,
    server_url,
)
from guard.lifecycle import notebook_on_start, studio_jupyterlab_on_start
from guard.model import ManualClock
from guard.sim import Simulator
from guard.wiring import build_guard

ROOT = Path(__file__).resolve().parent.parent


class FakeJupyter:
    """Answers /api/kernels, /api/sessions and /api/terminals like a Jupyter server does,
    at the root (notebook instances) and under /jupyterlab/default (Studio JupyterLab)."""

    def __init__(self) -> None:
        self.kernels: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []
        self.terminals: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.removeprefix("/jupyterlab/default")
                body = {
                    "/api/kernels": fake.kernels,
                    "/api/sessions": fake.sessions,
                    "/api/terminals": fake.terminals,
                }.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {}).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def jupyter() -> Iterator[FakeJupyter]:
    fake = FakeJupyter()
    yield fake
    fake.server.shutdown()


def test_busy_kernel_and_used_terminal_count_as_activity(
    jupyter: FakeJupyter, clock: ManualClock
) -> None:
    now = clock.now()
    assert last_activity(jupyter.url, now) is None  # nothing open
    jupyter.kernels = [
        {"execution_state": "idle", "last_activity": (now - timedelta(hours=3)).isoformat()}
    ]
    jupyter.terminals = [{"name": "1", "last_activity": (now - timedelta(minutes=7)).isoformat()}]
    assert last_activity(jupyter.url, now) == now - timedelta(minutes=7)  # the terminal wins
    jupyter.kernels.append({"execution_state": "busy", "last_activity": "2026-01-01T00:00:00Z"})
    assert last_activity(jupyter.url, now) == now


def test_beat_tags_the_notebook_and_the_guard_sees_it(
    jupyter: FakeJupyter,
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in sim.env().items():
        monkeypatch.setenv(key, value)
    arn = sim.add_notebook("terminal-job", in_service_since=clock.now() - timedelta(hours=6))
    sagemaker = sim.client("sagemaker")
    jupyter.terminals = [
        {"name": "1", "last_activity": (clock.now() - timedelta(minutes=2)).isoformat()}
    ]

    written = beat(sagemaker, arn, jupyter.url, clock.now())
    assert written == clock.now() - timedelta(minutes=2)
    assert beat(sagemaker, arn, jupyter.url, clock.now()) is None  # unchanged: no second write
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    assert tags[TAG] == written.isoformat(timespec="seconds")

    cfg = Config.model_validate(
        {
            "database_url": fresh_sqlite_url,
            "rules": [{"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop"}],
            "secrets": Secrets.model_validate({}),
        }
    )
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == []  # no Jupyter log for 6 h, but the terminal was in use
    [res] = build_guard(cfg, clock).store.resources()
    assert (res.activity_source.value, res.last_activity) == ("heartbeat-tag", written)


def test_resource_arn_from_sagemaker_metadata(tmp_path: Path) -> None:
    path = tmp_path / "resource-metadata.json"
    arn = "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/nb"
    path.write_text(json.dumps({"ResourceArn": arn, "ResourceName": "nb"}))
    assert resource_arn(str(path)) == arn


def test_shipped_on_start_script_is_current_and_fits_sagemaker() -> None:
    shipped = (ROOT / "deploy/lifecycle/notebook-on-start.sh").read_text()
    assert shipped == notebook_on_start(), "regenerate: cost-guard lifecycle-config notebook"
    subprocess.run(["bash", "-n", str(ROOT / "deploy/lifecycle/notebook-on-start.sh")], check=True)
    # CreateNotebookInstanceLifecycleConfig takes at most 16384 base64 characters.
    assert len(base64.b64encode(shipped.encode())) <= 16384


# --- Studio JupyterLab ----------------------------------------------------------------------


def test_studio_session_kernels_and_terminals_count(
    jupyter: FakeJupyter, clock: ManualClock
) -> None:
    studio = f"{jupyter.url}/jupyterlab/default"
    now = clock.now()
    assert last_activity(studio, now) is None
    jupyter.sessions = [
        {
            "id": "s1",
            "path": "train.ipynb",
            "kernel": {"execution_state": "idle", "last_activity": (now - timedelta(hours=2))
                       .isoformat()},
        }
    ]  # fmt: skip
    assert last_activity(studio, now) == now - timedelta(hours=2)
    jupyter.terminals = [{"name": "1", "last_activity": (now - timedelta(minutes=9)).isoformat()}]
    assert last_activity(studio, now) == now - timedelta(minutes=9)
    jupyter.sessions[0]["kernel"]["execution_state"] = "busy"
    assert last_activity(studio, now) == now


def test_beat_tags_the_studio_app_and_the_guard_keeps_it(
    jupyter: FakeJupyter,
    sim: Simulator,
    clock: ManualClock,
    fresh_sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in sim.env().items():
        monkeypatch.setenv(key, value)
    domain = sim.add_domain("lab")
    sim.add_user_profile(domain, "ada")
    sim.add_space(domain, "ada-space", "ada")
    arn = sim.add_app(domain, space="ada-space", created_at=clock.now() - timedelta(hours=6))
    jupyter.terminals = [
        {"name": "1", "last_activity": (clock.now() - timedelta(minutes=3)).isoformat()}
    ]
    studio = f"{jupyter.url}/jupyterlab/default"
    written = beat(sim.client("sagemaker"), arn, studio, clock.now())
    assert written == clock.now() - timedelta(minutes=3)
    assert beat(sim.client("sagemaker"), arn, studio, clock.now()) is None

    cfg = Config.model_validate(
        {
            "database_url": fresh_sqlite_url,
            "kinds": ["studio_app"],
            "mode": "enforce",
            "rules": [{"id": "idle", "kind": "studio_app", "idle_for": "2h", "action": "delete"}],
            "secrets": Secrets.model_validate({}),
        }
    )
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == [] and report["actions"] == []  # the terminal was in use
    [res] = build_guard(cfg, clock).store.resources()
    assert (res.activity_source.value, res.last_activity) == ("heartbeat-tag", written)
    assert sim.app_status(arn) == "InService"


def test_studio_metadata_gives_the_taggable_arn_and_the_server(tmp_path: Path) -> None:
    path = tmp_path / "resource-metadata.json"
    shown = "arn:aws:sagemaker:us-east-1:123456789012:app/d-abc123/ada-space/JupyterLab/default"
    exact = "arn:aws:sagemaker:us-east-1:123456789012:app/d-abc123/ada-space/jupyterlab/default"
    metadata = {"AppType": "JupyterLab", "DomainId": "d-abc123", "SpaceName": "ada-space"}
    path.write_text(json.dumps({**metadata, "ResourceArn": shown}))
    assert resource_arn(str(path)) == exact  # only ResourceArn: lower-cased type
    path.write_text(
        json.dumps({**metadata, "ResourceArn": shown, "ResourceArnCaseSensitive": exact})
    )
    assert resource_arn(str(path)) == exact
    assert server_url(str(path)) == STUDIO_SERVER
    assert server_url(str(tmp_path / "missing.json")) == NOTEBOOK_SERVER
    notebook = tmp_path / "notebook.json"
    notebook.write_text(
        json.dumps({"ResourceArn": "arn:aws:sagemaker:us-east-1:1:notebook-instance/nb"})
    )
    assert server_url(str(notebook)) == NOTEBOOK_SERVER


def test_shipped_studio_script_is_current_and_fits_studio() -> None:
    path = ROOT / "deploy/lifecycle/studio-jupyterlab-on-start.sh"
    shipped = path.read_text()
    assert shipped == studio_jupyterlab_on_start(), (
        "regenerate: cost-guard lifecycle-config studio-jupyterlab"
    )
    subprocess.run(["bash", "-n", str(path)], check=True)
    # CreateStudioLifecycleConfig takes at most 16384 characters of base64 content.
    assert len(base64.b64encode(shipped.encode())) <= 16384
