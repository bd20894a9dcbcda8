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
    # Is time without activity evidence idleness? Not for a job: it works until it ends,
    # and whether it works well is its utilization. (The digest's "top idle spenders".)
    idles: bool = True


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


def _job_kind(
    noun: str, title: str, component: str, console: str, utilization_namespace: str = ""
) -> KindSpec:
    """A SageMaker job kind: every name in its API follows from `noun` ("TrainingJob")."""
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in noun).lstrip("_")
    reads = [f"sagemaker:List{noun}s", f"sagemaker:Describe{noun}", "tag:GetResources"]
    if utilization_namespace:
        reads.append("cloudwatch:GetMetricData")
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
        type_field="InstanceType",  # from Describe; where is in guard/scanners/jobs.py
        tagging_type=f"sagemaker:{snake.replace('_', '-')}",
        running_states=("InProgress",),
        console_path=f"sagemaker/home?region={{region}}#/{console}/{{name}}",
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
        list_params={"StatusEquals": "InProgress"},
        utilization_namespace=utilization_namespace,
        idles=False,
    )


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

TRAINING_JOB = _job_kind(
    "TrainingJob", "training job", "Training", "jobs", "/aws/sagemaker/TrainingJobs"
)
PROCESSING_JOB = _job_kind(
    "ProcessingJob", "processing job", "Processing", "processing-jobs",
    "/aws/sagemaker/ProcessingJobs",
)  # fmt: skip
TRANSFORM_JOB = _job_kind("TransformJob", "batch transform job", "BatchTransform", "transform-jobs")

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
