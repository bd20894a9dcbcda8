"""The simulator's newer kinds through boto3 over HTTP: MLflow tracking servers, HyperPod
clusters, inference components and async endpoints, tuning and AutoML jobs, training plans,
every Studio app type. Shapes, paging, errors and state transitions as SageMaker answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from guard.model import ManualClock
from guard.sim import Simulator
from guard.sim.base import FAKE_ROLE
from guard.sim.moto_ext import TRANSITION

pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 talks to the simulator


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name="us-east-1")


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def all_pages(call: Any, key: str, **params: Any) -> tuple[list[Any], int]:
    """Every item of a paged List call, and how many calls it took."""
    items, calls, token = [], 0, None
    while True:
        response = call(**params, **({"NextToken": token} if token else {}))
        calls += 1
        items += response[key]
        token = response.get("NextToken")
        if not token:
            return items, calls


# --- MLflow tracking servers ----------------------------------------------------------------


def test_mlflow_server_lifecycle_follows_tracking_server_status(
    sim: Simulator, clock: ManualClock
) -> None:
    sm = sagemaker()
    arn = sm.create_mlflow_tracking_server(
        TrackingServerName="exp", ArtifactStoreUri="s3://b/exp", RoleArn=FAKE_ROLE,
        TrackingServerSize="Medium", Tags=[{"Key": "owner", "Value": "ana@example.com"}],
    )["TrackingServerArn"]  # fmt: skip
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/exp"
    described = sm.describe_mlflow_tracking_server(TrackingServerName="exp")
    assert described["TrackingServerStatus"] == "Creating"
    assert described["IsActive"] == "Inactive"
    assert described["TrackingServerSize"] == "Medium"
    assert described["TrackingServerUrl"].startswith("https://t-")
    assert described["CreationTime"] == clock.now()
    with pytest.raises(ClientError) as refused:  # not running yet
        sm.stop_mlflow_tracking_server(TrackingServerName="exp")
    assert error_code(refused) == "ConflictException"

    clock.advance(TRANSITION)
    described = sm.describe_mlflow_tracking_server(TrackingServerName="exp")
    assert (described["TrackingServerStatus"], described["IsActive"]) == ("Created", "Active")

    assert sm.stop_mlflow_tracking_server(TrackingServerName="exp")["TrackingServerArn"] == arn
    assert sim.mlflow_status("exp") == "Stopping"
    with pytest.raises(ClientError) as refused:
        sm.start_mlflow_tracking_server(TrackingServerName="exp")
    assert error_code(refused) == "ConflictException"
    sim.settle()
    described = sm.describe_mlflow_tracking_server(TrackingServerName="exp")
    assert (described["TrackingServerStatus"], described["IsActive"]) == ("Stopped", "Inactive")
    assert described["LastModifiedTime"] == clock.now()
    with pytest.raises(ClientError) as refused:  # already stopped
        sm.stop_mlflow_tracking_server(TrackingServerName="exp")
    assert error_code(refused) == "ConflictException"

    sm.start_mlflow_tracking_server(TrackingServerName="exp")
    assert sim.mlflow_status("exp") == "Starting"
    clock.advance(TRANSITION)
    assert sim.mlflow_status("exp") == "Started"

    sm.delete_mlflow_tracking_server(TrackingServerName="exp")
    assert sim.mlflow_status("exp") == "Deleting"
    clock.advance(TRANSITION)
    assert sim.mlflow_status("exp") is None
    assert sm.list_mlflow_tracking_servers()["TrackingServerSummaries"] == []


def test_unknown_mlflow_server_is_resource_not_found(sim: Simulator) -> None:
    sm = sagemaker()
    for call in (
        sm.describe_mlflow_tracking_server,
        sm.stop_mlflow_tracking_server,
        sm.start_mlflow_tracking_server,
        sm.delete_mlflow_tracking_server,
    ):
        with pytest.raises(ClientError) as missing:
            call(TrackingServerName="nope")
        assert error_code(missing) == "ResourceNotFound"


def test_mlflow_create_refuses_a_duplicate_and_a_bad_size(sim: Simulator) -> None:
    sim.add_mlflow_server("exp")
    sm = sagemaker()
    with pytest.raises(ClientError) as duplicate:
        sm.create_mlflow_tracking_server(
            TrackingServerName="exp", ArtifactStoreUri="s3://b/x", RoleArn=FAKE_ROLE
        )
    assert error_code(duplicate) == "ResourceInUse"
    with pytest.raises(ClientError) as bad:
        sm.create_mlflow_tracking_server(
            TrackingServerName="x", ArtifactStoreUri="s3://b/x", RoleArn=FAKE_ROLE,
            TrackingServerSize="Huge",
        )  # fmt: skip
    assert error_code(bad) == "ValidationException"


def test_mlflow_list_pages_filters_and_sorts(sim: Simulator, clock: ManualClock) -> None:
    for i in range(7):
        status = "Stopped" if i % 3 == 0 else "Created"
        sim.add_mlflow_server(
            f"srv-{i}", status=status, created_at=clock.now() - timedelta(days=7 - i)
        )
    sm = sagemaker()
    items, calls = all_pages(
        sm.list_mlflow_tracking_servers, "TrackingServerSummaries", MaxResults=2
    )
    assert calls == 4
    # newest first by default, as AWS lists them
    assert [s["TrackingServerName"] for s in items] == [f"srv-{i}" for i in range(6, -1, -1)]
    stopped, _ = all_pages(
        sm.list_mlflow_tracking_servers, "TrackingServerSummaries",
        TrackingServerStatus="Stopped", SortOrder="Ascending", MaxResults=1,
    )  # fmt: skip
    assert [s["TrackingServerName"] for s in stopped] == ["srv-0", "srv-3", "srv-6"]
    assert {s["IsActive"] for s in stopped} == {"Inactive"}
    recent = sm.list_mlflow_tracking_servers(CreatedAfter=clock.now() - timedelta(days=2, hours=1))[
        "TrackingServerSummaries"
    ]
    assert sorted(s["TrackingServerName"] for s in recent) == ["srv-5", "srv-6"]
    by_name = sm.list_mlflow_tracking_servers(SortBy="Name", SortOrder="Ascending")
    assert by_name["TrackingServerSummaries"][0]["TrackingServerName"] == "srv-0"
    with pytest.raises(ClientError) as bad_token:
        sm.list_mlflow_tracking_servers(NextToken="garbage")
    assert error_code(bad_token) == "ValidationException"


def test_mlflow_tags_through_add_tags_and_the_tagging_api(sim: Simulator) -> None:
    arn = sim.add_mlflow_server(
        "exp", tags={"team": "vision"}, domain_id="d-abc123", user_profile="ana"
    )
    sm = sagemaker()
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "owner", "Value": "ana@example.com"}])
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["team"] == "vision" and tags["owner"] == "ana@example.com"
    assert tags["sagemaker:domain-arn"].endswith(":domain/d-abc123")
    described = sm.describe_mlflow_tracking_server(TrackingServerName="exp")
    assert described["CreatedBy"]["DomainId"] == "d-abc123"
    assert described["CreatedBy"]["UserProfileName"] == "ana"

    tagging = boto3.client("resourcegroupstaggingapi", region_name="us-east-1")
    found = tagging.get_resources(ResourceTypeFilters=["sagemaker:mlflow-tracking-server"])
    [mapping] = found["ResourceTagMappingList"]
    assert mapping["ResourceARN"] == arn
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert "team" not in {t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


# --- HyperPod clusters ------------------------------------------------------------------------

GROUPS = [
    {"InstanceGroupName": "controller", "InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    {"InstanceGroupName": "gpu", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 3},
]


def counts(described: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {
        g["InstanceGroupName"]: (g["CurrentCount"], g["TargetCount"], g["Status"])
        for g in described["InstanceGroups"]
    }


def test_cluster_is_created_then_in_service_with_its_nodes(
    sim: Simulator, clock: ManualClock
) -> None:
    sm = sagemaker()
    arn = sm.create_cluster(
        ClusterName="train",
        InstanceGroups=[
            {**g, "ExecutionRole": FAKE_ROLE, "LifeCycleConfig": {"SourceS3Uri": "s3://b/lc"}}
            for g in GROUPS
        ],
    )["ClusterArn"]
    assert arn.startswith("arn:aws:sagemaker:us-east-1:123456789012:cluster/")
    described = sm.describe_cluster(ClusterName="train")
    assert described["ClusterStatus"] == "Creating"
    assert counts(described) == {"controller": (0, 1, "Creating"), "gpu": (0, 3, "Creating")}
    pending = sm.list_cluster_nodes(ClusterName="train")["ClusterNodeSummaries"]
    assert {n["InstanceStatus"]["Status"] for n in pending} == {"Pending"}

    clock.advance(TRANSITION)
    described = sm.describe_cluster(ClusterName=arn)  # by ARN too
    assert described["ClusterStatus"] == "InService"
    assert counts(described) == {"controller": (1, 1, "InService"), "gpu": (3, 3, "InService")}
    [summary] = sm.list_clusters()["ClusterSummaries"]
    assert (summary["ClusterName"], summary["ClusterArn"]) == ("train", arn)


def test_update_cluster_scales_a_group_to_zero_and_back(sim: Simulator, clock: ManualClock) -> None:
    arn = sim.add_hyperpod_cluster("train", GROUPS, created_at=clock.now() - timedelta(days=2))
    sm = sagemaker()
    assert counts(sm.describe_cluster(ClusterName="train"))["gpu"] == (3, 3, "InService")

    response = sm.update_cluster(
        ClusterName="train",
        InstanceGroups=[
            {"InstanceGroupName": "gpu", "InstanceCount": 0, "ExecutionRole": FAKE_ROLE}
        ],
    )
    assert response["ClusterArn"] == arn
    described = sm.describe_cluster(ClusterName="train")
    assert described["ClusterStatus"] == "Updating"
    assert counts(described)["gpu"] == (3, 0, "Updating")  # nodes are shutting down
    assert counts(described)["controller"] == (1, 1, "InService")
    gpu_nodes = sm.list_cluster_nodes(ClusterName="train", InstanceGroupNameContains="gpu")
    assert {n["InstanceStatus"]["Status"] for n in gpu_nodes["ClusterNodeSummaries"]} == {
        "ShuttingDown"
    }
    with pytest.raises(ClientError) as busy:
        sm.update_cluster(
            ClusterName="train",
            InstanceGroups=[
                {"InstanceGroupName": "gpu", "InstanceCount": 3, "ExecutionRole": FAKE_ROLE}
            ],
        )
    assert error_code(busy) == "ConflictException"

    sim.settle()
    described = sm.describe_cluster(ClusterName="train")
    assert described["ClusterStatus"] == "InService"
    assert counts(described)["gpu"] == (0, 0, "InService")
    [gpu] = [g for g in described["InstanceGroups"] if g["InstanceGroupName"] == "gpu"]
    assert gpu["InstanceType"] == "ml.p5.48xlarge"  # the group's specification is kept
    assert gpu["LifeCycleConfig"]["SourceS3Uri"].startswith("s3://")
    assert len(sm.list_cluster_nodes(ClusterName="train")["ClusterNodeSummaries"]) == 1

    sm.update_cluster(
        ClusterName="train",
        InstanceGroups=[
            {"InstanceGroupName": "gpu", "InstanceCount": 3, "ExecutionRole": FAKE_ROLE}
        ],
    )
    assert counts(sm.describe_cluster(ClusterName="train"))["gpu"] == (0, 3, "Updating")
    clock.advance(TRANSITION)
    assert counts(sm.describe_cluster(ClusterName="train"))["gpu"] == (3, 3, "InService")
    nodes = sm.list_cluster_nodes(ClusterName="train", InstanceGroupNameContains="gpu")
    assert all(n["LaunchTime"] == clock.now() - TRANSITION for n in nodes["ClusterNodeSummaries"])


def test_update_cluster_refuses_unknown_groups_and_replaces_nodes_of_a_new_type(
    sim: Simulator,
) -> None:
    sim.add_hyperpod_cluster("train", GROUPS)
    sm = sagemaker()
    before = {n.instance_id for n in sim.cluster_nodes("train") if n.group == "controller"}
    with pytest.raises(ClientError) as unknown:
        sm.update_cluster(
            ClusterName="train",
            InstanceGroups=[{**GROUPS[0], "ExecutionRole": FAKE_ROLE}],
            InstanceGroupsToDelete=["nope"],
        )
    assert error_code(unknown) == "ValidationException"
    with pytest.raises(ClientError) as bad_type:
        sm.create_cluster(
            ClusterName="other",
            InstanceGroups=[
                {**GROUPS[0], "InstanceType": "ml.x9.huge", "ExecutionRole": FAKE_ROLE}
            ],
        )
    assert error_code(bad_type) == "ValidationException"
    with pytest.raises(ClientError) as duplicate:
        sm.create_cluster(
            ClusterName="train", InstanceGroups=[{**GROUPS[0], "ExecutionRole": FAKE_ROLE}]
        )
    assert error_code(duplicate) == "ResourceInUse"
    assert counts(sm.describe_cluster(ClusterName="train"))["gpu"] == (3, 3, "InService")

    sm.update_cluster(
        ClusterName="train",
        InstanceGroups=[{**GROUPS[0], "InstanceType": "ml.m5.2xlarge", "ExecutionRole": FAKE_ROLE}],
    )
    [controller] = [
        g for g in sm.describe_cluster(ClusterName="train")["InstanceGroups"]
        if g["InstanceGroupName"] == "controller"
    ]  # fmt: skip
    assert controller["ActiveOperations"] == {"Scaling": 1}
    sim.settle()
    nodes = [n for n in sim.cluster_nodes("train") if n.group == "controller"]
    assert [n.instance_type for n in nodes] == ["ml.m5.2xlarge"]
    assert not {n.instance_id for n in nodes} & before


def test_unknown_cluster_and_node_are_resource_not_found(sim: Simulator) -> None:
    sm = sagemaker()
    calls: tuple[Callable[[], Any], ...] = (
        lambda: sm.describe_cluster(ClusterName="nope"),
        lambda: sm.list_cluster_nodes(ClusterName="nope"),
        lambda: sm.delete_cluster(ClusterName="nope"),
        lambda: sm.update_cluster(
            ClusterName="nope", InstanceGroups=[{**GROUPS[0], "ExecutionRole": FAKE_ROLE}]
        ),
    )
    for call in calls:
        with pytest.raises(ClientError) as missing:
            call()
        assert error_code(missing) == "ResourceNotFound"
    sim.add_hyperpod_cluster("train", GROUPS)
    with pytest.raises(ClientError) as missing:
        sm.describe_cluster_node(ClusterName="train", NodeId="i-0000000000000000")
    assert error_code(missing) == "ResourceNotFound"


def test_cluster_nodes_page_and_describe(sim: Simulator, clock: ManualClock) -> None:
    sim.add_hyperpod_cluster(
        "big", [{"InstanceGroupName": "w", "InstanceType": "ml.g5.xlarge", "InstanceCount": 7}]
    )
    sm = sagemaker()
    nodes, calls = all_pages(
        sm.list_cluster_nodes, "ClusterNodeSummaries", ClusterName="big", MaxResults=3
    )
    assert calls == 3 and len({n["InstanceId"] for n in nodes}) == 7
    assert all(n["InstanceId"].startswith("i-") for n in nodes)
    details = sm.describe_cluster_node(ClusterName="big", NodeId=nodes[0]["InstanceId"])
    assert details["NodeDetails"]["InstanceType"] == "ml.g5.xlarge"
    assert details["NodeDetails"]["InstanceStatus"]["Status"] == "Running"


def test_clusters_list_pages_sort_and_tags(sim: Simulator, clock: ManualClock) -> None:
    arns = [
        sim.add_hyperpod_cluster(
            f"c{i}", GROUPS[:1], tags={"team": f"t{i}"}, created_at=clock.now() - timedelta(days=i)
        )
        for i in range(5)
    ]
    sm = sagemaker()
    items, calls = all_pages(sm.list_clusters, "ClusterSummaries", MaxResults=2)
    assert calls == 3
    assert [c["ClusterName"] for c in items] == ["c4", "c3", "c2", "c1", "c0"]  # oldest first
    by_name = sm.list_clusters(SortBy="NAME", SortOrder="Descending")["ClusterSummaries"]
    assert [c["ClusterName"] for c in by_name] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c["ClusterName"] for c in sm.list_clusters(NameContains="c3")["ClusterSummaries"]] == [
        "c3"
    ]

    assert sm.list_tags(ResourceArn=arns[2])["Tags"] == [{"Key": "team", "Value": "t2"}]
    sm.add_tags(ResourceArn=arns[2], Tags=[{"Key": "owner", "Value": "bo@example.com"}])
    tagging = boto3.client("resourcegroupstaggingapi", region_name="us-east-1")
    found = tagging.get_resources(
        ResourceTypeFilters=["sagemaker:cluster"], TagFilters=[{"Key": "owner"}]
    )["ResourceTagMappingList"]
    assert [m["ResourceARN"] for m in found] == [arns[2]]

    sm.delete_cluster(ClusterName="c0")
    assert sim.cluster_status("c0") == "Deleting"
    sim.settle()
    assert sim.cluster_status("c0") is None


def test_cluster_node_metrics_are_published_per_eks_node(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.add_hyperpod_cluster("train", GROUPS, eks_cluster="eks-train")
    sm = sagemaker()
    described = sm.describe_cluster(ClusterName="train")
    assert described["Orchestrator"]["Eks"]["ClusterArn"].endswith(":cluster/eks-train")
    [node] = [n for n in sim.cluster_nodes("train") if n.group == "gpu"][:1]
    points = [(clock.now() - timedelta(minutes=m), 87.0) for m in range(1, 6)]
    sim.cluster_node_metric("eks-train", node.instance_id, "node_gpu_utilization", points)
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{
            "Id": "gpu",
            "MetricStat": {
                "Metric": {
                    "Namespace": "ContainerInsights",
                    "MetricName": "node_gpu_utilization",
                    "Dimensions": [
                        {"Name": "ClusterName", "Value": "eks-train"},
                        {"Name": "InstanceId", "Value": node.instance_id},
                        {"Name": "NodeName", "Value": f"hyperpod-{node.instance_id}"},
                    ],
                },
                "Period": 3600,
                "Stat": "Average",
            },
        }],
        StartTime=clock.now() - timedelta(hours=1),
        EndTime=clock.now(),
    )  # fmt: skip
    assert result["MetricDataResults"][0]["Values"] == [87.0]


# --- inference components, scale-to-zero and async endpoints ---------------------------------


def hourly(clock: ManualClock, metric: str, dimensions: dict[str, str], stat: str) -> list[float]:
    """The last hour's AWS/SageMaker `metric` as one `stat` value (GetMetricData)."""
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{
            "Id": "m",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/SageMaker",
                    "MetricName": metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                },
                "Period": 3600,
                "Stat": stat,
            },
        }],
        StartTime=clock.now() - timedelta(hours=1),
        EndTime=clock.now(),
    )  # fmt: skip
    return [float(v) for v in result["MetricDataResults"][0]["Values"]]


def variant_count(sm: Any, endpoint: str) -> int:
    [variant] = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]
    return int(variant["CurrentInstanceCount"])


def test_inference_component_is_created_updated_to_zero_copies_and_deleted(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.add_component_endpoint("llm", count=1, min_instance_count=0)
    sm = sagemaker()
    arn = sm.create_inference_component(
        InferenceComponentName="llama",
        EndpointName="llm",
        VariantName="AllTraffic",
        Specification={
            "Container": {"Image": "img:1", "ArtifactUrl": "s3://m/llama.tar.gz"},
            "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 4096,
                                            "NumberOfAcceleratorDevicesRequired": 1},
        },
        RuntimeConfig={"CopyCount": 2},
    )["InferenceComponentArn"]  # fmt: skip
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:inference-component/llama"
    described = sm.describe_inference_component(InferenceComponentName="llama")
    assert described["InferenceComponentStatus"] == "Creating"
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 0}
    assert described["Specification"]["Container"]["DeployedImage"]["SpecifiedImage"] == "img:1"
    assert described["EndpointArn"].endswith(":endpoint/llm")
    clock.advance(TRANSITION)
    described = sm.describe_inference_component(InferenceComponentName="llama")
    assert described["InferenceComponentStatus"] == "InService"
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}

    sm.update_inference_component_runtime_config(
        InferenceComponentName="llama", DesiredRuntimeConfig={"CopyCount": 0}
    )
    described = sm.describe_inference_component(InferenceComponentName="llama")
    assert described["InferenceComponentStatus"] == "Updating"
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 0, "CurrentCopyCount": 2}
    with pytest.raises(ClientError) as busy:
        sm.update_inference_component_runtime_config(
            InferenceComponentName="llama", DesiredRuntimeConfig={"CopyCount": 1}
        )
    assert error_code(busy) == "ValidationException"
    assert variant_count(sm, "llm") == 1
    sim.settle()
    assert sim.component_copies("llama") == (0, 0)
    assert variant_count(sm, "llm") == 0  # managed instance scaling released the instance

    sm.update_inference_component_runtime_config(
        InferenceComponentName="llama", DesiredRuntimeConfig={"CopyCount": 1}
    )
    clock.advance(TRANSITION)
    assert sim.component_copies("llama") == (1, 1)
    assert variant_count(sm, "llm") == 1  # copies need an instance again

    sm.delete_inference_component(InferenceComponentName="llama")
    assert (
        sm.describe_inference_component(InferenceComponentName="llama")["InferenceComponentStatus"]
        == "Deleting"
    )
    clock.advance(TRANSITION)
    assert sim.component_copies("llama") is None


def test_zero_copies_keep_the_instance_when_the_minimum_is_not_zero(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.add_component_endpoint("llm", count=1, min_instance_count=1)
    sim.add_inference_component("llama", "llm", copies=1)
    sm = sagemaker()
    sm.update_inference_component_runtime_config(
        InferenceComponentName="llama", DesiredRuntimeConfig={"CopyCount": 0}
    )
    sim.settle()
    assert sim.component_copies("llama") == (0, 0)
    assert variant_count(sm, "llm") == 1


def test_unknown_component_endpoint_or_variant_is_a_validation_error(sim: Simulator) -> None:
    sm = sagemaker()
    calls: tuple[Callable[[], Any], ...] = (
        lambda: sm.describe_inference_component(InferenceComponentName="nope"),
        lambda: sm.delete_inference_component(InferenceComponentName="nope"),
        lambda: sm.update_inference_component_runtime_config(
            InferenceComponentName="nope", DesiredRuntimeConfig={"CopyCount": 0}
        ),
    )
    for call in calls:
        with pytest.raises(ClientError) as missing:
            call()
        assert error_code(missing) == "ValidationException"
    spec = {"ComputeResourceRequirements": {"MinMemoryRequiredInMb": 1024}}
    with pytest.raises(ClientError) as no_endpoint:
        sm.create_inference_component(
            InferenceComponentName="x", EndpointName="nope", VariantName="AllTraffic",
            Specification=spec, RuntimeConfig={"CopyCount": 1},
        )  # fmt: skip
    assert error_code(no_endpoint) == "ValidationException"
    sim.add_component_endpoint("llm")
    with pytest.raises(ClientError) as no_variant:
        sm.create_inference_component(
            InferenceComponentName="x", EndpointName="llm", VariantName="Other",
            Specification=spec, RuntimeConfig={"CopyCount": 1},
        )  # fmt: skip
    assert error_code(no_variant) == "ValidationException"


def test_components_list_by_endpoint_pages_and_tags(sim: Simulator, clock: ManualClock) -> None:
    sim.add_component_endpoint("a")
    sim.add_component_endpoint("b")
    arns = {}
    for i in range(5):
        name = f"ic-{i}"
        arns[name] = sim.add_inference_component(
            name, "a" if i % 2 == 0 else "b", tags={"team": f"t{i}"},
            created_at=clock.now() - timedelta(hours=10 - i),
        )  # fmt: skip
    sm = sagemaker()
    on_a, calls = all_pages(
        sm.list_inference_components, "InferenceComponents", EndpointNameEquals="a", MaxResults=1
    )
    assert calls == 3
    assert [c["InferenceComponentName"] for c in on_a] == ["ic-4", "ic-2", "ic-0"]  # newest first
    everything, _ = all_pages(
        sm.list_inference_components, "InferenceComponents", SortOrder="Ascending", MaxResults=2
    )
    assert [c["InferenceComponentName"] for c in everything] == [f"ic-{i}" for i in range(5)]
    assert {c["VariantName"] for c in everything} == {"AllTraffic"}

    assert sm.list_tags(ResourceArn=arns["ic-3"])["Tags"] == [{"Key": "team", "Value": "t3"}]
    tagging = boto3.client("resourcegroupstaggingapi", region_name="us-east-1")
    found = tagging.get_resources(ResourceTypeFilters=["sagemaker:inference-component"])
    assert {m["ResourceARN"] for m in found["ResourceTagMappingList"]} == set(arns.values())


def test_component_invocations_are_a_metric_per_component(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.add_component_endpoint("llm")
    sim.add_inference_component("llama", "llm")
    sim.component_invocations("llama", [clock.now() - timedelta(minutes=m) for m in (5, 6, 7)])
    values = hourly(clock, "Invocations", {"InferenceComponentName": "llama"}, "Sum")
    assert values == [3.0]
    assert hourly(clock, "Invocations", {"InferenceComponentName": "other"}, "Sum") == []


def test_update_endpoint_moves_the_minimum_to_zero(sim: Simulator, clock: ManualClock) -> None:
    sim.add_component_endpoint("llm", min_instance_count=1)
    sm = sagemaker()
    config = sm.describe_endpoint_config(EndpointConfigName="llm-config")
    assert config["ExecutionRoleArn"] == FAKE_ROLE
    [variant] = config["ProductionVariants"]
    assert "ModelName" not in variant
    variant["ManagedInstanceScaling"]["MinInstanceCount"] = 0
    sm.create_endpoint_config(
        EndpointConfigName="llm-min0", ExecutionRoleArn=FAKE_ROLE, ProductionVariants=[variant]
    )
    sm.update_endpoint(EndpointName="llm", EndpointConfigName="llm-min0")
    assert sm.describe_endpoint(EndpointName="llm")["EndpointStatus"] == "Updating"
    with pytest.raises(ClientError) as busy:
        sm.update_endpoint(EndpointName="llm", EndpointConfigName="llm-config")
    assert error_code(busy) == "ValidationException"
    clock.advance(TRANSITION)
    described = sm.describe_endpoint(EndpointName="llm")
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == "llm-min0"
    [summary] = described["ProductionVariants"]
    assert summary["ManagedInstanceScaling"]["MinInstanceCount"] == 0
    with pytest.raises(ClientError) as missing:
        sm.update_endpoint(EndpointName="llm", EndpointConfigName="nope")
    assert error_code(missing) == "ValidationException"


def test_async_endpoint_backlog_and_application_auto_scaling(
    sim: Simulator, clock: ManualClock
) -> None:
    sim.add_async_endpoint("batchy", count=2, min_capacity=1)
    sm = sagemaker()
    described = sm.describe_endpoint(EndpointName="batchy")
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"].startswith("s3://")
    config = sm.describe_endpoint_config(EndpointConfigName="batchy-config")
    assert config["AsyncInferenceConfig"]["ClientConfig"]["MaxConcurrentInvocationsPerInstance"]
    assert variant_count(sm, "batchy") == 2

    scaling = boto3.client("application-autoscaling", region_name="us-east-1")
    resource = "endpoint/batchy/variant/AllTraffic"
    [target] = scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount", MinCapacity=0,
    )  # fmt: skip
    [target] = scaling.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[resource]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 4)
    sim.scale_to_minimum("batchy")
    assert variant_count(sm, "batchy") == 0

    # inference components scale by copies, a dimension moto did not know
    sim.add_component_endpoint("llm")
    sim.add_inference_component("llama", "llm")
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId="inference-component/llama",
        ScalableDimension="sagemaker:inference-component:DesiredCopyCount",
        MinCapacity=0, MaxCapacity=2,
    )  # fmt: skip

    sim.async_backlog("batchy", [(clock.now() - timedelta(minutes=3), 12.0)])
    assert hourly(clock, "ApproximateBacklogSize", {"EndpointName": "batchy"}, "Maximum") == [12.0]


# --- hyperparameter tuning and AutoML jobs ------------------------------------------------------


def test_tuning_job_runs_children_and_stopping_stops_them(
    sim: Simulator, clock: ManualClock
) -> None:
    arn = sim.add_tuning_job(
        "hpo", children=4, running=2, started_at=clock.now() - timedelta(hours=3),
        tags={"owner": "di@example.com"},
    )  # fmt: skip
    sm = sagemaker()
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo")
    assert described["HyperParameterTuningJobArn"] == arn
    assert described["HyperParameterTuningJobStatus"] == "InProgress"
    assert described["CreationTime"] == clock.now() - timedelta(hours=3)
    assert "HyperParameterTuningEndTime" not in described
    assert described["TrainingJobStatusCounters"]["InProgress"] == 2
    assert described["TrainingJobStatusCounters"]["Completed"] == 2
    assert described["BestTrainingJob"]["TrainingJobStatus"] == "Completed"

    children, calls = all_pages(
        sm.list_training_jobs_for_hyper_parameter_tuning_job, "TrainingJobSummaries",
        HyperParameterTuningJobName="hpo", MaxResults=3,
    )  # fmt: skip
    assert calls == 2 and len(children) == 4
    names = [c["TrainingJobName"] for c in children]
    assert names == sorted(names) and names[0].startswith("hpo-001-")
    assert {c["TuningJobName"] for c in children} == {"hpo"}
    # the children are ordinary training jobs that name their parent
    listed = sm.list_training_jobs(StatusEquals="InProgress")["TrainingJobSummaries"]
    assert {j["TrainingJobName"] for j in listed} == set(names[:2])
    child = sm.describe_training_job(TrainingJobName=names[0])
    assert child["TuningJobArn"] == arn
    tags = sm.list_tags(ResourceArn=child["TrainingJobArn"])["Tags"]
    assert tags == [{"Key": "owner", "Value": "di@example.com"}]

    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo")
    assert sim.tuning_status("hpo") == "Stopping"
    stopping = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="hpo", StatusEquals="Stopping"
    )["TrainingJobSummaries"]
    assert sorted(c["TrainingJobName"] for c in stopping) == names[:2]
    with pytest.raises(ClientError) as twice:
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo")
    assert error_code(twice) == "ValidationException"

    clock.advance(TRANSITION)
    described = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo")
    assert described["HyperParameterTuningJobStatus"] == "Stopped"
    assert described["HyperParameterTuningEndTime"] == clock.now()
    assert described["TrainingJobStatusCounters"]["Stopped"] == 2
    assert sm.describe_training_job(TrainingJobName=names[0])["TrainingJobStatus"] == "Stopped"
    listed = sm.list_hyper_parameter_tuning_jobs(StatusEquals="Stopped")
    assert [
        j["HyperParameterTuningJobName"] for j in listed["HyperParameterTuningJobSummaries"]
    ] == ["hpo"]


def test_unknown_tuning_and_automl_jobs_are_resource_not_found(sim: Simulator) -> None:
    sm = sagemaker()
    calls: tuple[Callable[[], Any], ...] = (
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="nope"),
        lambda: sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="nope"),
        lambda: sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="nope"
        ),
        lambda: sm.describe_auto_ml_job_v2(AutoMLJobName="nope"),
        lambda: sm.stop_auto_ml_job(AutoMLJobName="nope"),
    )
    for call in calls:
        with pytest.raises(ClientError) as missing:
            call()
        assert error_code(missing) == "ResourceNotFound"


def test_tuning_jobs_list_pages_and_finished_ones_cannot_stop(
    sim: Simulator, clock: ManualClock
) -> None:
    for i in range(5):
        status = "Completed" if i % 2 else "InProgress"
        sim.add_tuning_job(
            f"hpo-{i}", children=1, status=status, started_at=clock.now() - timedelta(hours=i)
        )
    sm = sagemaker()
    jobs, calls = all_pages(
        sm.list_hyper_parameter_tuning_jobs, "HyperParameterTuningJobSummaries", MaxResults=2
    )
    assert calls == 3 and len(jobs) == 5
    running = sm.list_hyper_parameter_tuning_jobs(StatusEquals="InProgress")
    assert sorted(j["HyperParameterTuningJobName"] for j in running[
        "HyperParameterTuningJobSummaries"
    ]) == ["hpo-0", "hpo-2", "hpo-4"]  # fmt: skip
    with pytest.raises(ClientError) as finished:
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="hpo-1")
    assert error_code(finished) == "ValidationException"


def test_automl_job_runs_then_stops_with_its_candidates(sim: Simulator, clock: ManualClock) -> None:
    arn = sim.add_automl_job("auto", children=2, running=1, tags={"owner": "cy@example.com"})
    sm = sagemaker()
    described = sm.describe_auto_ml_job_v2(AutoMLJobName="auto")
    assert described["AutoMLJobStatus"] == "InProgress"
    assert described["AutoMLJobSecondaryStatus"] == "TrainingModels"
    assert "EndTime" not in described and "BestCandidate" not in described
    assert "ModelDeployResult" not in described
    [summary] = sm.list_auto_ml_jobs()["AutoMLJobSummaries"]
    assert summary["AutoMLJobArn"] == arn and "EndTime" not in summary
    children = [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert len(children) == 2
    assert {sm.describe_training_job(TrainingJobName=c)["AutoMLJobArn"] for c in children} == {arn}

    sm.stop_auto_ml_job(AutoMLJobName="auto")
    assert sim.automl_status("auto") == "Stopping"
    assert (
        sm.list_auto_ml_jobs(StatusEquals="Stopping")["AutoMLJobSummaries"][0]["AutoMLJobName"]
        == "auto"
    )
    with pytest.raises(ClientError) as twice:
        sm.stop_auto_ml_job(AutoMLJobName="auto")
    assert error_code(twice) == "ValidationException"
    sim.settle()
    described = sm.describe_auto_ml_job_v2(AutoMLJobName="auto")
    assert (described["AutoMLJobStatus"], described["EndTime"]) == ("Stopped", clock.now())
    statuses = {sm.describe_training_job(TrainingJobName=c)["TrainingJobStatus"] for c in children}
    assert statuses == {"Stopped", "Completed"}


# --- training plans -----------------------------------------------------------------------------


def test_training_plan_status_follows_the_clock_and_usage_follows_the_cluster(
    sim: Simulator, clock: ManualClock
) -> None:
    arn = sim.add_training_plan(
        "p5-fortnight", "ml.p5.48xlarge", 4, start=clock.now() + timedelta(hours=1),
        duration=timedelta(days=14), upfront_fee="67737.60",
    )  # fmt: skip
    sm = sagemaker()
    described = sm.describe_training_plan(TrainingPlanName="p5-fortnight")
    assert described["TrainingPlanArn"] == arn
    assert described["Status"] == "Scheduled"
    assert (described["UpfrontFee"], described["CurrencyCode"]) == ("67737.60", "USD")
    assert (described["DurationHours"], described["DurationMinutes"]) == (336, 0)
    assert described["TargetResources"] == ["hyperpod-cluster"]
    [reserved] = described["ReservedCapacitySummaries"]
    assert (reserved["InstanceType"], reserved["TotalInstanceCount"]) == ("ml.p5.48xlarge", 4)

    clock.advance(timedelta(hours=2))
    sim.add_hyperpod_cluster(
        "train",
        [{"InstanceGroupName": "gpu", "InstanceType": "ml.p5.48xlarge", "InstanceCount": 3,
          "TrainingPlanArn": arn}],
    )  # fmt: skip
    described = sm.describe_training_plan(TrainingPlanName=arn)  # by ARN too
    assert described["Status"] == "Active"
    assert (
        described["TotalInstanceCount"],
        described["InUseInstanceCount"],
        described["AvailableInstanceCount"],
    ) == (4, 3, 1)
    assert sm.list_clusters(TrainingPlanArn=arn)["ClusterSummaries"][0]["TrainingPlanArns"] == [arn]

    sm.update_cluster(
        ClusterName="train",
        InstanceGroups=[
            {"InstanceGroupName": "gpu", "InstanceCount": 0, "ExecutionRole": FAKE_ROLE}
        ],
    )
    sim.settle()
    described = sm.describe_training_plan(TrainingPlanName="p5-fortnight")
    assert (described["InUseInstanceCount"], described["AvailableInstanceCount"]) == (0, 4)

    clock.advance(timedelta(days=15))
    assert sm.describe_training_plan(TrainingPlanName="p5-fortnight")["Status"] == "Expired"


def test_training_plans_list_filters_pages_and_unknown(sim: Simulator, clock: ManualClock) -> None:
    for i in range(5):
        sim.add_training_plan(
            f"plan-{i}", start=clock.now() + timedelta(days=i - 2), duration=timedelta(days=1),
            target="training-job", in_use=1,
        )  # fmt: skip
    sm = sagemaker()
    plans, calls = all_pages(sm.list_training_plans, "TrainingPlanSummaries", MaxResults=2)
    assert calls == 3
    assert [p["TrainingPlanName"] for p in plans] == [f"plan-{i}" for i in range(5)]
    assert [p["Status"] for p in plans] == [
        "Expired",
        "Expired",
        "Active",
        "Scheduled",
        "Scheduled",
    ]
    active = sm.list_training_plans(Filters=[{"Name": "Status", "Value": "Active"}])
    [plan] = active["TrainingPlanSummaries"]
    assert (plan["TrainingPlanName"], plan["InUseInstanceCount"]) == ("plan-2", 1)
    later = sm.list_training_plans(StartTimeAfter=clock.now(), SortOrder="Descending")
    assert [p["TrainingPlanName"] for p in later["TrainingPlanSummaries"]] == ["plan-4", "plan-3"]
    with pytest.raises(ClientError) as missing:
        sm.describe_training_plan(TrainingPlanName="nope")
    assert error_code(missing) == "ResourceNotFound"


def test_training_job_plan_usage_counts_running_jobs(sim: Simulator, clock: ManualClock) -> None:
    arn = sim.add_training_plan("tj", "ml.p4d.24xlarge", 2, target="training-job")
    sm = sagemaker()
    sm.create_training_job(
        TrainingJobName="uses-plan",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        RoleArn=FAKE_ROLE,
        OutputDataConfig={"S3OutputPath": "s3://b/o"},
        ResourceConfig={"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1,
                        "VolumeSizeInGB": 50, "TrainingPlanArn": arn},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )  # fmt: skip
    assert sm.describe_training_plan(TrainingPlanName="tj")["InUseInstanceCount"] == 1
    sm.stop_training_job(TrainingJobName="uses-plan")
    assert sm.describe_training_plan(TrainingPlanName="tj")["AvailableInstanceCount"] == 2
    tagging = boto3.client("resourcegroupstaggingapi", region_name="us-east-1")
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "research"}])
    found = tagging.get_resources(ResourceTypeFilters=["sagemaker:training-plan"])
    assert [m["ResourceARN"] for m in found["ResourceTagMappingList"]] == [arn]


# --- every Studio app type ------------------------------------------------------------------------

USER_APP_TYPES = (
    "RStudioServerPro",
    "RSessionGateway",
    "TensorBoard",
    "DetailedProfiler",
    "Canvas",
)


@pytest.mark.parametrize("app_type", USER_APP_TYPES)
def test_every_user_app_type_is_created_listed_described_and_deleted(
    sim: Simulator, app_type: str
) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "ana")
    sm = sagemaker()
    arn = sm.create_app(
        DomainId=domain, UserProfileName="ana", AppType=app_type, AppName="default",
        ResourceSpec={"InstanceType": "ml.m5.large"},
    )["AppArn"]  # fmt: skip
    assert arn.endswith(f"/ana/{app_type.lower()}/default")
    [listed] = sm.list_apps(DomainIdEquals=domain, UserProfileNameEquals="ana")["Apps"]
    assert (listed["AppType"], listed["Status"]) == (app_type, "InService")
    described = sm.describe_app(
        DomainId=domain, UserProfileName="ana", AppType=app_type, AppName="default"
    )
    assert described["AppArn"] == arn
    assert described["ResourceSpec"]["InstanceType"] == "ml.m5.large"
    sm.delete_app(DomainId=domain, UserProfileName="ana", AppType=app_type, AppName="default")
    assert sim.app_status(arn) == "Deleted"


def test_an_app_type_outside_the_model_is_refused(sim: Simulator) -> None:
    domain = sim.add_domain("team")
    sim.add_user_profile(domain, "ana")
    with pytest.raises(ClientError) as bad:
        sagemaker().create_app(
            DomainId=domain, UserProfileName="ana", AppType="RStudio", AppName="default"
        )
    assert error_code(bad) == "ValidationException"


# --- faults reach the new operations like any other -------------------------------------------


def test_injected_faults_and_counts_cover_the_new_operations(sim: Simulator) -> None:
    sim.add_mlflow_server("exp")
    sim.add_hyperpod_cluster("train", GROUPS)
    sim.reset_counts()
    sm = sagemaker()
    sim.fail("sagemaker:ListMlflowTrackingServers")
    with pytest.raises(ClientError) as denied:
        sm.list_mlflow_tracking_servers()
    assert error_code(denied) == "AccessDeniedException"
    sm.list_cluster_nodes(ClusterName="train")  # other operations still answer
    sim.inject("throttle", "sagemaker:UpdateCluster", times=1)
    sm.update_cluster(  # boto3's standard retry gets through the one throttle
        ClusterName="train",
        InstanceGroups=[
            {"InstanceGroupName": "gpu", "InstanceCount": 1, "ExecutionRole": FAKE_ROLE}
        ],
    )
    assert sim.request_counts.get("sagemaker:UpdateCluster") == 2
    assert sim.request_counts.get("sagemaker:ListClusterNodes") == 1


def test_application_auto_scaling_refuses_what_sagemaker_refuses(sim: Simulator) -> None:
    sim.add_endpoint("realtime", count=2)
    scaling = boto3.client("application-autoscaling", region_name="us-east-1")
    dimension = "sagemaker:variant:DesiredInstanceCount"
    with pytest.raises(ClientError) as not_async:
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId="endpoint/realtime/variant/AllTraffic",
            ScalableDimension=dimension, MinCapacity=0, MaxCapacity=2,
        )  # fmt: skip
    assert error_code(not_async) == "ValidationException"
    scaling.register_scalable_target(  # a real-time variant may keep one instance
        ServiceNamespace="sagemaker", ResourceId="endpoint/realtime/variant/AllTraffic",
        ScalableDimension=dimension, MinCapacity=1, MaxCapacity=2,
    )  # fmt: skip
    for resource, dim in (
        ("endpoint/nope/variant/AllTraffic", dimension),
        ("endpoint/realtime/variant/Other", dimension),
        ("inference-component/nope", "sagemaker:inference-component:DesiredCopyCount"),
    ):
        with pytest.raises(ClientError) as missing:
            scaling.register_scalable_target(
                ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dim,
                MinCapacity=1, MaxCapacity=2,
            )  # fmt: skip
        assert error_code(missing) == "ValidationException"
