"""Slack's buttons: `Snooze 4h`, `Keep 24h` and `Stop now`, received with slack-bolt.

Over HTTP (`cost-guard serve`, path /slack/events) every request's signature is verified
(slack_sdk's SignatureVerifier: HMAC with the signing secret, compared in constant time, the
timestamp within five minutes) before anything reads its body: a missing, wrong or stale
signature is answered 401, a signed request that is not a well-formed button click 400; each
is logged as one line (no body, no traceback) and changes nothing. Over Socket Mode
(`slack.socket_mode`, for deployments without ingress) the app opens a websocket to Slack
instead, with the app-level token.

A click is acknowledged at once (Slack wants an answer within 3 s), recorded with its unique
key before it takes effect (a retried or replayed click is a no-op), carried out by
`guard.interactions`, and answered in the message's thread through the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import Ack, App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from guard import interactions
from guard.cycle import Guard

log = logging.getLogger(__name__)

SNOOZE, KEEP = timedelta(hours=4), timedelta(hours=24)
GROUP_CACHE_SECONDS = 300  # how long a user group's members are trusted for the allow-list
# How long a click's delivery waits for a running cycle before leaving it to that cycle.
DELIVER_WAIT_SECONDS = 5

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# What a request to /slack/events may be. Slack's button payloads are a few KB.
MAX_BODY = 1 << 20
MAX_DEPTH = 32  # nesting of the payload's JSON (Slack's is under 10 deep)
MAX_EPISODE_ID = 2**31 - 1  # the episodes.id column
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_USER = re.compile(r"[UW][A-Z0-9]{2,31}")
_ACTION_TS = re.compile(r"[0-9]{1,20}(\.[0-9]{1,10})?")
_EPISODE_BLOCK = re.compile(r"episode-([0-9]{1,12})")
_REASONS = {400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}
_REASONS |= {411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error"}


def build_app(guard: Guard, *, socket_mode: bool = False) -> App:
    """The bolt app with its three button handlers (and a no-op for the console link)."""
    secrets = guard.cfg.secrets
    if secrets.slack_bot_token is None:
        raise ValueError("Slack buttons need SLACK_BOT_TOKEN (the bot that posts the messages)")
    if not socket_mode and secrets.slack_signing_secret is None:
        raise ValueError(
            "/slack/events needs SLACK_SIGNING_SECRET (the app's Basic Information page) to "
            "verify that requests come from Slack"
        )
    client = WebClient(
        token=secrets.slack_bot_token.get_secret_value(),
        base_url=guard.cfg.slack.base_url,
        timeout=guard.cfg.slack.timeout_seconds,
    )
    app = App(
        client=client,
        signing_secret=(
            secrets.slack_signing_secret.get_secret_value()
            if secrets.slack_signing_secret
            else None
        ),
        # No auth.test at start: the app must come up while Slack is unreachable.
        token_verification_enabled=False,
        request_verification_enabled=not socket_mode,
        logger=logging.getLogger("guard.slack_app.bolt"),
    )
    clicks = _Clicks(guard, client)
    for action_id in ("snooze_4h", "keep_24h", "stop_now"):
        app.action(action_id)(clicks.handle)

    @app.action("open_console")
    def _console(ack: Ack) -> None:  # a link button still reports its click
        ack()

    return app


def wsgi_app(guard: Guard) -> WsgiApp:
    """The /slack/events endpoint as a WSGI application (mounted by `guard.server`): the
    signature and the payload's shape checked first, then slack-bolt."""
    secret = guard.cfg.secrets.slack_signing_secret
    bolt = SlackRequestHandler(build_app(guard))  # raises without a signing secret
    assert secret is not None
    return _Checked(bolt, SignatureVerifier(secret.get_secret_value()))


class _Rejected(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


class _Checked:
    """slack-bolt parses a request's body before it checks the signature; this checks first,
    so nothing unauthenticated is parsed, and nothing malformed reaches bolt."""

    def __init__(self, bolt: WsgiApp, verifier: SignatureVerifier) -> None:
        self.bolt, self.verifier = bolt, verifier

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            body = self._check(environ)
        except _Rejected as exc:
            return self._reject(environ, start_response, exc.status, exc.why)
        except Exception as exc:  # a bug here must still not answer with a traceback
            why = f"unexpected {type(exc).__name__}"
            return self._reject(environ, start_response, 500, why)
        environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        return self.bolt(environ, start_response)

    def _check(self, environ: dict[str, Any]) -> bytes:
        """The body of a signed, well-formed request; raises `_Rejected` otherwise."""
        if environ.get("REQUEST_METHOD") != "POST":
            raise _Rejected(405, "not a POST")
        length = str(environ.get("CONTENT_LENGTH") or "")
        if not length.isdigit():
            raise _Rejected(411, "no Content-Length")
        if int(length) > MAX_BODY:
            raise _Rejected(413, f"body of {length} bytes")
        body: bytes = environ["wsgi.input"].read(int(length))
        timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "")
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE") or "")
        if not signature or not timestamp:
            raise _Rejected(401, "unsigned")
        if not _TIMESTAMP.fullmatch(timestamp) or not self._signed(body, timestamp, signature):
            raise _Rejected(401, "bad or stale signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Rejected(400, "body not UTF-8") from None
        try:
            fields = parse_qs(text, keep_blank_values=True, max_num_fields=32)
        except ValueError:
            raise _Rejected(400, "too many form fields") from None
        if "ssl_check" in fields and "payload" not in fields:
            return body  # Slack checking the certificate: bolt answers it
        payload = _json(fields.get("payload", [""])[0])
        if (why := click_problem(payload)) is not None:
            raise _Rejected(400, why)
        return body

    def _signed(self, body: bytes, timestamp: str, signature: str) -> bool:
        try:
            return self.verifier.is_valid(body.decode("utf-8"), timestamp, signature)
        except UnicodeDecodeError:  # the verifier signs text; a byte body is signed as bytes
            if abs(time.time() - int(timestamp)) > 5 * 60:
                return False
            secret = self.verifier.signing_secret.encode()
            base = b"v0:" + timestamp.encode() + b":" + body
            expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature)

    @staticmethod
    def _reject(
        environ: dict[str, Any], start_response: Callable[..., Any], status: int, why: str
    ) -> list[bytes]:
        peer = environ.get("REMOTE_ADDR", "?")
        log.warning("/slack/events from %s refused: %d %s", peer, status, why)
        data = f"{_REASONS[status]}\n".encode()
        start_response(
            f"{status} {_REASONS[status]}",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
        )
        return [data]


def _json(text: str) -> Any:
    """A payload's JSON, no deeper than MAX_DEPTH; raises `_Rejected` otherwise."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:  # the nesting, counted before the parser recurses into it
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise _Rejected(400, f"payload nested over {MAX_DEPTH} deep")
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _Rejected(400, "payload is not JSON") from None


def click_problem(body: Any) -> str | None:
    """What makes `body` not a button click this app can handle, or None."""
    if not isinstance(body, dict):
        return "payload is not a JSON object"
    if body.get("type") != "block_actions":
        return f"payload type {str(body.get('type'))[:40]!r} is not block_actions"
    user = body.get("user")
    if not isinstance(user, dict) or not _USER.fullmatch(str(user.get("id", ""))):
        return "no valid user id"
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return "no action"
    action = actions[0]
    if not isinstance(action.get("action_id"), str) or len(action["action_id"]) > 64:
        return "no valid action_id"
    if not isinstance(action.get("value", ""), str) or len(action.get("value", "")) > 512:
        return "value is not a string of at most 512 characters"
    if not _ACTION_TS.fullmatch(str(action.get("action_ts", "0"))):
        return "action_ts is not a Slack timestamp"
    block = action.get("block_id", "")
    if not isinstance(block, str) or len(block) > 64:
        return "block_id is not a string of at most 64 characters"
    if block.startswith("episode-"):
        match = _EPISODE_BLOCK.fullmatch(block)
        if match is None or int(match.group(1)) > MAX_EPISODE_ID:
            return "block_id names no possible episode"
    return None


def start_socket_mode(guard: Guard) -> SocketModeHandler:
    """Connect to Slack over Socket Mode in the background; `.close()` disconnects."""
    token = guard.cfg.secrets.slack_app_token
    if token is None:
        raise ValueError("slack.socket_mode needs SLACK_APP_TOKEN (an xapp- app-level token)")
    handler = SocketModeHandler(build_app(guard, socket_mode=True), token.get_secret_value())
    handler.connect()  # type: ignore[no-untyped-call]
    log.info("Slack Socket Mode connected: button clicks arrive over the websocket")
    return handler


class _Clicks:
    def __init__(self, guard: Guard, client: WebClient) -> None:
        self.guard, self.client = guard, client
        self._groups: dict[str, tuple[float, set[str]]] = {}
        self._lock = threading.Lock()

    def handle(self, ack: Ack, body: dict[str, Any]) -> None:
        ack()  # first: Slack shows an error to the person after 3 s without it
        if (why := click_problem(body)) is not None:  # Socket Mode: not checked before
            log.warning("Slack button click ignored: %s", why)
            return
        try:
            self._handle(body)
        except Exception as exc:  # a click must never take the server down; the log says why
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.error("Slack button click failed: %s: %s", type(exc).__name__, first)

    def _handle(self, body: dict[str, Any]) -> None:
        guard = self.guard
        action, user = body["actions"][0], body["user"]["id"]
        action_id, arn = action["action_id"], str(action.get("value", ""))
        block = str(action.get("block_id", ""))
        number = block.removeprefix("episode-")
        episode_id = int(number) if block.startswith("episode-") and number.isdigit() else None
        res = guard.store.resource(arn)
        if res is None:
            log.warning("Slack %s by %s for an unknown resource %s: ignored", action_id, user, arn)
            return
        click = guard.store.claim_interaction(
            f"{action.get('action_ts')}:{user}:{action_id}:{block}",
            user_id=user,
            action=action_id,
            arn=arn,
            episode_id=episode_id,
            now=guard.clock.now(),
        )
        if click is None:
            log.info("Slack %s by %s on %s was handled before: ignored", action_id, user, arn)
            return
        by = f"<@{user}>"
        if action_id == "stop_now":
            if episode_id is None:
                answer = interactions.Answer("refused", "the message names no warning")
            else:
                allowed = self._may_stop(user)
                answer = interactions.stop_now(
                    guard, res, episode_id, by=by, click=click, allowed=allowed
                )
        else:
            kept = action_id == "keep_24h"
            answer = interactions.snooze(
                guard, res, KEEP if kept else SNOOZE, by=by, kept=kept, click=click,
                reason=f"Slack: {'Keep 24h' if kept else 'Snooze 4h'}",
            )  # fmt: skip
        guard.store.finish_interaction(click, answer.outcome, answer.text)
        log.info("Slack %s by %s on %s/%s: %s", action_id, user, res.kind, res.name, answer.text)
        interactions.deliver_now(guard, wait=DELIVER_WAIT_SECONDS)

    def _may_stop(self, user: str) -> bool:
        """Is the user on `slack.stop_allowed`, by id or through one of its user groups?"""
        allowed = self.guard.cfg.slack.stop_allowed
        if user in allowed:
            return True
        return any(user in self._members(group) for group in allowed if group.startswith("S"))

    def _members(self, group: str) -> set[str]:
        with self._lock:
            cached = self._groups.get(group)
            if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            members = set(self.client.usergroups_users_list(usergroup=group)["users"])
        except SlackApiError as exc:
            # Unknown group or a missing usergroups:read scope: nobody gets in through it.
            log.warning(
                "Slack usergroups.users.list %s failed: %s", group, exc.response.get("error")
            )
            return set()
        with self._lock:
            self._groups[group] = (time.monotonic(), members)
        return members
