"""A local stand-in for Slack's Web API and an incoming webhook, over real HTTP.

It answers `chat.postMessage`, `chat.update`, `users.lookupByEmail`, `usergroups.users.list`
and `auth.test` (under `/api/`) and webhook POSTs (`/webhook`) the way Slack does, records every
request, and can be told to fail the next requests with a 500 or a 429 + Retry-After.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Call:
    """One request as Slack saw it, and the status it was answered with."""

    method: str  # "chat.postMessage", "chat.update", "users.lookupByEmail", "webhook"
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status == 200 and self.response.get("ok", True) is True


class FakeSlack:
    def __init__(
        self, users: dict[str, str] | None = None, groups: dict[str, list[str]] | None = None
    ) -> None:
        self.users = dict(users or {})  # email -> user id
        self.groups = dict(groups or {})  # user group id -> member user ids
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self._failures: list[tuple[int, int | None]] = []  # (status, retry_after) per request
        self._ts = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
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
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, count: int = 1, status: int = 500, retry_after: int | None = None) -> None:
        """Answer the next `count` requests with this HTTP status (429: with Retry-After)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def accepted(self, method: str) -> list[Call]:
        """The requests of this method that Slack accepted (what people would see)."""
        with self._lock:
            return [c for c in self.calls if c.method == method and c.accepted]

    def requests(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # --- what Slack answers -------------------------------------------------------------

    def _answer(self, call: Call) -> tuple[int, dict[str, str], dict[str, Any] | str]:
        with self._lock:
            self.calls.append(call)
            if self._failures:
                status, retry_after = self._failures.pop(0)
                call.status = status
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                error = "ratelimited" if status == 429 else "internal_error"
                return status, headers, {"ok": False, "error": error}
            if call.method == "webhook":
                return 200, {}, "ok"
            if not call.headers.get("authorization", "").startswith("Bearer "):
                return 200, {}, {"ok": False, "error": "not_authed"}
            response = self._api(call)
            call.response = response
            return 200, {}, response

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
        channel = str(body.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if call.method == "chat.postMessage":
            self._ts += 1
            ts = f"1700000000.{self._ts:06d}"
            self.messages[(channel, ts)] = dict(body)
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": body.get("text")}}
        if call.method == "chat.update":
            ts = str(body.get("ts", ""))
            if (channel, ts) not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[(channel, ts)] = dict(body)
            return {"ok": True, "channel": channel, "ts": ts, "text": body.get("text")}
        return {"ok": False, "error": "unknown_method"}


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
            if url.path.startswith("/webhook"):
                method = "webhook"
            elif url.path.startswith("/api/"):
                method = url.path.removeprefix("/api/")
            else:
                self.send_error(404)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, answer = slack._answer(Call(method, url.path, body, headers))
            data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(answer, str) else "application/json"
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
