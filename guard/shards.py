"""Sharding the accounts between replicas by per-account leases in the database.

With `sharding: {enabled: true}`, each replica (a `cost-guard run` daemon, or one Lambda
invocation of several from the same schedule) scans only the accounts it holds a lease on:

- At the start of its cycle a replica records that it is alive, renews its own leases and
  takes every lease that is free or expired (its holder missed a whole `lease_ttl`: dead).
- Time is cut into scan intervals ("slots" of `scan_interval`, counted from the epoch). A
  replica scans a held account only if nobody has scanned it in the current slot yet, and
  marks it so with a conditional UPDATE: an account is scanned at most once per interval,
  even while leases move between replicas.
- After its cycle, a replica holding more than its fair share (accounts / live replicas)
  hands the surplus to the live replicas holding the fewest. Handed-over leases were just
  scanned in this slot, so the receiver scans them from the next one: never twice, never a
  gap.

A replica that dies stops renewing: its leases expire after `lease_ttl` (default: the scan
interval), and the next replica to run a cycle takes them and scans what was not scanned in
the current interval. Digest, budgets and the console read the database, which holds every
replica's snapshots: they see the whole organisation.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.config import Account, Config
from guard.store import Store, instance_id

log = logging.getLogger(__name__)

# A replica row not seen for this many lease lifetimes is deleted (the lease table keeps
# only accounts; a dead replica's name is of no use once its leases moved).
FORGET_AFTER_TTLS = 10


def new_holder() -> str:
    """A replica's name in the lease table: host:pid plus a random part (two Guards in one
    process, or Lambda environments that share a host name and pid, stay apart)."""
    return f"{instance_id()}/{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Claim:
    """One cycle's share: what to scan now, and what this replica holds."""

    holder: str
    slot: int
    held: tuple[str, ...]
    scan: tuple[Account, ...]  # held and not yet scanned in this slot
    total: int  # accounts to share


def lease_ttl(cfg: Config) -> timedelta:
    return cfg.sharding.lease_ttl or cfg.scan_interval


def slot_of(cfg: Config, now: datetime) -> int:
    """The scan interval `now` falls in, counted from the epoch (the same on every replica)."""
    return int(now.timestamp() // cfg.scan_interval.total_seconds())


def claim(
    cfg: Config, store: Store, holder: str, accounts: tuple[Account, ...], now: datetime
) -> Claim:
    """Take this replica's leases for the cycle starting `now` (see the module doc)."""
    ttl, slot = lease_ttl(cfg), slot_of(cfg, now)
    ids = [a.id for a in accounts]
    store.replica_seen(holder, now)
    store.ensure_leases(ids)
    held = store.take_leases(holder, ids, now, now + ttl)
    marked = set(store.mark_scanned(holder, held, slot))
    scan = tuple(a for a in accounts if a.id in marked)
    log.info(
        "shard %s: holds %d of %d account(s), scans %d in this interval",
        holder, len(held), len(ids), len(scan),
    )  # fmt: skip
    return Claim(holder, slot, tuple(held), scan, len(ids))


def rebalance(cfg: Config, store: Store, done: Claim, now: datetime) -> list[tuple[str, str]]:
    """After the cycle: hand the leases over this replica's fair share to the live replicas
    under theirs; return (account, new holder) of each handed over."""
    ttl = lease_ttl(cfg)
    store.forget_replicas(now - FORGET_AFTER_TTLS * ttl)
    live = store.live_replicas(now - ttl)
    if done.holder not in live or len(live) < 2 or not done.total:
        return []
    fair = math.ceil(done.total / len(live))
    counts = Counter({name: 0 for name in live})
    counts.update(
        row.holder
        for row in store.leases()
        if row.holder is not None and row.holder in counts and not _expired(row.expires_at, now)
    )
    mine = store.leases_of(done.holder)
    surplus = mine[fair:] if len(mine) > fair else []
    moved = []
    for account in reversed(surplus):
        receiver = min((n for n in live if n != done.holder), key=lambda n: (counts[n], n))
        if counts[receiver] >= fair:
            break
        if store.hand_over(account, done.holder, receiver, now + ttl):
            counts[receiver] += 1
            counts[done.holder] -= 1
            moved.append((account, receiver))
    if moved:
        log.info("shard %s: handed %d account(s) over to other replicas", done.holder, len(moved))
    return moved


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is None or expires_at <= now
