"""The benchmark's simulated AWS, in a process of its own.

Keeping moto (and the 10,000 seeded resources it holds) out of the guard's process means
the guard's peak RSS and wall time are the guard's own. The parent talks to this process
over a multiprocessing pipe: it gets the endpoint URL once the fleet is seeded, then sends
"advance" (move the simulated clock; people keep working), "counts" and "quit". With
`plan["organization"] = N` it first creates an organisation of N member accounts and seeds
the fleet in each.
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


def _clusters(sim: Simulator, count: int, region: str, account: str) -> Callable[[datetime], None]:
    """HyperPod clusters: a controller and two GPU workers each, half EKS-orchestrated."""
    groups = (
        {"InstanceGroupName": "controller", "InstanceType": "ml.t3.medium", "InstanceCount": 1},
        {"InstanceGroupName": "workers", "InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
    )
    for i in range(count):
        name = f"hp-{account[-4:]}-{region}-{i:04d}"
        eks = f"eks-{name}" if i % 2 else None
        sim.add_hyperpod_cluster(name, groups, eks_cluster=eks, region=region, account=account)
    return lambda now: None  # nothing resizes them


def _components(
    sim: Simulator, count: int, region: str, account: str
) -> Callable[[datetime], None]:
    """Inference components, two per ml.g5.12xlarge endpoint (minimum 1); a third serve traffic."""
    names = []
    for i in range(count):
        endpoint = f"ic-{account[-4:]}-{region}-{i // 2:04d}"
        if i % 2 == 0:
            sim.add_component_endpoint(
                endpoint, "ml.g5.12xlarge", 1, min_instance_count=1, region=region, account=account
            )
        names.append(f"{endpoint}-{i % 2}")
        sim.add_inference_component(names[-1], endpoint, copies=1, region=region, account=account)
    active = names[::3]

    def advance(now: datetime) -> None:
        for name in active:
            sim.component_invocations(
                name, [now - timedelta(minutes=1)], region=region, account=account
            )

    return advance


def _mlflow_servers(
    sim: Simulator, count: int, region: str, account: str
) -> Callable[[datetime], None]:
    """MLflow tracking servers, Small, running since the start; every fourth stopped."""
    for i in range(count):
        status = "Stopped" if i % 4 == 3 else "Created"
        name = f"mlf-{account[-4:]}-{region}-{i:04d}"
        sim.add_mlflow_server(name, status=status, region=region, account=account)
    return lambda now: None  # AWS shows no activity for them


def _stopped_notebooks(
    sim: Simulator, count: int, region: str, account: str
) -> Callable[[datetime], None]:
    """Stopped notebook instances: volumes that keep billing (notebook_storage)."""
    for i in range(count):
        name = f"nbv-{account[-4:]}-{region}-{i:04d}"
        sim.add_notebook(name, status="Stopped", region=region, account=account)
    return lambda now: None


def _tuning_jobs(
    sim: Simulator, count: int, region: str, account: str
) -> Callable[[datetime], None]:
    """Tuning jobs with three children, two of them running (the training-job kind defers)."""
    for i in range(count):
        name = f"hpo-{account[-4:]}-{region}-{i:04d}"
        sim.add_tuning_job(name, children=3, running=2, region=region, account=account)
    return lambda now: None


SEEDERS: dict[str, Seeder] = {
    "notebook": _notebooks,
    "endpoint": _endpoints,
    "training_job": _jobs("training_job"),
    "processing_job": _jobs("processing_job"),
    "transform_job": _jobs("transform_job"),
    "studio_app": _apps,
    "hyperpod_cluster": _clusters,
    "inference_component": _components,
    "mlflow_server": _mlflow_servers,
    "notebook_storage": _stopped_notebooks,
    "tuning_job": _tuning_jobs,
}


def _organization(sim: Simulator, members: int) -> list[str]:
    """An organisation of `members` accounts (with the management account, members + 1),
    spread over two OUs, the second nested in the first; each reached by role cost-guard."""
    root = sim.create_organization()
    teams = sim.add_ou("teams", root)
    ml = sim.add_ou("ml", teams)
    return [sim.account_id] + [
        sim.add_account(f"member-{i:03d}", (teams, ml)[i % 2], role_name="cost-guard")
        for i in range(members)
    ]


def serve(
    conn: Connection, start: datetime, regions: tuple[str, ...], plan: dict[str, Any]
) -> None:
    """Seed `plan` ({"accounts": [...], "fleet": {kind: count per (account, region)}}), then
    answer the parent's commands until "quit"."""
    clock = ManualClock(start)
    sim = Simulator(clock, regions).start()
    began = time.perf_counter()
    if plan.get("organization"):  # member accounts created in nested OUs, ids from AWS
        plan = {**plan, "accounts": _organization(sim, int(plan["organization"]))}
    movers = [
        SEEDERS[kind](sim, count, region, account)
        for account in plan["accounts"]
        for region in regions
        for kind, count in plan["fleet"].items()
        if count
    ]
    conn.send(
        {
            "endpoint_url": sim.endpoint_url,
            "seeded_seconds": time.perf_counter() - began,
            "accounts": plan["accounts"],
        }
    )
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
