"""Slack notifications through a real HTTP boundary (tests/fakeslack.py), on both databases."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from guard.config import Config, Secrets
from guard.model import ManualClock, Resource
from guard.notify import Notice, Notifier
from guard.store import OutboxRow, Store
from tests.conftest import START
from tests.factories import notebook as make_notebook
from tests.fakeslack import FakeSlack

TOKEN = "xoxb-000-111-s3cr3tt0k3n"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/nb-gpu"
ADA = "U0ADA1234"
RULES = [
    {
        "id": "idle-notebooks",
        "kind": "notebook",
        "idle_for": "2h",
        "action": "stop",
        "grace": "30m",
    },
    {"id": "watch", "kind": "notebook", "running_for": "1h", "channel": "C-WATCH"},
]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    slack = FakeSlack(users={"ada@example.com": ADA}).start()
    yield slack
    slack.stop()


def make_cfg(
    slack: FakeSlack | None,
    *,
    token: str | None = TOKEN,
    webhook: str | None = None,
    mode: str = "enforce",
) -> Config:
    # model_validate, not the constructors: the test must not pick up this machine's env.
    secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": token, "SLACK_WEBHOOK_URL": webhook})
    base_url = slack.api_url if slack else "http://127.0.0.1:9/"
    return Config.model_validate(
        {
            "mode": mode,
            "rules": RULES,
            "slack": {"channel": "C123", "base_url": base_url, "interactive": True},
            "secrets": secrets,
        }
    )


def notebook(name: str = "nb-gpu", owner: str | None = ADA, price: str | None = "1.41") -> Resource:
    since = START - timedelta(hours=3, minutes=10)
    return make_notebook(
        START,
        name,
        instance_type="ml.g5.xlarge",
        usd_per_hour=Decimal(price) if price else None,
        price_source="bundled" if price else "unknown",
        created_at=since,
        running_since=since,
        last_activity=since,
        tags={"owner": owner} if owner else {},
    )


def notice(
    store: Store, res: Resource, state: str = "warned", episode_id: int | None = None, **kw: Any
) -> Notice:
    rule_id = kw.pop("rule_id", "idle-notebooks")
    if episode_id is None:
        episode_id = store.start_episode(res.arn, rule_id, START, START + timedelta(minutes=30))
    fields: dict[str, Any] = {
        "action": "stop",
        "reason": "no Jupyter activity for 3 h 10 min",
        "deadline": START + timedelta(minutes=30),
        "mode": "enforce",
    }
    fields.update(kw)
    return Notice(res, rule_id, episode_id, state, **fields)


def texts(node: Any) -> str:
    """Every text and URL in a Block Kit structure, one per line."""
    if isinstance(node, list):
        return "\n".join(texts(item) for item in node)
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("text", "url") and isinstance(v, str)]
        nested = [texts(v) for v in node.values() if isinstance(v, list | dict)]
        return "\n".join(found + nested)
    return ""


def outbox(store: Store) -> list[OutboxRow]:
    with store.session() as s:
        return list(s.scalars(select(OutboxRow).order_by(OutboxRow.id)))


# --- bot token: one message per episode, updated in place ---------------------------------


def test_warning_is_posted_with_fields_and_buttons(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    res = notebook()
    n = notice(store, res)
    notifier.notify(n)

    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}

    [post] = fake_slack.accepted("chat.postMessage")
    assert post.body["channel"] == "C123"
    blocks = post.body["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == ":warning: Notebook instance nb-gpu"
    fields = [f["text"] for f in blocks[1]["fields"]]
    accrued = res.accrued_usd(START)
    assert fields == [
        "*Account / Region*\n123456789012 / us-east-1",
        "*Instance*\nml.g5.xlarge \N{MULTIPLICATION SIGN} 1",
        f"*Cost*\n$1.41/h, ${accrued} so far",
        "*Running since*\nMon 05:50 UTC",
        f"*Owner*\n<@{ADA}>",
        "*Why*\nidle-notebooks: no Jupyter activity for 3 h 10 min",
    ]
    assert "Will stop at 09:30 UTC (in 30 min) unless it becomes active or is snoozed" in texts(
        blocks
    )
    [actions] = [b for b in blocks if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert {k: buttons[k]["value"] for k in ("snooze_4h", "keep_24h", "stop_now")} == {
        "snooze_4h": ARN,
        "keep_24h": ARN,
        "stop_now": ARN,
    }
    console = (
        "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/notebook-instances/nb-gpu"
    )
    assert buttons["open_console"]["url"] == console
    assert console in texts(blocks)
    assert post.body["text"] == (
        "Notebook instance nb-gpu (ml.g5.xlarge, $1.41/h): no Jupyter activity for 3 h 10 min. "
        "Will stop at 09:30 UTC unless used or snoozed."
    )
    assert store.episode_message(n.episode_id) == ("C123", post.response["ts"])


def test_acted_updates_the_same_message_and_replies_in_its_thread(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    res = notebook()
    warned = notice(store, res)
    notifier.notify(warned)
    notifier.deliver()
    [post] = fake_slack.accepted("chat.postMessage")
    ts = post.response["ts"]

    clock.advance(timedelta(minutes=30))
    notifier.notify(
        notice(store, res, "acted", warned.episode_id, detail="StopNotebookInstance accepted")
    )
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}

    [update] = fake_slack.accepted("chat.update")
    assert (update.body["channel"], update.body["ts"]) == ("C123", ts)
    assert update.body["blocks"][0]["text"]["text"] == ":octagonal_sign: Notebook instance nb-gpu"
    assert "Stopped at 09:30 UTC by rule idle-notebooks" in texts(update.body["blocks"])
    assert not [b for b in update.body["blocks"] if b["type"] == "actions"]  # episode is over
    reply = fake_slack.accepted("chat.postMessage")[1]
    assert reply.body["thread_ts"] == ts
    assert reply.body["text"] == (
        "Stopped at 09:30 UTC by rule idle-notebooks. (StopNotebookInstance accepted)"
    )


def test_the_same_notice_twice_is_sent_once(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    n = notice(store, notebook())
    notifier.notify(n)
    notifier.notify(n)  # the same cycle re-run
    notifier.deliver()
    notifier.notify(n)
    notifier.deliver()

    assert len(fake_slack.requests("chat.postMessage")) == 1
    assert len(outbox(store)) == 1


def test_a_server_error_is_retried_after_the_backoff_and_arrives_once(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    notifier.notify(notice(store, notebook()))
    fake_slack.fail_next(1, status=500)

    assert notifier.deliver() == {"sent": 0, "failed": 1, "pending": 1}
    [row] = outbox(store)
    assert row.last_error == "chat.postMessage: HTTP 500 internal_error"
    assert row.next_attempt_at == START + timedelta(seconds=30)
    assert notifier.deliver() == {"sent": 0, "failed": 0, "pending": 1}  # not due yet

    clock.advance(timedelta(seconds=31))
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}
    assert notifier.deliver() == {"sent": 0, "failed": 0, "pending": 0}
    assert len(fake_slack.requests("chat.postMessage")) == 2
    assert len(fake_slack.accepted("chat.postMessage")) == 1


def test_backoff_doubles_and_is_capped(
    sqlite_store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook()))
    fake_slack.fail_next(8, status=502)
    waits = []
    for _ in range(8):
        assert notifier.deliver()["failed"] == 1
        [row] = outbox(sqlite_store)
        waits.append(int((row.next_attempt_at - clock.now()).total_seconds()))
        clock.set(row.next_attempt_at)
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]
    assert notifier.deliver()["sent"] == 1


def test_rate_limit_retry_after_is_honoured(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    notifier.notify(notice(store, notebook("nb-a")))
    notifier.notify(notice(store, notebook("nb-b")))
    fake_slack.fail_next(1, status=429, retry_after=1)

    # Rate limited: the second message is not even tried in this round.
    assert notifier.deliver() == {"sent": 0, "failed": 1, "pending": 2}
    assert len(fake_slack.requests("chat.postMessage")) == 1
    first = outbox(store)[0]
    assert first.next_attempt_at == START + timedelta(seconds=1)

    clock.advance(timedelta(seconds=1))
    assert notifier.deliver() == {"sent": 2, "failed": 0, "pending": 0}
    names = [c.body["text"].split(" (")[0] for c in fake_slack.accepted("chat.postMessage")]
    assert names == ["Notebook instance nb-a", "Notebook instance nb-b"]


def test_an_update_waits_for_its_post(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    res = notebook()
    warned = notice(store, res)
    notifier.notify(warned)
    notifier.notify(notice(store, res, "resolved", warned.episode_id, detail="became active"))
    fake_slack.fail_next(1)

    assert notifier.deliver() == {"sent": 0, "failed": 1, "pending": 2}
    clock.advance(timedelta(minutes=1))
    assert notifier.deliver() == {"sent": 2, "failed": 0, "pending": 0}

    [post, reply] = fake_slack.accepted("chat.postMessage")
    [update] = fake_slack.accepted("chat.update")
    assert fake_slack.calls.index(post) < fake_slack.calls.index(update)
    assert update.body["ts"] == post.response["ts"] == reply.body["thread_ts"]
    assert reply.body["text"] == "Resolved: became active."


def test_a_restart_delivers_what_was_queued_once(
    store: Store, db_url: str, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    cfg = make_cfg(fake_slack)
    Notifier(cfg, store, clock).notify(notice(store, notebook()))
    store.close()

    restarted = Store(db_url)
    try:
        assert Notifier(cfg, restarted, clock).deliver()["sent"] == 1
        assert Notifier(cfg, restarted, clock).deliver()["sent"] == 0
    finally:
        restarted.close()
    assert len(fake_slack.requests("chat.postMessage")) == 1


def test_a_crash_after_slack_accepted_does_not_post_again(
    store: Store, db_url: str, clock: ManualClock, fake_slack: FakeSlack, monkeypatch: Any
) -> None:
    cfg = make_cfg(fake_slack)
    notifier = Notifier(cfg, store, clock)
    notifier.notify(notice(store, notebook()))

    def crash(*args: Any) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(store, "message_sent", crash)
    with pytest.raises(SystemExit):
        notifier.deliver()

    restarted = Store(db_url)
    try:
        assert Notifier(cfg, restarted, clock).deliver() == {"sent": 1, "failed": 0, "pending": 0}
    finally:
        restarted.close()
    assert len(fake_slack.requests("chat.postMessage")) == 1


def test_an_email_owner_is_looked_up_once_and_mentioned(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), store, clock)
    notifier.notify(notice(store, notebook("nb-a", owner="ada@example.com")))
    notifier.notify(notice(store, notebook("nb-b", owner="ada@example.com")))
    notifier.notify(notice(store, notebook("nb-c", owner="bob@example.com")))
    notifier.notify(notice(store, notebook("nb-d", owner=None)))
    notifier.deliver()

    lookups = fake_slack.requests("users.lookupByEmail")
    assert [c.body["email"] for c in lookups] == ["ada@example.com", "bob@example.com"]
    posts = fake_slack.accepted("chat.postMessage")
    owners = [c.body["blocks"][1]["fields"][4]["text"] for c in posts]
    assert owners == [
        f"*Owner*\n<@{ADA}>",
        f"*Owner*\n<@{ADA}>",
        "*Owner*\nbob@example.com",
        "*Owner*\nunknown",
    ]
    # The answers are kept in the database: a restarted guard (a new Notifier) asks nothing,
    # not even for the email Slack did not know.
    again = Notifier(make_cfg(fake_slack), store, clock)
    again.notify(notice(store, notebook("nb-e", owner="ADA@example.com")))
    again.notify(notice(store, notebook("nb-f", owner="bob@example.com")))
    again.deliver()
    assert len(fake_slack.requests("users.lookupByEmail")) == 2
    clock.advance(timedelta(days=8))  # an unknown email is asked again after a week
    again.notify(notice(store, notebook("nb-g", owner="bob@example.com")))
    assert len(fake_slack.requests("users.lookupByEmail")) == 2  # by deliver, not notify
    again.deliver()
    assert len(fake_slack.requests("users.lookupByEmail")) == 3


def test_team_channel_and_a_direct_message_to_the_owner(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    cfg = make_cfg(fake_slack).with_overrides(
        slack={
            "channel": "C123",
            "base_url": fake_slack.api_url,
            "interactive": True,
            "team_channels": {"vision": "C-VISION"},
            "dm_owners": True,
        }
    )
    notifier = Notifier(cfg, store, clock)
    vision = replace(notebook("nb-v"), tags={"owner": "ada@example.com", "team": "vision"})
    warned = notice(store, vision)
    notifier.notify(warned)
    notifier.notify(notice(store, notebook("nb-x", owner=None)))
    notifier.deliver()
    channels = [c.body["channel"] for c in fake_slack.accepted("chat.postMessage")]
    assert channels == ["C-VISION", ADA, "C123"]  # the team's channel, Ada's DM; no owner: C123

    # The story goes on in the channel's message; the owner gets the outcome in the DM too.
    notifier.notify(notice(store, vision, "acted", episode_id=warned.episode_id))
    notifier.deliver()
    [update] = fake_slack.accepted("chat.update")
    assert update.body["channel"] == "C-VISION"
    assert [c.body["channel"] for c in fake_slack.accepted("chat.postMessage")][3:] == [
        "C-VISION",  # the thread reply
        ADA,
    ]


def test_rule_channel_dry_run_and_unknown_price(
    sqlite_store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack, mode="dry-run"), sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook("nb-a", price=None), mode="dry-run"))
    notifier.notify(
        notice(sqlite_store, notebook("nb-b"), rule_id="watch", action="notify", deadline=None)
    )
    notifier.deliver()

    dry, watch = fake_slack.accepted("chat.postMessage")
    assert dry.body["channel"] == "C123"
    assert "*Cost*\nunknown" in texts(dry.body["blocks"])
    assert "$0" not in texts(dry.body["blocks"])
    assert "Dry-run: would stop at 09:30 UTC (in 30 min), nothing will be changed" in texts(
        dry.body["blocks"]
    )
    assert "(ml.g5.xlarge, price unknown)" in dry.body["text"]
    assert watch.body["channel"] == "C-WATCH"
    assert "Notification only" in texts(watch.body["blocks"])


def test_slack_unreachable_is_retried_without_raising(
    sqlite_store: Store, clock: ManualClock, fake_slack: FakeSlack, caplog: Any
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(fake_slack).with_overrides(
        slack={"channel": "C123", "base_url": f"http://127.0.0.1:{port}/api/"}
    )
    notifier = Notifier(cfg, sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook("nb-a")))
    notifier.notify(notice(sqlite_store, notebook("nb-b")))

    assert notifier.deliver() == {"sent": 0, "failed": 1, "pending": 2}
    assert "Connection refused" in (outbox(sqlite_store)[0].last_error or "")

    clock.advance(timedelta(hours=1, minutes=1))
    with caplog.at_level(logging.ERROR, logger="guard.notify"):
        notifier.deliver()
    assert "2 Slack message(s) undelivered for over 1:00:00" in caplog.text


# --- webhook and terminal transports ---------------------------------------------------------


def test_webhook_sends_every_step_as_a_new_message_without_buttons(
    store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    cfg = make_cfg(fake_slack, token=None, webhook=fake_slack.webhook_url)
    notifier = Notifier(cfg, store, clock)
    res = notebook(owner="ada@example.com")
    warned = notice(store, res)
    notifier.notify(warned)
    notifier.notify(notice(store, res, "acted", warned.episode_id))
    assert notifier.deliver() == {"sent": 2, "failed": 0, "pending": 0}

    posts = fake_slack.accepted("webhook")
    assert len(posts) == 2
    assert [p.body["blocks"][0]["text"]["text"] for p in posts] == [
        ":warning: Notebook instance nb-gpu",
        ":octagonal_sign: Notebook instance nb-gpu",
    ]
    assert all(b["type"] != "actions" for p in posts for b in p.body["blocks"])
    assert "*Owner*\nada@example.com" in texts(posts[0].body["blocks"])  # no token, no lookup
    assert [c.method for c in fake_slack.calls] == ["webhook", "webhook"]


def test_webhook_failure_is_retried(
    sqlite_store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    cfg = make_cfg(fake_slack, token=None, webhook=fake_slack.webhook_url)
    notifier = Notifier(cfg, sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook()))
    fake_slack.fail_next(1, status=429, retry_after=5)
    assert notifier.deliver()["failed"] == 1
    assert outbox(sqlite_store)[0].next_attempt_at == START + timedelta(seconds=5)
    clock.advance(timedelta(seconds=5))
    assert notifier.deliver()["sent"] == 1
    assert len(fake_slack.accepted("webhook")) == 1


def test_without_slack_messages_go_to_echo_or_the_log(
    sqlite_store: Store, clock: ManualClock, caplog: Any
) -> None:
    lines: list[str] = []
    notifier = Notifier(make_cfg(None, token=None), sqlite_store, clock, echo=lines.append)
    assert notifier.transport == "terminal"
    notifier.notify(notice(sqlite_store, notebook()))
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}
    [text] = lines
    assert text.startswith("[warned] Notebook instance nb-gpu")
    assert "Owner: <@U0ADA1234>" in text
    assert "What happens: Will stop at 09:30 UTC (in 30 min)" in text

    quiet = Notifier(make_cfg(None, token=None), sqlite_store, clock)
    quiet.notify(notice(sqlite_store, notebook("nb-other")))
    with caplog.at_level(logging.INFO, logger="guard.notify"):
        assert quiet.deliver()["sent"] == 1
    assert "[warned] Notebook instance nb-other" in caplog.text


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["bot", "webhook"])
def test_secrets_never_reach_the_outbox_or_the_log(
    store: Store, clock: ManualClock, fake_slack: FakeSlack, caplog: Any, transport: str
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = fake_slack.webhook_url
    cfg = make_cfg(fake_slack, token=TOKEN if transport == "bot" else None, webhook=webhook)
    notifier = Notifier(cfg, store, clock)
    res = notebook(owner="nobody@example.com")
    warned = notice(store, res)
    notifier.notify(warned)
    fake_slack.fail_next(1, status=500)
    notifier.deliver()
    clock.advance(timedelta(minutes=1))
    notifier.notify(notice(store, res, "failed", warned.episode_id, detail="AccessDenied"))
    notifier.deliver()

    rows = outbox(store)
    assert [r.sent_at is not None for r in rows] == [True, True]
    stored = json.dumps([[r.payload, r.last_error, r.channel, r.key] for r in rows])
    secret_path = webhook.split("/webhook/")[1]
    for secret in (TOKEN, secret_path):
        assert secret not in stored
        assert secret not in caplog.text
    assert "failed" in caplog.text  # the failure itself was logged


def test_a_deleted_message_is_replaced_by_a_new_one(
    sqlite_store: Store, clock: ManualClock, fake_slack: FakeSlack
) -> None:
    notifier = Notifier(make_cfg(fake_slack), sqlite_store, clock)
    res = notebook()
    warned = notice(sqlite_store, res)
    notifier.notify(warned)
    notifier.deliver()
    fake_slack.messages.clear()  # someone deleted it in Slack

    notifier.notify(notice(sqlite_store, res, "would-act", warned.episode_id, mode="dry-run"))
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}
    first, second = fake_slack.accepted("chat.postMessage")
    assert "Dry-run: would have stopped now" in texts(second.body["blocks"])
    assert sqlite_store.episode_message(warned.episode_id) == ("C123", second.response["ts"])
    assert second.response["ts"] != first.response["ts"]


def test_times_are_shown_in_the_configured_timezone(
    sqlite_store: Store, clock: ManualClock
) -> None:
    lines: list[str] = []
    cfg = make_cfg(None, token=None).with_overrides(timezone="Europe/Berlin")
    notifier = Notifier(cfg, sqlite_store, clock, echo=lines.append)
    notifier.notify(notice(sqlite_store, notebook()))
    notifier.deliver()
    assert "Running since: Mon 06:50 CET" in lines[0]
    assert "Will stop at 10:30 CET (in 30 min)" in lines[0]


def test_no_buttons_until_interactivity_is_set_up(
    fake_slack: FakeSlack, sqlite_store: Store
) -> None:
    cfg = make_cfg(fake_slack)
    cfg = cfg.with_overrides(slack={**cfg.slack.model_dump(), "interactive": False})
    clock = ManualClock(START)
    notifier = Notifier(cfg, sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook()))
    notifier.deliver()
    [post] = fake_slack.accepted("chat.postMessage")
    assert not [b for b in post.body["blocks"] if b["type"] == "actions"]
    assert "Open in the AWS console" in str(post.body["blocks"])
