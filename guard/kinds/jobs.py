"""Training, processing and batch transform jobs: the registry entries.

One scanner (`guard.scanners.jobs`) serves every job kind; what differs between them is
declared here: the API names (all derived from the noun, "TrainingJob") and the `JobShape`
saying where a Describe answer keeps the facts the scanner needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from guard.kinds.spec import ActionSpec, KindSpec


@dataclass(frozen=True)
class JobShape:
    """Where a Describe*Job answer keeps what the guard needs: dotted paths, first found wins.

    Checked against botocore's service model (sagemaker 2017-07-24).
    """

    instance_type: tuple[str, ...]
    instance_count: tuple[str, ...]
    started_at: tuple[str, ...]
    ended_at: str
    max_runtime: str | None = None  # transform jobs have no runtime limit
    spot: str | None = None
    # heterogeneous training clusters name their instances per group instead
    instance_groups: str | None = None
    # SageMaker Search: the Resource whose records hold the whole job, and the path to it
    # inside a SearchRecord (guard.scanners.search)
    search_resource: str = ""
    search_path: tuple[str, ...] = ()
    # Fields naming the job's parent (a tuning or AutoML job's children): such a job is
    # billed, listed and acted on as its parent, so it is kept here only as "deferred".
    parents: tuple[str, ...] = ()


def job_kind(
    noun: str,
    title: str,
    component: str,
    console: str,
    shape: JobShape,
    *,
    price_list_component: str,
    usage_operation: str,
    utilization_namespace: str = "",
) -> KindSpec:
    """A SageMaker job kind: every name in its API follows from `noun` ("TrainingJob")."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in noun).lstrip("_")
    # Search: the job records by the page (guard.scanners.search); Describe: what it misses
    reads = [
        f"sagemaker:List{noun}s", f"sagemaker:Describe{noun}", "sagemaker:Search",
        "tag:GetResources",
    ]  # fmt: skip
    evidence = "none needed: a job works until it ends; its runtime and MaxRuntimeInSeconds"
    if utilization_namespace:
        reads.append("cloudwatch:GetMetricData")
        evidence += f", and per-host utilization from CloudWatch ({utilization_namespace})"
    return KindSpec(
        name=snake,
        title=title,
        price_component=component,
        list_operation=f"list_{snake}s",
        describe_operation=f"describe_{snake}",
        read_permissions=tuple(reads),
        arn_pattern=f"arn:aws:sagemaker:*:*:{snake.replace('_', '-')}/*",
        name_param=f"{noun}Name",
        list_key=f"{noun}Summaries",
        arn_field=f"{noun}Arn",
        name_field=f"{noun}Name",
        status_field=f"{noun}Status",
        type_field="InstanceType",  # from Describe; where is the kind's `JobShape`
        tagging_type=f"sagemaker:{snake.replace('_', '-')}",
        running_states=("InProgress",),
        console_path=f"sagemaker/home?region={{region}}#/{console}/{{name}}",
        scanner="guard.scanners.jobs:scan",
        simulator="guard.sim.jobs:JobSeeding",
        evidence=evidence,
        actions={
            "stop": ActionSpec(
                name="stop",
                operation=f"stop_{snake}",
                permission=f"sagemaker:Stop{noun}",
                valid_states=("InProgress",),
                done_states=("Stopping", "Stopped", "Completed", "Failed"),
                verb_past="stopped",
                verb_would="would stop",
                keeps=f"The {title}'s output written so far and its logs are kept.",
            )
        },
        # What runs. Listed so in full hourly; in between the scanner lists only the jobs
        # changed since (LastModifiedTimeAfter) and merges them (guard.scanners.jobs).
        list_params={"StatusEquals": "InProgress"},
        utilization_namespace=utilization_namespace,
        idles=False,
        price_list_components={price_list_component: component},
        price_usage_operations={usage_operation: component},
        scanner_config=shape,
    )


TRAINING_JOB = job_kind(
    "TrainingJob", "training job", "Training", "jobs",
    JobShape(
        # Selected*: what SageMaker picked when the job gave a list of InstancePreferences
        instance_type=("ResourceConfig.SelectedInstanceType", "ResourceConfig.InstanceType"),
        instance_count=("ResourceConfig.SelectedInstanceCount", "ResourceConfig.InstanceCount"),
        started_at=("TrainingStartTime", "CreationTime"),
        ended_at="TrainingEndTime",
        max_runtime="StoppingCondition.MaxRuntimeInSeconds",
        spot="EnableManagedSpotTraining",
        instance_groups="ResourceConfig.InstanceGroups",
        search_resource="TrainingJob",
        search_path=("TrainingJob",),
        parents=("TuningJobArn", "AutoMLJobArn"),
    ),
    price_list_component="training", usage_operation="train",
    utilization_namespace="/aws/sagemaker/TrainingJobs",
)  # fmt: skip
PROCESSING_JOB = job_kind(
    "ProcessingJob", "processing job", "Processing", "processing-jobs",
    JobShape(
        instance_type=(
            "ProcessingResources.ClusterConfig.SelectedInstanceType",
            "ProcessingResources.ClusterConfig.InstanceType",
        ),
        instance_count=(
            "ProcessingResources.ClusterConfig.SelectedInstanceCount",
            "ProcessingResources.ClusterConfig.InstanceCount",
        ),
        started_at=("ProcessingStartTime", "CreationTime"),
        ended_at="ProcessingEndTime",
        max_runtime="StoppingCondition.MaxRuntimeInSeconds",
        # each job is tracked as a trial component whose SourceDetail holds the whole job
        search_resource="ExperimentTrialComponent",
        search_path=("TrialComponent", "SourceDetail", "ProcessingJob"),
    ),
    price_list_component="processing", usage_operation="processing",
    utilization_namespace="/aws/sagemaker/ProcessingJobs",
)  # fmt: skip
TRANSFORM_JOB = job_kind(
    "TransformJob", "batch transform job", "BatchTransform", "transform-jobs",
    JobShape(
        instance_type=("TransformResources.InstanceType",),
        instance_count=("TransformResources.InstanceCount",),
        started_at=("TransformStartTime", "CreationTime"),
        ended_at="TransformEndTime",
        search_resource="ExperimentTrialComponent",
        search_path=("TrialComponent", "SourceDetail", "TransformJob"),
    ),
    price_list_component="batchtransform", usage_operation="tsform",
)  # fmt: skip

ENTRIES = (TRAINING_JOB, PROCESSING_JOB, TRANSFORM_JOB)
