"""A real Jupyter server (jupyter_server + terminado + ipykernel from the test extra), driven
as a user's browser drives it: sessions and kernels executing code over the websocket,
terminals typed into over theirs, tabs closed.

Each server runs in its own PID namespace with its own /proc (`unshare --pid --mount-proc`),
as a Studio app runs in its container: the heartbeat, run inside with `nsenter`, sees that
"instance's" processes only, so the other busy processes of a shared test machine (pytest,
other test runs) are never mistaken for the user's work. Ending the namespace's first
process ends everything the test started in it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websocket  # websocket-client, a dependency of jupyter_server

VENV_PYTHON = sys.executable


def can_sandbox() -> bool:
    """unshare and nsenter need root (CAP_SYS_ADMIN), as on the CI machine."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """localhost's certificate and key, made here (notebook instances serve TLS like this)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Sandbox:
    """A PID and mount namespace: the test's stand-in for the instance or the app's container."""

    def __init__(self) -> None:
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sleep", "infinity"],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children")
        while time.monotonic() < deadline:
            found = children.read_text().split() if children.exists() else []
            if found:
                self.init = int(found[0])  # pid 1 inside, as seen from here
                return
            time.sleep(0.05)
        raise RuntimeError("unshare did not start")

    def command(self, args: list[str], cwd: Path | None = None) -> list[str]:
        # nsenter starts in the target's working directory unless told otherwise
        where = [f"--wd={cwd}"] if cwd else []
        return ["nsenter", "-t", str(self.init), "--pid", "--mount", *where, "--", *args]

    def proc(self, pid: int) -> Path:
        """/proc/<pid> of a process inside, by its pid inside."""
        return Path(f"/proc/{self.init}/root/proc/{pid}")

    def kill(self, pid: int) -> None:
        subprocess.run(self.command(["kill", "-9", str(pid)]), check=False, timeout=10)

    def close(self) -> None:
        # unshare's --kill-child ends pid 1 inside, and with it every process in there
        self.unshare.kill()
        self.unshare.wait(timeout=10)


def user_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": f"{Path(VENV_PYTHON).parent}:/usr/bin:/bin",
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
        "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "IPYTHONDIR": str(home / ".ipython"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


class PortTaken(RuntimeError):
    """Jupyter could not bind the port chosen for it."""


class RealJupyter:
    """`python -m jupyter_server` on a free port of 127.0.0.1.

    layout "notebook": https with a self-signed certificate at the root (a notebook instance's
    https://localhost:8443); "studio": http under /jupyterlab/default (a Studio JupyterLab app).
    """

    def __init__(self, layout: str, token: str = "") -> None:
        self.layout, self.token = layout, token
        self.home = Path(tempfile.mkdtemp(prefix="cg-jupyter-"))
        self.home.chmod(0o755)
        self.base_path = "/jupyterlab/default" if layout == "studio" else ""
        self._new_port()
        self.runtime_dir = self.home / ".local/share/jupyter/runtime"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox: Sandbox | None = None
        self.jobs: list[int] = []  # pids inside the sandbox
        self.sockets: list[websocket.WebSocket] = []

    def _new_port(self) -> None:
        self.port = free_port()
        scheme = "https" if self.layout == "notebook" else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}{self.base_path}"
        self.ws_url = self.url.replace("http", "ws", 1)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> RealJupyter:
        # A free port can be taken by another test process between our look and Jupyter's
        # bind (tests run in parallel): then try another one.
        for _ in range(3):
            try:
                return self._start()
            except PortTaken:
                self._new_port()
        return self._start()

    def _start(self) -> RealJupyter:
        stuck = self.home / ".local/share/jupyter/kernels/stuck"
        stuck.mkdir(parents=True, exist_ok=True)
        # A kernel that never answers: Jupyter shows it `starting` for as long as it lives.
        (stuck / "kernel.json").write_text(
            json.dumps({"argv": ["sleep", "3600"], "display_name": "stuck", "language": "none"})
        )
        args = [
            VENV_PYTHON, "-m", "jupyter_server",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.home}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.disable_check_xsrf=True", "--ServerApp.allow_root=True",
            "--ServerApp.terminado_settings={'shell_command': ['/bin/bash', '--norc']}",
            # a stuck kernel must stay `starting`, not be given up on during the test
            "--KernelManager.shutdown_wait_time=1",
        ]  # fmt: skip
        if self.layout == "notebook":
            cert, key = self_signed_cert(self.home)
            args += [f"--ServerApp.certfile={cert}", f"--ServerApp.keyfile={key}"]
        else:
            args.append(f"--ServerApp.base_url={self.base_path}/")
        self.sandbox = Sandbox()
        self.log = open(self.home.parent / f"{self.home.name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.sandbox.command(args, cwd=self.home),
            env=user_env(self.home),
            cwd=self.home,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/api/status")
                return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        text = self.log_text()
        self.stop()  # nothing of a failed start is left running
        if "is not available" in text:
            raise PortTaken(text)
        raise RuntimeError(f"Jupyter did not start: {text}")

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for sock in self.sockets:
            sock.close()
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.home, ignore_errors=True)

    def reset(self) -> None:
        """No kernels, no terminals, no jobs: a fresh start for the next situation."""
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        assert self.sandbox is not None
        for pid in self.jobs:
            self.sandbox.kill(pid)
        self.jobs.clear()
        for session in self.get("/api/sessions"):
            self.request("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.get("/api/kernels"):
            self.request("DELETE", f"/api/kernels/{kernel['id']}")
        for terminal in self.get("/api/terminals"):
            self.request("DELETE", f"/api/terminals/{terminal['name']}")

    # --- REST ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=30, context=_insecure()) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def _ws(self, path: str) -> websocket.WebSocket:
        header = [f"Authorization: token {self.token}"] if self.token else []
        sock = websocket.create_connection(
            self.ws_url + path, header=header, sslopt={"cert_reqs": ssl.CERT_NONE}, timeout=30
        )
        self.sockets.append(sock)
        return sock

    # --- a notebook open in a tab ----------------------------------------------------------

    def open_notebook(self, name: str = "train.ipynb", kernel: str = "python3") -> Notebook:
        session = self.request(
            "POST",
            "/api/sessions",
            {"path": name, "name": name, "type": "notebook", "kernel": {"name": kernel}},
        )
        return Notebook(self, session["kernel"]["id"])

    def start_stuck_kernel(self) -> str:
        return str(self.request("POST", "/api/kernels", {"name": "stuck"})["id"])

    def kernel_state(self, kernel_id: str) -> str:
        return str(self.get(f"/api/kernels/{kernel_id}")["execution_state"])

    # --- a terminal open in a tab -----------------------------------------------------------

    def open_terminal(self) -> Terminal:
        name = self.request("POST", "/api/terminals")["name"]
        return Terminal(self, name)

    def nohup(self, script: str) -> int:
        """`nohup python job.py &` by the user, outside any terminal; its pid inside."""
        assert self.sandbox is not None
        path = self.home / f"job-{uuid.uuid4().hex[:6]}.py"
        path.write_text(script)
        started = subprocess.run(
            self.sandbox.command(
                [
                    "sh",
                    "-c",
                    f"cd {self.home} && nohup python {path.name} >/dev/null 2>&1 & echo $!",
                ]
            ),
            env=user_env(self.home),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        pid = int(started.stdout.split()[-1])
        self.jobs.append(pid)
        return pid


class Notebook:
    """A notebook's kernel connection, as the browser has it: execute requests over the
    websocket, replies read until the kernel is idle again."""

    def __init__(self, server: RealJupyter, kernel_id: str) -> None:
        self.server, self.kernel_id = server, kernel_id
        self.session = uuid.uuid4().hex
        self.sock = server._ws(f"/api/kernels/{kernel_id}/channels?session_id={self.session}")

    def execute(self, code: str, wait: bool = True) -> str:
        msg_id = uuid.uuid4().hex
        self.sock.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "user",
                        "session": self.session,
                        "msg_type": "execute_request",
                        "version": "5.3",
                        "date": dt.datetime.now(dt.UTC).isoformat(),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        deadline = time.monotonic() + 60
        busy = False
        while time.monotonic() < deadline:
            msg = json.loads(self.sock.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                state = msg["content"]["execution_state"]
                busy = busy or state == "busy"
                if state == "busy" and not wait:
                    return msg_id
                if state == "idle" and busy:
                    return msg_id
        raise TimeoutError(f"kernel did not finish {code!r}")

    def close_tab(self) -> None:
        self.sock.close()


class Terminal:
    def __init__(self, server: RealJupyter, name: str) -> None:
        self.server, self.name = server, name
        self.sock = server._ws(f"/terminals/websocket/{name}")

    def type(self, text: str) -> None:
        self.sock.send(json.dumps(["stdin", text]))

    def read_until(self, needle: str, seconds: float = 30) -> str:
        seen = ""
        deadline = time.monotonic() + seconds
        self.sock.settimeout(1)
        while time.monotonic() < deadline:
            try:
                msg = json.loads(self.sock.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg[0] == "stdout":
                seen += str(msg[1])
                if needle in seen:
                    return seen
        raise TimeoutError(f"{needle!r} not printed; saw {seen[-500:]!r}")

    def close_tab(self) -> None:
        self.sock.close()
