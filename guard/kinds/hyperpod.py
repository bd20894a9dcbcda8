"""SageMaker HyperPod clusters: the registry entry (and where reserved capacity is found).

A cluster costs Σ instance groups x current instance count x the `Cluster` price of the
group's type. Its evidence is its nodes' utilization where the cluster publishes it
(CloudWatch Container Insights, for an EKS-orchestrated cluster), otherwise the time since an
instance group last changed size. Its one mutating action scales chosen instance groups to
zero (UpdateCluster, InstanceCount 0) after saving each group's full specification; the
cluster itself is never deleted, and `cost-guard restore cluster NAME` brings the counts back.

Reserved capacity (training plans) is not a resource to act on: an Active plan with unused
instances is a *finding* with the money committed to them, reported by this kind's scanner
(`ClusterScan.reserved_capacity`), since plans reserve the capacity clusters run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from guard.kinds.spec import ActionSpec, KindSpec, RestoreSpec


@dataclass(frozen=True)
class NodeUtilization:
    """Where a cluster's node utilization is published, and what counts as a busy node."""

    namespace: str = "ContainerInsights"
    # metric -> the percent at or above which a node is busy in a period (Maximum per period).
    # A Kubernetes node with no work runs its agents at a few % CPU, hence 10 % for CPU.
    busy_at: Mapping[str, float] = field(
        default_factory=lambda: {"node_gpu_utilization": 5.0, "node_cpu_utilization": 10.0}
    )
    # HyperPod names the EKS node of an instance `hyperpod-<instance id>`; Container Insights
    # publishes node metrics per ClusterName (the EKS cluster), InstanceId and NodeName.
    node_name: str = "hyperpod-{instance_id}"
    # how far back to look when no idle_for rule of the kind says
    default_window: timedelta = timedelta(hours=24)
    # a node whose newest datapoint is older than this stopped publishing: unknown, not idle
    stale_after: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class ClusterScan:
    """What the scanner reads from the entry (`KindSpec.scanner_config`)."""

    utilization: NodeUtilization = field(default_factory=NodeUtilization)
    # Also list Active training plans (ListTrainingPlans) and report unused reserved
    # instances as findings: UpfrontFee x unused share of the plan's instances.
    reserved_capacity: bool = True


HYPERPOD_CLUSTER = KindSpec(
    name="hyperpod_cluster",
    title="HyperPod cluster",
    price_component="Cluster",
    list_operation="list_clusters",
    describe_operation="describe_cluster",
    read_permissions=(
        "sagemaker:ListClusters",
        "sagemaker:DescribeCluster",
        "sagemaker:ListClusterNodes",
        "sagemaker:ListTrainingPlans",
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:cluster/*",
    name_param="ClusterName",
    list_key="ClusterSummaries",
    arn_field="ClusterArn",
    name_field="ClusterName",
    status_field="ClusterStatus",
    type_field="InstanceType",  # per instance group
    tagging_type="sagemaker:cluster",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/cluster-management/{name}",
    scanner="guard.scanners.hyperpod:scan",
    simulator="guard.sim.hyperpod:HyperPodSeeding",
    evidence=(
        "its nodes' GPU/CPU utilization from CloudWatch Container Insights where the cluster "
        "publishes it, otherwise the time since an instance group last changed size"
    ),
    actions={
        "scale-to-zero": ActionSpec(
            name="scale-to-zero",
            operation="update_cluster",
            permission="sagemaker:UpdateCluster",
            valid_states=("InService",),
            # Right after UpdateCluster the cluster is Updating: after a crash or a lost
            # answer that says the call went through (and a resize under way is no time to
            # start another one).
            done_states=("Updating",),
            verb_past="scaled to zero instances",
            verb_would="would scale to zero instances",
            keeps=(
                "The cluster stays, with every instance group's settings (saved first); "
                "`cost-guard restore cluster {name}` brings the instance counts back."
            ),
            # UpdateCluster also needs iam:PassRole on the groups' execution roles: not granted
            # here (it would be on every role); README "IAM permissions" says how to add it.
            extra_permissions=("sagemaker:DescribeCluster",),
            handler="guard.hyperpod_actions:scale_to_zero",
            rule_options=("instance_groups",),
        ),
    },
    # Price List: instanceType `ml.<type>-Cluster`, component `Cluster`, usage type
    # `USE1-Cluster:ml.<type>` (reserved capacity is `ReservedCluster`, not priced here).
    price_list_components={"cluster": "Cluster"},
    price_usage_operations={"cluster": "Cluster"},
    scanner_config=ClusterScan(),
    restore=RestoreSpec(
        command="cluster",
        function="guard.hyperpod_actions:restore_cluster",
        error="guard.hyperpod_actions:RestoreError",
        help=(
            "Bring a HyperPod cluster's instance groups back to the instance counts they had "
            "before cost-guard scaled them to zero."
        ),
    ),
)

ENTRIES = (HYPERPOD_CLUSTER,)
