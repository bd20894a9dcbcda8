"""A simulated SageMaker account: moto's server on 127.0.0.1 plus seeding helpers.

Used by the tests, `cost-guard demo` and the benchmark. Seeding writes straight into moto's
in-process backends where the API cannot express the state (times in the past, log events
at a given time); everything the guard does goes through boto3 over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from moto.logs.models import LogEvent

from guard.sim import endpoints, inference
from guard.sim.base import FAKE_ROLE, NOTEBOOK_LOG_GROUP, SimBase
from guard.sim.costs import CostSeeding
from guard.sim.endpoints import EndpointSeeding
from guard.sim.hyperpod import HyperPodSeeding
from guard.sim.inference import InferenceSeeding
from guard.sim.jobs import JobSeeding
from guard.sim.mlflow import MlflowSeeding
from guard.sim.moto_ext import naive_utc
from guard.sim.organizations import OrganizationSeeding
from guard.sim.pricing import PricingSeeding
from guard.sim.studio import StudioSeeding
from guard.sim.training_plans import TrainingPlanSeeding
from guard.sim.tuning import TuningSeeding


class Simulator(
    EndpointSeeding, JobSeeding, StudioSeeding, CostSeeding, PricingSeeding,
    MlflowSeeding, HyperPodSeeding, InferenceSeeding, TuningSeeding, TrainingPlanSeeding,
    OrganizationSeeding, SimBase,
):  # fmt: skip
    """One simulated account (and its member accounts) across `regions`."""

    def reset(self) -> None:
        """Forget every resource, fault, and pending create or update."""
        super().reset()
        endpoints.forget()
        inference.forget()

    def add_notebook(
        self,
        name: str,
        instance_type: str = "ml.t3.medium",
        *,
        region: str | None = None,
        tags: Mapping[str, str] | None = None,
        in_service_since: datetime | None = None,
        created_at: datetime | None = None,
        status: str = "InService",
        account: str | None = None,
    ) -> str:
        """Create a notebook instance as if it had been running since `in_service_since`."""
        region = region or self.regions[0]
        response = self.client("sagemaker", region, account).create_notebook_instance(
            NotebookInstanceName=name,
            InstanceType=instance_type,
            RoleArn=FAKE_ROLE,
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        notebook = self._sagemaker(region, account).notebook_instances[name]
        since = in_service_since or self.clock.now()
        notebook.creation_time = naive_utc(created_at or since)
        notebook.last_modified_time = naive_utc(since)
        notebook.status = status
        self.lifecycle_log(name, since, region=region, account=account)
        return str(response["NotebookInstanceArn"])

    def add_fleet(
        self,
        count: int,
        *,
        prefix: str = "nb",
        region: str | None = None,
        instance_types: tuple[str, ...] = ("ml.t3.medium", "ml.m5.xlarge", "ml.g5.xlarge"),
        running_for: timedelta = timedelta(hours=6),
        active_share: float = 0.3,
        account: str | None = None,
    ) -> list[str]:
        """Seed a fleet in-process (no HTTP): `count` notebooks with three tags each and the
        two log streams every notebook has; `active_share` of them used Jupyter 10 min ago."""
        region = region or self.regions[0]
        backend = self._sagemaker(region, account)
        now = self.clock.now()
        names = []
        active_every = max(1, round(1 / active_share)) if active_share > 0 else 0
        for i in range(count):
            name = f"{prefix}-{i:05d}"
            tags = {"owner": f"user{i % 50}@example.com", "team": f"team-{i % 7}", "env": "dev"}
            notebook = backend.create_notebook_instance(
                notebook_instance_name=name,
                instance_type=instance_types[i % len(instance_types)],
                role_arn=FAKE_ROLE,
                tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
            notebook.creation_time = notebook.last_modified_time = naive_utc(now - running_for)
            self.lifecycle_log(name, now - running_for, region=region, account=account)
            last_use = now - (
                timedelta(minutes=10) if active_every and i % active_every == 0 else running_for
            )
            self.jupyter_activity(name, last_use, region=region, account=account)
            names.append(name)
        return names

    def set_tags(self, name: str, tags: Mapping[str, str], *, region: str | None = None) -> None:
        region = region or self.regions[0]
        arn = self._sagemaker(region).notebook_instances[name].arn
        self.client("sagemaker", region).add_tags(
            ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )

    def notebook_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str:
        backend = self._sagemaker(region or self.regions[0], account)
        return str(backend.notebook_instances[name].status)

    def start_notebook(self, name: str, *, region: str | None = None) -> None:
        self.client("sagemaker", region).start_notebook_instance(NotebookInstanceName=name)

    def jupyter_activity(
        self, name: str, at: datetime, *, region: str | None = None, account: str | None = None
    ) -> None:
        """Someone used Jupyter on `name` at `at`: the jupyter.log stream's last event."""
        self._log_event(name, "jupyter.log", at, "[I] Kernel started", region, account)

    def lifecycle_log(
        self, name: str, at: datetime, *, region: str | None = None, account: str | None = None
    ) -> None:
        """The on-start lifecycle script's stream: not user activity, but there to ignore."""
        message = "lifecycle: on-start done"
        self._log_event(name, "LifecycleConfigOnStart", at, message, region, account)

    def _log_event(
        self,
        name: str,
        stream: str,
        at: datetime,
        message: str,
        region: str | None,
        account: str | None = None,
    ) -> None:
        logs = self._logs(region or self.regions[0], account)
        if NOTEBOOK_LOG_GROUP not in logs.groups:
            logs.create_log_group(NOTEBOOK_LOG_GROUP, {})
        group = logs.groups[NOTEBOOK_LOG_GROUP]
        stream_name = f"{name}/{stream}"
        if stream_name not in group.streams:
            group.create_log_stream(stream_name)
        millis = int(at.timestamp() * 1000)
        log_stream = group.streams[stream_name]
        # Keep one event per stream: only the latest matters and moto rescans events per call.
        log_stream.events = [LogEvent(millis, {"timestamp": millis, "message": message})]
        log_stream.last_ingestion_time = naive_utc(at)

    def assumed_roles(self, account: str) -> list[tuple[str, str | None]]:
        """(role ARN, ExternalId) of every AssumeRole into `account`, oldest first."""
        from moto.sts.models import sts_backends

        return [(r.role_arn, r.external_id) for r in sts_backends[account]["aws"].assumed_roles]

    def settle(self) -> None:
        """Finish transitions that take minutes on AWS: notebooks and jobs Stopping -> Stopped."""
        for region in self.regions:
            for notebook in self._sagemaker(region).notebook_instances.values():
                if notebook.status == "Stopping":
                    notebook.status = "Stopped"
                    notebook.last_modified_time = naive_utc(self.clock.now())
        self.settle_jobs()
        self.settle_mlflow()  # and the newer kinds' Creating/Stopping/Updating/Deleting
        self.settle_clusters()
        self.settle_inference()
        self.settle_tuning()
