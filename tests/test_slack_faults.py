"""Slack failing in every way it can, through the real slack-sdk WebClient against the local
server (tests/fakeslack.py), on both databases: no Slack call inside a database transaction,
each failure retried (never sooner than Retry-After), reported once, never lost, and no
message posted twice at top level — not even when the guard is SIGKILLed right after Slack
took a post."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from guard.config import Config
from guard.model import ManualClock
from guard.notify import LOOKUP_RETRY, Notifier
from guard.store import Store, normalize_url
from tests.conftest import START
from tests.fakeslack import Call, FakeSlack
from tests.test_notify import ADA, TOKEN, make_cfg, notebook, notice, outbox

ADA_EMAIL = "ada@example.com"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    # Slack's clock agrees with the guard's (START): history is searched by time.
    server = FakeSlack(users={ADA_EMAIL: ADA}, clock=START.timestamp).start()
    yield server
    server.stop()


def cfg_for(slack: FakeSlack, **overrides: Any) -> Config:
    cfg = make_cfg(slack)
    settings = {**cfg.slack.model_dump(), "timeout_seconds": 1, **overrides}
    return cfg.with_overrides(slack=settings)


def owner_field(call: Call) -> str:
    return str(call.body["blocks"][1]["fields"][4]["text"])


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- defect 5: no Slack call inside a database transaction --------------------------------


def test_queueing_never_waits_on_slack_and_a_failed_lookup_is_asked_once(
    store: Store, clock: ManualClock, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """Five warnings for one owner while users.lookupByEmail hangs: the cycle's transaction
    holds no Slack call (was 5 x the timeout), delivery asks once, and every message still
    goes to the channel; the mention follows once Slack answers again."""
    notifier = Notifier(cfg_for(slack), store, clock)
    slack.fail("users.lookupByEmail", "hang", count=100)
    started = time.perf_counter()
    with store.batch():  # as the cycle queues its warnings
        warned = [notice(store, notebook(f"nb-{i}", owner=ADA_EMAIL)) for i in range(5)]
        for n in warned:
            notifier.notify(n)
    held = time.perf_counter() - started
    assert held < 0.5, f"the transaction was held {held:.2f}s"
    assert slack.requests("users.lookupByEmail") == []

    assert notifier.deliver() == {"sent": 5, "failed": 0, "pending": 0}
    assert len(slack.requests("users.lookupByEmail")) == 1  # one failure per owner, not five
    posts = slack.accepted("chat.postMessage")
    assert [p.body["channel"] for p in posts] == ["C123"] * 5
    assert {owner_field(p) for p in posts} == {f"*Owner*\n{ADA_EMAIL}"}
    [warning] = [r for r in problems(caplog) if "lookupByEmail" in r.getMessage()]
    assert "users.lookupByEmail: TimeoutError" in warning.getMessage()

    # Slack answers again; after LOOKUP_RETRY the next message resolves the owner.
    slack.fail("users.lookupByEmail", "status", 0)
    slack._faults.clear()
    clock.advance(LOOKUP_RETRY)
    notifier.notify(notice(store, warned[0].resource, "acted", warned[0].episode_id))
    assert notifier.deliver()["sent"] == 1
    [update] = slack.accepted("chat.update")
    assert owner_field(update) == f"*Owner*\n<@{ADA}>"
    assert len(slack.requests("users.lookupByEmail")) == 2


def _transaction_probe(db_url: str) -> tuple[list[str], Any]:
    """(violations, a hook for FakeSlack.on_request) that records every Slack request made
    while a write transaction is open on the database."""
    violations: list[str] = []
    url = normalize_url(db_url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path

        def probe(call: Call) -> None:
            conn = sqlite3.connect(path, timeout=0)
            try:
                conn.execute("BEGIN IMMEDIATE")  # fails while another writer holds the lock
                conn.rollback()
            except sqlite3.OperationalError:
                violations.append(call.method)
            finally:
                conn.close()

        return violations, probe
    engine = create_engine(url)

    def probe_pg(call: Call) -> None:
        with engine.connect() as conn:
            open_ = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        if open_:
            violations.append(call.method)

    return violations, probe_pg


def test_no_transaction_is_open_while_slack_is_called(
    store: Store, db_url: str, clock: ManualClock, slack: FakeSlack
) -> None:
    cfg = cfg_for(slack, dm_owners=True)
    notifier = Notifier(cfg, store, clock)
    violations, slack.on_request = _transaction_probe(db_url)
    with store.batch():
        for i, owner in enumerate([ADA_EMAIL, "bob@example.com", ADA_EMAIL, None]):
            notifier.notify(notice(store, notebook(f"nb-{i}", owner=owner)))
    notifier.deliver()
    assert slack.requests("users.lookupByEmail")  # Slack was asked ...
    assert violations == []  # ... never from inside a transaction
    # Ada's copies went to her DM once her id was known; Bob is unknown to Slack: none.
    channels = [c.body["channel"] for c in slack.accepted("chat.postMessage")]
    assert channels.count("C123") == 4 and channels.count(ADA) == 2 and len(channels) == 6


def test_a_direct_message_waits_for_its_owner_lookup(
    store: Store, clock: ManualClock, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """No channel configured: the owner's DM is the only copy, so it waits (not lost) while
    Slack cannot say who the owner is, without holding up other resources' messages."""
    cfg = cfg_for(slack, channel=None)
    notifier = Notifier(cfg, store, clock)
    notifier.notify(notice(store, notebook("nb-dm", owner=ADA_EMAIL)))
    notifier.notify(notice(store, notebook("nb-id", owner=ADA)))
    slack.fail("users.lookupByEmail", "status", 1, status=503)
    assert notifier.deliver() == {"sent": 1, "failed": 1, "pending": 1}
    [only] = slack.accepted("chat.postMessage")
    assert only.body["channel"] == ADA and "nb-id" in only.body["text"]
    assert notifier.deliver() == {"sent": 0, "failed": 0, "pending": 1}  # not asked again yet
    assert len([r for r in problems(caplog) if "lookupByEmail" in r.getMessage()]) == 1

    clock.advance(LOOKUP_RETRY)
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}
    assert [c.body["channel"] for c in slack.accepted("chat.postMessage")] == [ADA, ADA]


# --- Slack faults, per method --------------------------------------------------------------

FAULTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "post-429": ("chat.postMessage", "status", {"status": 429, "retry_after": 7}),
    "post-500": ("chat.postMessage", "status", {"status": 500}),
    "post-503-html": ("chat.postMessage", "status", {"status": 503, "html": True}),
    "post-error": ("chat.postMessage", "error", {"error": "fatal_error"}),
    "post-hang": ("chat.postMessage", "hang", {}),
    "post-hang-after-accepting": ("chat.postMessage", "hang", {"accept": True}),
    "post-reset": ("chat.postMessage", "reset", {}),
    "post-reset-after-accepting": ("chat.postMessage", "reset", {"accept": True}),
    "update-429": ("chat.update", "status", {"status": 429, "retry_after": 3}),
    "update-502": ("chat.update", "status", {"status": 502}),
    "update-hang": ("chat.update", "hang", {"accept": True}),
    "update-reset": ("chat.update", "reset", {}),
    "reply-500": ("chat.postMessage", "status", {"status": 500}),  # the thread reply
    "reply-reset": ("chat.postMessage", "reset", {}),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_is_retried_reported_once_and_never_posts_twice(
    name: str,
    store: Store,
    clock: ManualClock,
    slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    method, kind, options = FAULTS[name]
    notifier = Notifier(cfg_for(slack), store, clock)
    res = notebook()
    warned = notice(store, res)
    notifier.notify(warned)
    later = not name.startswith("post-")  # the fault hits the update or its thread reply
    if later:
        assert notifier.deliver()["sent"] == 1
        clock.advance(timedelta(minutes=5))
        notifier.notify(notice(store, res, "acted", warned.episode_id, detail="stopped"))
    caplog.clear()
    slack.fail(method, kind, **options)
    failed_at = clock.now()

    assert notifier.deliver() == {"sent": 0, "failed": 1, "pending": 1}
    [row] = [r for r in outbox(store) if r.sent_at is None]
    assert row.last_error is not None and row.last_error.startswith(f"{method}: ")
    # Reported once: one line, with the method and the error, no traceback and no token.
    [report] = problems(caplog)
    assert method in report.getMessage() and report.exc_info is None
    assert TOKEN not in caplog.text and "Traceback" not in caplog.text
    # Retried after the backoff, never before Retry-After.
    wait = timedelta(seconds=options.get("retry_after", 30))
    assert row.next_attempt_at == failed_at + wait
    clock.set(failed_at + wait - timedelta(seconds=1))
    calls = len(slack.calls)
    assert notifier.deliver() == {"sent": 0, "failed": 0, "pending": 1}
    assert len(slack.calls) == calls  # not a single request before its time
    clock.set(failed_at + wait)
    assert notifier.deliver() == {"sent": 1, "failed": 0, "pending": 0}

    # Never lost, never twice at top level; the story stays in the episode's one message.
    top = slack.top_level()
    assert len(top) == 1, [m.get("text") for m in top]
    assert store.episode_message(warned.episode_id) == ("C123", top[0]["ts"])
    if later:
        assert ":octagonal_sign:" in str(top[0]["blocks"])
        replies = [m for m in slack.messages.values() if m.get("thread_ts") == top[0]["ts"]]
        assert replies  # the outcome is in the thread


def test_rate_limited_lookup_pauses_lookups_not_posts(
    store: Store, clock: ManualClock, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(cfg_for(slack), store, clock)
    for i, owner in enumerate([ADA_EMAIL, "bob@example.com", "cy@example.com"]):
        notifier.notify(notice(store, notebook(f"nb-{i}", owner=owner)))
    slack.fail("users.lookupByEmail", "status", 1, status=429, retry_after=600)
    assert notifier.deliver() == {"sent": 3, "failed": 0, "pending": 0}
    assert len(slack.requests("users.lookupByEmail")) == 1  # limited: nobody else asked
    assert len(problems(caplog)) == 1
    clock.advance(LOOKUP_RETRY)  # Retry-After (10 min) wins over LOOKUP_RETRY (5 min)
    notifier.notify(notice(store, notebook("nb-3", owner=ADA_EMAIL)))
    notifier.deliver()
    assert len(slack.requests("users.lookupByEmail")) == 1
    clock.advance(LOOKUP_RETRY)
    notifier.notify(notice(store, notebook("nb-4", owner=ADA_EMAIL)))
    notifier.deliver()
    assert len(slack.requests("users.lookupByEmail")) == 2


def test_webhook_is_at_least_once_when_the_answer_is_lost(
    sqlite_store: Store, clock: ManualClock, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented limit: a webhook cannot look a message up, so one Slack took without
    answering is sent again (the bot token transport posts it once)."""
    cfg = make_cfg(slack, token=None, webhook=slack.webhook_url)
    cfg = cfg.with_overrides(slack={**cfg.slack.model_dump(), "timeout_seconds": 1})
    notifier = Notifier(cfg, sqlite_store, clock)
    notifier.notify(notice(sqlite_store, notebook()))
    slack.fail("webhook", "hang", accept=True)
    assert notifier.deliver()["failed"] == 1
    assert (outbox(sqlite_store)[0].last_error or "").startswith("webhook: ")
    assert slack.webhook_url.split("/webhook/")[1] not in caplog.text
    clock.advance(timedelta(seconds=30))
    assert notifier.deliver()["sent"] == 1
    assert len(slack.accepted("webhook")) == 2


# --- defect 10: killed between Slack taking the post and the outbox storing its ts ---------

CHILD = """
import sys
from guard.config import Config, Secrets
from guard.model import ManualClock
from guard.notify import Notifier
from guard.store import Store
from tests.conftest import START

db_url, api_url, channel = sys.argv[1:4]
secrets = Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-000-111-s3cr3tt0k3n"})
cfg = Config.model_validate({
    "rules": [{"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h",
               "action": "stop", "grace": "30m"}],
    "slack": {"channel": channel or None, "base_url": api_url, "interactive": True},
    "secrets": secrets,
})
store = Store(db_url)
print("delivering", flush=True)
Notifier(cfg, store, ManualClock(START)).deliver()
print("delivered", flush=True)  # never reached: killed while Slack holds its answer
"""


@pytest.mark.parametrize("where", ["channel", "dm"])
def test_a_sigkill_after_slack_took_the_post_does_not_post_it_again(
    where: str, store: Store, db_url: str, clock: ManualClock, slack: FakeSlack
) -> None:
    channel = "C123" if where == "channel" else ""
    cfg = cfg_for(slack, channel=channel or None)
    res = notebook(owner=ADA)
    warned = notice(store, res)
    Notifier(cfg, store, clock).notify(warned)
    slack.hold("chat.postMessage")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, db_url, slack.api_url, channel],
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert slack.held.wait(60), child.communicate(timeout=5)
        os.kill(child.pid, signal.SIGKILL)  # Slack has the post; the outbox has no ts
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        slack.release()
    assert child.returncode == -signal.SIGKILL
    [row] = outbox(store)
    assert row.sent_at is None and row.sending_at is not None  # marked before the call
    assert store.episode_message(warned.episode_id) == (None, None)
    [taken] = slack.top_level()

    restarted = Notifier(cfg, store, clock)
    assert restarted.deliver() == {"sent": 1, "failed": 0, "pending": 0}
    assert len(slack.requests("chat.postMessage")) == 1  # not posted again
    assert slack.requests("conversations.history")  # found in the channel's history
    expected = "C123" if where == "channel" else "D" + ADA[1:]
    assert store.episode_message(warned.episode_id) == (expected, taken["ts"])

    # The story goes on in that message.
    clock.advance(timedelta(minutes=30))
    restarted.notify(notice(store, res, "acted", warned.episode_id))
    assert restarted.deliver()["sent"] == 1
    [update] = slack.accepted("chat.update")
    assert update.body["ts"] == taken["ts"]
    assert len(slack.top_level()) == 1


def test_a_post_killed_before_slack_took_it_is_posted_after_the_restart(
    store: Store, clock: ManualClock, slack: FakeSlack
) -> None:
    """The same mark, but Slack never got the request: history shows nothing, so it is
    posted (once)."""
    cfg = cfg_for(slack)
    notifier = Notifier(cfg, store, clock)
    notifier.notify(notice(store, notebook()))
    [row] = outbox(store)
    store.message_sending(row.id, clock.now())  # as if killed right after the mark
    assert Notifier(cfg, store, clock).deliver()["sent"] == 1
    assert len(slack.top_level()) == 1
    assert len(slack.requests("conversations.history")) == 1
    assert slack.top_level()[0]["metadata"] == {
        "event_type": "cost_guard_outbox",
        "event_payload": {"key": row.key},
    }


# --- defect 11: text people control is escaped -------------------------------------------

HOSTILE = "<!channel> & <@U0EVIL999> <https://evil.example|click>"


def test_text_people_control_cannot_mention_or_link(
    store: Store, clock: ManualClock, slack: FakeSlack
) -> None:
    cfg = cfg_for(slack)
    notifier = Notifier(cfg, store, clock)
    res = replace(
        notebook("nb-<!here>", owner=f"{HOSTILE}@x.io"),
        tags={"owner": HOSTILE, "team": HOSTILE},
    )
    warned = notice(store, res, reason=f"idle; {HOSTILE}")
    notifier.notify(warned)
    notifier.deliver()
    by = f"<@{ADA}>"  # the person who clicked: a mention cost-guard built
    notifier.notify(
        notice(store, res, "snoozed", warned.episode_id, detail=f"by {by}: {HOSTILE}", by=by)
    )
    notifier.reply(
        notice(store, res, "warned", warned.episode_id, click=7, by=by),
        f"{by} clicked Stop now; not done: {HOSTILE}.",
    )
    notifier.notify_scan_health([f"{HOSTILE}: AccessDenied"], [])
    notifier.notify_digest(
        "digest:x", ":bar_chart: Digest", [f"• {HOSTILE} $3/h"], [("Owner", HOSTILE)]
    )
    notifier.notify_budget("budget:x", ":moneybag: Budget", [f"{HOSTILE} over"])
    assert notifier.deliver()["pending"] == 0

    sent = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert len(sent) == 7
    everything = "\n".join(mrkdwn([c.body for c in sent]))
    for forbidden in ("<!channel>", "<!here>", "<@U0EVIL999>", "<https://evil"):
        assert forbidden not in everything
    assert "&lt;!channel&gt; &amp; &lt;@U0EVIL999&gt;" in everything
    # Ours stay: the clicker's mention in the update, its thread reply and the refusal.
    texts = [str(c.body.get("text")) for c in sent if "thread_ts" in c.body]
    assert texts and all(t.count(by) == 1 for t in texts), texts
    assert by in str(slack.accepted("chat.update")[0].body["blocks"])


def mrkdwn(node: Any) -> list[str]:
    """Every text Slack reads as mrkdwn in these request bodies: all but plain_text objects
    (a header, a button's label), in which Slack renders no mention or link."""
    if isinstance(node, list):
        return [t for item in node for t in mrkdwn(item)]
    if isinstance(node, dict):
        if node.get("type") == "plain_text":
            return []
        found = [str(node["text"])] if isinstance(node.get("text"), str) else []
        return found + [t for v in node.values() for t in mrkdwn(v)]
    return []


def test_webhook_reply_title_is_escaped(
    sqlite_store: Store, clock: ManualClock, slack: FakeSlack
) -> None:
    cfg = make_cfg(slack, token=None, webhook=slack.webhook_url)
    notifier = Notifier(cfg, sqlite_store, clock)
    res = notebook("nb-<!channel>")
    n = notice(sqlite_store, res, click=1)
    notifier.reply(n, "refused")
    notifier.deliver()
    [sent] = slack.accepted("webhook")
    assert "<!channel>" not in str(sent.body) and "&lt;!channel&gt;" in sent.body["text"]
