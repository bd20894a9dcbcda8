"""Waiting for a restored resource, shared by every kind's `cost-guard restore`: describe it
until it is ready, has failed, or the timeout has passed (time injected, so tests never sleep)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.model import Clock


@dataclass(frozen=True)
class Restored:
    """What a restore did, for every kind alike: what `cost-guard restore` prints."""

    name: str
    account: str
    region: str
    created: bool  # False: nothing needed changing, nothing was called
    status: str
    in_service_at: datetime | None
    message: str
    did: str  # what it did, "{where}" standing for the account and region
    ready_hint: str  # how to see when it is ready, when it was not waited for

    def recreated(self, where: str) -> str:
        return self.did.replace("{where}", where)


@dataclass(frozen=True)
class Seen:
    """One describe of a resource being restored."""

    status: str
    ready: bool = False
    failed: str | None = None  # why it failed, when it did


def wait_until_ready(
    look: Callable[[], Seen],
    *,
    clock: Clock,
    sleep: Callable[[float], None],
    timeout: timedelta,
    poll_every: timedelta,
) -> Seen:
    """`look()` every `poll_every` until it is ready or failed, or `timeout` has passed:
    the last answer (neither ready nor failed: still on its way)."""
    deadline = clock.now() + timeout
    while True:
        seen = look()
        if seen.ready or seen.failed is not None or clock.now() >= deadline:
            return seen
        sleep(poll_every.total_seconds())
