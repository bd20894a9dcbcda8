"""Notebook instances: the registry entry."""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec

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
    scanner="guard.scanners.notebook:scan",
    simulator="guard.sim.simulator",  # the base simulator seeds notebook instances
    evidence=(
        "the last event of its jupyter.log stream in CloudWatch Logs, and the heartbeat tag "
        "of the shipped lifecycle script (kernels, terminals, processes, GPU)"
    ),
    heartbeat=True,
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
    price_list_components={"notebook": "Notebook"},
    price_usage_operations={"notebk": "Notebook"},
)

ENTRIES = (NOTEBOOK,)
