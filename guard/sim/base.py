"""The simulator's core: moto's server on 127.0.0.1, faults, clients and backends.

The per-kind seeding helpers (`guard/sim/endpoints.py`, `jobs.py`, `studio.py`) build on
`SimBase`; `guard.sim.simulator.Simulator` puts them together.
"""

from __future__ import annotations

import logging
import os
import socket
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self

import boto3
from botocore.config import Config as BotoConfig
from moto.backends import get_backend
from moto.cloudwatch.models import MetricDatum

from guard.model import Clock
from guard.sim.faults import Fault
from guard.sim.moto_ext import SimServer, install

ACCOUNT_ID = "123456789012"  # moto's default account
NOTEBOOK_LOG_GROUP = "/aws/sagemaker/NotebookInstances"
FAKE_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/sagemaker-notebooks"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def closed_port_url() -> str:
    """http://127.0.0.1:<port> where nothing listens (a port the OS just handed out and took
    back): connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SimBase:
    """One simulated account across `regions`, on its own local HTTP server."""

    def __init__(self, clock: Clock, regions: tuple[str, ...] = ("us-east-1",)) -> None:
        install(clock)
        self.clock = clock
        self.regions = regions
        self.account_id = ACCOUNT_ID
        self._server = SimServer()
        self.endpoint_url = ""

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Serve an empty simulated account. moto's backends are process-wide: a simulator
        started in a process that simulated an account before (the demo in a test worker)
        would otherwise begin with what was left there."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server.up()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.reset()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource (moto's reset) and any injected faults."""
        self._server.up()  # a test that took it down may have failed before bringing it back
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self._server.faults.heal()
        self._server.faults.reset_counts()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Point the standard boto3 chain at this simulator (for the demo and subprocesses)."""
        changes = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}
        saved = {key: os.environ.get(key) for key in changes}
        os.environ.update(changes)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def env(self, unreachable: Iterable[str] = ()) -> dict[str, str]:
        """The environment of a process using this simulator; services in `unreachable`
        (boto3 service names, e.g. "sagemaker") point at a closed port: connection refused."""
        env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}
        for service in unreachable:
            key = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_").replace(" ", "_")
            env[key] = closed_port_url()
        return env

    # --- faults and counts ---------------------------------------------------------------

    def fail(self, *operations: str, region: str = "*") -> None:
        """Make operations (e.g. "logs:DescribeLogStreams") fail with AccessDenied."""
        self._server.faults.fail(operations, region)

    def slow(self, *operations: str, seconds: float) -> None:
        """Make operations answer only after `seconds` (a slow or overloaded API)."""
        self._server.faults.slow(operations, seconds)

    def inject(
        self,
        kind: str,
        operation: str = "*",
        *,
        account: str = "*",
        region: str = "*",
        times: int | None = None,
        rate: float = 1.0,
        seconds: float | None = None,
        status: int | None = None,
        after: str | None = None,
    ) -> Fault:
        """Fail matching requests with a fault `kind` (see guard/sim/faults.py): "denied",
        "reset", "reset-mid", "timeout", "slow", "expired", "throttle", "5xx", "html502",
        "applied-reset". `operation` is "service:Operation", "service:*" or "*"; `account`
        and `region` narrow it; `times` / `rate` make it transient; `after` arms it once
        another operation was requested. `.off()` removes it."""
        return self._server.faults.inject(
            kind, operation, account=account, region=region, times=times, rate=rate,
            seconds=seconds, status=status, after=after,
        )  # fmt: skip

    def heal(self) -> None:
        """Remove every injected fault, and listen again after `down()`."""
        self._server.faults.heal()
        self._server.up()

    def down(self) -> None:
        """AWS unreachable: nothing listens on the simulator's port (connection refused) until
        `up()` or `heal()`. Resources are kept."""
        self._server.down()

    def up(self) -> None:
        self._server.up()

    @contextmanager
    def outage(self) -> Iterator[None]:
        """`down()` for the duration of a `with` block."""
        self.down()
        try:
            yield
        finally:
            self.up()

    @property
    def request_counts(self) -> dict[str, int]:
        return dict(self._server.faults.counts)

    def reset_counts(self) -> None:
        self._server.faults.reset_counts()

    # --- seeding -----------------------------------------------------------------------

    def client(self, service: str, region: str | None = None, account: str | None = None) -> Any:
        """A boto3 client on the simulator; `account` = a member account (via AssumeRole)."""
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        if account and account != self.account_id:
            role = f"arn:aws:iam::{account}:role/simulator-seed"
            assumed = self.client("sts").assume_role(RoleArn=role, RoleSessionName="seed")
            creds = assumed["Credentials"]
            credentials = {
                "aws_access_key_id": creds["AccessKeyId"],
                "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"],
            }
        return boto3.client(
            service,
            region_name=region or self.regions[0],
            endpoint_url=self.endpoint_url,
            config=BotoConfig(retries={"mode": "standard", "max_attempts": 2}),
            **credentials,
        )

    def _sagemaker(self, region: str, account: str | None = None) -> Any:
        return get_backend("sagemaker")[account or self.account_id][region]

    def _logs(self, region: str, account: str | None = None) -> Any:
        return get_backend("logs")[account or self.account_id][region]

    def put_metric(
        self,
        namespace: str,
        name: str,
        dimensions: Mapping[str, str],
        points: Iterable[tuple[datetime, float]],
        *,
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """Datapoints of a CloudWatch metric at given (past) times, written into moto."""
        backend = get_backend("cloudwatch")[account or self.account_id][region or self.regions[0]]
        dims = [{"Name": k, "Value": v} for k, v in dimensions.items()]
        for when, value in points:
            backend.metric_data.append(
                MetricDatum(
                    namespace=namespace,
                    name=name,
                    value=float(value),
                    dimensions=dims,
                    timestamp=when.astimezone(UTC),
                )
            )
