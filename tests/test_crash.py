"""Crash consistency: the real CLI killed (SIGKILL) at every failpoint, then run again.

Each test runs `cost-guard once --enforce` as a subprocess against the session's simulator
(over HTTP) and a FakeSlack, with `COST_GUARD_FAILPOINT` naming one spot between an action's
intent and its outcome, or between a Slack post and its outbox update (guard/failpoints.py).
The process dies there; the next runs must reconcile: no resource acted on twice, every
intent settled, every message posted once at top level.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from guard.failpoints import ENV, POINTS
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Store
from guard.tables import EpisodeRow
from tests.fakeslack import Call, FakeSlack

CHANNEL = "C0COSTS01"
NOTEBOOK, ENDPOINT = "crash-nb", "crash-ep"
TIMEOUT = 90  # seconds per CLI run: a hang fails the test instead of the suite


@pytest.fixture
def clock() -> ManualClock:
    """The simulator on the wall clock: the CLI in the subprocess reads the system clock."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def write_config(path: Path, db_url: str, slack: FakeSlack) -> Path:
    config = {
        "database_url": db_url,
        "kinds": ["notebook", "endpoint"],
        "pricing": {"source": "bundled"},
        "slack": {"channel": CHANNEL, "base_url": slack.api_url, "timeout_seconds": 5},
        "rules": [
            {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop"},
            {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "24h", "action": "delete"},
        ],
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def seed(sim: Simulator, now: datetime) -> None:
    """An idle notebook and an idle endpoint: both acted on in the first cycle (grace 0)."""
    sim.add_notebook(
        NOTEBOOK, "ml.m5.xlarge", in_service_since=now - timedelta(hours=8),
        tags={"owner": "ada@example.com"},
    )  # fmt: skip
    sim.jupyter_activity(NOTEBOOK, now - timedelta(hours=3))
    sim.add_endpoint(ENDPOINT, created_at=now - timedelta(days=3), tags={"owner": "bo@x.org"})


def run_cli(
    config: Path, sim: Simulator, failpoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("COST_GUARD_", "SLACK_", "AWS_"))
    }
    env |= sim.env() | {"AWS_DEFAULT_REGION": "us-east-1", "SLACK_BOT_TOKEN": "xoxb-crash-test"}
    if failpoint:
        env[ENV] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "guard.cli", "once", "--enforce", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def top_level_posts(slack: FakeSlack) -> Counter[str]:
    """Accepted top-level chat.postMessage calls, by the outbox key in their metadata."""
    return Counter(
        _key(c) for c in slack.accepted("chat.postMessage") if not c.body.get("thread_ts")
    )


def _key(call: Call) -> str:
    meta: Any = call.body.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    return str((meta.get("event_payload") or {}).get("key", "?"))


def check_consistent(store: Store, sim: Simulator, slack: FakeSlack, since: datetime) -> None:
    """What must hold once a crashed run was followed by clean ones."""
    # Every intent has an outcome.
    assert store.unfinished_actions() == []
    audit = store.audit(since - timedelta(days=1))
    acted = [a for a in audit if a.action in ("stop", "delete")]
    assert all(a.outcome in ("done", "failed", "skipped") for a in acted), acted
    # Each resource acted on exactly once: one call reached AWS, one row says done.
    counts = sim.request_counts
    assert counts.get("sagemaker:StopNotebookInstance") == 1, counts
    assert counts.get("sagemaker:DeleteEndpoint") == 1, counts
    done = Counter(a.name for a in acted if a.outcome == "done")
    assert done == {NOTEBOOK: 1, ENDPOINT: 1}, [(a.name, a.outcome, a.detail) for a in acted]
    assert sim.notebook_status(NOTEBOOK) in ("Stopping", "Stopped")
    assert sim.endpoint_status(ENDPOINT) is None
    # Each episode ended on the action, as if the answer had come in time: never "resolved:
    # no longer running" (what a restart that settled the action but not its episode said).
    with store.session() as s:
        ends = {row.arn: row.end_reason for row in s.scalars(select(EpisodeRow))}
    assert all(reason and "done" in reason for reason in ends.values()), ends
    # Every message delivered, and no top-level message posted twice.
    assert store.pending_messages() == []
    posts = top_level_posts(slack)
    assert posts and max(posts.values()) == 1, posts
    for name in (NOTEBOOK, ENDPOINT):
        episode_posts = [
            c for c in slack.accepted("chat.postMessage")
            if not c.body.get("thread_ts") and _key(c).startswith("episode:")
            and name in json.dumps(c.body)
        ]  # fmt: skip
        assert len(episode_posts) == 1, (name, [_key(c) for c in episode_posts])


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_a_failpoint_then_reconciled(
    point: str, sim: Simulator, clock: ManualClock, db_url: str, slack: FakeSlack,
    tmp_path: Path,
) -> None:  # fmt: skip
    seed(sim, clock.now())
    config = write_config(tmp_path / "cost-guard.yaml", db_url, slack)

    crashed = run_cli(config, sim, point)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr[-3000:])
    assert f"failpoint {point} reached" in crashed.stderr
    store = Store(db_url)
    try:
        if point.startswith("action-") or point.startswith("endpoint-"):
            # Killed mid-action: its row is left without an outcome for the next start.
            assert store.unfinished_actions(), "the kill left no unsettled intent"
        for _ in range(2):  # the recovery run, then one more: nothing is done again
            again = run_cli(config, sim)
            assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        check_consistent(store, sim, slack, clock.now())
    finally:
        store.close()


def test_a_post_whose_answer_was_lost_is_not_posted_again_after_a_failed_lookup(
    store: Store, clock: ManualClock, slack: FakeSlack
) -> None:
    """Slack took the post but the answer was lost (a reset); the next attempt's history
    lookup fails (503): that proves nothing about the first post, so the third attempt must
    still look before posting. (Found by `make chaos`: it posted twice.)"""
    from guard.config import Config, Secrets
    from guard.notify import Notice, Notifier
    from tests.factories import notebook

    cfg = Config.model_validate({
        "database_url": store.url,
        "slack": {"channel": CHANNEL, "base_url": slack.api_url, "timeout_seconds": 2},
        "secrets": Secrets.model_validate({"SLACK_BOT_TOKEN": "xoxb-crash-test"}),
    })  # fmt: skip
    notifier = Notifier(cfg, store, clock)
    res = notebook(clock.now())
    episode = store.start_episode(res.arn, "idle", clock.now(), None)
    notice = Notice(res, "idle", episode, "warned", "stop", "idle", None, "enforce")
    notifier.notify(notice)
    slack.fail("chat.postMessage", "reset", accept=True)  # posted; the answer is lost
    assert notifier.deliver()["sent"] == 0
    slack.fail("conversations.history", "status", status=503)  # the lookup fails
    clock.advance(timedelta(hours=1))
    assert notifier.deliver()["sent"] == 0
    clock.advance(timedelta(hours=1))
    assert notifier.deliver()["sent"] == 1
    assert len(slack.top_level()) == 1
    assert store.pending_messages() == []
