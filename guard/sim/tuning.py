"""Hyperparameter tuning and AutoML jobs in the simulator: parents of training jobs.

moto 5.2 models both, but not as SageMaker runs them. Changed here:

- a tuning job is `InProgress` from the simulated clock's now, without an end time or the
  made-up best training job moto invents; its TrainingJobStatusCounters, ObjectiveStatusCounters
  and BestTrainingJob come from its child training jobs;
- child training jobs are ordinary training jobs (ListTrainingJobs lists them, as on AWS)
  whose DescribeTrainingJob names their parent (`TuningJobArn`, `AutoMLJobArn`); a tuning
  job's children carry its tags, as SageMaker adds them;
- ListTrainingJobsForHyperParameterTuningJob (missing in moto) pages its children by NextToken,
  sorted by Name unless told otherwise, filtered by StatusEquals;
- StopHyperParameterTuningJob (missing in moto) and StopAutoMLJob (moto jumps to `Stopped`)
  move the parent and its running children to `Stopping`, then `Stopped` after
  `moto_ext.TRANSITION` of simulated time or `Simulator.settle()`; a job not `InProgress` is
  refused with ValidationException, an unknown one answers ResourceNotFound;
- an AutoML job (CreateAutoMLJobV2 / DescribeAutoMLJobV2 / ListAutoMLJobs) has no end time nor
  invented best candidate while it runs, and its secondary status says what it does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceNotFound
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase

TERMINAL = ("Completed", "Failed", "Stopped")
CHILD_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:latest"
_installed = False


def _backend(job: Any) -> Any:
    """The backend holding `job` (moto's job objects do not all keep account and region)."""
    region, account = job.arn.split(":")[3:5]
    return sm_models.sagemaker_backends[account][region]


def _children(job: Any, attr: str) -> list[Any]:
    """The training jobs whose parent (`attr`: tuning_job_arn / auto_ml_job_arn) is `job`."""
    return [t for t in _backend(job).training_jobs.values() if getattr(t, attr, None) == job.arn]


def _compact(response: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if v not in (None, "", [], {})}


def _stop_children(children: list[Any], at: datetime) -> None:
    for child in children:
        if child.training_job_status == "InProgress":
            child.training_job_status = child.secondary_status = "Stopping"
            child.last_modified_time = at


def _finish_children(children: list[Any], at: datetime) -> None:
    for child in children:
        if child.training_job_status == "Stopping":
            child.training_job_status = child.secondary_status = "Stopped"
            child.training_end_time = child.last_modified_time = at


# --- hyperparameter tuning jobs ----------------------------------------------------------------


def _settle_tuning(job: Any, at: datetime | None) -> None:
    due = getattr(job, "changes_at", None)
    if job.hyper_parameter_tuning_job_status != "Stopping" or due is None:
        return
    if at is not None and at < due:
        return
    when = due if at is not None else moto_ext.now()
    job.hyper_parameter_tuning_job_status = "Stopped"
    job.hyper_parameter_tuning_end_time = job.last_modified_time = when
    job.changes_at = None
    _finish_children(_children(job, "tuning_job_arn"), when)


def settle_backend(backend: Any, at: datetime | None) -> None:
    """End the parents' transitions due by `at` (every one when `at` is None)."""
    for tuning in backend.hyper_parameter_tuning_jobs.values():
        _settle_tuning(tuning, at)
    for automl in backend.auto_ml_jobs.values():
        _settle_automl(automl, at)


def _tuning_counters(children: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    status = [c.training_job_status for c in children]
    training = {
        "Completed": status.count("Completed"),
        "InProgress": status.count("InProgress") + status.count("Stopping"),
        "RetryableError": 0,
        "NonRetryableError": status.count("Failed"),
        "Stopped": status.count("Stopped"),
    }
    objective = {
        "Succeeded": status.count("Completed"),
        "Pending": status.count("InProgress") + status.count("Stopping"),
        "Failed": status.count("Failed") + status.count("Stopped"),
    }
    return training, objective


def _child_summary(child: Any, tuning: Any) -> dict[str, Any]:
    return _compact(
        {
            "TrainingJobName": child.training_job_name,
            "TrainingJobArn": child.arn,
            "TuningJobName": tuning.hyper_parameter_tuning_job_name,
            "CreationTime": child.creation_time,
            "TrainingStartTime": child.training_start_time,
            "TrainingEndTime": child.training_end_time,
            "TrainingJobStatus": child.training_job_status,
            "ObjectiveStatus": {"Completed": "Succeeded", "InProgress": "Pending"}.get(
                child.training_job_status, "Failed"
            ),
        }
    ) | {"TunedHyperParameters": dict(child.hyper_parameters or {})}


def _patch_tuning_job() -> None:
    job_class = sm_models.HyperParameterTuningJob
    original_init = job_class.__init__
    original_describe = job_class.describe
    original_summary = job_class.summary

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.creation_time = self.last_modified_time = moto_ext.now()
        self.hyper_parameter_tuning_job_status = "InProgress"
        self.hyper_parameter_tuning_end_time = None
        self.best_training_job = self.OverallBestTrainingJob = None
        self.tuning_job_completion_details = None
        self.changes_at = None

    def live(self: Any, response: dict[str, Any]) -> dict[str, Any]:
        children = _children(self, "tuning_job_arn")
        training, objective = _tuning_counters(children)
        response["TrainingJobStatusCounters"] = training
        response["ObjectiveStatusCounters"] = objective
        return _compact(response)

    def describe(self: Any) -> dict[str, Any]:
        _settle_tuning(self, moto_ext.now())
        response = live(self, dict(original_describe(self)))
        response.pop("OverallBestTrainingJob", None)
        done = [
            c for c in _children(self, "tuning_job_arn") if c.training_job_status == "Completed"
        ]
        if done:  # no objective metrics here: the first finished child stands for the best
            response["BestTrainingJob"] = _child_summary(
                min(done, key=lambda c: c.creation_time), self
            )
        else:
            response.pop("BestTrainingJob", None)
        return response

    def summary(self: Any) -> dict[str, Any]:
        _settle_tuning(self, moto_ext.now())
        return live(self, dict(original_summary(self)))

    job_class.__init__ = init  # type: ignore[method-assign]
    job_class.describe = describe  # type: ignore[method-assign]
    job_class.summary = summary  # type: ignore[method-assign]

    backend_class = sm_models.SageMakerModelBackend
    original_list = backend_class.list_hyper_parameter_tuning_jobs

    def list_tuning_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        settle_backend(self, moto_ext.now())  # StatusEquals filters on the settled status
        return original_list(self, *args, **kwargs)

    backend_class.list_hyper_parameter_tuning_jobs = list_tuning_jobs  # type: ignore[method-assign,assignment]


def _find_tuning(backend: Any, name: str) -> Any:
    job = backend.hyper_parameter_tuning_jobs.get(name)
    if job is None:
        raise ResourceNotFound(message=f"Could not find hyper parameter tuning job '{name}'.")
    _settle_tuning(job, moto_ext.now())
    return job


def _stop_tuning(self: Any) -> EmptyResult:
    job = _find_tuning(self.sagemaker_backend, self._get_param("HyperParameterTuningJobName"))
    status = job.hyper_parameter_tuning_job_status
    if status != "InProgress":
        raise SageMakerValidationError(
            message=f"The request was rejected because the hyperparameter tuning job is in "
            f"status {status}."
        )
    at = moto_ext.now()
    job.hyper_parameter_tuning_job_status, job.last_modified_time = "Stopping", at
    job.changes_at = at + moto_ext.TRANSITION
    _stop_children(_children(job, "tuning_job_arn"), at)
    return EmptyResult()


def _list_children(self: Any) -> ActionResult:
    job = _find_tuning(self.sagemaker_backend, self._get_param("HyperParameterTuningJobName"))
    status = self._get_param("StatusEquals")
    children = [
        c for c in _children(job, "tuning_job_arn") if not status or c.training_job_status == status
    ]
    keys: dict[str, Callable[[Any], Any]] = {
        "Name": lambda c: c.training_job_name,
        "CreationTime": lambda c: c.creation_time,
        "Status": lambda c: c.training_job_status,
        "FinalObjectiveMetricValue": lambda c: c.training_job_name,  # no metrics are simulated
    }
    by = self._get_param("SortBy") or "Name"
    children.sort(key=keys[by], reverse=self._get_param("SortOrder") == "Descending")
    page, token = moto_ext.offset_page(
        children, self._get_param("NextToken"), self._get_param("MaxResults")
    )
    return ActionResult(
        {"TrainingJobSummaries": [_child_summary(c, job) for c in page], "NextToken": token}
    )


# --- AutoML jobs ------------------------------------------------------------------------------


def _settle_automl(job: Any, at: datetime | None) -> None:
    due = getattr(job, "changes_at", None)
    if job.auto_ml_job_status != "Stopping" or due is None:
        return
    if at is not None and at < due:
        return
    when = due if at is not None else moto_ext.now()
    job.auto_ml_job_status = job.auto_ml_job_secondary_status = "Stopped"
    job.end_time = job.last_modified_time = when
    job.changes_at = None
    _finish_children(_children(job, "auto_ml_job_arn"), when)


def _patch_automl_job() -> None:
    job_class = sm_models.AutoMLJob
    original_init = job_class.__init__
    original_describe = job_class.describe
    original_summary = job_class.summary

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.creation_time = self.last_modified_time = moto_ext.now()
        self.end_time = None
        self.auto_ml_job_secondary_status = "Starting"
        self.best_candidate = None
        self.failure_reason = None
        self.partial_failure_reasons = None
        self.changes_at = None
        if not kwargs.get("model_deploy_config"):  # moto invents an endpoint to deploy to
            self.model_deploy_config = self.model_deploy_result = None

    def describe(self: Any) -> dict[str, Any]:
        _settle_automl(self, moto_ext.now())
        return _compact(original_describe(self))

    def summary(self: Any) -> dict[str, Any]:
        _settle_automl(self, moto_ext.now())
        return _compact(original_summary(self))

    job_class.__init__ = init  # type: ignore[method-assign]
    job_class.describe = describe  # type: ignore[method-assign]
    job_class.summary = summary  # type: ignore[method-assign]

    backend_class = sm_models.SageMakerModelBackend
    original_list = backend_class.list_auto_ml_jobs

    def list_auto_ml_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        settle_backend(self, moto_ext.now())
        return original_list(self, *args, **kwargs)

    def stop_auto_ml_job(self: Any, auto_ml_job_name: str) -> None:
        job = self.auto_ml_jobs.get(auto_ml_job_name)
        if job is None:
            raise ResourceNotFound(f"Could not find AutoML job with name {auto_ml_job_name}.")
        _settle_automl(job, moto_ext.now())
        if job.auto_ml_job_status != "InProgress":
            raise SageMakerValidationError(
                message=f"The request was rejected because the AutoML job is in status "
                f"{job.auto_ml_job_status}."
            )
        at = moto_ext.now()
        job.auto_ml_job_status = job.auto_ml_job_secondary_status = "Stopping"
        job.last_modified_time, job.changes_at = at, at + moto_ext.TRANSITION
        _stop_children(_children(job, "auto_ml_job_arn"), at)

    backend_class.list_auto_ml_jobs = list_auto_ml_jobs  # type: ignore[method-assign,assignment]
    backend_class.stop_auto_ml_job = stop_auto_ml_job  # type: ignore[method-assign]


# --- children's DescribeTrainingJob and ListTrainingJobs ----------------------------------------


def _patch_training_jobs() -> None:
    job_class = sm_models.FakeTrainingJob
    original_response = job_class.response_object.fget  # type: ignore[attr-defined]

    def response_object(self: Any) -> dict[str, Any]:
        settle_backend(_backend(self), moto_ext.now())
        response = dict(original_response(self))
        if "AutoMlJobArn" in response:  # moto derives the key from the attribute's name
            response["AutoMLJobArn"] = response.pop("AutoMlJobArn")
        return response

    job_class.response_object = property(response_object)  # type: ignore[assignment,method-assign]

    backend_class = sm_models.SageMakerModelBackend
    original_list = backend_class.list_training_jobs

    def list_training_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        settle_backend(self, moto_ext.now())  # a stopped parent's children are Stopped too
        return original_list(self, *args, **kwargs)

    backend_class.list_training_jobs = list_training_jobs  # type: ignore[method-assign]


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process, after jobs)."""
    global _installed
    if _installed:
        return
    _installed = True
    _patch_tuning_job()
    _patch_automl_job()
    _patch_training_jobs()
    sm_responses.SageMakerResponse.stop_hyper_parameter_tuning_job = _stop_tuning  # type: ignore[attr-defined]
    sm_responses.SageMakerResponse.list_training_jobs_for_hyper_parameter_tuning_job = (  # type: ignore[attr-defined]
        _list_children
    )


# --- seeding -----------------------------------------------------------------------------------


def _child_status(parent: str, index: int, running: int) -> str:
    if parent == "InProgress":
        return "InProgress" if index < running else "Completed"
    return {"Stopped": "Stopped", "Failed": "Failed"}.get(parent, "Completed")


class TuningSeeding(SimBase):
    """Tuning and AutoML jobs with their child training jobs, placed in time."""

    def add_tuning_job(
        self,
        name: str,
        instance_type: str = "ml.g5.xlarge",
        *,
        children: int = 3,
        running: int = 2,
        status: str = "InProgress",
        started_at: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A tuning job in `status` since `started_at` with `children` training jobs (named
        `<name>-NNN-<hash>` as SageMaker names them): the first `running` are InProgress
        while the parent is, the others Completed."""
        region = region or self.regions[0]
        client = self.client("sagemaker", region, account)
        arn = client.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name,
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "acc"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": max(children, 1),
                                   "MaxParallelTrainingJobs": max(running, 1)},
                "ParameterRanges": {"ContinuousParameterRanges": [
                    {"Name": "lr", "MinValue": "0.0001", "MaxValue": "0.1"}
                ]},
            },
            TrainingJobDefinition={
                "AlgorithmSpecification": {
                    "TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:latest",
                    "TrainingInputMode": "File",
                },
                "RoleArn": FAKE_ROLE,
                "OutputDataConfig": {"S3OutputPath": "s3://sim-bucket/tuning"},
                "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1,
                                   "VolumeSizeInGB": 50},
                "StoppingCondition": {"MaxRuntimeInSeconds": 86_400},
            },
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )["HyperParameterTuningJobArn"]  # fmt: skip
        backend = self._sagemaker(region, account)
        job = backend.hyper_parameter_tuning_jobs[name]
        when = moto_ext.naive_utc(started_at or self.clock.now())
        job.creation_time = job.last_modified_time = when
        job.hyper_parameter_tuning_job_status = status
        if status in TERMINAL:
            job.hyper_parameter_tuning_end_time = moto_ext.now()
        for i in range(children):
            digest = hashlib.sha256(f"{arn}/{i}".encode()).hexdigest()[:8]
            child = self._child_job(  # SageMaker adds the tuning job's tags to its children
                f"{name}-{i + 1:03d}-{digest}", instance_type, when,
                _child_status(status, i, running), region, account, tags,
            )  # fmt: skip
            child.tuning_job_arn = arn
            child.hyper_parameters = {"lr": f"0.{i + 1:03d}"}
        return str(arn)

    def add_automl_job(
        self,
        name: str,
        instance_type: str = "ml.m5.2xlarge",
        *,
        children: int = 2,
        running: int = 1,
        status: str = "InProgress",
        started_at: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A tabular AutoML job (CreateAutoMLJobV2) in `status` since `started_at`, with
        `children` candidate training jobs, the first `running` InProgress while it is."""
        region = region or self.regions[0]
        client = self.client("sagemaker", region, account)
        arn = client.create_auto_ml_job_v2(
            AutoMLJobName=name,
            AutoMLJobInputDataConfig=[{
                "ChannelType": "training",
                "ContentType": "text/csv;header=present",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                "S3Uri": "s3://sim-bucket/automl/in"}},
            }],
            OutputDataConfig={"S3OutputPath": "s3://sim-bucket/automl/out"},
            AutoMLProblemTypeConfig={"TabularJobConfig": {
                "TargetAttributeName": "label",
                "ProblemType": "BinaryClassification",
                "CompletionCriteria": {"MaxCandidates": max(children, 1)},
            }},
            RoleArn=FAKE_ROLE,
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )["AutoMLJobArn"]  # fmt: skip
        job = self._sagemaker(region, account).auto_ml_jobs[name]
        when = moto_ext.naive_utc(started_at or self.clock.now())
        job.creation_time = job.last_modified_time = when
        job.auto_ml_job_status = status
        job.auto_ml_job_secondary_status = "TrainingModels" if status == "InProgress" else status
        if status in TERMINAL:
            job.end_time = moto_ext.now()
        for i in range(children):
            child = self._child_job(
                f"{name[:20]}-t{i + 1}-{hashlib.sha256(f'{arn}/{i}'.encode()).hexdigest()[:8]}",
                instance_type, when, _child_status(status, i, running), region, account, None,
            )  # fmt: skip
            child.auto_ml_job_arn = arn
        return str(arn)

    def _child_job(
        self,
        name: str,
        instance_type: str,
        started: datetime,
        status: str,
        region: str,
        account: str | None,
        tags: Mapping[str, str] | None,
    ) -> Any:
        self.client("sagemaker", region, account).create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": CHILD_IMAGE, "TrainingInputMode": "File"},
            RoleArn=FAKE_ROLE,
            OutputDataConfig={"S3OutputPath": "s3://sim-bucket/output"},
            ResourceConfig={"InstanceType": instance_type, "InstanceCount": 1,
                            "VolumeSizeInGB": 50},
            StoppingCondition={"MaxRuntimeInSeconds": 86_400},
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )  # fmt: skip
        child = self._sagemaker(region, account).training_jobs[name]
        child.creation_time = child.training_start_time = started
        # seeded now, whenever it started: a listing of what changed since the last cycle
        # (LastModifiedTimeAfter) must see it, as it would a job AWS just created
        child.last_modified_time = max(started, moto_ext.now())
        child.training_job_status = child.secondary_status = status
        running = status == "InProgress"
        child.training_end_time = None if running else moto_ext.now()
        if running:
            child.secondary_status = "Training"
        return child

    def tuning_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str:
        job = self._sagemaker(region or self.regions[0], account).hyper_parameter_tuning_jobs[name]
        _settle_tuning(job, moto_ext.now())
        return str(job.hyper_parameter_tuning_job_status)

    def automl_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str:
        job = self._sagemaker(region or self.regions[0], account).auto_ml_jobs[name]
        _settle_automl(job, moto_ext.now())
        return str(job.auto_ml_job_status)

    def settle_tuning(self) -> None:
        """Finish every Stopping tuning or AutoML job (and its children) now."""
        for region in self.regions:
            settle_backend(self._sagemaker(region), None)
