"""The heartbeat: runs *on* a notebook instance or a Studio app, every 5 minutes.

It gathers what the instance is doing and writes the newest real activity as the tag
`cost-guard:last-activity` on its own SageMaker resource, and what it saw, and when it last
looked, as the tag `cost-guard:heartbeat`, where the guard reads both (one Resource Groups
Tagging API page covers 100 resources). Evidence, newest wins:

- Jupyter's kernels (a busy one is activity now), sessions and terminals (their last use);
- processes under a terminal's shell (`python train.py > train.log` typed in a terminal whose
  browser tab was closed: Jupyter sees no traffic, but the job runs);
- the user's long-running processes whose CPU time grows (a `nohup` job outside any terminal);
- GPU utilization from `nvidia-smi`, where present;
- Code Editor: its idle extension's timestamp file, terminals, processes, and file changes
  under the home folder.

Portable and quiet: Python 3.8 to 3.13, the standard library only (boto3 is imported only
to write the tag), no `guard` imports (`cost-guard lifecycle-config` embeds this file in a
lifecycle script). One JSON log line per run; expected failures (Jupyter down, a 403, no
credentials) are one line each, never a traceback; the log file is rotated at a bounded size.
"""

# The file runs on Python 3.8 (see the tests): no datetime.UTC (3.11), no str.removeprefix or
# builtin generics at run time (3.9), so it keeps the older spellings throughout.
# ruff: noqa: UP006, UP017, UP031, UP035, UP045

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import ssl
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

TAG = "cost-guard:last-activity"  # ISO-8601 time of the newest activity
STATE_TAG = "cost-guard:heartbeat"  # "at=<last look> jupyter=ok by=<evidence> ..." (see state)
METADATA = "/opt/ml/metadata/resource-metadata.json"  # SageMaker writes it on the instance
NOTEBOOK_SERVER = "https://localhost:8443"  # notebook instances: local TLS, self-signed
STUDIO_SERVER = "http://localhost:8888/jupyterlab/default"  # Studio JupyterLab apps
UTC = timezone.utc

# The settings a lifecycle script may put in heartbeat.json; anything else is ignored.
DEFAULTS: Dict[str, Any] = {
    "mode": "auto",  # auto (from SageMaker's metadata) | jupyter | code-editor | kernel-gateway
    "jupyter_url": None,  # default: the notebook-instance or Studio address
    "jupyter_token": None,  # default: JUPYTER_TOKEN, else the server's runtime file
    "jupyter_runtime_dirs": [
        "/home/ec2-user/.local/share/jupyter/runtime",
        "/home/sagemaker-user/.local/share/jupyter/runtime",
    ],
    "cpu_percent": 5.0,  # a user process averaging this share of a core counts as work
    "process_min_age_seconds": 120,  # younger processes are not "long-running" yet
    "gpu_percent": 5.0,  # GPU utilization at or above this counts as work
    "nvidia_smi": "nvidia-smi",
    "refresh_minutes": 30,  # rewrite the state tag at least this often (the guard's liveness)
    "home": None,  # Code Editor: newest file change under here (default: $HOME)
    # Code Editor's idle extension rewrites this on every edit, cursor move and terminal use.
    "code_editor_activity_file": "/tmp/.sagemaker-last-active-timestamp",
    "max_files": 20000,  # bound the walk of the home folder
    "terminal_viewers": [  # left open in a terminal, these are not work
        "less",
        "more",
        "man",
        "vi",
        "vim",
        "nvim",
        "nano",
        "emacs",
        "top",
        "htop",
        "nvtop",
        "watch",
        "tail",
    ],
    "log_max_bytes": 1000000,  # the log is rotated to <log>.1 past this (two files at most)
    "timeout_seconds": 10,
    "dry_run": False,  # decide and log what would be written; no AWS call, no boto3
    "proc": "/proc",
}
SHELLS = {"bash", "sh", "zsh", "fish", "dash", "ksh", "tcsh", "csh"}
SERVER_PATTERN = re.compile(
    r"jupyter[-_ ]?(lab|server|notebook)|jupyterlab|notebook\.notebookapp|ptyHost|"
    r"code-server|sagemaker-code-editor|kernel_gateway|kernelgateway"
)
TAG_VALUE_MAX = 256


# --- small helpers ---------------------------------------------------------------------------


def parse_time(value: Any) -> Optional[datetime]:
    """ISO-8601 with any number of fraction digits and Z or an offset (Jupyter writes
    microseconds and Z; Python 3.8's fromisoformat accepts neither Z nor 3 digits)."""
    if not isinstance(value, str) or not value.strip():
        return None
    match = re.match(
        r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?"
        r"\s*(Z|[+-]\d\d:?\d\d)?$",
        value.strip(),
    )
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        when = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        return when - sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return when


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_safe(text: str) -> str:
    """SageMaker tag values allow letters, digits, spaces and _ . : / = + - @ only."""
    kept = "".join(c if c.isalnum() or c in " _.:/=+-@" else " " for c in text)
    return re.sub(r"\s+", " ", kept).strip()


def load_settings(path: Optional[str]) -> Tuple[Dict[str, Any], List[str]]:
    """DEFAULTS overlaid with the lifecycle script's heartbeat.json; a value of the wrong
    type keeps its default (and is reported): a typo never stops the heartbeat."""
    settings = dict(DEFAULTS)
    problems: List[str] = []
    if not path or not os.path.exists(path):
        return settings, problems
    try:
        with open(path) as handle:
            given = json.load(handle)
    except (OSError, ValueError) as exc:
        return settings, ["settings %s unreadable (%s): defaults used" % (path, exc)]
    if not isinstance(given, dict):
        return settings, ["settings %s is not a JSON object: defaults used" % path]
    for key, value in given.items():
        if key not in DEFAULTS:
            problems.append("unknown setting %r ignored" % key)
            continue
        default = DEFAULTS[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        elif isinstance(default, list):
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = value is None or isinstance(value, str)
        if ok:
            settings[key] = value
        else:
            problems.append("setting %s=%r is invalid: %r used" % (key, value, default))
    return settings, problems


# --- where we are ------------------------------------------------------------------------------


def read_metadata(metadata_path: str = METADATA) -> Dict[str, Any]:
    with open(metadata_path) as handle:
        return dict(json.load(handle))


def resource_arn(metadata_path: str = METADATA) -> str:
    """This resource's ARN. On Studio, `ResourceArn` spells the app type as in the API
    ("JupyterLab"), while the app's real ARN (DescribeApp's AppArn, where tags attach) has it
    lower-cased, as `ResourceArnCaseSensitive` holds where the metadata has it."""
    metadata = read_metadata(metadata_path)
    arn = str(metadata.get("ResourceArnCaseSensitive") or metadata["ResourceArn"])
    resource, _, path = arn.partition(":app/")
    if not path:
        return arn
    parts = path.split("/")  # domain / space or user / type / name
    if len(parts) == 4:
        parts[2] = parts[2].lower()
    return "%s:app/%s" % (resource, "/".join(parts))


def app_type(metadata_path: str = METADATA) -> Optional[str]:
    """Studio apps' metadata name their AppType; a notebook instance's does not."""
    try:
        value = read_metadata(metadata_path).get("AppType")
    except (OSError, ValueError):
        return None
    return str(value) if value else None


def server_url(metadata_path: str = METADATA) -> str:
    return STUDIO_SERVER if app_type(metadata_path) else NOTEBOOK_SERVER


def detect_mode(metadata_path: str = METADATA) -> str:
    kind = (app_type(metadata_path) or "").lower()
    if kind == "codeeditor":
        return "code-editor"
    if kind in ("kernelgateway", "datawrangler"):
        return "kernel-gateway"
    return "jupyter"  # notebook instances, JupyterLab and Studio Classic's JupyterServer


# --- Jupyter ------------------------------------------------------------------------------------


class JupyterUnreachable(Exception):
    """The server did not answer, or refused: its kernels and terminals are unknown."""


def find_token(base_url: str, settings: Dict[str, Any]) -> Optional[str]:
    """The server's token: configured, JUPYTER_TOKEN, or the runtime file (jpserver-*.json)
    of the server on this port, which Jupyter writes for its own clients."""
    if settings.get("jupyter_token"):
        return str(settings["jupyter_token"])
    if os.environ.get("JUPYTER_TOKEN"):
        return os.environ["JUPYTER_TOKEN"]
    port = urllib.parse.urlsplit(base_url).port
    dirs = list(settings.get("jupyter_runtime_dirs") or [])
    if os.environ.get("JUPYTER_RUNTIME_DIR"):
        dirs.insert(0, os.environ["JUPYTER_RUNTIME_DIR"])
    dirs.append(os.path.expanduser("~/.local/share/jupyter/runtime"))
    for folder in dirs:
        for path in sorted(glob.glob(os.path.join(folder, "jpserver-*.json"))):
            try:
                with open(path) as handle:
                    info = json.load(handle)
            except (OSError, ValueError):
                continue  # a server that is starting or gone: try the next file
            if isinstance(info, dict) and info.get("port") == port and info.get("token"):
                return str(info["token"])
    return None


def _get(base_url: str, path: str, token: Optional[str], timeout: float) -> Any:
    context = ssl.create_default_context()
    # The local Jupyter server of a notebook instance uses a self-signed certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(base_url.rstrip("/") + path)
    if token:
        request.add_header("Authorization", "token " + token)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise JupyterUnreachable(
            "%s%s answered %s %s" % (base_url, path, exc.code, exc.reason)
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JupyterUnreachable("%s%s unreachable (%s)" % (base_url, path, reason)) from None
    except ValueError as exc:
        raise JupyterUnreachable("%s%s answered no JSON (%s)" % (base_url, path, exc)) from None


Evidence = Tuple[datetime, str, Dict[str, Any]]  # when, code (kernel-busy...), details


def jupyter_evidence(
    base_url: str, now: datetime, token: Optional[str] = None, timeout: float = 10
) -> Tuple[List[Evidence], Dict[str, int]]:
    """Kernels (also those behind sessions) and terminals. A busy kernel is activity `now`;
    one stuck in `starting` is only as recent as its last activity."""
    kernels = list(_get(base_url, "/api/kernels", token, timeout))
    sessions = list(_get(base_url, "/api/sessions", token, timeout))
    kernels += [s["kernel"] for s in sessions if isinstance(s, dict) and s.get("kernel")]
    terminals = list(_get(base_url, "/api/terminals", token, timeout))
    found: List[Evidence] = []
    for kernel in kernels:
        if kernel.get("execution_state") == "busy":
            found.append((now, "kernel-busy", {}))  # a long computation logs nothing
        else:
            when = parse_time(kernel.get("last_activity"))
            if when is not None:
                found.append((when, "kernel", {}))
    for terminal in terminals:
        when = parse_time(terminal.get("last_activity"))
        if when is not None:
            found.append((when, "terminal", {}))
    ids = {k.get("id") for k in kernels}
    return found, {"kernels": len(ids), "terminals": len(terminals)}


# --- processes (/proc) -----------------------------------------------------------------------


class Proc:
    __slots__ = ("age", "cmd", "comm", "cpu", "key", "pid", "ppid", "tty", "uid")

    def __init__(self, pid: int, ppid: int, comm: str, tty: int, cpu: float, key: str) -> None:
        self.pid, self.ppid, self.comm, self.tty = pid, ppid, comm, tty
        self.cpu, self.key = cpu, key
        self.uid = -1
        self.cmd = comm
        self.age = 0.0


def read_processes(proc: str = "/proc") -> Dict[int, Proc]:
    """Every process: parent, terminal, CPU seconds, age, owner, command line. A process
    that ends while being read is skipped."""
    ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    try:
        with open(os.path.join(proc, "uptime")) as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        uptime = 0.0
    found: Dict[int, Proc] = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        base = os.path.join(proc, name)
        try:
            with open(os.path.join(base, "stat")) as handle:
                raw = handle.read()
            # comm is in parentheses and may itself hold spaces or parentheses
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            ppid, tty = int(fields[1]), int(fields[4])
            cpu = (int(fields[11]) + int(fields[12])) / ticks
            started = int(fields[19]) / ticks
            item = Proc(int(name), ppid, comm, tty, cpu, "%s:%s" % (name, fields[19]))
            item.age = max(uptime - started, 0.0)
            with open(os.path.join(base, "status")) as handle:
                for line in handle:
                    if line.startswith("Uid:"):
                        item.uid = int(line.split()[1])
                        break
            with open(os.path.join(base, "cmdline"), "rb") as handle:
                argv = handle.read().split(b"\0")
            cmd = " ".join(a.decode("utf-8", "replace") for a in argv if a)
            item.cmd = cmd or comm
        except (OSError, ValueError, IndexError):
            continue
        found[item.pid] = item
    return found


def _descendants(procs: Dict[int, Proc], roots: List[int]) -> List[Proc]:
    children: Dict[int, List[Proc]] = {}
    for item in procs.values():
        children.setdefault(item.ppid, []).append(item)
    out: List[Proc] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def _short(cmd: str, limit: int = 80) -> str:
    """`python train.py`, not `/opt/conda/envs/x/bin/python3.11 /home/u/train.py`."""
    words = cmd.split()
    if words:
        words[0] = os.path.basename(words[0])
    text = " ".join(os.path.basename(w) if w.startswith("/") else w for w in words)
    return text if len(text) <= limit else text[: limit - 1] + "..."


def process_evidence(
    procs: Dict[int, Proc],
    previous: Dict[str, Any],
    elapsed: Optional[float],
    now: datetime,
    settings: Dict[str, Any],
) -> Tuple[List[Evidence], Dict[str, Any]]:
    """Terminal jobs and busy long-running user processes.

    A terminal is a shell with a tty whose parent is the Jupyter server (terminado) or Code
    Editor's pty host; any non-shell process below it is a job, whether it prints or not. Other
    processes of the server's user count while their CPU time grows by `cpu_percent` of a
    core since the previous run: growth needs two looks, so a process is first recorded."""
    me = set()
    pid: Optional[int] = os.getpid()
    while pid and pid in procs and pid not in me:  # the heartbeat and what started it
        me.add(pid)
        pid = procs[pid].ppid
    servers = {p.pid for p in procs.values() if SERVER_PATTERN.search(p.cmd)} - me
    users = {procs[s].uid for s in servers if s in procs}
    shells = [
        p.pid for p in procs.values() if p.ppid in servers and p.tty != 0 and p.pid not in servers
    ]
    viewers = set(settings["terminal_viewers"])
    found: List[Evidence] = []
    jobs = [
        p
        for p in _descendants(procs, shells)
        if p.comm not in SHELLS and p.comm not in viewers and p.pid not in me
    ]
    if jobs:
        job = max(jobs, key=lambda p: p.cpu)
        found.append((now, "terminal-job", {"pid": job.pid, "cmd": _short(job.cmd)}))
    samples = {p.key: p.cpu for p in procs.values()}
    busy: List[Tuple[float, Proc]] = []
    held = previous.get("cpu")
    before: Dict[str, Any] = held if isinstance(held, dict) else {}
    if elapsed and elapsed > 0:
        for item in procs.values():
            if item.pid in me or item.pid in servers:
                continue
            # the user Jupyter runs as; without a server, any ordinary (non-system) user
            if (item.uid not in users) if users else (item.uid < 1000 or item.uid == 65534):
                continue
            if item.age < float(settings["process_min_age_seconds"]):
                continue
            last = before.get(item.key)
            if not isinstance(last, (int, float)):
                continue
            percent = (item.cpu - last) * 100.0 / elapsed
            if percent >= float(settings["cpu_percent"]):
                busy.append((percent, item))
    if busy:
        percent, item = max(busy, key=lambda b: b[0])
        found.append(
            (now, "process", {"pid": item.pid, "cpu": round(percent), "cmd": _short(item.cmd)})
        )
    seen = {"terminal_jobs": len(jobs), "busy_processes": len(busy), "terminals_open": len(shells)}
    return found, {"cpu": samples, "seen": seen}


def gpu_evidence(now: datetime, settings: Dict[str, Any]) -> Tuple[List[Evidence], Optional[int]]:
    """The busiest GPU's utilization; nothing where there is no nvidia-smi."""
    try:
        out = subprocess.run(
            [
                settings["nvidia_smi"],
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=float(settings["timeout_seconds"]),
        )
    except (OSError, subprocess.SubprocessError):
        return [], None  # no GPU, no driver: not evidence either way
    values = [int(v) for v in re.findall(r"^\s*(\d+)", out.stdout, re.M)]
    if out.returncode != 0 or not values:
        return [], None
    peak = max(values)
    if peak >= float(settings["gpu_percent"]):
        return [(now, "gpu", {"gpu": peak})], peak
    return [], peak


def code_editor_evidence(settings: Dict[str, Any]) -> List[Evidence]:
    """Code Editor's own activity stamp and the newest file change under the home folder
    (hidden folders skipped: tools write there, people do not)."""
    found: List[Evidence] = []
    try:
        with open(settings["code_editor_activity_file"]) as handle:
            when = parse_time(handle.read())
        if when is not None:
            found.append((when, "code-editor", {}))
    except OSError:
        pass  # no editor activity recorded yet
    home = settings.get("home") or os.path.expanduser("~")
    newest: Optional[Tuple[float, str]] = None
    budget = int(settings["max_files"])
    for root, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "node_modules"]
        for name in files:
            budget -= 1
            if budget < 0 or name.startswith("."):
                continue
            try:
                mtime = os.lstat(os.path.join(root, name)).st_mtime
            except OSError:
                continue
            if newest is None or mtime > newest[0]:
                newest = (mtime, os.path.relpath(os.path.join(root, name), home))
        if budget < 0:
            break
    if newest is not None:
        found.append((datetime.fromtimestamp(newest[0], UTC), "file", {"path": newest[1]}))
    return found


# --- what to write -----------------------------------------------------------------------------


def state_value(at: datetime, jupyter: str, evidence: Optional[Evidence]) -> str:
    """The state tag: `at=<this look> jupyter=<ok|down|denied|n/a> by=<code> [pid= gpu= cpu=]
    [cmd=... | path=...]`, the free text last; within SageMaker's tag alphabet and length."""
    parts = ["at=" + stamp(at), "jupyter=" + jupyter]
    if evidence is not None:
        _, code, details = evidence
        parts.append("by=" + code)
        for key in ("pid", "gpu", "cpu"):
            if key in details:
                parts.append("%s=%s" % (key, details[key]))
        for key in ("cmd", "path"):
            if key in details:
                parts.append("%s=%s" % (key, tag_safe(str(details[key]))))
    return " ".join(parts)[:TAG_VALUE_MAX].rstrip()


def decide(
    evidence: List[Evidence],
    jupyter: str,
    now: datetime,
    current: Dict[str, str],
    refresh: timedelta,
) -> Tuple[Optional[datetime], Dict[str, str]]:
    """The newest activity, and the tags to write given the tags the resource holds: the
    activity only when newer; the state when the activity moved, Jupyter's reachability
    changed, or it is older than `refresh` (so the guard knows the heartbeat is alive)."""
    newest = max(evidence, key=lambda e: e[0]) if evidence else None
    activity = newest[0].replace(microsecond=0) if newest else None
    writes: Dict[str, str] = {}
    held = parse_time(current.get(TAG))
    if activity is not None and (held is None or activity > held):
        writes[TAG] = stamp(activity)
    state = state_value(now, jupyter, newest)
    held_state = dict(p.split("=", 1) for p in current.get(STATE_TAG, "").split(" ") if "=" in p)
    last_look = parse_time(held_state.get("at"))
    if (
        writes
        or held_state.get("jupyter") != jupyter
        or last_look is None
        or now - last_look >= refresh
    ):
        writes[STATE_TAG] = state
    return activity, writes


# --- one run -------------------------------------------------------------------------------------


def _load_state(path: str) -> Dict[str, Any]:
    try:
        with open(path) as handle:
            value = json.load(handle)
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}  # first run, or a torn file: CPU growth is measured from this run on


def _save_state(path: str, state: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as handle:
            json.dump(state, handle)
        os.replace(tmp, path)
    except OSError:
        pass  # next run measures CPU growth from scratch: it only delays process evidence


def collect(
    settings: Dict[str, Any], now: datetime, state_path: Optional[str], metadata: str = METADATA
) -> Dict[str, Any]:
    """Everything this run saw: evidence, Jupyter's reachability, counts."""
    mode = settings["mode"] if settings["mode"] != "auto" else detect_mode(metadata)
    evidence: List[Evidence] = []
    seen: Dict[str, Any] = {"mode": mode}
    jupyter = "n/a"
    if mode == "jupyter":
        url = (
            settings["jupyter_url"]
            or os.environ.get("COST_GUARD_JUPYTER_URL")
            or server_url(metadata)
        )
        token = find_token(url, settings)
        try:
            found, counts = jupyter_evidence(url, now, token, float(settings["timeout_seconds"]))
            evidence += found
            seen.update(counts)
            jupyter = "ok"
        except JupyterUnreachable as exc:
            text = str(exc)
            jupyter = "denied" if re.search(r"answered 40[13]", text) else "down"
            seen["jupyter_error"] = text
    if mode == "code-editor":
        evidence += code_editor_evidence(settings)
    previous = _load_state(state_path) if state_path else {}
    wall = time.time()
    elapsed = wall - previous["wall"] if isinstance(previous.get("wall"), (int, float)) else None
    try:
        procs = read_processes(settings["proc"])
    except OSError:
        procs = {}  # no /proc (not Linux): the other evidence still counts
    found_p, sample = process_evidence(procs, previous, elapsed, now, settings)
    evidence += found_p
    seen.update(sample["seen"])
    found_g, gpu = gpu_evidence(now, settings)
    evidence += found_g
    if gpu is not None:
        seen["gpu_percent"] = gpu
    if state_path:
        _save_state(state_path, {"wall": wall, "cpu": sample["cpu"]})
    return {"evidence": evidence, "jupyter": jupyter, "seen": seen}


def describe(evidence: Optional[Evidence]) -> Optional[str]:
    """For the log: the same words the guard shows."""
    if evidence is None:
        return None
    _, code, d = evidence
    if code == "terminal-job":
        return "terminal job `%s` running, pid %s" % (d["cmd"], d["pid"])
    if code == "process":
        return "process `%s` using %s %% CPU, pid %s" % (d["cmd"], d["cpu"], d["pid"])
    if code == "gpu":
        return "GPU %s %%" % d["gpu"]
    if code == "file":
        return "file %s changed" % d["path"]
    return {
        "kernel-busy": "kernel busy",
        "kernel": "kernel used",
        "terminal": "terminal used",
        "code-editor": "Code Editor used",
    }.get(code, code)


class Log:
    """One line per run, appended; rotated to <path>.1 past `max_bytes` (so at most twice
    that on disk). Without a path, lines go to stdout."""

    def __init__(self, path: Optional[str], max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes

    def write(self, record: Dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False, default=str)
        if not self.path:
            print(line, flush=True)
            return
        try:
            if os.path.getsize(self.path) > self.max_bytes:
                os.replace(self.path, self.path + ".1")
        except OSError:
            pass  # no log yet
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


def run(argv: Optional[List[str]] = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description="cost-guard heartbeat")
    parser.add_argument("--config", default=os.path.join(here, "heartbeat.json"))
    parser.add_argument("--state", default=None, help="default: heartbeat-state.json beside it")
    parser.add_argument("--log", default=None, help="append here (default: stdout)")
    parser.add_argument("--now", default=None, help="ISO-8601 time to judge at (tests)")
    parser.add_argument("--dry-run", action="store_true", help="no AWS call: log what it would")
    parser.add_argument("--metadata", default=METADATA)
    args = parser.parse_args(argv)
    settings, problems = load_settings(args.config)
    log = Log(args.log, int(settings["log_max_bytes"]))
    # --now or COST_GUARD_NOW: judge at another time (tests: "an hour later")
    given = args.now or os.environ.get("COST_GUARD_NOW")
    now = parse_time(given) if given else None
    now = now or datetime.now(UTC)
    record: Dict[str, Any] = {"at": stamp(now)}
    if problems:
        record["settings"] = problems
    try:
        state_path = args.state or os.path.join(
            os.path.dirname(os.path.abspath(args.config)), "heartbeat-state.json"
        )
        seen = collect(settings, now, state_path, args.metadata)
        evidence = seen["evidence"]
        newest = max(evidence, key=lambda e: e[0]) if evidence else None
        record.update(
            {
                "jupyter": seen["jupyter"],
                "saw": seen["seen"],
                "evidence": describe(newest),
                "last_activity": stamp(newest[0]) if newest else None,
            }
        )
        if seen["jupyter"] != "ok" and "jupyter_error" in seen["seen"]:
            record["jupyter"] = "%s: %s" % (seen["jupyter"], seen["seen"].pop("jupyter_error"))
        refresh = timedelta(minutes=float(settings["refresh_minutes"]))
        if args.dry_run or settings["dry_run"]:
            _, writes = decide(evidence, seen["jupyter"], now, {}, refresh)
            record["would_write"] = writes
            log.write(record)
            return 0
        try:
            arn = os.environ.get("COST_GUARD_RESOURCE_ARN") or resource_arn(args.metadata)
        except (OSError, KeyError, ValueError) as exc:
            raise ExpectedFailure("no resource ARN (%s: %s)" % (args.metadata, exc)) from None
        record["resource"] = arn
        record["wrote"] = write_tags(arn, evidence, seen["jupyter"], now, refresh, settings)
    except ExpectedFailure as exc:
        record["error"] = str(exc)
        log.write(record)
        return 1
    except Exception as exc:  # a bug: say so on one line, the traceback after it
        record["error"] = "unexpected %s: %s" % (type(exc).__name__, exc)
        log.write(record)
        traceback.print_exc()
        return 2
    log.write(record)
    return 0


class ExpectedFailure(Exception):
    """No metadata, no boto3, no credentials, an AWS error: one log line, no traceback."""


def write_tags(
    arn: str,
    evidence: List[Evidence],
    jupyter: str,
    now: datetime,
    refresh: timedelta,
    settings: Dict[str, Any],
) -> Dict[str, str]:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise ExpectedFailure("boto3 is not installed for this Python: %s" % exc) from None
    try:
        client = boto3.client(
            "sagemaker",
            region_name=arn.split(":")[3],
            config=Config(
                connect_timeout=settings["timeout_seconds"],
                read_timeout=settings["timeout_seconds"],
                retries={"max_attempts": 3},
            ),
        )
        listed = client.list_tags(ResourceArn=arn).get("Tags", [])
        current = {t["Key"]: t["Value"] for t in listed}
        _, writes = decide(evidence, jupyter, now, current, refresh)
        if writes:
            tags = [{"Key": k, "Value": v} for k, v in writes.items()]
            client.add_tags(ResourceArn=arn, Tags=tags)
        return writes
    except (BotoCoreError, ClientError) as exc:
        raise ExpectedFailure("tagging %s failed: %s" % (arn, exc)) from None


def main(argv: Optional[List[str]] = None) -> int:
    try:
        return run(argv)
    except (OSError, KeyError, ValueError) as exc:
        # no metadata file, an unwritable log: still one line, on stderr (cron's log)
        sys.stderr.write("%s heartbeat: %s\n" % (stamp(datetime.now(UTC)), exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
