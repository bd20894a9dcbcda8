"""Sharding: two replicas (two Guards on one database) share the accounts by leases; every
account is scanned exactly once per interval; a replica that stops running loses its
accounts to the other; the whole organisation stays in the shared database."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from guard import shards
from guard.config import Account, Config
from guard.cycle import Guard, run_cycle
from guard.model import ManualClock
from guard.sim import Simulator
from guard.store import Store
from guard.tables import AccountLeaseRow
from tests.conftest import START
from tests.factories import guard_for

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator

INTERVAL = timedelta(minutes=5)
ACCOUNTS = [str(210000000000 + i) for i in range(6)]
ACCOUNT_LIST = [{"id": a, "role_arn": f"arn:aws:iam::{a}:role/guard"} for a in ACCOUNTS]


def _replica(clock: ManualClock, db_url: str) -> Guard:
    return guard_for(
        clock, db_url, [], accounts=ACCOUNT_LIST, sharding={"enabled": True}, scan_interval="5m"
    )


def _seed(sim: Simulator) -> None:
    for account in ACCOUNTS:
        sim.add_notebook(f"nb-{account}", account=account)


def test_two_replicas_scan_each_account_once_per_interval_and_take_over(
    sim: Simulator, clock: ManualClock, db_url: str
) -> None:
    _seed(sim)
    a, b = _replica(clock, db_url), _replica(clock, db_url)
    assert a.replica != b.replica
    scanned: dict[int, Counter[str]] = {}

    def turn(guard: Guard, k: int, offset: timedelta) -> dict[str, Any]:
        clock.set(START + k * INTERVAL + offset)
        report = run_cycle(guard)
        assert report["errors"] == [], report["errors"]
        # what it scanned is what its report saw: one notebook per scanned account
        assert report["resources"] == len(report["shard"]["scanned"])
        scanned.setdefault(k, Counter()).update(report["shard"]["scanned"])
        return report

    for k in range(4):  # b runs a minute after a in every interval
        ra = turn(a, k, timedelta(0))
        rb = turn(b, k, timedelta(minutes=1))
        assert scanned[k] == Counter(ACCOUNTS), (k, scanned[k])  # each exactly once
    # a took everything first; since b showed up, each holds half
    assert len(ra["shard"]["held"]) == 3 and len(rb["shard"]["held"]) == 3
    assert set(ra["shard"]["held"]) | set(rb["shard"]["held"]) == set(ACCOUNTS)
    assert {k: sorted(c.values()) for k, c in scanned.items()} == {k: [1] * 6 for k in range(4)}
    # every replica's snapshots are in the one database: the whole organisation
    assert {r.account for r in a.store.resources()} == set(ACCOUNTS)
    b_accounts = set(rb["shard"]["held"])

    # b dies (stops renewing). Its leases run until a scan interval after its last cycle:
    # a's next cycle comes before that (b could still be alive and scan them at :21).
    ra = turn(a, 4, timedelta(0))
    assert set(ra["shard"]["scanned"]) == set(ACCOUNTS) - b_accounts
    ra = turn(a, 5, timedelta(0))  # the first cycle after b's leases ran out
    assert set(ra["shard"]["scanned"]) == set(ACCOUNTS)
    assert sorted(ra["shard"]["held"]) == ACCOUNTS
    assert all(row.holder == a.replica for row in a.store.leases())

    # b comes back (a restarted replica is a new one): it gets its share again.
    c = _replica(clock, db_url)
    for k in (6, 7, 8):
        ra = turn(a, k, timedelta(0))
        rc = turn(c, k, timedelta(minutes=1))
        assert scanned[k] == Counter(ACCOUNTS), (k, scanned[k])
    assert len(ra["shard"]["scanned"]) == 3 and len(rc["shard"]["scanned"]) == 3


def test_replicas_claiming_at_once_never_share_an_account(db_url: str) -> None:
    """Eight replicas take their leases at the same instant, each from its own thread and
    connection: every account is held by exactly one and marked for scanning by one."""
    cfg = Config.model_validate({"database_url": db_url, "sharding": {"enabled": True}})
    accounts = tuple(Account(id=str(220000000000 + i)) for i in range(40))
    now = START
    stores = [Store(db_url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    claims: list[shards.Claim] = []
    lock = threading.Lock()

    def replica(store: Store) -> None:
        barrier.wait()
        got = shards.claim(cfg, store, shards.new_holder(), accounts, now)
        with lock:
            claims.append(got)

    threads = [threading.Thread(target=replica, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        held = Counter(a for c in claims for a in c.held)
        marked = Counter(a.id for c in claims for a in c.scan)
        assert held == Counter(a.id for a in accounts)
        assert marked == held
        # Again in the same interval (a retried invocation): nothing is scanned twice.
        again = shards.claim(cfg, stores[0], claims[0].holder, accounts, now)
        assert again.scan == ()
    finally:
        for store in stores:
            store.close()


def test_a_lease_another_replica_is_taking_is_skipped_not_waited_for(pg_url: str) -> None:
    """Postgres: a replica takes the free leases that nobody else is taking this instant and
    leaves the row another replica's transaction holds. Waiting for it instead is what let
    replicas starting together lock rows in different orders and deadlock (CI, 2026-12-07:
    Postgres aborted a claim with "deadlock detected")."""
    accounts = [str(240000000000 + i) for i in range(5)]
    store, other = Store(pg_url), Store(pg_url)
    store.ensure_leases(accounts)
    now = START
    taken: list[list[str]] = []
    try:
        with other.session() as s:  # another replica, mid-take of the third lease
            s.execute(
                select(AccountLeaseRow)
                .where(AccountLeaseRow.account == accounts[2])
                .with_for_update()
            ).all()
            thread = threading.Thread(
                target=lambda: taken.append(
                    store.take_leases("replica-a", accounts, now, now + INTERVAL)
                ),
                daemon=True,
            )
            thread.start()
            thread.join(timeout=20)
            assert not thread.is_alive(), "take_leases waited for a row another replica holds"
        assert taken == [[a for a in accounts if a != accounts[2]]]
        # once the other transaction is over, the next cycle takes what was left free
        assert store.take_leases("replica-a", accounts, now, now + INTERVAL) == accounts
    finally:
        store.close()
        other.close()


def test_a_handover_is_not_rescanned_in_the_same_interval(db_url: str) -> None:
    cfg = Config.model_validate({"database_url": db_url, "scan_interval": "5m"})
    accounts = tuple(Account(id=str(230000000000 + i)) for i in range(4))
    store = Store(db_url)
    try:
        first = shards.claim(cfg, store, "a", accounts, START)
        assert len(first.scan) == 4
        later = START + timedelta(minutes=1)
        nobody = shards.claim(cfg, store, "b", accounts, later)  # b registers: holds nothing
        assert nobody.held == () and nobody.scan == ()
        moved = shards.rebalance(cfg, store, first, later)
        assert len(moved) == 2 and {to for _, to in moved} == {"b"}
        # b runs again in the same interval: it holds them, but they were scanned already.
        again = shards.claim(cfg, store, "b", accounts, later + timedelta(seconds=30))
        assert len(again.held) == 2 and again.scan == ()
        # next interval: b scans its two, a its two
        nxt = START + timedelta(minutes=5)
        assert len(shards.claim(cfg, store, "a", accounts, nxt).scan) == 2
        assert len(shards.claim(cfg, store, "b", accounts, nxt).scan) == 2
    finally:
        store.close()
