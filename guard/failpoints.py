"""Failpoints: named spots where a crash test may kill the process, and nothing else.

Why this exists: the guard promises that a crash at any moment between an action's intent
and its outcome (or between a Slack post and its outbox update) is reconciled at the next
start: nothing is acted on twice, every intent gets an outcome, no message is lost or posted
twice. Such a promise is only as good as the test that kills the process *exactly there*,
which a timer-driven `kill` cannot hit reliably. So, like `fail-rs` (TiKV) or FoundationDB's
simulation "buggify" points, the code names those moments:

    failpoints.reached("action-after-intent")

and a test (tests/test_crash.py, bench/chaos.py) runs the real CLI with
`COST_GUARD_FAILPOINT=action-after-intent`: the process SIGKILLs itself there (no `finally`,
no `atexit`, no flush: what a power cut or the OOM killer does).

Without the variable a call costs one environment lookup: nothing else happens, in
production or in any other test. The variable holds one or more comma-separated points,
each optionally `@N` to fire on its N-th hit in this process (default the first):
`COST_GUARD_FAILPOINT=slack-after-post@2`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "COST_GUARD_FAILPOINT"

# Before any cycle: at start, in the migration child (tests/test_store.py, tests/test_cli.py).
START_POINTS = ("migration-after-step",)  # migrations/env.py: one migration applied

# Every point a cycle reaches, in that order (tests/test_crash.py kills a cycle at each).
POINTS = (
    "action-after-intent",  # guard/actions.py: the *intended* row is committed
    "action-after-describe",  # guard/actions.py: the live describe passed, nothing sent yet
    "action-before-call",  # guard/actions.py: the row is *sending*, the call not made yet
    "endpoint-after-restore-record",  # guard/endpoint_actions.py: record saved, no delete yet
    "action-after-call",  # guard/actions.py: the mutating call returned, outcome not stored
    "slack-after-post",  # guard/notify.py: Slack accepted a post, its ts not stored yet
)

_hits: Counter[str] = Counter()
_lock = threading.Lock()


def reached(point: str) -> None:
    """Kill this process (SIGKILL) if `COST_GUARD_FAILPOINT` names `point`; else nothing."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for wanted in spec.split(","):
        name, _, nth = wanted.strip().partition("@")
        if name != point:
            continue
        with _lock:
            _hits[point] += 1
            hit = _hits[point]
        if hit == (int(nth) if nth.strip().isdigit() else 1):
            _die(point)


def _die(point: str) -> None:
    # One line on stderr (unbuffered, no logging machinery) so a test log says why it died.
    os.write(2, f"failpoint {point} reached: SIGKILL\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
