"""SageMaker MLflow tracking servers: the registry entry.

A tracking server is billed per hour by its size (Small, Medium, Large), not by an instance
type: its price key is (`mlflow-<size>`, region, `MLflow`). No bundled table has those figures,
so the price is unknown unless the AWS Price List API answers with one.

AWS publishes no activity metric for a tracking server (no CloudWatch metric, no last-request
time in DescribeMlflowTrackingServer), so nothing says whether anyone uses it: it is judged by
its age (`running_for`) and schedules, never by `idle_for`.
"""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec, RestoreSpec

# States a server is up (and billed) in, from SageMaker's TrackingServerStatus enum
# (IsActive "Active"), except Stopping: billing ends with it.
RUNNING = (
    "Created", "Started", "Updated", "MaintenanceComplete", "StopFailed",
    "Updating", "UpdateFailed", "MaintenanceInProgress", "MaintenanceFailed",
)  # fmt: skip
# What StopMlflowTrackingServer accepts: a server that is up and not changing.
STOPPABLE = ("Created", "Started", "Updated", "MaintenanceComplete", "StopFailed")

MLFLOW_SERVER = KindSpec(
    name="mlflow_server",
    title="MLflow tracking server",
    price_component="MLflow",  # keyed by size: (mlflow-small, region, MLflow)
    list_operation="list_mlflow_tracking_servers",
    describe_operation="describe_mlflow_tracking_server",
    read_permissions=(
        "sagemaker:ListMlflowTrackingServers",
        "sagemaker:DescribeMlflowTrackingServer",
        "sagemaker:ListDomains",  # a server created from a Studio domain that is gone
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:mlflow-tracking-server/*",
    name_param="TrackingServerName",
    list_key="TrackingServerSummaries",
    arn_field="TrackingServerArn",
    name_field="TrackingServerName",
    status_field="TrackingServerStatus",
    type_field="TrackingServerSize",  # Small | Medium | Large, from Describe
    tagging_type="sagemaker:mlflow-tracking-server",
    running_states=RUNNING,
    console_path="sagemaker/home?region={region}#/mlflow-tracking-servers/{name}",
    scanner="guard.scanners.mlflow:scan",
    simulator="guard.sim.mlflow:MlflowSeeding",
    evidence=(
        "none: AWS publishes no activity metric for a tracking server, so it is judged by "
        "the time since it started (running_for) and schedules only"
    ),
    idles=False,  # no activity evidence: time since start is not idleness
    actions={
        "stop": ActionSpec(
            name="stop",
            operation="stop_mlflow_tracking_server",
            permission="sagemaker:StopMlflowTrackingServer",
            valid_states=STOPPABLE,
            done_states=("Stopping", "Stopped"),
            verb_past="stopped",
            verb_would="would stop",
            keeps=(
                "Its experiments, runs and registered models (its backend store and S3 "
                "artifact store) are kept; `cost-guard restore mlflow {name}` starts it again."
            ),
            handler="guard.scanners.mlflow:stop",
        ),
    },
    # How a Price List product would name it, if it lists the sizes (see the scanner).
    price_list_components={"mlflow": "MLflow"},
    restore=RestoreSpec(
        command="mlflow",
        function="guard.scanners.mlflow:restore_server",
        error="guard.scanners.mlflow:RestoreError",
        help="Start an MLflow tracking server cost-guard stopped (StartMlflowTrackingServer).",
        permissions=("sagemaker:StartMlflowTrackingServer",),
    ),
)

ENTRIES = (MLFLOW_SERVER,)
