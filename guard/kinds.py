"""Resource kinds as data: what to list, how it is priced, which actions exist.

A kind is one `KindSpec` entry. The scanner, the rules, the actions and the IAM policy read
these entries; adding a kind means adding an entry (and its scan function in `inventory`),
not branches across the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guard.model import Resource


@dataclass(frozen=True)
class ActionSpec:
    """A mutating call the guard may make, and the only states it may make it from."""

    name: str  # the rule's `action:` value
    operation: str  # boto3 method name
    permission: str  # IAM action
    valid_states: tuple[str, ...]  # live status (from Describe) required before acting
    done_states: tuple[str, ...]  # states meaning "already done": a repeat is a no-op
    verb_past: str  # for people: "stopped"
    verb_would: str  # for dry-run: "would stop"
    # what the owner keeps, said in every message about this action ({name} substituted)
    keeps: str = ""
    # a describe that answers "not found" means the action already happened (deletes)
    gone_is_done: bool = False
    # further IAM actions the action needs (e.g. reading the config it saves first)
    extra_permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindSpec:
    name: str
    title: str  # for people: "notebook instance"
    price_component: str  # component column of the price table
    list_operation: str  # boto3 paginator name
    describe_operation: str  # live re-check before acting
    # every IAM action a scan of this kind needs (listing, tags, activity evidence)
    read_permissions: tuple[str, ...]
    arn_pattern: str  # IAM resource ARN pattern for the kind's actions
    name_param: str  # request parameter naming one resource
    list_key: str  # where the list call returns its items
    arn_field: str
    name_field: str
    status_field: str
    type_field: str
    tagging_type: str  # Resource Groups Tagging API resource type filter
    running_states: tuple[str, ...]
    # console URL path: {region}, {name} and any text field of the resource's details
    console_path: str
    actions: dict[str, ActionSpec] = field(default_factory=dict)
    list_params: dict[str, Any] = field(default_factory=dict)  # e.g. StatusEquals=InProgress
    # CloudWatch namespace of per-host utilization metrics (Host=<job>/algo-N), if any
    utilization_namespace: str = ""


CONSOLE = "https://console.aws.amazon.com/"


def console_url(spec: KindSpec, res: Resource) -> str:
    fields = {k: v for k, v in res.details.items() if isinstance(v, str)}
    return CONSOLE + spec.console_path.format(**fields, region=res.region, name=res.name)


def keeps(spec: ActionSpec, res: Resource) -> str:
    """What the owner keeps after `spec` runs on `res`, for messages and the audit trail."""
    return spec.keeps.format(name=res.name)


def request_key(spec: KindSpec, res: Resource) -> dict[str, Any]:
    """The request parameters naming `res` in Describe/Stop/Delete calls.

    Most kinds are named by one parameter; a Studio app needs its domain, its space or user
    profile, its type and its name, which its scanner stores as `details["key"]`.
    """
    key = res.details.get("key")
    return dict(key) if key else {spec.name_param: res.name}


NOTEBOOK = KindSpec(
    name="notebook",
    title="notebook instance",
    price_component="Notebook",
    list_operation="list_notebook_instances",
    describe_operation="describe_notebook_instance",
    read_permissions=(
        "sagemaker:ListNotebookInstances",
        "sagemaker:DescribeNotebookInstance",
        "tag:GetResources",
        "logs:DescribeLogStreams",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:notebook-instance/*",
    name_param="NotebookInstanceName",
    list_key="NotebookInstances",
    arn_field="NotebookInstanceArn",
    name_field="NotebookInstanceName",
    status_field="NotebookInstanceStatus",
    type_field="InstanceType",
    tagging_type="sagemaker:notebook-instance",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/notebook-instances/{name}",
    actions={
        "stop": ActionSpec(
            name="stop",
            operation="stop_notebook_instance",
            permission="sagemaker:StopNotebookInstance",
            valid_states=("InService",),
            done_states=("Stopping", "Stopped"),
            verb_past="stopped",
            verb_would="would stop",
            keeps="Its storage volume and files are kept; start it again from the console.",
        ),
    },
)


def _stop_job(kind: str, operation: str, permission: str) -> dict[str, ActionSpec]:
    return {
        "stop": ActionSpec(
            name="stop",
            operation=operation,
            permission=permission,
            valid_states=("InProgress",),
            done_states=("Stopping", "Stopped", "Completed", "Failed"),
            verb_past="stopped",
            verb_would="would stop",
            keeps=f"The {kind}'s output written so far and its logs are kept.",
        )
    }


ENDPOINT = KindSpec(
    name="endpoint",
    title="endpoint",
    price_component="Hosting",
    list_operation="list_endpoints",
    describe_operation="describe_endpoint",
    read_permissions=(
        "sagemaker:ListEndpoints",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:endpoint/*",
    name_param="EndpointName",
    list_key="Endpoints",
    arn_field="EndpointArn",
    name_field="EndpointName",
    status_field="EndpointStatus",
    type_field="InstanceType",  # per variant, from the endpoint config
    tagging_type="sagemaker:endpoint",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/endpoints/{name}",
    actions={
        "delete": ActionSpec(
            name="delete",
            operation="delete_endpoint",
            permission="sagemaker:DeleteEndpoint",
            valid_states=("InService",),
            done_states=("Deleting",),
            verb_past="deleted",
            verb_would="would delete",
            keeps=(
                "Its endpoint config and model are kept; "
                "`cost-guard restore endpoint {name}` recreates it."
            ),
            gone_is_done=True,
            extra_permissions=("sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"),
        ),
        "scale-to-zero": ActionSpec(
            name="scale-to-zero",
            operation="update_endpoint_weights_and_capacities",
            permission="sagemaker:UpdateEndpointWeightsAndCapacities",
            valid_states=("InService",),
            done_states=(),
            verb_past="scaled to zero instances",
            verb_would="would scale to zero instances",
            keeps="The endpoint stays; it scales up again when traffic returns.",
        ),
    },
)

TRAINING_JOB = KindSpec(
    name="training_job",
    title="training job",
    price_component="Training",
    list_operation="list_training_jobs",
    describe_operation="describe_training_job",
    read_permissions=(
        "sagemaker:ListTrainingJobs",
        "sagemaker:DescribeTrainingJob",
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:training-job/*",
    name_param="TrainingJobName",
    list_key="TrainingJobSummaries",
    arn_field="TrainingJobArn",
    name_field="TrainingJobName",
    status_field="TrainingJobStatus",
    type_field="InstanceType",  # ResourceConfig.InstanceType, from Describe
    tagging_type="sagemaker:training-job",
    running_states=("InProgress",),
    console_path="sagemaker/home?region={region}#/jobs/{name}",
    actions=_stop_job("training job", "stop_training_job", "sagemaker:StopTrainingJob"),
    list_params={"StatusEquals": "InProgress"},
    utilization_namespace="/aws/sagemaker/TrainingJobs",
)

PROCESSING_JOB = KindSpec(
    name="processing_job",
    title="processing job",
    price_component="Processing",
    list_operation="list_processing_jobs",
    describe_operation="describe_processing_job",
    read_permissions=(
        "sagemaker:ListProcessingJobs",
        "sagemaker:DescribeProcessingJob",
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:processing-job/*",
    name_param="ProcessingJobName",
    list_key="ProcessingJobSummaries",
    arn_field="ProcessingJobArn",
    name_field="ProcessingJobName",
    status_field="ProcessingJobStatus",
    type_field="InstanceType",  # ProcessingResources.ClusterConfig.InstanceType
    tagging_type="sagemaker:processing-job",
    running_states=("InProgress",),
    console_path="sagemaker/home?region={region}#/processing-jobs/{name}",
    actions=_stop_job("processing job", "stop_processing_job", "sagemaker:StopProcessingJob"),
    list_params={"StatusEquals": "InProgress"},
    utilization_namespace="/aws/sagemaker/ProcessingJobs",
)

TRANSFORM_JOB = KindSpec(
    name="transform_job",
    title="batch transform job",
    price_component="BatchTransform",
    list_operation="list_transform_jobs",
    describe_operation="describe_transform_job",
    read_permissions=(
        "sagemaker:ListTransformJobs",
        "sagemaker:DescribeTransformJob",
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:transform-job/*",
    name_param="TransformJobName",
    list_key="TransformJobSummaries",
    arn_field="TransformJobArn",
    name_field="TransformJobName",
    status_field="TransformJobStatus",
    type_field="InstanceType",  # TransformResources.InstanceType
    tagging_type="sagemaker:transform-job",
    running_states=("InProgress",),
    console_path="sagemaker/home?region={region}#/transform-jobs/{name}",
    actions=_stop_job("transform job", "stop_transform_job", "sagemaker:StopTransformJob"),
    list_params={"StatusEquals": "InProgress"},
)

STUDIO_APP = KindSpec(
    name="studio_app",
    title="Studio app",
    price_component="Studio-{app_type}",  # Studio-JupyterLab, Studio-CodeEditor, ...
    list_operation="list_apps",
    describe_operation="describe_app",
    read_permissions=(
        "sagemaker:ListApps",
        "sagemaker:DescribeApp",
        "sagemaker:ListDomains",
        "sagemaker:DescribeDomain",
        "sagemaker:ListUserProfiles",
        "sagemaker:DescribeUserProfile",
        "sagemaker:ListSpaces",
        "sagemaker:DescribeSpace",
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:app/*",
    name_param="AppName",  # with DomainId, AppType and SpaceName/UserProfileName: details["key"]
    list_key="Apps",
    arn_field="AppArn",
    name_field="AppName",
    status_field="Status",
    type_field="InstanceType",  # ResourceSpec.InstanceType
    tagging_type="sagemaker:app",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/studio/{domain_id}",  # the domain's page
    actions={
        "delete": ActionSpec(
            name="delete",
            operation="delete_app",
            permission="sagemaker:DeleteApp",
            valid_states=("InService",),
            done_states=("Deleting", "Deleted"),
            verb_past="deleted",
            verb_would="would delete",
            keeps=(
                "The space and its storage volume remain: no files are lost, "
                "and the app can be started again from Studio."
            ),
            gone_is_done=True,
        ),
    },
)

KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (NOTEBOOK, ENDPOINT, TRAINING_JOB, PROCESSING_JOB, TRANSFORM_JOB, STUDIO_APP)
}

# `notify` is valid for every kind: it only warns, never mutates.
NOTIFY = "notify"
