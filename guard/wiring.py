"""Build a ready-to-run `Guard` from a config: the one place the pieces are put together."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
) -> Guard:
    """Open the store (migrated to head), reconcile interrupted actions, return the Guard.

    Commands that only read the database (`inventory`, `audit`, `snooze`) pass
    `reconcile=False`: they must work without AWS credentials.
    """
    clock = clock or SystemClock()
    if migrate:
        upgrade(cfg.database_url)
    store = Store(cfg.database_url)
    notifier = Notifier(cfg, store, clock, notifier_echo)
    guard = Guard(cfg=cfg, clock=clock, store=store, notifier=notifier)
    for note in guard.actions.reconcile() if reconcile else ():
        log.warning("reconciled at start: %s", note)
    log.debug("store: %s", mask_url(cfg.database_url))
    return guard
