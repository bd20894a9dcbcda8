"""Slack's buttons: `Snooze 4h`, `Keep 24h` and `Stop now`, received with slack-bolt.

Over HTTP (`cost-guard serve`, path /slack/events) bolt verifies every request with the
signing secret before anything runs: a wrong signature or a timestamp over five minutes old is
answered 401 and changes nothing. Over Socket Mode (`slack.socket_mode`, for deployments
without ingress) the app opens a websocket to Slack instead, with the app-level token.

A click is acknowledged at once (Slack wants an answer within 3 s), recorded with its unique
key before it takes effect (a retried or replayed click is a no-op), carried out by
`guard.interactions`, and answered in the message's thread through the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from guard import interactions
from guard.cycle import Guard

log = logging.getLogger(__name__)

SNOOZE, KEEP = timedelta(hours=4), timedelta(hours=24)
GROUP_CACHE_SECONDS = 300  # how long a user group's members are trusted for the allow-list
# How long a click's delivery waits for a running cycle before leaving it to that cycle.
DELIVER_WAIT_SECONDS = 5

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
    """The /slack/events endpoint as a WSGI application (mounted by `guard.server`)."""
    return SlackRequestHandler(build_app(guard))


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
        try:
            self._handle(body)
        except Exception:  # a click must never take the server down; the log says why
            log.exception("Slack button click failed")

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
