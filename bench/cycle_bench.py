"""`make bench`: AWS calls and wall time of a cycle over a simulated notebook fleet, next to
the naive per-notebook loop (list + describe + list-tags + log lookup), in the same run.

Numbers, not assertions: the simulator (moto on 127.0.0.1) runs in this process, so wall
times include the fake AWS's own work and peak RSS includes the simulator's memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from guard.aws import Aws
from guard.config import Config, Secrets
from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.scanners.notebook import NOTEBOOK_LOG_GROUP
from guard.sim import Simulator
from guard.wiring import build_guard

START = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
RULES = [{"id": "idle", "kind": "notebook", "idle_for": "2h", "action": "stop", "grace": "30m"}]


def naive_loop(aws: Aws, region: str) -> int:
    """What a per-resource script does: describe, list tags and look up logs per notebook."""
    sagemaker = aws.client(None, region, "sagemaker")
    logs = aws.client(None, region, "logs")
    seen = 0
    for page in sagemaker.get_paginator("list_notebook_instances").paginate(MaxResults=100):
        for nb in page["NotebookInstances"]:
            name = nb["NotebookInstanceName"]
            sagemaker.describe_notebook_instance(NotebookInstanceName=name)
            sagemaker.list_tags(ResourceArn=nb["NotebookInstanceArn"])
            logs.describe_log_streams(
                logGroupName=NOTEBOOK_LOG_GROUP, logStreamNamePrefix=f"{name}/jupyter.log"
            )
            seen += 1
    return seen


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notebooks", type=int, default=1000)
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument(
        "--active-share", type=float, default=0.3, help="share of notebooks in use each interval"
    )
    args = parser.parse_args()
    console = Console(width=120)

    clock = ManualClock(START)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with tempfile.TemporaryDirectory() as tmp, Simulator(clock) as sim, sim.environment():
        started = time.perf_counter()
        names = sim.add_fleet(args.notebooks, active_share=args.active_share)
        seeded = time.perf_counter() - started
        cfg = Config.model_validate(
            {
                "database_url": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "rules": RULES,
                "secrets": Secrets.model_validate({}),
            }
        )
        guard = build_guard(cfg, clock)
        rows: list[tuple[str, dict[str, Any], float]] = []

        t = time.perf_counter()
        first = run_cycle(guard)
        rows.append(
            ("cost-guard, first cycle (full log scan)", first["api_calls"], time.perf_counter() - t)
        )
        steady_times, steady = [], first
        active = names[:: max(1, round(1 / args.active_share))] if args.active_share else []
        for _ in range(args.steady_cycles):
            clock.advance(timedelta(minutes=5))
            for name in active:  # people keep working: their jupyter.log streams move on
                sim.jupyter_activity(name, clock.now() - timedelta(minutes=1))
            t = time.perf_counter()
            steady = run_cycle(guard)
            steady_times.append(time.perf_counter() - t)
        steady_times.sort()
        median = steady_times[len(steady_times) // 2]
        rows.append(("cost-guard, steady cycle (median)", steady["api_calls"], median))

        naive_aws = Aws()
        t = time.perf_counter()
        naive_loop(naive_aws, "us-east-1")
        rows.append(
            (
                "naive list+describe+tags+logs loop",
                naive_aws.counter.snapshot(),
                time.perf_counter() - t,
            )
        )

    table = Table(
        title=f"One scan of {args.notebooks:,} notebook instances (2 log streams each), "
        f"{len(active)} in use every interval"
    )
    for column in ("method", "AWS calls", "by operation", "wall time"):
        table.add_column(
            column, justify="right" if column in ("AWS calls", "wall time") else "left"
        )
    for name, calls, seconds in rows:
        detail = ", ".join(f"{op.split(':')[1]} {n}" for op, n in sorted(calls.items()))
        table.add_row(name, f"{sum(calls.values()):,}", detail, f"{seconds:.2f} s")
    console.print(table)
    console.print(
        f"fleet seeded in {seeded:.1f} s; peak RSS {peak_rss_mb():.0f} MB (this process, "
        "including the in-process simulator); wall times include moto's own work."
    )


if __name__ == "__main__":
    main()
