"""The naive loop the benchmark compares with: what a per-resource script (or a Cloud Custodian
policy with a describe and a tag filter per resource) does — list, then Describe, ListTags and
one activity lookup for every resource, one after the other."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from guard.aws import Aws
from guard.config import Account
from guard.scanners.notebook import NOTEBOOK_LOG_GROUP


def _items(client: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def _invocations(cloudwatch: Any, dims: list[dict[str, str]], now: datetime) -> None:
    metric = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": dims}
    cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "q", "MetricStat": {"Metric": metric, "Period": 3600, "Stat": "Sum"}}
        ],
        StartTime=now - timedelta(hours=24),
        EndTime=now,
    )


def notebooks(sm: Any, logs: Any, cw: Any, now: datetime) -> None:
    for nb in _items(sm, "list_notebook_instances", "NotebookInstances"):
        name = nb["NotebookInstanceName"]
        sm.describe_notebook_instance(NotebookInstanceName=name)
        sm.list_tags(ResourceArn=nb["NotebookInstanceArn"])
        logs.describe_log_streams(
            logGroupName=NOTEBOOK_LOG_GROUP, logStreamNamePrefix=f"{name}/jupyter.log"
        )


def endpoints(sm: Any, logs: Any, cw: Any, now: datetime) -> None:
    for ep in _items(sm, "list_endpoints", "Endpoints"):
        described = sm.describe_endpoint(EndpointName=ep["EndpointName"])
        sm.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        sm.list_tags(ResourceArn=ep["EndpointArn"])
        for variant in described.get("ProductionVariants", []):
            dims = [
                {"Name": "EndpointName", "Value": ep["EndpointName"]},
                {"Name": "VariantName", "Value": variant["VariantName"]},
            ]
            _invocations(cw, dims, now)


def _jobs(list_op: str, key: str, describe: str, name_field: str, arn_field: str) -> Loop:
    def loop(sm: Any, logs: Any, cw: Any, now: datetime) -> None:
        for job in _items(sm, list_op, key, StatusEquals="InProgress"):
            getattr(sm, describe)(**{name_field: job[name_field]})
            sm.list_tags(ResourceArn=job[arn_field])

    return loop


def apps(sm: Any, logs: Any, cw: Any, now: datetime) -> None:
    for app in _items(sm, "list_apps", "Apps"):
        owner = (
            {"SpaceName": app["SpaceName"]}
            if app.get("SpaceName")
            else {"UserProfileName": app.get("UserProfileName", "")}
        )
        described = sm.describe_app(
            DomainId=app["DomainId"], AppType=app["AppType"], AppName=app["AppName"], **owner
        )
        if described.get("AppArn"):
            sm.list_tags(ResourceArn=described["AppArn"])


def clusters(sm: Any, logs: Any, cw: Any, now: datetime) -> None:
    for cluster in _items(sm, "list_clusters", "ClusterSummaries"):
        sm.describe_cluster(ClusterName=cluster["ClusterName"])
        list(_items(sm, "list_cluster_nodes", "ClusterNodeSummaries",
                    ClusterName=cluster["ClusterName"]))  # fmt: skip
        sm.list_tags(ResourceArn=cluster["ClusterArn"])


Loop = Callable[[Any, Any, Any, datetime], None]
LOOPS: dict[str, Loop] = {
    "notebook": notebooks,
    "endpoint": endpoints,
    "training_job": _jobs(
        "list_training_jobs",
        "TrainingJobSummaries",
        "describe_training_job",
        "TrainingJobName",
        "TrainingJobArn",
    ),
    "processing_job": _jobs(
        "list_processing_jobs",
        "ProcessingJobSummaries",
        "describe_processing_job",
        "ProcessingJobName",
        "ProcessingJobArn",
    ),
    "transform_job": _jobs(
        "list_transform_jobs",
        "TransformJobSummaries",
        "describe_transform_job",
        "TransformJobName",
        "TransformJobArn",
    ),
    "studio_app": apps,
    "hyperpod_cluster": clusters,
}


def loop(aws: Aws, account: Account | None, region: str, kinds: list[str] | None = None) -> None:
    """Every kind, one resource at a time, in one account and region."""
    sm = aws.client(account, region, "sagemaker")
    logs = aws.client(account, region, "logs")
    cw = aws.client(account, region, "cloudwatch")
    now = datetime.now(UTC)
    for kind in kinds or list(LOOPS):
        if kind in LOOPS:  # kinds it has no loop for are left out: see `covered`
            LOOPS[kind](sm, logs, cw, now)


def covered(kinds: list[str]) -> tuple[list[str], list[str]]:
    """(kinds the naive loop scans, kinds it leaves out): the comparison is over the first."""
    return [k for k in kinds if k in LOOPS], [k for k in kinds if k not in LOOPS]
