"""/slack/events under hostile requests, over real HTTP (`cost-guard serve`'s server): the
signature is checked before anything reads the body, so the unsigned or forged get 401, the
signed but malformed 400 — never a 500, a traceback, or a change — each logged as one line."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

import pytest

from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from tests.fakeslack import FakeSlack
from tests.test_slack_app import (  # noqa: F401 - fixtures
    BOB,
    SIGNING_SECRET,
    buttons,
    click,
    click_payload,
    clicks,
    fake_slack,
    make,
    serve,
    signed,
    thread_replies,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("aws_env")

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def signed_bytes(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    import hashlib
    import hmac

    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {**FORM, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def payload(data: Any) -> bytes:
    return urlencode({"payload": json.dumps(data)}).encode()


@pytest.fixture
def url_and_button(
    sim: Simulator,
    clock: ManualClock,
    db_url: str,
    fake_slack: FakeSlack,  # noqa: F811
    serve: Any,  # noqa: F811
) -> tuple[str, dict[str, Any], Any]:
    guard = make(sim, clock, db_url, fake_slack)
    run_cycle(guard)
    return serve(guard), buttons(fake_slack)["snooze_4h"], guard


def unsigned_cases() -> dict[str, tuple[bytes, dict[str, str]]]:
    now = str(int(time.time()))
    return {
        "payload-not-json": (b"payload={not-json", FORM),
        "brace": (b"{", {"Content-Type": "application/json"}),
        "timestamp-not-a-number": (
            b"payload={}",
            {**FORM, "X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        ),
        "forged": (
            b"payload={}",
            {**FORM, "X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "0" * 64},
        ),
        "non-utf8-forged": (
            b"payload=\xff\xfe",
            {**FORM, "X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=1"},
        ),
        "stale": (b"payload={}", signed_bytes(b"payload={}", int(time.time()) - 600)),
    }


def malformed_cases(button: dict[str, Any]) -> dict[str, bytes]:
    good = click_payload(button, BOB, "1700000100.1")
    overflow = {**good["actions"][0], "block_id": "episode-99999999999999999999"}
    return {
        "payload-not-json": b"payload={not-json",
        "brace": b"{",
        "array": payload([1, 2]),
        "non-utf8": b"payload=\xff\xfe\xfd",
        "deep": b"payload=" + b"[" * 100_000 + b"]" * 100_000,
        "deep-object": ("payload=" + '{"a":' * 50_000 + "1" + "}" * 50_000).encode(),
        "empty-actions": payload({**good, "actions": []}),
        "no-user": payload({k: v for k, v in good.items() if k != "user"}),
        "user-not-an-object": payload({**good, "user": "U0BOB0001"}),
        "block-id-overflows": payload({**good, "actions": [overflow]}),
        "action-not-an-object": payload({**good, "actions": ["snooze_4h"]}),
        "too-many-fields": b"&".join(b"f%d=1" % i for i in range(100)),
        "huge-number": b'payload={"type": "block_actions", "n": ' + b"9" * 5000 + b"}",
        "value-not-a-string": payload({**good, "actions": [{**good["actions"][0], "value": {}}]}),
    }


def test_unsigned_and_forged_requests_get_401_and_nothing_is_parsed(
    url_and_button: tuple[str, dict[str, Any], Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, _button, guard = url_and_button
    for name, (body, headers) in unsigned_cases().items():
        caplog.clear()
        status, answer = send(url, body, headers)
        assert (name, status) == (name, 401)
        assert b"Traceback" not in answer
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and lines[0].exc_info is None, (name, lines)
        assert "401" in lines[0].getMessage() and SIGNING_SECRET not in caplog.text
    assert "Traceback" not in capfd.readouterr().err
    assert clicks(guard) == 0


def test_signed_but_malformed_requests_get_400_and_change_nothing(
    url_and_button: tuple[str, dict[str, Any], Any],
    fake_slack: FakeSlack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url, button, guard = url_and_button
    calls = len(fake_slack.calls)
    for name, body in malformed_cases(button).items():
        caplog.clear()
        status, answer = send(url, body, signed_bytes(body))
        assert (name, status) == (name, 400)
        assert b"Traceback" not in answer
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1 and lines[0].exc_info is None, (name, lines)
        message = lines[0].getMessage()
        assert "400" in message and len(message) < 200, message  # no body dump
    time.sleep(0.2)  # bolt would handle a click after answering: give it the time
    assert "Traceback" not in capfd.readouterr().err
    assert clicks(guard) == 0 and len(fake_slack.calls) == calls

    # The endpoint still works for Slack.
    click(url, button, BOB)
    wait_until(lambda: thread_replies(fake_slack), "the thread reply")
    assert clicks(guard) == 1


def test_a_malformed_click_over_socket_mode_is_one_line_and_changes_nothing(
    url_and_button: tuple[str, dict[str, Any], Any], caplog: pytest.LogCaptureFixture
) -> None:
    from slack_bolt.request import BoltRequest

    from guard.slack_app import build_app

    _url, button, guard = url_and_button
    app = build_app(guard, socket_mode=True)
    good = click_payload(button, BOB, "1700000100.1")
    overflow = {**good["actions"][0], "block_id": "episode-99999999999999999999"}
    caplog.clear()
    response = app.dispatch(BoltRequest(body={**good, "actions": [overflow]}, mode="socket_mode"))
    assert response.status == 200
    wait_until(
        lambda: any("click ignored" in r.getMessage() for r in caplog.records), "the log line"
    )
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None, lines
    assert clicks(guard) == 0
