"""Training, processing and transform jobs in the simulator (moto patches and seeding).

What stock moto 5.2 lacks here, and this module adds (applied once by `install()`):

- a job created through the API is `InProgress` from the simulated clock's now (moto makes it
  `Completed` at once, with an end time), as SageMaker does until the job finishes;
- ListTrainingJobs/ListProcessingJobs/ListTransformJobs filter by `StatusEquals` *before*
  paging (moto cuts a page of `MaxResults` first, then filters, so pages come out short or
  empty while jobs remain), and by `CreationTimeAfter`/`Before` and
  `LastModifiedTimeAfter`/`Before` (moto ignores them): strictly after / before the time
  given, as botocore's service model documents them ("modified after the specified time");
- every change of a job's status moves its `LastModifiedTime` to the simulated clock's now,
  as SageMaker does (whatever makes the change: the API, seeding, a test, the tuning
  simulator), so a listing of what changed since a time sees every job that started or
  ended since;
- DescribeProcessingJob returns `ProcessingResources` and `ProcessingStartTime` (moto drops
  the first and never sets the second); a training job without a `StoppingCondition` gets
  SageMaker's default of one day;
- StopTrainingJob and StopTransformJob (missing in moto) and StopProcessingJob (moto jumps
  to `Stopped`) move `InProgress -> Stopping`, as SageMaker does; `settle_jobs()` finishes
  them; any other state is refused with a ValidationException, as SageMaker does.

GetMetricData over thousands of job datapoints is fast because `guard/sim/endpoints.py`
answers metric queries from an index (moto rescans every datapoint for every period of every
query); job metrics need nothing more, so that one patch serves both.

The Resource Groups Tagging API already covers `sagemaker:training-job`, `processing-job`
and `transform-job` in moto 5.2 (`SageMakerModelBackend.iter_tagged_resources`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import AWSValidationException
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

from guard.config import UTILIZATION_METRICS
from guard.kinds import KINDS
from guard.sim.base import FAKE_ROLE, SimBase
from guard.sim.moto_ext import as_naive, naive_utc, now

DEFAULT_MAX_RUNTIME = 86_400  # SageMaker's MaxRuntimeInSeconds when a training job names none
TERMINAL_STATES = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class _SimKind:
    """Where moto keeps one kind of job: `<prefix>_job_status`, `<prefix>_start_time`, ..."""

    kind: str  # guard kind name
    jobs_attr: str  # the backend's dict of jobs by name
    prefix: str  # attribute prefix on moto's job objects
    title: str  # as moto's and SageMaker's error messages say it
    name_param: str  # request parameter naming the job

    @property
    def summary(self) -> str:  # "Training" -> TrainingJobName, TrainingEndTime, ...
        return self.prefix.title()


SIM_KINDS: dict[str, _SimKind] = {
    k.kind: k
    for k in (
        _SimKind("training_job", "training_jobs", "training", "training job", "TrainingJobName"),
        _SimKind(
            "processing_job", "processing_jobs", "processing", "processing job", "ProcessingJobName"
        ),
        _SimKind(
            "transform_job", "transform_jobs", "transform", "transform job", "TransformJobName"
        ),
    )
}

_installed = False


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    backend = sm_models.SageMakerModelBackend
    for sim_kind in SIM_KINDS.values():
        op = sim_kind.kind
        original_create = getattr(backend, f"create_{op}")
        setattr(backend, f"create_{op}", _starting(original_create, sim_kind))
        setattr(backend, f"list_{op}s", _lister(sim_kind))
        setattr(backend, f"stop_{op}", _stopper(sim_kind))
        setattr(SageMakerResponse, f"stop_{op}", _stop_response(sim_kind))
    _bump_on_status_change(sm_models.FakeTrainingJob, SIM_KINDS["training_job"])
    _bump_on_status_change(sm_models.FakeProcessingJob, SIM_KINDS["processing_job"])
    _bump_on_status_change(sm_models.FakeTransformJob, SIM_KINDS["transform_job"])
    _keep_processing_resources()


def _bump_on_status_change(job_class: type, sim_kind: _SimKind) -> None:
    """Setting a job's status to a different one also sets its LastModifiedTime to now."""
    status_attr = f"{sim_kind.prefix}_job_status"
    original: Callable[[Any, str, Any], None] = job_class.__setattr__  # type: ignore[assignment]

    def set_attribute(self: Any, name: str, value: Any) -> None:
        if name == status_attr and name in self.__dict__ and self.__dict__[name] != value:
            original(self, "last_modified_time", now())
        original(self, name, value)

    job_class.__setattr__ = set_attribute  # type: ignore[method-assign,assignment]


# --- moto patches: jobs --------------------------------------------------------------------


def _start(job: Any, sim_kind: _SimKind, at: datetime) -> None:
    """Make a job `InProgress` since `at` (naive UTC), without an end time."""
    p = sim_kind.prefix
    job.creation_time = at
    # Placed (seeded) now, even when it started earlier: it is new to a listing of changes.
    job.last_modified_time = max(at, now())
    setattr(job, f"{p}_start_time", at)
    setattr(job, f"{p}_end_time", None)  # None fields are left out of moto's responses
    setattr(job, f"{p}_job_status", "InProgress")
    if sim_kind.kind == "training_job":
        job.secondary_status = "Training"
        if not job.stopping_condition:
            job.stopping_condition = {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME}


def _starting(original: Callable[..., Any], sim_kind: _SimKind) -> Callable[..., Any]:
    @functools.wraps(original)  # keeps the signature: `add_job_fleet` fills it by name
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = original(self, *args, **kwargs)
        _start(job, sim_kind, now())
        return job

    return create


def _lister(sim_kind: _SimKind) -> Callable[..., dict[str, Any]]:
    """List jobs oldest first, filtered *then* paged; NextToken is the next offset."""
    p, summary = sim_kind.prefix, sim_kind.summary

    def list_jobs(
        self: Any,
        next_token: str | None,
        max_results: int | None,
        creation_time_after: datetime | None,
        creation_time_before: datetime | None,
        last_modified_time_after: datetime | None,
        last_modified_time_before: datetime | None,
        name_contains: str | None,
        status_equals: str | None,
    ) -> dict[str, Any]:
        created = (as_naive(creation_time_after), as_naive(creation_time_before))
        modified = (as_naive(last_modified_time_after), as_naive(last_modified_time_before))
        jobs = [
            job
            for job in getattr(self, sim_kind.jobs_attr).values()
            if (status_equals is None or getattr(job, f"{p}_job_status") == status_equals)
            and (name_contains is None or name_contains in getattr(job, f"{p}_job_name"))
            and _within(job.creation_time, *created)
            and _within(job.last_modified_time, *modified)
        ]
        jobs.sort(key=lambda job: job.creation_time)
        try:
            first = int(next_token) if next_token else 0
        except ValueError:
            raise AWSValidationException("Invalid pagination token") from None
        last = first + (max_results or 100)
        summaries = [
            {
                f"{summary}JobName": getattr(job, f"{p}_job_name"),
                f"{summary}JobArn": job.arn,
                "CreationTime": job.creation_time,
                f"{summary}EndTime": getattr(job, f"{p}_end_time", None),
                "LastModifiedTime": job.last_modified_time,
                f"{summary}JobStatus": getattr(job, f"{p}_job_status"),
            }
            for job in jobs[first:last]
        ]
        return {
            f"{summary}JobSummaries": [
                {k: v for k, v in s.items() if v is not None} for s in summaries
            ],
            "NextToken": str(last) if last < len(jobs) else None,
        }

    return list_jobs


def _within(when: datetime, after: datetime | None, before: datetime | None) -> bool:
    """Strictly after `after` and strictly before `before` (either may be absent)."""
    return (after is None or when > after) and (before is None or when < before)


def _stopper(sim_kind: _SimKind) -> Callable[[Any, str], None]:
    p = sim_kind.prefix

    def stop(self: Any, name: str) -> None:
        job = getattr(self, sim_kind.jobs_attr).get(name)
        if job is None:
            arn = arn_formatter(f"{p}-job", name, self.account_id, self.region_name)
            raise SageMakerValidationError(message=f"Could not find {sim_kind.title} '{arn}'.")
        status = getattr(job, f"{p}_job_status")
        if status != "InProgress":
            raise SageMakerValidationError(
                message=f"The request was rejected because the {sim_kind.title} is in status "
                f"{status}."
            )
        setattr(job, f"{p}_job_status", "Stopping")
        job.last_modified_time = now()
        if sim_kind.kind == "training_job":
            job.secondary_status = "Stopping"

    return stop


def _stop_response(sim_kind: _SimKind) -> Callable[[Any], ActionResult]:
    def stop_job(self: Any) -> ActionResult:
        getattr(self.sagemaker_backend, f"stop_{sim_kind.kind}")(
            self._get_param(sim_kind.name_param)
        )
        return EmptyResult()

    return stop_job


def _keep_processing_resources() -> None:
    """moto's CreateProcessingJob drops ProcessingResources: keep it on the job."""
    original = SageMakerResponse.create_processing_job

    def create_processing_job(self: Any) -> ActionResult:
        result = original(self)
        job = self.sagemaker_backend.processing_jobs[self._get_param("ProcessingJobName")]
        job.processing_resources = self._get_param("ProcessingResources")
        return result

    SageMakerResponse.create_processing_job = create_processing_job  # type: ignore[method-assign]


# --- seeding -------------------------------------------------------------------------------


def _create_request(
    kind: str,
    name: str,
    instance_type: str,
    count: int,
    *,
    max_runtime: int | None,
    tags: Mapping[str, str] | None,
    spot: bool,
) -> dict[str, Any]:
    """The Create*Job request SageMaker needs for a job of this kind and size."""
    tag_list = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
    stopping = {"MaxRuntimeInSeconds": max_runtime} if max_runtime else None
    if kind == "training_job":
        if spot:  # SageMaker requires a wait limit for managed spot training
            stopping = {
                "MaxRuntimeInSeconds": max_runtime or DEFAULT_MAX_RUNTIME,
                "MaxWaitTimeInSeconds": 2 * (max_runtime or DEFAULT_MAX_RUNTIME),
            }
        request: dict[str, Any] = {
            "TrainingJobName": name,
            "AlgorithmSpecification": {
                "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:latest",
                "TrainingInputMode": "File",
            },
            "RoleArn": FAKE_ROLE,
            "OutputDataConfig": {"S3OutputPath": "s3://sim-bucket/output"},
            "ResourceConfig": {
                "InstanceType": instance_type,
                "InstanceCount": count,
                "VolumeSizeInGB": 50,
            },
            "EnableManagedSpotTraining": spot,
        }
    elif kind == "processing_job":
        request = {
            "ProcessingJobName": name,
            "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p"},
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceType": instance_type,
                    "InstanceCount": count,
                    "VolumeSizeInGB": 30,
                }
            },
            "RoleArn": FAKE_ROLE,
        }
    else:
        request = {
            "TransformJobName": name,
            "ModelName": f"{name}-model",
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://sim-bucket/in"}
                }
            },
            "TransformOutput": {"S3OutputPath": "s3://sim-bucket/out"},
            "TransformResources": {"InstanceType": instance_type, "InstanceCount": count},
        }
    if stopping and kind != "transform_job":  # transform jobs have no runtime limit
        request["StoppingCondition"] = stopping
    if tag_list:
        request["Tags"] = tag_list
    return request


def _camel(param: str) -> str:
    return "".join(word.title() for word in param.split("_"))


class JobSeeding(SimBase):
    """Seed jobs through the API (then set their times in-process), read their state back."""

    def add_training_job(
        self,
        name: str,
        instance_type: str = "ml.g5.xlarge",
        count: int = 1,
        *,
        started_at: datetime | None = None,
        max_runtime: int | None = None,
        status: str = "InProgress",
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
        spot: bool = False,
    ) -> str:
        return self.add_job(
            "training_job", name, instance_type, count, started_at=started_at,
            max_runtime=max_runtime, status=status, tags=tags, region=region,
            account=account, spot=spot,
        )  # fmt: skip

    def add_processing_job(
        self,
        name: str,
        instance_type: str = "ml.m5.xlarge",
        count: int = 1,
        *,
        started_at: datetime | None = None,
        max_runtime: int | None = None,
        status: str = "InProgress",
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        return self.add_job(
            "processing_job", name, instance_type, count, started_at=started_at,
            max_runtime=max_runtime, status=status, tags=tags, region=region, account=account,
        )  # fmt: skip

    def add_transform_job(
        self,
        name: str,
        instance_type: str = "ml.m5.xlarge",
        count: int = 1,
        *,
        started_at: datetime | None = None,
        status: str = "InProgress",
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        return self.add_job(
            "transform_job", name, instance_type, count, started_at=started_at,
            status=status, tags=tags, region=region, account=account,
        )  # fmt: skip

    def add_job(
        self,
        kind: str,
        name: str,
        instance_type: str,
        count: int = 1,
        *,
        started_at: datetime | None = None,
        max_runtime: int | None = None,
        status: str = "InProgress",
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
        spot: bool = False,
    ) -> str:
        """Create a job over HTTP, then place its start at `started_at` (the API cannot)."""
        region = region or self.regions[0]
        request = _create_request(
            kind, name, instance_type, count, max_runtime=max_runtime, tags=tags, spot=spot
        )
        response = getattr(self.client("sagemaker", region, account), f"create_{kind}")(**request)
        job = self._job(kind, name, region, account)
        self._place(job, kind, started_at or self.clock.now(), status)
        return str(response[f"{SIM_KINDS[kind].summary}JobArn"])

    def add_job_fleet(
        self,
        count: int,
        *,
        kind: str = "training_job",
        prefix: str = "job",
        region: str | None = None,
        instance_types: tuple[str, ...] = ("ml.g5.xlarge", "ml.m5.xlarge"),
        running_for: timedelta = timedelta(hours=6),
        gpu: float | None = None,
        metric_span: timedelta = timedelta(hours=1),
        account: str | None = None,
    ) -> list[str]:
        """Seed `count` jobs in-process (no HTTP), each with three tags; with `gpu`, every job
        also reports that GPU utilization once a minute over the last `metric_span`."""
        region = region or self.regions[0]
        backend = self._sagemaker(region, account)
        started = self.clock.now() - running_for
        creator = getattr(backend, f"create_{kind}")
        wanted = [p for p in inspect.signature(creator).parameters if p != "self"]
        names = []
        for i in range(count):
            name = f"{prefix}-{i:05d}"
            tags = {"owner": f"user{i % 50}@example.com", "team": f"team-{i % 7}", "env": "dev"}
            request = _create_request(
                kind, name, instance_types[i % len(instance_types)], 1 + i % 2,
                max_runtime=DEFAULT_MAX_RUNTIME, tags=tags, spot=False,
            )  # fmt: skip
            job = creator(**{p: request.get(_camel(p)) for p in wanted})
            if kind == "processing_job":
                job.processing_resources = request["ProcessingResources"]
            self._place(job, kind, started, "InProgress")
            if gpu is not None:
                minutes = int(metric_span.total_seconds() // 60)
                points = [(self.clock.now() - timedelta(minutes=m), gpu) for m in range(minutes)]
                for host in range(1, 2 + i % 2):  # every host of the job reports
                    self.job_metric(
                        kind, name, "gpu", points,
                        host=f"algo-{host}", region=region, account=account,
                    )  # fmt: skip
            names.append(name)
        return names

    def _job(self, kind: str, name: str, region: str | None, account: str | None) -> Any:
        backend = self._sagemaker(region or self.regions[0], account)
        return getattr(backend, SIM_KINDS[kind].jobs_attr)[name]

    def _place(self, job: Any, kind: str, started_at: datetime, status: str) -> None:
        sim_kind = SIM_KINDS[kind]
        _start(job, sim_kind, naive_utc(started_at))
        if status != "InProgress":
            setattr(job, f"{sim_kind.prefix}_job_status", status)
            if status in TERMINAL_STATES:
                setattr(job, f"{sim_kind.prefix}_end_time", naive_utc(self.clock.now()))

    def job_status(
        self, kind: str, name: str, *, region: str | None = None, account: str | None = None
    ) -> str:
        job = self._job(kind, name, region, account)
        return str(getattr(job, f"{SIM_KINDS[kind].prefix}_job_status"))

    def finish_job(
        self,
        kind: str,
        name: str,
        status: str = "Completed",
        *,
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """The job ends now with `status` (its LastModifiedTime moves, as on SageMaker)."""
        job = self._job(kind, name, region, account)
        prefix = SIM_KINDS[kind].prefix
        setattr(job, f"{prefix}_end_time", naive_utc(self.clock.now()))
        setattr(job, f"{prefix}_job_status", status)

    def job_metric(
        self,
        kind: str,
        job: str,
        metric: str,
        points: Iterable[tuple[datetime, float]],
        *,
        host: str = "algo-1",
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """Per-host utilization datapoints, as SageMaker writes them (Host=<job>/algo-N).

        `metric` is a rule's name for it (gpu, gpu_memory, cpu, memory) or a CloudWatch name.
        """
        namespace = KINDS[kind].utilization_namespace
        if not namespace:
            raise ValueError(f"{kind} jobs report no utilization metrics")
        self.put_metric(
            namespace,
            UTILIZATION_METRICS.get(metric, metric),
            {"Host": f"{job}/{host}"},
            points,
            region=region,
            account=account,
        )

    def gpu_utilization(
        self,
        job: str,
        points: Iterable[tuple[datetime, float]],
        *,
        host: str = "algo-1",
        kind: str = "training_job",
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        self.job_metric(kind, job, "gpu", points, host=host, region=region, account=account)

    def settle_jobs(self) -> None:
        """Finish what takes minutes on SageMaker: Stopping -> Stopped, with an end time."""
        at = naive_utc(self.clock.now())
        for region in self.regions:
            backend = self._sagemaker(region)
            for sim_kind in SIM_KINDS.values():
                p = sim_kind.prefix
                for job in getattr(backend, sim_kind.jobs_attr).values():
                    if getattr(job, f"{p}_job_status") == "Stopping":
                        setattr(job, f"{p}_job_status", "Stopped")
                        setattr(job, f"{p}_end_time", at)
                        job.last_modified_time = at
                        if sim_kind.kind == "training_job":
                            job.secondary_status = "Stopped"
