"""`make bench`: a cycle over a simulated mixed fleet, next to the naive per-resource loop.

The fleet (by default 10,000 resources: notebooks, endpoints, training/processing/transform
jobs and Studio apps) is spread over 2 accounts x 2 regions and served by moto in a separate
process (`bench/simproc.py`), so the guard's wall time and peak RSS are its own. Numbers, not
assertions: wall times still include moto answering on the same 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import naive
from bench.simproc import serve
from guard.aws import Aws
from guard.config import Account, Config, Secrets
from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.sim.base import ACCOUNT_ID, FAKE_CREDENTIALS
from guard.wiring import build_guard

START = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
REGIONS = ("us-east-1", "us-west-2")
MEMBER = "111111111111"
ACCOUNTS = [
    {"id": ACCOUNT_ID, "name": "platform"},
    {"id": MEMBER, "name": "research", "role_arn": f"arn:aws:iam::{MEMBER}:role/cost-guard"},
]
# Share of the fleet per kind; each (account, region) gets a quarter of every kind.
MIX = {
    "notebook": 0.40,
    "endpoint": 0.15,
    "training_job": 0.15,
    "processing_job": 0.10,
    "transform_job": 0.05,
    "studio_app": 0.15,
}
RULES = [
    {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop"},
    {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "24h", "action": "delete"},
    {"id": "long-training", "kind": "training_job", "running_for": "24h", "action": "notify"},
    {
        "id": "stalled-training",
        "kind": "training_job",
        "utilization_below": {"gpu": 5, "for": "1h"},
        "action": "stop",
    },
    {"id": "idle-apps", "kind": "studio_app", "idle_for": "3h", "action": "delete"},
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument(
        "--warmup-cycles",
        type=int,
        default=3,
        help="cycles between the first and the measured ones: Studio user profiles are checked "
        "for idle-shutdown settings at most 100 per account and region per cycle",
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive loop")
    args = parser.parse_args()
    console = Console(width=140)
    targets = len(ACCOUNTS) * len(REGIONS)
    fleet = {kind: round(args.resources * share / targets) for kind, share in MIX.items()}
    total = sum(fleet.values()) * targets

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    plan = {"accounts": [a["id"] for a in ACCOUNTS], "fleet": fleet}
    simulator = context.Process(target=serve, args=(child, START, REGIONS, plan), daemon=True)
    simulator.start()
    console.print(f"seeding {total:,} resources in the simulator process...")
    ready = parent.recv()
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = ready["endpoint_url"]
    os.environ["AWS_DEFAULT_REGION"] = REGIONS[0]

    clock = ManualClock(START)
    rows: list[tuple[str, dict[str, int], float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate(
            {
                "database_url": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "regions": list(REGIONS),
                "accounts": ACCOUNTS,
                "rules": RULES,
                "secrets": Secrets.model_validate({}),
            }
        )
        guard = build_guard(cfg, clock)
        t = time.perf_counter()
        run_cycle(guard)
        rows.append(("cost-guard, first cycle", _calls(parent), time.perf_counter() - t))

        steady: list[tuple[float, dict[str, int]]] = []
        for n in range(args.warmup_cycles + args.steady_cycles):
            clock.advance(timedelta(minutes=5))
            parent.send({"cmd": "advance", "minutes": 5})
            parent.recv()
            _calls(parent)  # the seeding moves are not the guard's calls
            t = time.perf_counter()
            run_cycle(guard)
            seconds, calls = time.perf_counter() - t, _calls(parent)
            if n < args.warmup_cycles:
                rows.append((f"cost-guard, warm-up cycle {n + 1}", calls, seconds))
            else:
                steady.append((seconds, calls))
        steady.sort(key=lambda s: s[0])
        seconds, calls = steady[len(steady) // 2]
        rows.append(("cost-guard, steady cycle (median)", calls, seconds))
        guard_rss = peak_rss_mb()

        if not args.skip_naive:
            t = time.perf_counter()
            for account in ACCOUNTS:
                for region in REGIONS:
                    naive.loop(Aws(), _account(account), region, [k for k, n in fleet.items() if n])
            rows.append(("naive per-resource loop", _calls(parent), time.perf_counter() - t))

    parent.send({"cmd": "rss"})
    sim_rss = parent.recv()
    parent.send({"cmd": "quit"})
    parent.recv()
    simulator.join(timeout=10)
    _print(console, rows, fleet, total, ready["seeded_seconds"], guard_rss, sim_rss)


def _calls(conn: Any) -> dict[str, int]:
    """Requests the simulator answered since the last ask, by operation (counted server-side,
    so retries and the naive loop are counted the same way as the guard's calls)."""
    conn.send({"cmd": "counts"})
    return dict(conn.recv())


def _account(spec: dict[str, str]) -> Account | None:
    return None if spec["id"] == ACCOUNT_ID else Account.model_validate(spec)


def _print(
    console: Console,
    rows: list[tuple[str, dict[str, int], float]],
    fleet: dict[str, int],
    total: int,
    seeded: float,
    guard_rss: float,
    sim_rss: float,
) -> None:
    mix = ", ".join(f"{kind} {count * 4:,}" for kind, count in fleet.items())
    table = Table(title=f"One cycle over {total:,} resources in 2 accounts x 2 regions ({mix})")
    for column in ("method", "AWS calls", "by operation", "wall time"):
        table.add_column(column, justify="right" if column != "by operation" else "left")
    for name, calls, seconds in rows:
        by_op = Counter({op.split(":", 1)[1]: n for op, n in calls.items()})
        detail = ", ".join(f"{op} {n:,}" for op, n in sorted(by_op.items()))
        table.add_row(name, f"{sum(calls.values()):,}", detail, f"{seconds:.2f} s")
    console.print(table)
    console.print(
        f"peak RSS of the guard: {guard_rss:.0f} MB (the simulator process: {sim_rss:.0f} MB); "
        f"fleet seeded in {seeded:.1f} s"
    )


if __name__ == "__main__":
    main()
