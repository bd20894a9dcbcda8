"""`make bench`: a cycle over a simulated mixed fleet, next to the naive per-resource loop.

The fleet (by default 10,000 resources of every kind: notebooks and their storage, endpoints,
inference components, training/processing/transform and tuning jobs, Studio apps, HyperPod
clusters, MLflow servers; `--mix issue-15`: issue 15's 4,000 notebooks, 2,000 endpoints and
4,000 jobs) is spread over 2 accounts x 2 regions and served by moto in a separate
process (`bench/simproc.py`), so the guard's wall time and peak RSS are its own. Numbers, not
assertions: wall times still include moto answering on the same 2-core machine.

`--org N`: an AWS Organization of N member accounts in nested OUs, discovered by the guard
(`accounts: {organization: true}`), the fleet spread over every account x 2 regions; prints
each cycle's AWS calls by operation, wall time, peak and current RSS and database statements.

`--memory 10000,50000`: the guard's memory against the fleet's size, each size in a fresh
process: the scan is replaced by a synthetic fleet of that size (no AWS), yielded a kind of
an (account, region) at a time as `inventory.scan_targets` does (`--memory-targets`,
default 4; an older checkout: a target at a time, as its scan did); everything after it is
the real cycle (snapshot, rules, warnings, outbox, digest, report). Each cycle's own peak is
measured (the high-water mark is reset before it), next to the process's. `--guard-src DIR`
runs it against another checkout (e.g. `git archive HEAD | tar -x -C DIR`), for a before /
after comparison.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import naive
from guard.aws import Aws
from guard.config import Account, Config, Secrets
from guard.cycle import run_cycle
from guard.model import ManualClock
from guard.wiring import build_guard

START = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
# moto's default account and credentials (`guard.sim.base`). The simulator is imported only
# in its own process (`_serve`): moto's import alone is ~140 MB, which this process (the
# guard's, whose peak RSS is measured) would otherwise count as the guard's.
ACCOUNT_ID = "123456789012"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
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
    "hyperpod_cluster": 0.005,
    "inference_component": 0.01,
    "mlflow_server": 0.005,
    "notebook_storage": 0.01,
    "tuning_job": 0.005,
}
# The fleet issue 15 measured cost-guard and Cloud Custodian on (4,000 notebooks, 2,000
# endpoints, 4,000 jobs), before the bench's fleet grew the newer kinds: `--mix issue-15`.
ISSUE_MIX = {
    "notebook": 0.40,
    "endpoint": 0.20,
    "training_job": 0.20,
    "processing_job": 0.13,
    "transform_job": 0.07,
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
    parser.add_argument("--org", type=int, default=0, help="member accounts of an organisation")
    parser.add_argument("--org-resources", type=int, default=4_000)
    parser.add_argument("--org-cycles", type=int, default=3, help="steady cycles after the first")
    parser.add_argument("--memory", default="", help="fleet sizes, e.g. 10000,50000")
    parser.add_argument("--guard-src", default="", help="checkout whose guard --memory runs")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-targets",
        type=int,
        default=4,
        help="(account, region) pairs the --memory fleet is spread over (2 regions x N/2 "
        "accounts): the cycle holds a kind of one target at a time",
    )
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument(
        "--warmup-cycles",
        type=int,
        default=4,
        help="cycles between the first and the measured ones: Studio user profiles are checked "
        "for idle-shutdown settings from the second cycle on, at most 100 per account and "
        "region per cycle (the bench's 1,500 profiles: 4 cycles)",
    )
    parser.add_argument(
        "--mix",
        choices=("all-kinds", "issue-15"),
        default="all-kinds",
        help="the fleet's kinds: every kind (default), or issue 15's notebooks, endpoints and "
        "jobs only (40 / 20 / 40 %%)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive loop")
    args = parser.parse_args()
    console = Console(width=140)
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child, args.memory_targets)))
        return
    if args.org or args.memory:
        if args.org:
            _org_bench(console, args.org, args.org_resources, args.org_cycles)
        if args.memory:
            sizes = [int(n) for n in args.memory.split(",") if n.strip()]
            _memory_bench(console, sizes, args.guard_src, args.memory_targets)
        return
    targets = len(ACCOUNTS) * len(REGIONS)
    mix = ISSUE_MIX if args.mix == "issue-15" else MIX
    fleet = {kind: round(args.resources * share / targets) for kind, share in mix.items()}
    total = sum(fleet.values()) * targets

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    plan = {"accounts": [a["id"] for a in ACCOUNTS], "fleet": fleet}
    simulator = context.Process(target=_serve, args=(child, START, REGIONS, plan), daemon=True)
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
        # the migrations ran in a child process (guard.tables.upgrade), over before the first
        # cycle: its peak is reported beside the guard's, never hidden. An upper bound: Linux
        # counts in it the pages the child shared with this process until its exec.
        migration_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        # each cycle's own peak RSS (the high-water mark reset before it): which cycle
        # costs the memory (the first's describes, the Monday digest's backtest, ...)
        peaks: list[tuple[str, float]] = [("before the first cycle", peak_rss_mb())]
        reset_peak_rss()
        t = time.perf_counter()
        run_cycle(guard)
        rows.append(("cost-guard, first cycle", _calls(parent), time.perf_counter() - t))
        peaks.append(("first", cycle_peak_rss_mb()))

        steady: list[tuple[float, dict[str, int]]] = []
        for n in range(args.warmup_cycles + args.steady_cycles):
            clock.advance(timedelta(minutes=5))
            parent.send({"cmd": "advance", "minutes": 5})
            parent.recv()
            _calls(parent)  # the seeding moves are not the guard's calls
            reset_peak_rss()
            t = time.perf_counter()
            run_cycle(guard)
            seconds, calls = time.perf_counter() - t, _calls(parent)
            peaks.append((f"{'warm-up' if n < args.warmup_cycles else 'cycle'} {n + 1}",
                          cycle_peak_rss_mb()))  # fmt: skip
            if n < args.warmup_cycles:
                rows.append((f"cost-guard, warm-up cycle {n + 1}", calls, seconds))
            else:
                steady.append((seconds, calls))
        steady.sort(key=lambda s: s[0])
        seconds, calls = steady[len(steady) // 2]
        rows.append(("cost-guard, steady cycle (median)", calls, seconds))
        guard_rss = max(peak for _, peak in peaks)

        if not args.skip_naive:
            t = time.perf_counter()
            scanned, left_out = naive.covered([k for k, n in fleet.items() if n])
            for account in ACCOUNTS:
                for region in REGIONS:
                    naive.loop(Aws(), _account(account), region, scanned)
            label = "naive per-resource loop" + (f" (without {', '.join(left_out)})"
                                                 if left_out else "")  # fmt: skip
            rows.append((label, _calls(parent), time.perf_counter() - t))

    parent.send({"cmd": "rss"})
    sim_rss = parent.recv()
    parent.send({"cmd": "quit"})
    parent.recv()
    simulator.join(timeout=10)
    _print(console, rows, fleet, total, ready["seeded_seconds"], guard_rss, sim_rss)
    console.print("peak RSS by cycle: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in peaks))
    console.print(
        f"the migrations' own process, before the first cycle: at most {migration_rss:.0f} MB"
    )


def _serve(*args: Any) -> None:
    """The simulator process's entry point (`bench.simproc.serve`), imported there only."""
    from bench.simproc import serve

    serve(*args)


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


# --- an organisation: discovery, then first and steady cycles ---------------------------


def _org_bench(console: Console, members: int, resources: int, cycles: int) -> None:
    accounts = members + 1  # and the management account
    targets = accounts * len(REGIONS)
    fleet = {kind: max(1, round(resources * share / targets)) for kind, share in MIX.items()}
    total = sum(fleet.values()) * targets
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    plan = {"organization": members, "fleet": fleet}
    simulator = context.Process(target=_serve, args=(child, START, REGIONS, plan), daemon=True)
    simulator.start()
    console.print(f"seeding an organisation of {accounts} accounts, {total:,} resources...")
    ready = parent.recv()
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = ready["endpoint_url"]
    os.environ["AWS_DEFAULT_REGION"] = REGIONS[0]
    clock = ManualClock(START)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate(
            {
                "database_url": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "regions": list(REGIONS),
                "accounts": {"organization": True, "role_name": "cost-guard"},
                "rules": RULES,
                "secrets": Secrets.model_validate({}),
            }
        )
        guard = build_guard(cfg, clock)
        statements = _count_statements(guard.store.engine)
        for n in range(cycles + 1):
            if n:
                clock.advance(timedelta(minutes=5))
                parent.send({"cmd": "advance", "minutes": 5})
                parent.recv()
                _calls(parent)  # the seeding moves are not the guard's calls
            statements.clear()
            t = time.perf_counter()
            report = run_cycle(guard)
            seconds = time.perf_counter() - t
            name = "first cycle" if n == 0 else f"steady cycle {n}"
            rows.append(
                (name, _calls(parent), seconds, statements["n"], peak_rss_mb(), current_rss_mb(),
                 report.get("resources", 0), len(report.get("errors", [])))
            )  # fmt: skip
    parent.send({"cmd": "quit"})
    parent.recv()
    simulator.join(timeout=10)
    mix = ", ".join(f"{kind} {count * targets:,}" for kind, count in fleet.items())
    table = Table(
        title=f"An organisation of {accounts} accounts x {len(REGIONS)} regions, found by "
        f"discovery: {total:,} resources ({mix})"
    )
    for column in ("cycle", "AWS calls", "by operation", "wall", "DB statements",
                   "peak RSS", "RSS after", "resources", "errors"):  # fmt: skip
        table.add_column(column, justify="left" if column == "by operation" else "right")
    for name, calls, seconds, stmts, peak, now_rss, seen, errors in rows:
        by_op = Counter({op.split(":", 1)[1]: n for op, n in calls.items()})
        detail = ", ".join(f"{op} {n:,}" for op, n in sorted(by_op.items()))
        table.add_row(
            name, f"{sum(calls.values()):,}", detail, f"{seconds:.1f} s", f"{stmts:,}",
            f"{peak:.0f} MB", f"{now_rss:.0f} MB", f"{seen:,}", str(errors),
        )  # fmt: skip
    console.print(table)
    console.print(f"organisation seeded in {ready['seeded_seconds']:.1f} s")


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _count_statements(engine: Any) -> Counter[str]:
    """Statements sent to the database (an executemany counts once: one round trip)."""
    from sqlalchemy import event

    counts: Counter[str] = Counter()

    def count(*_: Any) -> None:
        counts["n"] += 1

    event.listen(engine, "before_cursor_execute", count)
    return counts


# --- memory against the fleet's size ------------------------------------------------------


def _memory_bench(console: Console, sizes: list[int], src: str, targets: int = 4) -> None:
    """Each size in a fresh process (peak RSS is per process)."""
    script = Path(__file__).resolve()
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve() if src else script.parent.parent)}
    table = Table(title=f"The cycle's memory against the fleet's size ({src or 'this checkout'})")
    columns = ("resources", "cycle", "wall", "DB statements", "peak RSS (the cycle)",
               "peak RSS (the process so far)", "RSS after")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for size in sizes:
        console.print(f"memory: {size:,} resources...")
        done = subprocess.run(
            [sys.executable, str(script), "--memory-child", str(size),
             "--memory-targets", str(targets)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            console.print(f"[red]{size}: failed[/red]\n{done.stderr[-2000:]}")
            continue
        for row in json.loads(done.stdout.strip().splitlines()[-1]):
            table.add_row(
                f"{size:,}", row["cycle"], f"{row['seconds']:.1f} s", f"{row['statements']:,}",
                f"{row['cycle_peak_mb']:.0f} MB", f"{row['peak_mb']:.0f} MB",
                f"{row['rss_mb']:.0f} MB",
            )  # fmt: skip
    console.print(table)


def _memory_child(size: int, targets: int = 4) -> list[dict[str, Any]]:
    """A first and two steady cycles over a synthetic fleet of `size` resources (run in a
    fresh process by `_memory_bench`; prints its rows as JSON)."""
    import logging

    import guard.cycle
    import guard.scanning
    from guard.model import ActivitySource, Resource, ScanResult

    logging.disable(logging.WARNING)  # thousands of first-cycle warnings go to the log
    clock = ManualClock(START)
    kinds = list(MIX)
    # 4 targets: the two accounts of ACCOUNTS x 2 regions, as before; more: more member
    # accounts (no AWS is called: the scan is synthetic)
    accounts = ACCOUNTS + [
        {"id": f"{222222222222 + n:012d}", "name": f"member-{n}",
         "role_arn": f"arn:aws:iam::{222222222222 + n:012d}:role/cost-guard"}
        for n in range(max(0, -(-targets // len(REGIONS)) - len(ACCOUNTS)))
    ]  # fmt: skip

    def where(target: int) -> tuple[str, str]:
        """(account, region) of target n: target % accounts, then the region."""
        per_region = -(-targets // len(REGIONS))
        return accounts[target % per_region]["id"], REGIONS[(target // per_region) % 2]

    def spec(i: int) -> dict[str, Any]:
        """Resource i of the fleet, made when the scan makes it: a fleet held by the bench
        would be counted in the guard's peak."""
        kind = kinds[i % len(kinds)]
        account, region = where(i % targets)
        name = f"{kind[:4]}-{i:06d}"
        return dict(
            arn=f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}",
            kind=kind, name=name, account=account, region=region,
            status="InService", running=True, instance_type="ml.m5.xlarge",
            instance_count=1, usd_per_hour=Decimal("0.23"), price_source="bundled",
            created_at=START - timedelta(days=2), running_since=START - timedelta(hours=6),
            activity_source=ActivitySource.IN_SERVICE_SINCE,
            tags={"owner": f"user{i % 50}@example.com", "team": f"team-{i % 7}", "env": "dev"},
            # what a describe leaves in `details` (config, variants, job limits)
            details={
                "key": {"Name": name},
                "config": {"Variants": [{"VariantName": "AllTraffic", "InstanceType":
                           "ml.m5.xlarge", "InitialInstanceCount": 1, "Image":
                           f"123456789012.dkr.ecr.us-east-1.amazonaws.com/model:{i}"}]},
                "environment": {f"VAR_{k}": "x" * 40 for k in range(12)},
            },
        )  # fmt: skip

    # A checkout whose scan hands a target over a kind at a time (`Target.take`) is fed the
    # same way; an older one a target at a time, as its `scan_targets` yielded.
    by_kind = hasattr(guard.scanning.Target, "take")

    def fake_scan(ctx: Any) -> Iterator[ScanResult]:
        """The scan as `scan_targets` yields it: resource i is in target i % targets
        (`spec`), of kind i % len(kinds)."""
        now = ctx.now
        for target in range(targets):
            account, region = where(target)
            for place, kinds_here in enumerate([[k] for k in kinds] if by_kind else [kinds]):
                part = ScanResult(
                    resources=[
                        Resource(
                            **spec(i),
                            last_activity=now - timedelta(minutes=1) if i % 3 == 0 else None,
                        )
                        for i in range(target, size, targets)
                        if kinds[i % len(kinds)] in kinds_here
                    ],
                    scanned={(account, region, kind) for kind in kinds_here},
                )
                if by_kind:
                    part.order = (target, place)
                yield part
                del part  # not held while the next part is made (nor by the real scan)

    if hasattr(guard.cycle, "scan_targets"):
        guard.cycle.scan_targets = fake_scan
    else:  # an older checkout (--guard-src): its cycle takes the whole scan at once
        guard.cycle.scan = lambda ctx: _merged(fake_scan(ctx))  # type: ignore[attr-defined]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.model_validate(
            {
                "database_url": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "regions": list(REGIONS),
                "accounts": accounts[: -(-targets // len(REGIONS))],
                "rules": [{"id": "idle", "kind": "notebook", "idle_for": "2h"}],
                "pricing": {"source": "bundled"},
                "secrets": Secrets.model_validate({}),
            }
        )
        g = build_guard(cfg, clock)
        statements = _count_statements(g.store.engine)
        process_peak = peak_rss_mb()  # resetting the high-water mark resets ru_maxrss too
        for n in range(3):
            if n:
                clock.advance(timedelta(minutes=5))
            statements.clear()
            reset_peak_rss()
            t = time.perf_counter()
            run_cycle(g)
            rows.append(
                {
                    "cycle": "first" if n == 0 else f"steady {n}",
                    "seconds": time.perf_counter() - t,
                    "statements": statements["n"],
                    "cycle_peak_mb": (cycle_peak := cycle_peak_rss_mb()),
                    "peak_mb": (process_peak := max(process_peak, cycle_peak)),
                    "rss_mb": current_rss_mb(),
                }
            )
    return rows


def _merged(batches: Iterator[Any]) -> Any:
    from guard.model import ScanResult

    whole = ScanResult()
    for batch in batches:
        whole.resources.extend(batch.resources)
        whole.scanned |= batch.scanned
    return whole


def reset_peak_rss() -> None:
    """Start this process's high-water mark (VmHWM) afresh: each cycle's own peak, not the
    process's so far (Linux: writing 5 to clear_refs resets it)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def cycle_peak_rss_mb() -> float:
    """The resident high-water mark since `reset_peak_rss`."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
