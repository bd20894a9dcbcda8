"""SageMaker training plans (reserved capacity) in the simulator; moto 5.2 has none.

- ListTrainingPlans (Filters on Status, StartTimeAfter/Before, SortBy TrainingPlanName /
  StartTime / Status, paging by NextToken) and DescribeTrainingPlan (by name or ARN; an unknown
  one answers ResourceNotFound), shaped as the botocore model;
- the status follows the simulated clock: `Scheduled` before StartTime, `Active` until
  EndTime, `Expired` after (a plan seeded `Pending` or `Failed` stays so);
- InUseInstanceCount is what uses the plan now, unless the seed fixes it: for a
  `hyperpod-cluster` plan, the existing (not Pending) nodes of instance groups naming its ARN
  as TrainingPlanArn; for a `training-job` plan, the instances of InProgress training jobs
  whose ResourceConfig names it. AvailableInstanceCount = Total - InUse;
- tags through ListTags/AddTags and the Resource Groups Tagging API (`sagemaker:training-plan`).

Plans are seeded in-process (`Simulator.add_training_plan`): CreateTrainingPlan needs an
offering from SearchTrainingPlanOfferings, which is not simulated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceNotFound

from guard.sim import moto_ext
from guard.sim.base import SimBase
from guard.sim.hyperpod import clusters

_installed = False


@dataclass
class FakeTrainingPlan:
    arn: str
    name: str
    instance_type: str
    total: int
    start: datetime
    end: datetime
    upfront_fee: str
    currency: str
    target: str  # SageMakerResourceName: training-job, hyperpod-cluster, endpoint, studio-apps
    fixed_status: str | None = None  # Pending / Failed: not derived from the clock
    fixed_in_use: int | None = None
    availability_zone: str = "us-east-1a"
    tags: list[dict[str, str]] = field(default_factory=list)

    def status(self, now: datetime) -> str:
        if self.fixed_status:
            return self.fixed_status
        if now < self.start:
            return "Scheduled"
        return "Active" if now < self.end else "Expired"

    def in_use(self, backend: Any, now: datetime) -> int:
        if self.fixed_in_use is not None:
            return self.fixed_in_use
        if self.status(now) != "Active":
            return 0
        used = 0
        if self.target == "hyperpod-cluster":
            for cluster in clusters(backend).values():
                for group in cluster.groups.values():
                    if group.get("TrainingPlanArn") == self.arn:
                        nodes = cluster.group_nodes(group["InstanceGroupName"])
                        used += sum(1 for n in nodes if n.status != "Pending")
        if self.target == "training-job":
            for job in backend.training_jobs.values():
                config = job.resource_config or {}
                if (
                    job.training_job_status == "InProgress"
                    and config.get("TrainingPlanArn") == self.arn
                ):
                    used += int(config.get("InstanceCount", 1))
        return min(used, self.total)

    def summary(self, backend: Any, now: datetime) -> dict[str, Any]:
        minutes = int((self.end - self.start).total_seconds() // 60)
        status = self.status(now)
        in_use = self.in_use(backend, now)
        reserved_id = hashlib.sha256(self.arn.encode()).hexdigest()[:16]
        region, account = self.arn.split(":")[3:5]
        return {
            "TrainingPlanArn": self.arn,
            "TrainingPlanName": self.name,
            "Status": status,
            "DurationHours": minutes // 60,
            "DurationMinutes": minutes % 60,
            "StartTime": self.start,
            "EndTime": self.end,
            "UpfrontFee": self.upfront_fee,
            "CurrencyCode": self.currency,
            "TotalInstanceCount": self.total,
            "AvailableInstanceCount": self.total - in_use,
            "InUseInstanceCount": in_use,
            "TargetResources": [self.target],
            "ReservedCapacitySummaries": [
                {
                    "ReservedCapacityArn": f"arn:aws:sagemaker:{region}:{account}"
                    f":reserved-capacity/rc-{reserved_id}",
                    "ReservedCapacityType": "Instance",
                    "InstanceType": self.instance_type,
                    "TotalInstanceCount": self.total,
                    "Status": status,
                    "AvailabilityZone": self.availability_zone,
                    "DurationHours": minutes // 60,
                    "DurationMinutes": minutes % 60,
                    "StartTime": self.start,
                    "EndTime": self.end,
                }
            ],
        }


def plans(backend: Any) -> dict[str, FakeTrainingPlan]:
    """The training plans of one moto backend by name."""
    found: dict[str, FakeTrainingPlan] = backend.__dict__.setdefault(
        "_cost_guard_training_plans", {}
    )
    return found


def _find(backend: Any, name_or_arn: str) -> FakeTrainingPlan:
    found = plans(backend)
    plan = found.get(name_or_arn) or next((p for p in found.values() if p.arn == name_or_arn), None)
    if plan is None:
        raise ResourceNotFound(message=f"Training plan {name_or_arn} not found")
    return plan


def _handlers() -> dict[str, Callable[[Any], ActionResult]]:
    def describe_(self: Any) -> ActionResult:
        backend = self.sagemaker_backend
        plan = _find(backend, self._get_param("TrainingPlanName"))
        return ActionResult(plan.summary(backend, moto_ext.now()))

    def list_(self: Any) -> ActionResult:
        backend, now = self.sagemaker_backend, moto_ext.now()
        after = moto_ext.as_naive(self._get_param("StartTimeAfter"))
        before = moto_ext.as_naive(self._get_param("StartTimeBefore"))
        statuses = [f["Value"] for f in self._get_param("Filters") or [] if f["Name"] == "Status"]
        found = [
            p
            for p in plans(backend).values()
            if (after is None or p.start > after)
            and (before is None or p.start < before)
            and all(p.status(now) == s for s in statuses)
        ]
        keys: dict[str, Callable[[FakeTrainingPlan], Any]] = {
            "TrainingPlanName": lambda p: p.name,
            "StartTime": lambda p: p.start,
            "Status": lambda p: p.status(now),
        }
        by = self._get_param("SortBy") or "StartTime"
        found.sort(
            key=keys[by], reverse=(self._get_param("SortOrder") or "Ascending") == "Descending"
        )
        page, token = moto_ext.offset_page(
            found, self._get_param("NextToken"), self._get_param("MaxResults")
        )
        return ActionResult(
            {"TrainingPlanSummaries": [p.summary(backend, now) for p in page], "NextToken": token}
        )

    return {"describe_training_plan": describe_, "list_training_plans": list_}


def install() -> None:
    """Add the API to moto (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in _handlers().items():
        setattr(sm_responses.SageMakerResponse, name, handler)
    moto_ext.tag_source(
        ":training-plan/",
        "sagemaker:training-plan",
        lambda backend: list(plans(backend).values()),
    )


class TrainingPlanSeeding(SimBase):
    """Training plans, written in-process (no Create call is simulated)."""

    def add_training_plan(
        self,
        name: str,
        instance_type: str = "ml.p5.48xlarge",
        count: int = 2,
        *,
        start: datetime | None = None,
        duration: timedelta = timedelta(days=14),
        target: str = "hyperpod-cluster",
        upfront_fee: str = "33868.80",
        currency: str = "USD",
        in_use: int | None = None,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A plan reserving `count` instances of `instance_type` from `start` (default now) for
        `duration`, usable by `target` (training-job, hyperpod-cluster, endpoint,
        studio-apps). `in_use` fixes InUseInstanceCount; None = counted from what uses the
        plan. `status` "Pending"/"Failed" fixes the status; None = from the clock."""
        region = region or self.regions[0]
        backend = self._sagemaker(region, account)
        if target not in moto_ext.model_enum("SageMakerResourceName"):
            raise ValueError(f"unknown training plan target {target!r}")
        begin = moto_ext.naive_utc(start or self.clock.now())
        plan = FakeTrainingPlan(
            arn=f"arn:aws:sagemaker:{region}:{backend.account_id}:training-plan/{name}",
            name=name,
            instance_type=instance_type,
            total=count,
            start=begin,
            end=begin + duration,
            upfront_fee=upfront_fee,
            currency=currency,
            target=target,
            fixed_status=status,
            fixed_in_use=in_use,
            tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        plans(backend)[name] = plan
        return plan.arn
