"""A local stand-in for Slack's Web API and an incoming webhook, over real HTTP.

It answers `chat.postMessage` (with message metadata), `chat.update`, `conversations.history`,
`conversations.open`, `users.lookupByEmail`, `usergroups.users.list` and `auth.test` (under
`/api/`) and webhook POSTs (`/webhook`) the way Slack does, and records every request.

Faults, per method or for any: `fail(...)` answers the next requests with an HTTP status (429
with Retry-After, a 5xx with a JSON or an HTML body), an `ok: false` error, a hang (no answer,
so the client's read timeout fires) or a reset connection; a hang or a reset can come after
Slack took the request (`accept=True`: the message is posted, the answer lost). `hold(method)`
takes the next such request, then keeps the answer back until `release()` (a test kills the
client in that window).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# How long a hung request waits for `release()` or `stop()` at most.
HANG_SECONDS = 30.0


@dataclass
class Call:
    """One request as Slack saw it, and the status it was answered with."""

    method: str  # "chat.postMessage", "chat.update", "users.lookupByEmail", "webhook"
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    fault: str = ""  # the fault it was answered with: "status", "error", "hang", "reset"

    @property
    def accepted(self) -> bool:
        """Did Slack take it (whether or not the client heard the answer)?"""
        return self.status == 200 and self.response.get("ok", True) is True


@dataclass
class Fault:
    kind: str  # "status" | "error" | "hang" | "reset"
    method: str | None  # None: whatever is asked next
    status: int = 500
    retry_after: int | None = None
    error: str = ""  # the `error` of an ok: false answer
    html: bool = False  # a 5xx page from a proxy, not Slack's JSON
    accept: bool = False  # hang/reset after Slack took the request


class FakeSlack:
    def __init__(
        self,
        users: dict[str, str] | None = None,
        groups: dict[str, list[str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = dict(users or {})  # email -> user id
        self.groups = dict(groups or {})  # user group id -> member user ids
        self.clock = clock  # Slack's clock: the seconds of each message's ts
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        # Called with each request before it is answered (a test looks at the database then).
        self.on_request: Callable[[Call], None] | None = None
        self._faults: list[Fault] = []
        self._hold: str | None = None
        self.held = threading.Event()  # a held request was taken
        self._release = threading.Event()
        self._ts = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A short poll interval: `shutdown` waits for one, and every test stops a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook/T000/B000/s3cr3tw3bh00kpath"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # hung and held requests end
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- faults --------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500, retry_after: int | None = None) -> None:
        """Answer the next `count` requests with this HTTP status (429: with Retry-After)."""
        self.fail(None, "status", count, status=status, retry_after=retry_after)

    def fail(
        self,
        method: str | None,
        kind: str,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: int | None = None,
        error: str = "",
        html: bool = False,
        accept: bool = False,
    ) -> None:
        """The next `count` requests of `method` (None: of any) fail this way: `status` (an
        HTTP status; 429 with Retry-After), `error` (200 with ok: false and this error),
        `hang` (no answer until `release`/`stop`) or `reset` (the connection is reset)."""
        assert kind in ("status", "error", "hang", "reset"), kind
        fault = Fault(kind, method, status, retry_after, error, html, accept)
        with self._lock:
            self._faults.extend([fault] * count)

    def hold(self, method: str) -> None:
        """Take the next `method` request as Slack would, then keep its answer back until
        `release()`; `held` is set once it was taken."""
        self._hold = method

    def release(self) -> None:
        self._release.set()

    # --- what Slack saw ------------------------------------------------------------------

    def accepted(self, method: str) -> list[Call]:
        """The requests of this method that Slack accepted (what people would see)."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.accepted]

    def requests(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def top_level(self) -> list[dict[str, Any]]:
        """The messages in channels (not thread replies), oldest first."""
        with self._lock:
            found = [m for m in self.messages.values() if "thread_ts" not in m]
        return sorted(found, key=lambda m: float(m["ts"]))

    # --- what Slack answers -------------------------------------------------------------

    def _fault_for(self, call: Call) -> Fault | None:
        for i, fault in enumerate(self._faults):
            if fault.method in (None, call.method):
                return self._faults.pop(i)
        return None

    def _answer(self, call: Call) -> tuple[int, dict[str, str], dict[str, Any] | str, str]:
        """(status, headers, body, then): `then` is "" to answer, or "hang"/"reset"/"hold"."""
        if self.on_request is not None:
            self.on_request(call)
        with self._lock:
            self.calls.append(call)
            fault = self._fault_for(call)
            if fault is not None and fault.kind in ("hang", "reset"):
                call.fault = fault.kind
                if fault.accept:
                    call.response = self._respond(call)
                else:
                    call.status = 0  # Slack never took it
                return 0, {}, {}, fault.kind
            if fault is not None and fault.kind == "status":
                call.status, call.fault = fault.status, "status"
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                if fault.html:
                    return fault.status, headers, "<html><h1>Service Unavailable</h1></html>", ""
                error = "ratelimited" if fault.status == 429 else "internal_error"
                call.response = {"ok": False, "error": error}
                return fault.status, headers, call.response, ""
            if fault is not None and fault.kind == "error":
                call.fault = "error"
                call.response = {"ok": False, "error": fault.error or "fatal_error"}
                return 200, {}, call.response, ""
            call.response = self._respond(call)
            then = ""
            if self._hold == call.method:
                self._hold, then = None, "hold"
                self.held.set()
            answer: dict[str, Any] | str = "ok" if call.method == "webhook" else call.response
            return 200, {}, answer, then

    def _respond(self, call: Call) -> dict[str, Any]:
        if call.method == "webhook":
            self._ts += 1
            ts = self._next_ts()
            self.messages[("webhook", ts)] = dict(call.body, ts=ts)
            return {"ok": True}
        if not call.headers.get("authorization", "").startswith("Bearer "):
            return {"ok": False, "error": "not_authed"}
        return self._api(call)

    def _next_ts(self) -> str:
        return f"{int(self.clock())}.{self._ts:06d}"

    def _api(self, call: Call) -> dict[str, Any]:
        body = call.body
        if call.method == "users.lookupByEmail":
            user_id = self.users.get(str(body.get("email", "")).lower())
            if user_id is None:
                return {"ok": False, "error": "users_not_found"}
            return {"ok": True, "user": {"id": user_id, "profile": {"email": body["email"]}}}
        if call.method == "auth.test":  # slack-bolt asks once who its token belongs to
            return {"ok": True, "team_id": "T0001", "user_id": "U0BOT", "bot_id": "B0BOT"}
        if call.method == "usergroups.users.list":
            members = self.groups.get(str(body.get("usergroup", "")))
            if members is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": members}
        if call.method == "conversations.open":
            user = str(body.get("users", ""))
            if not user.startswith(("U", "W")):
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "channel": {"id": _dm(user)}}
        if call.method == "conversations.history":
            return self._history(body)
        channel = str(body.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel.startswith(("U", "W")):  # a user id: the app's direct message with them
            channel = _dm(channel)
        if call.method == "chat.postMessage":
            self._ts += 1
            ts = self._next_ts()
            self.messages[(channel, ts)] = dict(body, ts=ts, channel=channel)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text")}}
        if call.method == "chat.update":
            ts = str(body.get("ts", ""))
            if (channel, ts) not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[(channel, ts)] = dict(body, ts=ts, channel=channel)
            return {"ok": True, "channel": channel, "ts": ts, "text": body.get("text")}
        return {"ok": False, "error": "unknown_method"}

    def _history(self, body: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a conversation, newest first, since `oldest`; paged."""
        channel = str(body.get("channel", ""))
        if not channel.startswith(("C", "G", "D")):
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(body.get("oldest") or 0)
        metadata = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        found = sorted(
            (
                m
                for (c, ts), m in self.messages.items()
                if c == channel and float(ts) > oldest and "thread_ts" not in m
            ),
            key=lambda m: float(m["ts"]),
            reverse=True,
        )
        start = int(body.get("cursor") or 0)
        limit = int(body.get("limit") or 100)
        page = found[start : start + limit]
        messages = []
        for m in page:
            item = {"type": "message", "ts": m["ts"], "text": m.get("text", "")}
            if metadata and m.get("metadata"):
                item["metadata"] = m["metadata"]
            messages.append(item)
        more = start + limit < len(found)
        return {
            "ok": True,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


def _dm(user: str) -> str:
    return "D" + user[1:]


def _handler(slack: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            url = urlsplit(self.path)
            body: dict[str, Any] = dict(parse_qsl(url.query))
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if raw and "json" in (self.headers.get("Content-Type") or ""):
                body.update(json.loads(raw))
            elif raw:
                body.update(parse_qsl(raw))
            for key in ("metadata", "blocks"):  # form-encoded: JSON in a field
                if isinstance(body.get(key), str) and body[key].startswith(("{", "[")):
                    body[key] = json.loads(body[key])
            if url.path.startswith("/webhook"):
                method = "webhook"
            elif url.path.startswith("/api/"):
                method = url.path.removeprefix("/api/")
            else:
                self.send_error(404)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, answer, then = slack._answer(Call(method, url.path, body, headers))
            if then == "hang":
                slack._release.wait(HANG_SECONDS)
                self.close_connection = True
                return
            if then == "reset":
                self._reset()
                return
            if then == "hold":
                slack._release.wait(HANG_SECONDS)
            data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
            try:
                self.send_response(status)
                html = isinstance(answer, str) and answer.startswith("<")
                kind = "text/html" if html else "text/plain" if isinstance(answer, str) else None
                self.send_header("Content-Type", f"{kind or 'application/json'}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client went away (killed, timed out)
                self.close_connection = True

        def _reset(self) -> None:
            """Close with RST instead of FIN: the client sees "connection reset by peer"."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
