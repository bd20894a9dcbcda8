"""The heartbeat's pieces and the guard's side of it: tags written to the simulator and read
back by a cycle, stale heartbeats, settings, the log, GPU and Code Editor evidence, and the
shipped lifecycle scripts. The heartbeat against a real Jupyter server, on Python 3.8 and the
newest, is in test_jupyter_heartbeat.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from guard import heartbeat
from guard.config import Config, Secrets
from guard.cycle import run_cycle
from guard.heartbeat import (
    NOTEBOOK_SERVER,
    STATE_TAG,
    STUDIO_SERVER,
    TAG,
    decide,
    detect_mode,
    load_settings,
    parse_time,
    resource_arn,
    server_url,
    state_value,
    tag_safe,
)
from guard.lifecycle import LIFECYCLE_SCRIPTS, SHIPPED
from guard.model import ManualClock
from guard.reports import inventory_items, inventory_table
from guard.sim import Simulator
from guard.wiring import build_guard

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT = ROOT / "guard" / "heartbeat.py"


def _cfg(url: str, kind: str = "notebook", **extra: Any) -> Config:
    action = "stop" if kind == "notebook" else "delete"
    return Config.model_validate(
        {
            "database_url": url,
            "kinds": [kind],
            "rules": [{"id": "idle", "kind": kind, "idle_for": "2h", "action": action}],
            "secrets": Secrets.model_validate({}),
            **extra,
        }
    )


def _fake_gpu(tmp_path: Path, *percents: int) -> Path:
    """nvidia-smi's answer to --query-gpu=utilization.gpu (no GPU on the test machines)."""
    path = tmp_path / "nvidia-smi"
    lines = "\\n".join(str(p) for p in percents)
    path.write_text(f"#!/bin/sh\nprintf '{lines}\\n'\n")
    path.chmod(0o755)
    return path


def _run(tmp_path: Path, settings: dict[str, Any], *args: str, env: Any = None) -> dict[str, Any]:
    """The heartbeat as a process (this venv's Python, which has boto3); its log line. It
    sees an empty process table unless a test gives it one: this machine's own busy
    processes (other tests running in parallel) are not the subject here, and would count."""
    empty_proc = tmp_path / "proc"
    empty_proc.mkdir(exist_ok=True)
    config = tmp_path / "heartbeat.json"
    config.write_text(json.dumps({"proc": str(empty_proc), **settings}))
    log = tmp_path / "heartbeat.log"
    done = subprocess.run(
        [sys.executable, str(HEARTBEAT), "--config", str(config), "--log", str(log), *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr + log.read_text(), done.stderr
    record: dict[str, Any] = json.loads(log.read_text().splitlines()[-1])
    return record


# --- the guard reads what the heartbeat wrote -----------------------------------------------


def test_heartbeat_tags_the_notebook_and_the_guard_shows_the_evidence(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str, tmp_path: Path
) -> None:
    sim = aws_env
    arn = sim.add_notebook("gpu-job", in_service_since=clock.now() - timedelta(hours=6))
    settings = {"mode": "kernel-gateway", "nvidia_smi": str(_fake_gpu(tmp_path, 3, 87))}
    env = {**sim.env(), "COST_GUARD_RESOURCE_ARN": arn}
    record = _run(tmp_path, settings, "--now", clock.now().isoformat(), env=env)
    assert record["evidence"] == "GPU 87 %" and record["saw"]["gpu_percent"] == 87
    assert set(record["wrote"]) == {TAG, STATE_TAG}
    again = _run(tmp_path, settings, "--now", clock.now().isoformat(), env=env)
    assert again["wrote"] == {}  # nothing new: no write, no CloudTrail noise

    cfg = _cfg(fresh_sqlite_url)
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == []  # no Jupyter log for 6 h, but the GPU is busy
    guard = build_guard(cfg, clock)
    [res] = guard.store.resources()
    assert (res.activity_source.value, res.last_activity) == ("heartbeat-tag", clock.now())
    assert res.details["evidence"] == "GPU 87 %"
    [item] = inventory_items(guard.store.resources(), cfg, {}, {}, clock.now())
    assert item["details"]["evidence"] == "GPU 87 %"
    table = inventory_table([item], cfg, clock.now())  # --wide: every column
    activity = next(c for c in table.columns if c.header == "last activity")
    assert "heartbeat-tag: GPU 87 %" in str(activity._cells)

    # Three hours on, with no newer look: the heartbeat stopped. Unknown, never idle.
    clock.advance(timedelta(hours=3))
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == [] and report["actions"] == []
    [res] = build_guard(cfg, clock).store.resources()
    assert res.activity_source.value == "unknown"
    assert res.evidence_error is not None and "heartbeat stopped" in res.evidence_error
    [finding] = [f for f in report["findings"] if "heartbeat" in f["problem"]]
    assert "heartbeat stopped on 1 notebook (gpu-job)" in finding["problem"]


def test_an_idle_notebook_is_warned_with_what_was_last_seen(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim = aws_env
    arn = sim.add_notebook("left-open", in_service_since=clock.now() - timedelta(hours=6))
    used = clock.now() - timedelta(hours=3)
    sagemaker = sim.client("sagemaker")
    tags = {
        TAG: heartbeat.stamp(used),
        STATE_TAG: state_value(clock.now() - timedelta(minutes=4), "ok", (used, "terminal", {})),
    }
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    report = run_cycle(build_guard(_cfg(fresh_sqlite_url), clock))
    [warned] = report["warned"]
    reason = json.dumps(report)
    assert "last: terminal used at" in reason, warned


def test_jupyter_unreachable_makes_the_studio_app_unknown(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim = aws_env
    domain = sim.add_domain("lab")
    sim.add_user_profile(domain, "ada")
    sim.add_space(domain, "ada-space", "ada")
    arn = sim.add_app(domain, space="ada-space", created_at=clock.now() - timedelta(hours=6))
    value = state_value(clock.now() - timedelta(minutes=2), "down", None)
    sim.client("sagemaker").add_tags(ResourceArn=arn, Tags=[{"Key": STATE_TAG, "Value": value}])
    cfg = _cfg(fresh_sqlite_url, "studio_app", mode="enforce")
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == [] and report["actions"] == []
    [res] = build_guard(cfg, clock).store.resources()
    assert res.activity_source.value == "unknown"
    assert "Jupyter unreachable" in (res.evidence_error or "")
    assert sim.app_status(arn) == "InService"


def test_a_look_from_before_a_restart_is_not_a_stopped_heartbeat(clock: ManualClock) -> None:
    from guard.scanners.evidence import read

    cfg = _cfg("sqlite://")
    old = clock.now() - timedelta(days=2)
    beat = read({STATE_TAG: state_value(old, "down", None)}, cfg)
    assert beat is not None
    restarted = clock.now() - timedelta(minutes=10)
    assert beat.problem(cfg, clock.now(), restarted) is None  # it has not run since: wait
    assert beat.problem(cfg, clock.now() + timedelta(hours=3), restarted) is not None


def test_a_heartbeat_from_the_future_is_not_believed(
    aws_env: Simulator, clock: ManualClock, fresh_sqlite_url: str
) -> None:
    sim = aws_env
    arn = sim.add_notebook("skewed", in_service_since=clock.now() - timedelta(hours=6))
    ahead = clock.now() + timedelta(days=365 * 150)  # a tag typed by hand, or a broken clock
    sim.client("sagemaker").add_tags(
        ResourceArn=arn, Tags=[{"Key": TAG, "Value": heartbeat.stamp(ahead)}]
    )
    cfg = _cfg(fresh_sqlite_url, mode="enforce")
    report = run_cycle(build_guard(cfg, clock))
    assert report["warned"] == [] and report["actions"] == []
    [res] = build_guard(cfg, clock).store.resources()
    assert res.activity_source.value == "unknown"  # never acted on, and shown as such
    assert "in the future" in (res.evidence_error or "")
    skew = clock.now() + timedelta(minutes=5)  # a little ahead: a clock a bit fast, believed
    from guard.scanners.evidence import read

    beat = read({TAG: heartbeat.stamp(skew)}, cfg)
    assert beat is not None and beat.problem(cfg, clock.now(), None) is None


def test_stale_after_is_validated() -> None:
    assert _cfg("sqlite://", heartbeat_stale_after="45m").heartbeat_stale_after == timedelta(
        minutes=45
    )
    with pytest.raises(ValidationError, match="at least 35m"):
        _cfg("sqlite://", heartbeat_stale_after="10m")


# --- the heartbeat's pieces -----------------------------------------------------------------


def test_decide_writes_activity_only_when_newer_and_the_state_when_due(
    clock: ManualClock,
) -> None:
    now = clock.now()
    refresh = timedelta(minutes=30)
    seen: list[heartbeat.Evidence] = [(now - timedelta(minutes=5), "terminal", {})]
    activity, writes = decide(seen, "ok", now, {}, refresh)
    assert activity == now - timedelta(minutes=5) and set(writes) == {TAG, STATE_TAG}
    held = dict(writes)
    assert decide(seen, "ok", now + timedelta(minutes=5), held, refresh)[1] == {}
    assert set(decide(seen, "down", now + timedelta(minutes=5), held, refresh)[1]) == {STATE_TAG}
    assert set(decide(seen, "ok", now + timedelta(minutes=31), held, refresh)[1]) == {STATE_TAG}
    assert decide([], "ok", now, {}, refresh)[1] == {STATE_TAG: state_value(now, "ok", None)}


def test_state_tag_fits_sagemakers_alphabet_and_length(clock: ManualClock) -> None:
    cmd = "python train.py --lr=0.1 > 'out (1).log' && echo `date` " + "x" * 300
    value = state_value(clock.now(), "ok", (clock.now(), "terminal-job", {"pid": 42, "cmd": cmd}))
    assert len(value) <= 256
    assert all(c.isalnum() or c in " _.:/=+-@" for c in value)
    assert value.startswith("at=2026-11-23T09:00:00Z jupyter=ok by=terminal-job pid=42 cmd=")
    assert tag_safe("a`b%c(d)") == "a b c d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T09:00:00.123456Z", "2026-11-23T09:00:00.123456+00:00"),
        ("2026-11-23T09:00:00.1Z", "2026-11-23T09:00:00.100000+00:00"),
        ("2026-11-23T10:30:00+01:30", "2026-11-23T09:00:00+00:00"),
        ("2026-11-23T09:00:00", "2026-11-23T09:00:00+00:00"),
        ("yesterday", None),
        ("2026-13-45T09:00:00Z", None),
        ("", None),
    ],
)
def test_parse_time_takes_what_jupyter_writes(text: str, expected: str | None) -> None:
    parsed = parse_time(text)
    assert (parsed.isoformat() if parsed else None) == expected


def test_bad_settings_keep_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    path.write_text(json.dumps({"cpu_percent": "lots", "gpu_percent": 20, "colour": "red"}))
    settings, problems = load_settings(str(path))
    assert settings["cpu_percent"] == 5.0 and settings["gpu_percent"] == 20
    assert len(problems) == 2
    path.write_text("{not json")
    settings, problems = load_settings(str(path))
    assert settings == heartbeat.DEFAULTS and "unreadable" in problems[0]


def test_one_line_per_run_and_a_bounded_log(tmp_path: Path) -> None:
    settings = {"mode": "kernel-gateway", "nvidia_smi": "/nonexistent", "log_max_bytes": 600}
    for _ in range(8):
        record = _run(tmp_path, settings, "--metadata", str(tmp_path / "none.json"))
        # no metadata, no ARN: one clear line, exit 1, never a traceback
        assert record["error"].startswith("no resource ARN")
    log = tmp_path / "heartbeat.log"
    rotated = tmp_path / "heartbeat.log.1"
    assert rotated.exists() and log.stat().st_size <= 600 + 400
    assert all(json.loads(line)["at"] for line in log.read_text().splitlines())


def test_no_boto3_is_one_line(tmp_path: Path) -> None:
    """Python 3.8 without boto3: the decision is still made and logged; the write is not."""
    py38 = "/root/.pyenv/versions/3.8.18/bin/python"
    if not os.path.exists(py38):
        pytest.skip("no Python 3.8")
    config = tmp_path / "heartbeat.json"
    config.write_text(json.dumps({"mode": "kernel-gateway", "nvidia_smi": "/nonexistent"}))
    done = subprocess.run(
        [py38, str(HEARTBEAT), "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", "COST_GUARD_RESOURCE_ARN": "arn:aws:sagemaker:us-east-1:1:x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr == ""
    [line] = done.stdout.splitlines()
    assert "boto3 is not installed" in json.loads(line)["error"]


def test_gpu_under_the_threshold_is_not_work(tmp_path: Path) -> None:
    settings = {"mode": "kernel-gateway", "nvidia_smi": str(_fake_gpu(tmp_path, 0, 2))}
    record = _run(tmp_path, settings, "--dry-run")
    assert record["saw"]["gpu_percent"] == 2 and record["evidence"] is None


def test_code_editor_activity_and_file_changes(tmp_path: Path, clock: ManualClock) -> None:
    home = tmp_path / "home"
    (home / "src").mkdir(parents=True)
    (home / ".cache").mkdir()
    (home / "src" / "model.py").write_text("x = 1")
    (home / ".cache" / "noise").write_text("tools write here")
    os.utime(home / "src" / "model.py", (1_700_000_000, 1_700_000_000))
    stamp = tmp_path / "last-active"
    stamp.write_text("2023-11-14T22:20:00.000Z")  # what Code Editor's idle extension writes
    settings = {
        "mode": "code-editor",
        "home": str(home),
        "code_editor_activity_file": str(stamp),
        "nvidia_smi": "/nonexistent",
    }
    record = _run(tmp_path, settings, "--dry-run")
    assert record["evidence"] == "Code Editor used"
    assert record["last_activity"] == "2023-11-14T22:20:00Z"
    os.utime(home / "src" / "model.py")  # edited now
    record = _run(tmp_path, settings, "--dry-run")
    assert record["evidence"] == "file src/model.py changed"
    assert "path=src/model.py" in record["would_write"][STATE_TAG]


# --- where it runs --------------------------------------------------------------------------


def test_resource_arn_from_sagemaker_metadata(tmp_path: Path) -> None:
    path = tmp_path / "resource-metadata.json"
    arn = "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/nb"
    path.write_text(json.dumps({"ResourceArn": arn, "ResourceName": "nb"}))
    assert resource_arn(str(path)) == arn
    assert detect_mode(str(path)) == "jupyter"


def test_studio_metadata_gives_the_taggable_arn_server_and_mode(tmp_path: Path) -> None:
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
    for app_type, mode in (("CodeEditor", "code-editor"), ("KernelGateway", "kernel-gateway")):
        path.write_text(json.dumps({**metadata, "AppType": app_type, "ResourceArn": shown}))
        assert detect_mode(str(path)) == mode


@pytest.mark.parametrize("target", sorted(LIFECYCLE_SCRIPTS))
def test_shipped_scripts_are_current_and_fit_sagemaker(target: str) -> None:
    path = ROOT / SHIPPED[target]
    shipped = path.read_text()
    assert shipped == LIFECYCLE_SCRIPTS[target](), (
        f"regenerate: cost-guard lifecycle-config {target}"
    )
    subprocess.run(["bash", "-n", str(path)], check=True)
    # CreateNotebookInstanceLifecycleConfig and CreateStudioLifecycleConfig take at most
    # 16384 characters of base64.
    assert len(base64.b64encode(shipped.encode())) <= 16384


@pytest.mark.parametrize(
    "python", ["/root/.pyenv/versions/3.8.18/bin/python", "/root/.pyenv/versions/3.13.0/bin/python"]
)
def test_the_embedded_copy_compiles_on_the_supported_pythons(python: str, tmp_path: Path) -> None:
    if not os.path.exists(python):
        pytest.skip(f"{python} not installed")
    script = tmp_path / "on-start.sh"
    script.write_text(LIFECYCLE_SCRIPTS["notebook"]())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crontab").write_text("#!/bin/sh\ncat > /dev/null\n")
    (bin_dir / "crontab").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "COST_GUARD_DIR": str(tmp_path / "cg"),
        "COST_GUARD_PY": python,
    }
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=60)
    copy = tmp_path / "cg" / "heartbeat.py"
    subprocess.run([python, "-m", "py_compile", str(copy)], check=True)
    settings = json.loads((tmp_path / "cg" / "heartbeat.json").read_text())
    assert settings["cpu_percent"] == 5 and settings["gpu_percent"] == 5
