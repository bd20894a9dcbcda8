"""`make bench` (second part): a backtest of 30 days x 10,000 resources, timed.

A SQLite database is filled with a synthetic recorded month (bulk inserts, not cycles: the
cycle has its own benchmark): hourly snapshots of a fleet where 40 % of the resources are used
on weekdays 09-17, 20 % at random hours, 10 % never, and 30 % are endpoints invoked on
weekdays. Only changes are rows, as the guard records them. Then `cost-guard backtest`'s own
function runs over it (current rules next to a tighter candidate) and the time to load the
history and to replay each rule set is printed. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from guard import backtest
from guard.config import Config
from guard.store import Store, upgrade
from guard.tables import CycleRow, EvidenceRow, EvidenceSnapshotRow, ResourceRow

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ACCOUNT, REGION = "123456789012", "us-east-1"
RULES: list[dict[str, Any]] = [
    {"id": "idle-notebooks", "kind": "notebook", "idle_for": "2h", "action": "stop",
     "grace": "30m"},
    {"id": "idle-endpoints", "kind": "endpoint", "idle_for": "12h", "action": "delete",
     "grace": "1h"},
]  # fmt: skip
CANDIDATE = [{**RULES[0], "idle_for": "1h"}, {**RULES[1], "idle_for": "6h"}]


def _used(pattern: str, at: datetime, rng: random.Random) -> bool:
    if pattern == "office":
        return at.weekday() < 5 and 9 <= at.hour < 18 and rng.random() < 0.8
    if pattern == "random":
        return rng.random() < 0.05
    return False


def fill(store: Store, resources: int, days: int, seed: int = 1) -> datetime:
    """Write the synthetic month; returns its end."""
    rng = random.Random(seed)
    fleet = []
    for i in range(resources):
        share = i / resources
        kind = "endpoint" if share >= 0.7 else "notebook"
        pattern = "office" if share < 0.4 or kind == "endpoint" else "random"
        if 0.6 <= share < 0.7:
            pattern = "never"
        noun = "notebook-instance" if kind == "notebook" else "endpoint"
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{noun}/r{i:05d}"
        fleet.append((arn, kind, f"r{i:05d}", pattern))
    hours = days * 24
    with store.session() as s:
        s.execute(
            insert(ResourceRow),
            [
                {
                    "arn": arn,
                    "kind": kind,
                    "name": name,
                    "account": ACCOUNT,
                    "region": REGION,
                    "status": "InService",
                    "running": True,
                    "instance_type": "ml.m5.xlarge",
                    "instance_count": 1,
                    "usd_per_hour": Decimal("0.23"),
                    "price_source": "bundled",
                    "created_at": START,
                    "running_since": START,
                    "last_activity": None,
                    "activity_source": "in-service-since",
                    "evidence_error": None,
                    "tags": {"owner": f"u{i % 300}@example.com"},
                    "details": {},
                    "utilization": {},
                    "first_seen": START,
                    "last_seen": START,
                    "gone_at": None,
                    "evidence_key": "bench",
                }
                for i, (arn, kind, name, _) in enumerate(fleet)
            ],
        )
    rows: list[dict[str, Any]] = []
    for arn, kind, _name, pattern in fleet:
        source = "jupyter-log" if kind == "notebook" else "invocations-metric"
        last = None
        for h in range(hours):
            at = START + timedelta(hours=h)
            if h and not _used(pattern, at, rng):
                continue
            if h:
                last = at
            rows.append(
                {
                    "arn": arn,
                    "at": at,
                    "status": "InService",
                    "running": True,
                    "instance_type": "ml.m5.xlarge",
                    "instance_count": 1,
                    "usd_per_hour": Decimal("0.23"),
                    "running_since": START,
                    "last_activity": last,
                    "activity_source": source if last else "in-service-since",
                    "tags": {},
                    "utilization": {},
                    "snoozed_until": None,
                }
            )
    times = [START + timedelta(hours=h) for h in range(hours)]
    with store.session() as s:
        for chunk in range(0, len(rows), 20_000):
            s.execute(insert(EvidenceRow), rows[chunk : chunk + 20_000])
        s.execute(insert(EvidenceSnapshotRow), [{"at": t, "missed": {"arns": []}} for t in times])
        s.execute(
            insert(CycleRow),
            [{"started_at": t, "finished_at": t, "mode": "enforce", "report": {}} for t in times],
        )
    print(f"recorded: {len(rows):,} evidence rows, {hours} cycles, {resources:,} resources")
    return START + timedelta(hours=hours - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'backtest-bench.db'}"
        upgrade(url)
        store = Store(url)
        began = time.perf_counter()
        end = fill(store, args.resources, args.days)
        print(f"fill: {time.perf_counter() - began:.1f} s (setup, not the backtest)")
        cfg = Config.model_validate({"database_url": url, "rules": RULES})
        candidate = cfg.with_overrides(rules=CANDIDATE)
        since = START + timedelta(hours=1)

        cpu, began = time.process_time(), time.perf_counter()
        history = backtest.load_history(store, since, end, backtest.warm_up_for(cfg, candidate))
        loaded = time.perf_counter() - began
        began = time.perf_counter()
        current = backtest.replay(history, cfg)
        replay_current = time.perf_counter() - began
        began = time.perf_counter()
        tighter = backtest.replay(history, candidate)
        replay_candidate = time.perf_counter() - began
        cpu = time.process_time() - cpu  # the machine may be shared: CPU time says more
        data = backtest.report(history, cfg, current, candidate, tighter)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"backtest of {args.days} days x {args.resources:,} resources "
            f"({data['cycles']} cycles): load {loaded:.1f} s, replay current rules "
            f"{replay_current:.1f} s, replay candidate {replay_candidate:.1f} s, total "
            f"{loaded + replay_current + replay_candidate:.1f} s wall, {cpu:.1f} s CPU; "
            f"peak RSS {rss:.0f} MiB"
        )
        print(
            f"current rules: {data['current']['actions']:,} actions, "
            f"${data['current']['saved_usd']}; candidate: {data['candidate']['actions']:,} "
            f"actions, ${data['candidate']['saved_usd']}, "
            f"{len(data['candidate']['busy_stops']):,} would-be busy stops"
        )
        store.close()


if __name__ == "__main__":
    main()
