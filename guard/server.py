"""`cost-guard serve` / `run --serve`: a small threaded WSGI server.

- `/healthz` (also `/livez`), liveness: 200 while the process is alive and, under `run
  --serve`, its scheduler is running — also while AWS or the database is down (a restart
  would not bring them back); 503 once the scheduler has stopped. Kubernetes' livenessProbe.
- `/readyz`, readiness: 200 while the last successful cycle (any replica's, from the database)
  is younger than `serve.healthy_within` (default three scan intervals); 503 when it is
  older, when none has finished within that bound of the server's start, or when the
  database is unreachable. Kubernetes' readinessProbe, and what alerting should watch.
- `/metrics`: Prometheus text, read from the database at scrape time (guard/metrics.py).
- `/slack/events`: Slack interactivity (signature-verified by slack-bolt), mounted only when
  `SLACK_SIGNING_SECRET` is set.
- everything else: the web console (guard/web, a Flask app), reading the same database.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from socketserver import ThreadingMixIn
from types import FrameType
from typing import Any, Protocol, Self, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from guard.cycle import Guard
from guard.metrics import registry_for
from guard.store import instance_id

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Closeable(Protocol):
    def close(self) -> None: ...


# Liveness of what the server runs beside: (alive, status). `serve` alone has no scheduler.
Liveness = Callable[[], tuple[bool, str]]


def _no_scheduler() -> tuple[bool, str]:
    return True, "ok"


def liveness(guard: Guard, alive: Liveness) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /healthz: is the process alive and its scheduler running?
    Nothing here touches AWS or the database."""
    ok, status = alive()
    body = {"status": status, "server_instance": instance_id(),
            "at": guard.clock.now().isoformat()}  # fmt: skip
    return (200 if ok else 503), body


def healthy_within(guard: Guard) -> timedelta:
    return guard.cfg.serve.healthy_within or 3 * guard.cfg.scan_interval


def health(guard: Guard, started_at: datetime) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /readyz at the guard's clock's now."""
    now, bound = guard.clock.now(), healthy_within(guard)
    body: dict[str, Any] = {
        "status": "ok", "last_cycle_at": None, "age_seconds": None, "instance": None,
        "healthy_within_seconds": bound.total_seconds(), "server_instance": instance_id(),
    }  # fmt: skip
    try:
        last = guard.store.last_cycle()
    except Exception as exc:  # the database is down: unhealthy, and say why (no URL)
        log.warning("readyz: database unavailable: %s", type(exc).__name__)
        return 503, {**body, "status": "database unavailable"}
    if last is None:
        starting = now - started_at < bound
        return (200, {**body, "status": "starting"}) if starting else (
            503, {**body, "status": "no cycle yet"})  # fmt: skip
    finished = datetime.fromisoformat(last["finished_at"])
    age = (now - finished).total_seconds()
    body.update(last_cycle_at=last["finished_at"], age_seconds=round(age, 3),
                instance=last.get("instance"))  # fmt: skip
    if age > bound.total_seconds():
        return 503, {**body, "status": "stale"}
    return 200, body


def make_app(
    guard: Guard, started_at: datetime | None = None, alive: Liveness | None = None
) -> WsgiApp:
    """The WSGI app: /healthz (/livez), /readyz, /metrics, /slack/events when a signing
    secret is set, and the web console for every other path. `alive`: the daemon's liveness
    (`Daemon.liveness`), if one runs."""
    started = started_at or guard.clock.now()
    alive = alive or _no_scheduler
    metrics = make_wsgi_app(registry_for(guard.store))
    slack: WsgiApp | None = None
    if guard.cfg.secrets.slack_signing_secret is not None:
        # slack-bolt is imported only when used
        from guard.slack_app import wsgi_app

        slack = wsgi_app(guard)
    from guard.web import create_app  # Flask is imported only when serving

    console = cast(WsgiApp, create_app(guard, alive=alive))

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/livez"):
            status, body = liveness(guard, alive)
            return _json(start_response, status, body)
        if path == "/readyz":
            status, body = health(guard, started)
            return _json(start_response, status, body)
        if path == "/metrics":
            return cast(Iterable[bytes], metrics(environ, start_response))
        if path == "/slack/events" and slack is not None:
            return slack(environ, start_response)
        return console(environ, start_response)

    return app


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class Server:
    """The HTTP server in a background thread (plus Socket Mode when configured)."""

    def __init__(
        self,
        guard: Guard,
        host: str | None = None,
        port: int | None = None,
        alive: Liveness | None = None,
    ) -> None:
        self.guard = guard
        host = guard.cfg.serve.host if host is None else host
        port = guard.cfg.serve.port if port is None else port
        self.httpd = make_server(
            host, port, make_app(guard, alive=alive),
            server_class=_ThreadingServer, handler_class=_QuietHandler,
        )  # fmt: skip
        self._thread: threading.Thread | None = None
        self._socket_mode: _Closeable | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.httpd.socket.getsockname()[0]
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="cost-guard-http", daemon=True
        )
        self._thread.start()
        if self.guard.cfg.slack.socket_mode:
            from guard.slack_app import start_socket_mode

            self._socket_mode = start_socket_mode(self.guard)
        log.info("serving the console, /healthz, /readyz and /metrics on %s", self.url,
                 extra={"event": "serve", "url": self.url})  # fmt: skip
        return self

    def stop(self) -> None:
        if self._socket_mode is not None:
            self._socket_mode.close()
            self._socket_mode = None
        if self._thread is not None:
            self.httpd.shutdown()  # waits for serve_forever to return
            self._thread.join()
            self._thread = None
        self.httpd.server_close()


def serve_until_signal(server: Server) -> None:
    """`cost-guard serve`: serve in the foreground until SIGTERM/SIGINT, then stop cleanly."""
    done = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping the server", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        while not done.wait(1.0):  # a timeout, so signals are handled promptly
            pass
    finally:
        server.stop()
    log.info("stopped")
