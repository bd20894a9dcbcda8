"""Slack's buttons end to end: a signed click over HTTP to /slack/events (slack-bolt), the
snooze or action it causes, and the answer in Slack (tests/fakeslack.py), on both databases."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.request import BoltRequest
from sqlalchemy import func, select

from guard.config import Secrets
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.reports import inventory_for
from guard.server import Server
from guard.sim import Simulator
from guard.slack_app import build_app
from guard.tables import SlackInteractionRow
from tests.factories import guard_for
from tests.fakeslack import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOB, ADMIN = "U0BOB0001", "U0ADMIN01"
NO_DIGEST = "0 9 1 1 *"
IDLE_STOP = {"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack(groups={"S0PLATFORM": [ADMIN]}).start()
    yield slack
    slack.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Guard], str]]:
    """`cost-guard serve`'s server for a guard, on 127.0.0.1 (a free port); returns the URL
    of its /slack/events."""
    servers: list[Server] = []

    def start(guard: Guard) -> str:
        servers.append(Server(guard, host="127.0.0.1", port=0).start())
        return f"{servers[-1].url}/slack/events"

    yield start
    for server in servers:
        server.stop()


def make(sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack, **extra: Any) -> Guard:
    sim.add_notebook("idle", tags={"owner": BOB}, in_service_since=clock.now() - timedelta(hours=5))
    secrets = Secrets.model_validate(
        {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    )
    settings: dict[str, Any] = {"mode": "enforce"} | extra
    slack_cfg = {"channel": "C123", "base_url": slack.api_url, "interactive": True}
    slack_cfg |= {"digest": NO_DIGEST, "stop_allowed": ["S0PLATFORM"]}
    return guard_for(clock, db_url, [IDLE_STOP], secrets, slack=slack_cfg, **settings)


def buttons(slack: FakeSlack) -> dict[str, dict[str, Any]]:
    """The buttons of the warning Slack received, by action id."""
    [post] = [c for c in slack.accepted("chat.postMessage") if "blocks" in c.body]
    blocks = post.body["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    [actions] = [b for b in blocks if b["type"] == "actions"]
    return {e["action_id"]: e | {"block_id": actions["block_id"]} for e in actions["elements"]}


def click_payload(button: dict[str, Any], user: str, action_ts: str) -> dict[str, Any]:
    """A block_actions payload shaped like the one Slack sends for a button click."""
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
        "api_app_id": "A0001",
        "token": "legacy-verification-token",
        "team": {"id": "T0001", "domain": "example"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C123"},
        "channel": {"id": "C123", "name": "ml-costs"},
        "trigger_id": "1.2.3",
        "response_url": "http://127.0.0.1:9/response",
        "actions": [
            {
                "type": "button",
                "action_id": button["action_id"],
                "block_id": button["block_id"],
                "value": button["value"],
                "action_ts": action_ts,
                "text": {"type": "plain_text", "text": button["text"]["text"]},
            }
        ],
    }


def signed(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:{body}".encode()
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": signature,
    }


def post(url: str, body: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def click(url: str, button: dict[str, Any], user: str, action_ts: str = "1700000100.1") -> str:
    body = urlencode({"payload": json.dumps(click_payload(button, user, action_ts))})
    assert post(url, body, signed(body, int(time.time()))) == 200
    return body


def clicks(guard: Guard) -> int:
    with guard.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(SlackInteractionRow)) or 0)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Bolt answers Slack first and handles the click after: wait for its effect."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def settled(guard: Guard) -> Guard:
    """Wait until the click's handler has let go of the cycle lock (it delivers under it)."""
    with guard.store.cycle_lock(timeout=10) as held:
        assert held
    return guard


def thread_replies(slack: FakeSlack) -> list[str]:
    return [
        str(c.body["text"]) for c in slack.accepted("chat.postMessage") if "thread_ts" in c.body
    ]


def test_a_signed_snooze_click_snoozes_and_a_replay_changes_nothing(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,
    serve: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="guard.slack_app")
    guard = make(sim, clock, db_url, fake_slack)
    run_cycle(guard)
    url, snooze = serve(guard), buttons(fake_slack)["snooze_4h"]

    body = click(url, snooze, BOB)
    wait_until(lambda: thread_replies(fake_slack), "the thread reply")
    [update] = fake_slack.accepted("chat.update")
    assert f"Snoozed for 4 h by <@{BOB}>" in str(update.body)
    assert "Stop now" not in str(update.body)  # no buttons once snoozed
    assert thread_replies(fake_slack) == [
        f"Snoozed for 4 h by <@{BOB}>, until Mon 13:00 UTC: no warning and no action until then."
    ]
    [item] = inventory_for(guard.store, guard.cfg, clock.now(), False)
    assert item["snoozed_until"] == (clock.now() + timedelta(hours=4)).isoformat()

    # Slack retries, or someone replays the captured request: nothing happens twice.
    calls = len(fake_slack.calls)
    assert post(url, body, signed(body, int(time.time()))) == 200
    wait_until(  # the replay reached the handler, which recognised it
        lambda: any("handled before: ignored" in r.getMessage() for r in caplog.records),
        "the replay to be handled",
    )
    assert clicks(guard) == 1 and len(fake_slack.calls) == calls

    clock.advance(timedelta(minutes=45))  # past the 30-min grace: the snooze holds
    report = run_cycle(settled(guard))
    assert report["actions"] == [] and report["warned"] == []
    assert sim.notebook_status("idle") == "InService"


def test_bad_or_stale_signatures_are_rejected_and_change_nothing(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack, serve: Any
) -> None:
    guard = make(sim, clock, db_url, fake_slack)
    run_cycle(guard)
    url, snooze = serve(guard), buttons(fake_slack)["snooze_4h"]
    body = urlencode({"payload": json.dumps(click_payload(snooze, BOB, "1700000100.1"))})
    calls = len(fake_slack.calls)

    assert post(url, body, signed(body, int(time.time()), secret="not-the-secret")) == 401
    six_minutes_ago = int(time.time()) - 6 * 60
    assert post(url, body, signed(body, six_minutes_ago)) == 401
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert post(url, body, unsigned) == 401
    time.sleep(0.3)
    assert clicks(guard) == 0 and guard.store.snoozes(clock.now()) == {}
    assert len(fake_slack.calls) == calls


def test_stop_now_needs_the_allow_list_and_respects_dry_run(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack, serve: Any
) -> None:
    guard = make(sim, clock, db_url, fake_slack, mode="dry-run")
    run_cycle(guard)
    url, stop = serve(guard), buttons(fake_slack)["stop_now"]

    click(url, stop, BOB, action_ts="1700000100.1")  # not on slack.stop_allowed
    wait_until(lambda: thread_replies(fake_slack), "the refusal")
    assert thread_replies(fake_slack) == [
        f"<@{BOB}> clicked Stop now; not done: only the people on slack.stop_allowed may stop "
        "from Slack."
    ]
    assert [a.outcome for a in guard.store.audit(clock.now())] == ["warned"]

    click(url, stop, ADMIN, action_ts="1700000200.2")  # in the S0PLATFORM user group
    wait_until(lambda: len(thread_replies(fake_slack)) == 2, "the dry-run answer")
    assert [a.outcome for a in guard.store.audit(clock.now())] == ["warned", "dry-run"]
    [update] = fake_slack.accepted("chat.update")
    assert f"Dry-run: would have stopped now (<@{ADMIN}> clicked Stop now" in str(update.body)
    assert sim.notebook_status("idle") == "InService"


def test_stop_now_in_enforce_mode_stops_once(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack, serve: Any
) -> None:
    guard = make(sim, clock, db_url, fake_slack)
    run_cycle(guard)
    url, stop = serve(guard), buttons(fake_slack)["stop_now"]

    click(url, stop, ADMIN, action_ts="1700000100.1")
    wait_until(lambda: fake_slack.accepted("chat.update"), "the update")
    assert sim.notebook_status("idle") in ("Stopping", "Stopped")
    [update] = fake_slack.accepted("chat.update")
    assert f"by <@{ADMIN}> (Stop now)" in str(update.body)
    [_warn, done] = guard.store.audit(clock.now())
    assert (done.action, done.outcome) == ("stop", "done")
    with guard.store.session() as s:
        [row] = s.scalars(select(SlackInteractionRow))
        assert (row.user_id, row.action, row.outcome) == (ADMIN, "stop_now", "done")

    # A second click (another person, a stale phone screen): already acted, nothing more.
    click(url, stop, ADMIN, action_ts="1700000300.3")
    wait_until(lambda: len(thread_replies(fake_slack)) == 2, "the second answer")
    assert "already acted" in thread_replies(fake_slack)[-1]
    assert len(guard.store.audit(clock.now())) == 2

    clock.advance(timedelta(minutes=45))
    assert run_cycle(settled(guard))["actions"] == []  # the cycle does not act a second time


def test_socket_mode_uses_the_same_handlers_without_a_signing_secret(
    sim: Simulator, clock: ManualClock, db_url: str, fake_slack: FakeSlack
) -> None:
    guard = make(sim, clock, db_url, fake_slack)
    run_cycle(guard)
    keep = buttons(fake_slack)["keep_24h"]
    app = build_app(guard, socket_mode=True)
    # What the Socket Mode client hands bolt for each websocket envelope.
    response = app.dispatch(
        BoltRequest(body=click_payload(keep, BOB, "1700000100.1"), mode="socket_mode")
    )
    assert response.status == 200
    until = wait_until(lambda: guard.store.snoozes(clock.now()), "the snooze")
    assert list(until.values()) == [clock.now() + timedelta(hours=24)]
    wait_until(lambda: thread_replies(fake_slack), "the thread reply")
    assert thread_replies(fake_slack)[0].startswith(f"Kept for 1 d by <@{BOB}>")


# Each Slack Web API method the guard calls, and the bot scope Slack requires for it.
SCOPES = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "users_lookupByEmail": "users:read.email",
    "usergroups_users_list": "usergroups:read",
    # finding a post whose answer was lost (a crash, a timeout) before posting it again
    "conversations_history": "channels:history",
    "conversations_open": "im:write",
}
# conversations.history needs the history scope of each kind of conversation posted to.
HISTORY_SCOPES = {"channels:history", "groups:history", "im:history"}


def test_the_app_manifest_grants_every_slack_method_the_code_calls() -> None:
    import re
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    texts = (p.read_text() for p in (root / "guard").rglob("*.py"))
    source = "\n".join(t for t in texts if "from slack_sdk import WebClient" in t)
    # called, or handed to a helper that calls it (`self._call(..., client.chat_update, ...)`)
    called = set(re.findall(r"client\.([a-z]+_[A-Za-z_]+)\b", source))
    assert called and called <= set(SCOPES), f"add the scope of {called - set(SCOPES)}"
    manifest = yaml.safe_load((root / "deploy/slack/app-manifest.yaml").read_text())
    granted = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {SCOPES[m] for m in called} <= granted
    assert "users:read" in granted  # Slack requires it beside users:read.email
    assert granted >= HISTORY_SCOPES
    settings = manifest["settings"]["interactivity"]
    assert settings["is_enabled"] and settings["request_url"].endswith("/slack/events")
