"""SageMaker HyperPod clusters in the simulator, replacing moto 5.2's partial model.

moto has CreateCluster/DescribeCluster/ListClusters/ListClusterNodes, but: instance types are
checked against an old list, a group without `LifeCycleConfig` or `ThreadsPerCore` fails with
a server error, an unknown cluster answers ValidationException (SageMaker: ResourceNotFound),
ListClusterNodes cannot page (its nodes have no ARN to page by), SortBy expects `Name` where
the model says `NAME`, and UpdateCluster is missing. Here, shaped as the botocore model:

- CreateCluster -> `Creating` (groups `Creating`, CurrentCount 0) -> `InService` with every
  node `Running` after `moto_ext.TRANSITION` of simulated time or `Simulator.settle()`;
- UpdateCluster changes groups' InstanceCount (TargetCount), adds groups, deletes groups
  (`InstanceGroupsToDelete`): the cluster is `Updating` at once (a group being scaled shows
  `ActiveOperations: {"Scaling": 1}`), new nodes are `Pending`, nodes going away are
  `ShuttingDown`; when the transition ends nodes match TargetCount. A new InstanceType for a
  group replaces all its nodes. An update while the cluster is not `InService` is refused
  with ConflictException;
- DescribeCluster reports per group CurrentCount (nodes that exist and are not `Pending`),
  TargetCount, Status; ListClusters/ListClusterNodes page by NextToken and sort by
  CREATION_TIME/NAME; DescribeClusterNode by NodeId; DeleteCluster -> `Deleting` -> gone;
- the ARN ends in the cluster's id, not its name (`cluster/<12 characters>`), as on AWS;
  DescribeCluster & co. accept either. Tags through AddTags/ListTags/DeleteTags and the
  Resource Groups Tagging API (`sagemaker:cluster`). Clusters live beside moto's table (which
  could not find a cluster by such an ARN), on the same backend, so moto's reset forgets them.

Node utilization where an EKS-orchestrated cluster publishes it (CloudWatch Container
Insights: namespace `ContainerInsights`, dimensions ClusterName = the EKS cluster, InstanceId,
NodeName) is seeded with `Simulator.cluster_node_metric`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ConflictException, ResourceInUseException, ResourceNotFound
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase

LIFECYCLE = {"SourceS3Uri": "s3://sagemaker-sim-lifecycle/scripts/", "OnCreate": "on_create.sh"}
_installed = False


@dataclass
class FakeNode:
    instance_id: str
    group: str
    instance_type: str
    launched: datetime
    status: str = "Running"  # ClusterInstanceStatus
    threads_per_core: int = 1

    def summary(self) -> dict[str, Any]:
        return {
            "InstanceGroupName": self.group,
            "InstanceId": self.instance_id,
            "InstanceType": self.instance_type,
            "LaunchTime": self.launched,
            "InstanceStatus": {"Status": self.status},
        }

    def describe(self, group: Mapping[str, Any]) -> dict[str, Any]:
        octets = hashlib.sha256(self.instance_id.encode()).digest()[:2]
        ip = f"10.1.{octets[0]}.{octets[1]}"
        return {
            **self.summary(),
            "LifeCycleConfig": group.get("LifeCycleConfig", {}),
            "ThreadsPerCore": self.threads_per_core,
            "PrivatePrimaryIp": ip,
            "PrivateDnsHostname": f"ip-{ip.replace('.', '-')}.ec2.internal",
            "Placement": {"AvailabilityZone": "us-east-1a", "AvailabilityZoneId": "use1-az1"},
        }


@dataclass
class FakeCluster:
    arn: str
    name: str
    created: datetime
    groups: dict[str, dict[str, Any]]  # by name: the group's specification + TargetCount
    vpc_config: dict[str, Any] | None = None
    orchestrator: dict[str, Any] | None = None
    node_recovery: str | None = None
    status: str = "Creating"
    changes_at: datetime | None = None
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)
    _serial: int = 0

    def new_node(self, group: dict[str, Any], at: datetime, status: str) -> FakeNode:
        self._serial += 1
        digest = hashlib.sha256(f"{self.arn}/{self._serial}".encode()).hexdigest()
        node = FakeNode(
            instance_id=f"i-{digest[:17]}",
            group=group["InstanceGroupName"],
            instance_type=group["InstanceType"],
            launched=at,
            status=status,
            threads_per_core=int(group.get("ThreadsPerCore") or 1),
        )
        self.nodes[node.instance_id] = node
        return node

    def group_nodes(self, name: str) -> list[FakeNode]:
        return [n for n in self.nodes.values() if n.group == name]

    def reconcile(self, at: datetime, status: str) -> None:
        """Start moving every group towards its TargetCount: Pending/ShuttingDown nodes."""
        for group in self.groups.values():
            live = [
                n
                for n in self.group_nodes(group["InstanceGroupName"])
                if n.status != "ShuttingDown"
            ]
            for _ in range(group["TargetCount"] - len(live)):
                self.new_node(group, at, status)
            surplus = len(live) - group["TargetCount"]
            for node in sorted(live, key=lambda n: n.launched, reverse=True)[: max(surplus, 0)]:
                node.status = "ShuttingDown"
        for node in self.nodes.values():
            if node.group not in self.groups:
                node.status = "ShuttingDown"

    def finish(self) -> None:
        """The end of a transition: nodes match each group's TargetCount."""
        self.nodes = {i: n for i, n in self.nodes.items() if n.status != "ShuttingDown"}
        for node in self.nodes.values():
            if node.status == "Pending":
                node.status = "Running"
        self.status, self.changes_at = "InService", None

    def group_details(self, group: Mapping[str, Any]) -> dict[str, Any]:
        nodes = self.group_nodes(group["InstanceGroupName"])
        details = {
            key: value
            for key, value in group.items()
            if key not in ("InstanceCount", "MinInstanceCount") and value is not None
        }
        if "MinInstanceCount" in group:
            details["MinCount"] = group["MinInstanceCount"]
        details["CurrentCount"] = sum(1 for n in nodes if n.status != "Pending")
        in_transition = self.status in ("Creating", "Updating")
        settled = details["CurrentCount"] == group["TargetCount"] and all(
            n.status == "Running" for n in nodes
        )
        details["Status"] = (
            "InService" if not in_transition or settled
            else "Creating" if self.status == "Creating" else "Updating"
        )  # fmt: skip
        if details["Status"] == "Updating":
            details["ActiveOperations"] = {"Scaling": 1}
        return details

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "ClusterArn": self.arn,
            "ClusterName": self.name,
            "ClusterStatus": self.status,
            "CreationTime": self.created,
            "InstanceGroups": [self.group_details(g) for g in self.groups.values()],
        }
        for key, value in (
            ("VpcConfig", self.vpc_config),
            ("Orchestrator", self.orchestrator),
            ("NodeRecovery", self.node_recovery),
        ):
            if value:
                described[key] = value
        return described

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "ClusterArn": self.arn,
            "ClusterName": self.name,
            "CreationTime": self.created,
            "ClusterStatus": self.status,
        }
        plans = sorted(
            {g["TrainingPlanArn"] for g in self.groups.values() if g.get("TrainingPlanArn")}
        )
        if plans:
            summary["TrainingPlanArns"] = plans
        return summary


def clusters(backend: Any) -> dict[str, FakeCluster]:
    """The clusters of one moto backend by name, settled to now."""
    found: dict[str, FakeCluster] = backend.__dict__.setdefault("_cost_guard_clusters", {})
    settle(found, moto_ext.now())
    return found


def settle(found: dict[str, FakeCluster], at: datetime | None) -> None:
    """End transitions due by `at` (every one when `at` is None)."""
    for name, cluster in list(found.items()):
        if cluster.changes_at is None or (at is not None and at < cluster.changes_at):
            continue
        if cluster.status == "Deleting":
            del found[name]
        else:
            cluster.finish()


def _find(backend: Any, name_or_arn: str) -> FakeCluster:
    found = clusters(backend)
    cluster = found.get(name_or_arn) or next(
        (c for c in found.values() if c.arn == name_or_arn), None
    )
    if cluster is None:
        raise ResourceNotFound(message=f"Cluster {name_or_arn} not found")
    return cluster


def _check_group(spec: Mapping[str, Any], existing: Mapping[str, Any] | None) -> None:
    name = spec["InstanceGroupName"]
    instance_type = spec.get("InstanceType")
    if existing is None and not instance_type:
        raise SageMakerValidationError(message=f"Instance group {name} needs an InstanceType")
    if instance_type and instance_type not in moto_ext.model_enum("ClusterInstanceType"):
        raise SageMakerValidationError(
            message=f"Value '{instance_type}' at 'instanceGroups.{name}.instanceType' failed to "
            "satisfy constraint: Member must satisfy enum value set"
        )
    count = spec.get("InstanceCount")
    if count is None or not 0 <= int(count) <= 6758:
        raise SageMakerValidationError(message=f"Invalid InstanceCount for instance group {name}")


def create_cluster(backend: Any, params: Mapping[str, Any]) -> FakeCluster:
    name = params["ClusterName"]
    if name in clusters(backend):
        raise ResourceInUseException(
            message=f"Resource Already Exists: Cluster with name {name} already exists. "
            "Choose a different name."
        )
    groups: dict[str, dict[str, Any]] = {}
    for spec in params.get("InstanceGroups") or []:
        _check_group(spec, None)
        if spec["InstanceGroupName"] in groups:
            raise SageMakerValidationError(
                message=f"Duplicate instance group name {spec['InstanceGroupName']}"
            )
        groups[spec["InstanceGroupName"]] = {**spec, "TargetCount": int(spec["InstanceCount"])}
    if not groups:
        raise SageMakerValidationError(message="A cluster needs at least one instance group")
    now = moto_ext.now()
    cluster = FakeCluster(
        arn=f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:cluster/"
        + hashlib.sha256(f"{backend.account_id}/{name}".encode()).hexdigest()[:12],
        name=name,
        created=now,
        groups=groups,
        vpc_config=params.get("VpcConfig"),
        orchestrator=params.get("Orchestrator"),
        node_recovery=params.get("NodeRecovery"),
        tags=list(params.get("Tags") or []),
        changes_at=now + moto_ext.TRANSITION,
    )
    cluster.reconcile(now, "Pending")
    clusters(backend)[name] = cluster
    return cluster


def update_cluster(backend: Any, params: Mapping[str, Any]) -> FakeCluster:
    cluster = _find(backend, params["ClusterName"])
    if cluster.status != "InService":
        raise ConflictException(
            f"Cluster {cluster.name} cannot be updated while it is {cluster.status}"
        )
    specs = params.get("InstanceGroups") or []
    to_delete = params.get("InstanceGroupsToDelete") or []
    for spec in specs:
        _check_group(spec, cluster.groups.get(spec["InstanceGroupName"]))
    for group in to_delete:
        if group not in cluster.groups:
            raise SageMakerValidationError(message=f"Instance group {group} does not exist")
    for spec in specs:
        existing = cluster.groups.get(spec["InstanceGroupName"], {})
        merged = {**existing, **spec, "TargetCount": int(spec["InstanceCount"])}
        cluster.groups[spec["InstanceGroupName"]] = merged
        if existing and merged["InstanceType"] != existing["InstanceType"]:
            for node in cluster.group_nodes(spec["InstanceGroupName"]):
                node.status = "ShuttingDown"  # replaced by nodes of the new type
    for group in to_delete:
        del cluster.groups[group]
    if params.get("NodeRecovery"):
        cluster.node_recovery = params["NodeRecovery"]
    now = moto_ext.now()
    cluster.status, cluster.changes_at = "Updating", now + moto_ext.TRANSITION
    cluster.reconcile(now, "Pending")
    return cluster


def _sorted(items: list[Any], by: str | None, order: str | None, name: Callable[[Any], str],
            created: Callable[[Any], datetime]) -> list[Any]:  # fmt: skip
    key = name if by == "NAME" else created
    return sorted(items, key=key, reverse=(order or "Ascending") == "Descending")


# --- HTTP handlers replacing or adding to moto's SageMakerResponse -----------------------------


def _handlers() -> dict[str, Callable[[Any], ActionResult]]:
    def create_(self: Any) -> ActionResult:
        names = ("ClusterName", "InstanceGroups", "VpcConfig", "Tags", "Orchestrator",
                 "NodeRecovery")  # fmt: skip
        cluster = create_cluster(self.sagemaker_backend, {n: self._get_param(n) for n in names})
        return ActionResult({"ClusterArn": cluster.arn})

    def update_(self: Any) -> ActionResult:
        names = ("ClusterName", "InstanceGroups", "InstanceGroupsToDelete", "NodeRecovery")
        cluster = update_cluster(self.sagemaker_backend, {n: self._get_param(n) for n in names})
        return ActionResult({"ClusterArn": cluster.arn})

    def describe_(self: Any) -> ActionResult:
        return ActionResult(
            _find(self.sagemaker_backend, self._get_param("ClusterName")).describe()
        )

    def delete_(self: Any) -> ActionResult:
        cluster = _find(self.sagemaker_backend, self._get_param("ClusterName"))
        if cluster.status != "Deleting":
            cluster.status = "Deleting"
            cluster.changes_at = moto_ext.now() + moto_ext.TRANSITION
            for node in cluster.nodes.values():
                node.status = "ShuttingDown"
        return ActionResult({"ClusterArn": cluster.arn})

    def list_(self: Any) -> ActionResult:
        after = moto_ext.as_naive(self._get_param("CreationTimeAfter"))
        before = moto_ext.as_naive(self._get_param("CreationTimeBefore"))
        contains = self._get_param("NameContains") or ""
        plan = self._get_param("TrainingPlanArn")
        found = [
            c
            for c in clusters(self.sagemaker_backend).values()
            if contains in c.name
            and (after is None or c.created > after)
            and (before is None or c.created < before)
            and (not plan or plan in c.summary().get("TrainingPlanArns", []))
        ]
        found = _sorted(found, self._get_param("SortBy"), self._get_param("SortOrder"),
                        lambda c: c.name, lambda c: c.created)  # fmt: skip
        page, token = moto_ext.offset_page(
            found, self._get_param("NextToken"), self._get_param("MaxResults")
        )
        return ActionResult({"ClusterSummaries": [c.summary() for c in page], "NextToken": token})

    def list_nodes_(self: Any) -> ActionResult:
        cluster = _find(self.sagemaker_backend, self._get_param("ClusterName"))
        after = moto_ext.as_naive(self._get_param("CreationTimeAfter"))
        before = moto_ext.as_naive(self._get_param("CreationTimeBefore"))
        contains = self._get_param("InstanceGroupNameContains") or ""
        found = [
            n
            for n in cluster.nodes.values()
            if contains in n.group
            and (after is None or n.launched > after)
            and (before is None or n.launched < before)
        ]
        found = _sorted(found, self._get_param("SortBy"), self._get_param("SortOrder"),
                        lambda n: n.group, lambda n: n.launched)  # fmt: skip
        page, token = moto_ext.offset_page(
            found, self._get_param("NextToken"), self._get_param("MaxResults")
        )
        return ActionResult(
            {"ClusterNodeSummaries": [n.summary() for n in page], "NextToken": token}
        )

    def describe_node_(self: Any) -> ActionResult:
        cluster = _find(self.sagemaker_backend, self._get_param("ClusterName"))
        node_id = self._get_param("NodeId") or self._get_param("NodeLogicalId")
        node = cluster.nodes.get(node_id or "")
        if node is None:
            raise ResourceNotFound(message=f"Node {node_id} not found in cluster {cluster.name}")
        group = cluster.groups.get(node.group, {})
        return ActionResult({"NodeDetails": node.describe(group)})

    return {
        "create_cluster": create_,
        "update_cluster": update_,
        "describe_cluster": describe_,
        "delete_cluster": delete_,
        "list_clusters": list_,
        "list_cluster_nodes": list_nodes_,
        "describe_cluster_node": describe_node_,
    }


def install() -> None:
    """Replace moto's cluster API (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in _handlers().items():
        setattr(sm_responses.SageMakerResponse, name, handler)
    moto_ext.tag_source(
        ":cluster/", "sagemaker:cluster", lambda backend: list(clusters(backend).values())
    )


# --- seeding -----------------------------------------------------------------------------------


class HyperPodSeeding(SimBase):
    """HyperPod clusters (created over HTTP, then placed in time) and their node metrics."""

    def add_hyperpod_cluster(
        self,
        name: str,
        groups: Sequence[Mapping[str, Any]] = (
            {"InstanceGroupName": "workers", "InstanceType": "ml.g5.xlarge", "InstanceCount": 2},
        ),
        *,
        tags: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        status: str = "InService",
        eks_cluster: str | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A cluster whose groups (InstanceGroupName, InstanceType, InstanceCount; any other
        ClusterInstanceGroupSpecification field passes through) have run since `created_at`.
        `status="Creating"` leaves it mid-creation; `eks_cluster` = orchestrated by that EKS
        cluster (Orchestrator.Eks), else Slurm."""
        region = region or self.regions[0]
        request: dict[str, Any] = {
            "ClusterName": name,
            "InstanceGroups": [
                {"ExecutionRole": FAKE_ROLE, "LifeCycleConfig": LIFECYCLE, **g} for g in groups
            ],
            "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        }
        if eks_cluster:
            request["Orchestrator"] = {
                "Eks": {
                    "ClusterArn": f"arn:aws:eks:{region}:{self.account_id}:cluster/{eks_cluster}"
                }
            }
        arn = self.client("sagemaker", region, account).create_cluster(**request)["ClusterArn"]
        cluster = clusters(self._sagemaker(region, account))[name]
        when = moto_ext.naive_utc(created_at or self.clock.now())
        cluster.created = when
        for node in cluster.nodes.values():
            node.launched = when
        if status == "InService":
            cluster.finish()
        else:
            cluster.status = status
        return str(arn)

    def cluster_nodes(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> list[FakeNode]:
        """The cluster's nodes as the simulator holds them (ids, groups, states)."""
        cluster = clusters(self._sagemaker(region or self.regions[0], account))[name]
        return list(cluster.nodes.values())

    def replace_cluster_node(
        self, name: str, instance_id: str, *, region: str | None = None,
        account: str | None = None,
    ) -> str:  # fmt: skip
        """HyperPod replacing a faulty node (auto-recovery): the instance is gone and a new
        one of its group, with a new id, launched now, runs in its place; the counts stay."""
        cluster = clusters(self._sagemaker(region or self.regions[0], account))[name]
        old = cluster.nodes.pop(instance_id)
        group = {"InstanceGroupName": old.group, "InstanceType": old.instance_type}
        return cluster.new_node(group, moto_ext.now(), "Running").instance_id

    def cluster_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str | None:
        cluster = clusters(self._sagemaker(region or self.regions[0], account)).get(name)
        return None if cluster is None else cluster.status

    def cluster_node_metric(
        self,
        eks_cluster: str,
        instance_id: str,
        metric: str,
        points: Iterable[tuple[datetime, float]],
        *,
        node_name: str | None = None,
        namespace: str = "ContainerInsights",
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """Datapoints of a node metric as Container Insights publishes it for an EKS node
        (e.g. `node_gpu_utilization`, `node_cpu_utilization`; NodeName defaults to
        `hyperpod-<instance id>`, as HyperPod names its EKS nodes)."""
        dimensions = {
            "ClusterName": eks_cluster,
            "InstanceId": instance_id,
            "NodeName": node_name or f"hyperpod-{instance_id}",
        }
        self.put_metric(namespace, metric, dimensions, points, region=region, account=account)

    def settle_clusters(self) -> None:
        """Finish every cluster transition now (Creating/Updating -> InService, Deleting)."""
        for region in self.regions:
            settle(clusters(self._sagemaker(region)), None)
