"""Resource kinds as data: what to list, how it is priced, which actions exist.

A kind is one `KindSpec` entry. The scanner, the rules, the actions and the IAM policy read
these entries; adding a kind means adding an entry (and its scan function in `inventory`),
not branches across the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    console_path: str  # console URL path, {name} substituted
    actions: dict[str, ActionSpec] = field(default_factory=dict)


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
        ),
    },
)

KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (NOTEBOOK,)}

# `notify` is valid for every kind: it only warns, never mutates.
NOTIFY = "notify"
