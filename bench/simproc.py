"""The benchmark's simulated AWS, in a process of its own.

Keeping moto (and the 10,000 seeded resources it holds) out of the guard's process means
the guard's peak RSS and wall time are the guard's own. The parent talks to this process
over a multiprocessing pipe: it gets the endpoint URL once the fleet is seeded, then sends
"advance" (move the simulated clock; people keep working), "counts" and "quit".
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from guard.model import ManualClock
from guard.sim import Simulator

# kind -> how to seed `count` of it into one (account, region); returns what "advance" moves
Seeder = Callable[[Simulator, int, str, str], Callable[[datetime], None]]


def _notebooks(sim: Simulator, count: int, region: str, account: str) -> Callable[[datetime], None]:
    prefix = f"nb-{account[-4:]}-{region}"
    names = sim.add_fleet(count, prefix=prefix, region=region, account=account)
    active = names[::3]  # a third of the people work every interval

    def advance(now: datetime) -> None:
        for name in active:
            sim.jupyter_activity(name, now - timedelta(minutes=1), region=region, account=account)

    return advance


def _endpoints(sim: Simulator, count: int, region: str, account: str) -> Callable[[datetime], None]:
    prefix = f"ep-{account[-4:]}-{region}"
    names = sim.add_endpoint_fleet(count, prefix=prefix, region=region, account=account)
    active = names[::3]

    def advance(now: datetime) -> None:
        for name in active:  # a third keep serving traffic
            sim.invocations(name, [now - timedelta(minutes=1)], region=region, account=account)

    return advance


def _jobs(kind: str) -> Seeder:
    def seed(sim: Simulator, count: int, region: str, account: str) -> Callable[[datetime], None]:
        prefix = f"{kind.split('_')[0]}-{account[-4:]}-{region}"
        # Training jobs report GPU utilization (some stalled), the others none.
        gpu = 2.0 if kind == "training_job" else None
        sim.add_job_fleet(count, kind=kind, prefix=prefix, region=region, account=account, gpu=gpu)
        return lambda now: None  # jobs just keep running

    return seed


def _apps(sim: Simulator, count: int, region: str, account: str) -> Callable[[datetime], None]:
    arns = sim.add_app_fleet(count, region=region, account=account)
    active = arns[::3]

    def advance(now: datetime) -> None:
        beat = (now - timedelta(minutes=1)).isoformat(timespec="seconds")
        for arn in active:  # a third of the people keep working: their heartbeat moves on
            sim.set_app_tags(
                arn, {"cost-guard:last-activity": beat}, region=region, account=account
            )

    return advance


SEEDERS: dict[str, Seeder] = {
    "notebook": _notebooks,
    "endpoint": _endpoints,
    "training_job": _jobs("training_job"),
    "processing_job": _jobs("processing_job"),
    "transform_job": _jobs("transform_job"),
    "studio_app": _apps,
}


def serve(
    conn: Connection, start: datetime, regions: tuple[str, ...], plan: dict[str, Any]
) -> None:
    """Seed `plan` ({"accounts": [...], "fleet": {kind: count per (account, region)}}), then
    answer the parent's commands until "quit"."""
    clock = ManualClock(start)
    sim = Simulator(clock, regions).start()
    began = time.perf_counter()
    movers = [
        SEEDERS[kind](sim, count, region, account)
        for account in plan["accounts"]
        for region in regions
        for kind, count in plan["fleet"].items()
        if count
    ]
    conn.send({"endpoint_url": sim.endpoint_url, "seeded_seconds": time.perf_counter() - began})
    sim.reset_counts()
    while True:
        command = conn.recv()
        if command["cmd"] == "advance":
            now = clock.advance(timedelta(minutes=command["minutes"]))
            for move in movers:
                move(now)
            conn.send("ok")
        elif command["cmd"] == "counts":
            conn.send(sim.request_counts)
            sim.reset_counts()
        elif command["cmd"] == "rss":
            conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        else:
            sim.stop()
            conn.send("bye")
            return
