"""Build a ready-to-run `Guard` from a config: the one place the pieces are put together."""

from __future__ import annotations

import logging
from collections.abc import Callable

from guard import cycle
from guard.actions import Reconciled
from guard.aws import Aws
from guard.config import Config, mask_url
from guard.cycle import Guard
from guard.model import Clock, SystemClock
from guard.notify import Notifier
from guard.store import Store, upgrade

log = logging.getLogger(__name__)


def build_guard(
    cfg: Config,
    clock: Clock | None = None,
    *,
    notifier_echo: Callable[[str], None] | None = None,
    migrate: bool = True,
    reconcile: bool = True,
    aws: Aws | None = None,
) -> Guard:
    """Open the store (migrated to head), reconcile interrupted actions, return the Guard.

    Commands that only read the database (`inventory`, `audit`, `snooze`) pass
    `reconcile=False`: they must work without AWS credentials. Reconciling never raises for
    AWS being unreachable (what it cannot check is logged, and every cycle tries again), so
    a guard starts during an AWS outage.
    """
    clock = clock or SystemClock()
    if migrate:
        upgrade(cfg.database_url)
    store = Store(cfg.database_url)
    notifier = Notifier(cfg, store, clock, notifier_echo)
    guard = Guard(cfg=cfg, clock=clock, store=store, aws=aws or Aws(), notifier=notifier)
    if reconcile:
        # Under the cycle lock: a row another replica's running cycle is acting on right now
        # is "intended" too, and must not be judged interrupted. Held by someone else: that
        # cycle (and every later one) reconciles.
        with store.cycle_lock() as held:
            settled = cycle.reconcile(guard) if held else Reconciled()  # logs what it settled
        for error in settled.errors:
            log.warning("reconcile at start: %s (retried at every cycle)", error)
    log.debug("store: %s", mask_url(cfg.database_url))
    return guard
