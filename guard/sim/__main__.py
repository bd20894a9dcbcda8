"""`python -m guard.sim`: the simulated SageMaker account as a process of its own.

For trying a real deployment (the container image, `cost-guard once` against a config file)
without AWS: it starts the simulator on 127.0.0.1, seeds a small account (`--seed demo`),
prints its endpoint URL as the first line on stdout and serves until SIGTERM or Ctrl-C.
Point the guard at it with `AWS_ENDPOINT_URL=<url>` and any credentials (`testing`).

The simulator runs on the real clock here, so the guard's own clock agrees with it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import timedelta
from types import FrameType

from guard.model import SystemClock
from guard.sim.simulator import Simulator

# What `--seed demo` creates, for scripts that check the guard saw it.
DEMO_NOTEBOOKS = ("alice-idle", "bob-busy", "carol-exempt")
DEMO_ENDPOINTS = ("churn-model-staging",)


def seed_demo(sim: Simulator) -> None:
    """Three notebook instances (one idle, one busy, one exempt) and an idle endpoint."""
    now = sim.clock.now()
    sim.add_notebook("alice-idle", "ml.m5.xlarge", tags={"owner": "alice@example.com"},
                     in_service_since=now - timedelta(hours=7))  # fmt: skip
    sim.jupyter_activity("alice-idle", now - timedelta(hours=3))
    sim.add_notebook("bob-busy", "ml.t3.medium", tags={"owner": "bob@example.com"},
                     in_service_since=now - timedelta(hours=2))  # fmt: skip
    sim.jupyter_activity("bob-busy", now - timedelta(minutes=2))
    sim.add_notebook("carol-exempt", "ml.m5.4xlarge",
                     tags={"owner": "carol@example.com", "cost-guard:exempt": "true"},
                     in_service_since=now - timedelta(days=2))  # fmt: skip
    sim.add_endpoint("churn-model-staging", "ml.m5.xlarge", 2,
                     tags={"owner": "frank@example.com"},
                     created_at=now - timedelta(days=2))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m guard.sim", description="Serve a simulated SageMaker account."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (0.0.0.0 inside a container)"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--seed", choices=("none", "demo"), default="none", help="resources to create at start"
    )
    args = parser.parse_args(argv)

    sim = Simulator(SystemClock(), (args.region,))
    # SimServer binds 127.0.0.1 on a port the OS picks (right for tests); a fixed address is
    # for scripts and compose files that must know it in advance. moto's server reads these
    # two attributes when it starts.
    sim._server._ip_address = args.host
    sim._server._port = args.port
    sim.start()
    if args.seed == "demo":
        seed_demo(sim)
    sim.reset_counts()

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(sim.endpoint_url, flush=True)  # one line: the caller waits for it
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
