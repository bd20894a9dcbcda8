"""HyperPod clusters: priced per instance group, idle from node utilization or last resize.

Per cluster and cycle: DescribeCluster (the groups' current counts change without any
timestamp on the listing, so there is no cache to trust). ListClusterNodes (100 per page: the
node ids the metrics are published under, and their launch times) only when the stored
details cannot stand in for it: a new cluster, a group whose count changed or that is
resizing, an EKS cluster's nodes not all Running when last listed; and, in the same cycle
after the metric queries, for an EKS cluster judged on stored node ids that could be judged
idle (a node replaced since, same count, would be unseen: one whose id differs makes the
cluster unknown this cycle) or whose stored node stopped publishing (a replaced node: unknown
this cycle, as before, and listed now so the next cycle queries the new id). The price is
Σ groups x CurrentCount x price(type, region, `Cluster`).

Evidence, as the entry's `ClusterScan` declares it:

- an EKS-orchestrated cluster that publishes Container Insights node metrics: the last period
  in which any node's GPU or CPU utilization (Maximum) reached the busy threshold, read with
  GetMetricData (500 queries per call) over the longest `idle_for` of the kind's rules. A node
  that stopped publishing makes the cluster `unknown`, never idle;
- any other cluster (Slurm, or no Container Insights): the time an instance group last
  changed size (a node launched, or a count that differs from the stored snapshot's).

Reserved capacity: Active training plans with unused instances (ListTrainingPlans, read
hourly) are findings with the money committed to the unused share of their upfront fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found, pages
from guard.kinds import KindSpec
from guard.kinds.hyperpod import ClusterScan, NodeUtilization
from guard.model import ActivitySource, Finding, Resource, parse_time
from guard.pricing import combined_source
from guard.rules import human
from guard.scanners.shared import every, kind_tags
from guard.scanning import (
    ScanContext,
    Target,
    concurrently,
    list_all,
    metric_data,
    metric_period,
    rule_windows,
    utc,
)

_LABELS = {"node_gpu_utilization": "GPU", "node_cpu_utilization": "CPU"}


@dataclass(frozen=True)
class Node:
    instance_id: str
    group: str
    status: str
    launched: datetime | None


@dataclass
class Looked:
    """One cluster as described this cycle (details to store, its nodes), or why not."""

    name: str
    details: dict[str, Any]
    nodes: list[Node]
    error: str | None = None
    described: dict[str, Any] | None = None
    stored_nodes: bool = False  # `nodes` are the stored ones, not listed this cycle


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    config: ClusterScan = spec.scanner_config
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    listed = list_all(client, target, spec)
    if listed:
        tags, shared_error = kind_tags(ctx, target, spec)
        known = ctx.store.known_details(spec.name, target.account_id, target.region)
        looked = concurrently(
            lambda c: _look(ctx, client, spec, c, known.get(c[spec.arn_field], {})), listed
        )
        found = {
            c[spec.arn_field]: one
            for c, one in zip(listed, looked, strict=True)
            if one is not None  # None: deleted between the listing and the describe
        }
        for one in found.values():
            if one.error:
                target.errors.append(
                    f"{target.account_id} {target.region}: cluster {one.name} "
                    f"could not be described, it is unknown this cycle: {one.error}"
                )
        suspect: set[str] = set()
        evidence = _evidence(ctx, target, spec, config.utilization, found, suspect)
        _relist(ctx, target, client, spec, config.utilization, found, evidence, suspect)
        for cluster in listed:
            arn = cluster[spec.arn_field]
            if arn in found:
                res = _resource(
                    ctx, target, spec, cluster, found[arn], tags.get(arn, {}), shared_error,
                    evidence.get(arn),
                )  # fmt: skip
                target.resources.append(res)
    if config.reserved_capacity:
        reserved_capacity(ctx, target, client)


def _look(
    ctx: ScanContext, client: Any, spec: KindSpec, cluster: dict[str, Any], stored: dict[str, Any]
) -> Looked | None:
    name = cluster[spec.name_field]
    try:
        described = client.describe_cluster(ClusterName=name)
        nodes = None
        if not _nodes_known(described, stored):
            nodes = _list_nodes(client, name)
    except ClientError as exc:
        if not_found(exc):
            return None
        return _stale(name, stored, error_text(exc))
    except AWS_ERRORS as exc:
        return _stale(name, stored, error_text(exc))
    details = _details(ctx, spec, described, nodes, stored)
    if nodes is not None:
        return Looked(name, details, nodes, described=described)
    return Looked(name, details, _stored_nodes(details), described=described, stored_nodes=True)


def _list_nodes(client: Any, name: str) -> list[Node]:
    return [
        Node(n["InstanceId"], n["InstanceGroupName"],
             str((n.get("InstanceStatus") or {}).get("Status", "")),
             utc(n.get("LaunchTime")))
        for n in pages(client, "list_cluster_nodes", "ClusterNodeSummaries",
                       ClusterName=name, MaxResults=100)
    ]  # fmt: skip


def _stored_nodes(details: dict[str, Any]) -> list[Node]:
    """The running nodes kept in an EKS cluster's details ([id, group, launch time])."""
    return [
        Node(str(node_id), str(group), "Running", parse_time(launched))
        for node_id, group, launched in details.get("nodes") or []
    ]


def _counts(described: dict[str, Any]) -> dict[str, int]:
    return {g["InstanceGroupName"]: int(g.get("CurrentCount", 0))
            for g in described.get("InstanceGroups", [])}  # fmt: skip


def _nodes_known(described: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether ListClusterNodes can be spared: no group changed size since the stored
    snapshot (which keeps its nodes' launch times) nor is resizing, and, for an EKS cluster
    (whose metric queries need the node ids), the stored snapshot keeps its node ids. What
    the stored ids could miss (a node replaced at the same count) is checked after the metric
    queries (`_relist`)."""
    eks = (described.get("Orchestrator") or {}).get("Eks")
    resizing = any(
        int(g.get("CurrentCount", 0)) != int(g.get("TargetCount", g.get("CurrentCount", 0)))
        for g in described.get("InstanceGroups", [])
    )
    return (
        not resizing
        and "launched" in stored
        and stored.get("counts") == _counts(described)
        and (not eks or isinstance(stored.get("nodes"), list))
    )


def _stale(name: str, stored: dict[str, Any], error: str) -> Looked:
    """What was known (for the inventory) with the error that makes it unknown now."""
    return Looked(name, stored, [], error)


def _details(
    ctx: ScanContext,
    spec: KindSpec,
    described: dict[str, Any],
    nodes: list[Node] | None,
    stored: dict[str, Any],
) -> dict[str, Any]:
    """The details stored for a cluster. `nodes` None: not listed this cycle (nothing
    changed), their launch times are the stored ones."""
    groups = [
        {
            "name": g["InstanceGroupName"],
            "instance_type": g.get("InstanceType"),
            "current": int(g.get("CurrentCount", 0)),
            "target": int(g.get("TargetCount", g.get("CurrentCount", 0))),
            "status": g.get("Status", ""),
            "training_plan": g.get("TrainingPlanArn", ""),
        }
        for g in described.get("InstanceGroups", [])
    ]
    counts = _counts(described)
    eks = ((described.get("Orchestrator") or {}).get("Eks") or {}).get("ClusterArn", "")
    kept_nodes: list[list[Any]] | None = None
    if nodes is None:
        launched = dict(stored["launched"])
        kept_nodes = stored.get("nodes") if eks else None
    else:  # the oldest and newest launch of the running nodes, for running_since and resizes
        times = sorted(n.launched for n in _running(nodes) if n.launched is not None)
        launched = (
            {"oldest": times[0].isoformat(), "newest": times[-1].isoformat()} if times else {}
        )
        # An EKS cluster's node ids (what its metric queries need), kept only when every node
        # of every group is listed Running: a node still coming up would be missing from them.
        if eks and len(_running(nodes)) == len(nodes) == sum(counts.values()):
            kept_nodes = [
                [n.instance_id, n.group, n.launched.isoformat() if n.launched else None]
                for n in sorted(nodes, key=lambda n: n.instance_id)
            ]
    # When an instance group last changed size: a count unlike the stored snapshot's (or a
    # resize under way) is now; else the newest node's launch, the cluster's creation, or
    # what was stored, whichever is latest.
    resized = stored.get("counts") not in (None, counts) or any(
        g["current"] != g["target"] for g in groups
    )
    candidates = [
        t
        for t in (
            parse_time(stored.get("last_scaled")),
            utc(described.get("CreationTime")),
            parse_time(launched.get("newest")),
        )
        if t is not None
    ]
    last_scaled = ctx.now if resized or not candidates else max(candidates)
    rule_groups = {
        rule.id: list(rule.instance_groups)
        for rule in ctx.cfg.rules
        if rule.kind == spec.name and rule.instance_groups
    }
    details = {
        "groups": groups,
        "counts": counts,
        "orchestrator": "eks" if eks else "slurm",
        "eks_cluster": eks.rsplit("/", 1)[-1] if eks else "",
        "last_scaled": last_scaled.isoformat(),
        "launched": launched,
        "rule_groups": rule_groups,  # which groups each scale-to-zero rule chose
        # once seen publishing node utilization, silence is unknown, not "never published"
        "publishes_utilization": bool(stored.get("publishes_utilization")),
    }
    if kept_nodes is not None:
        details["nodes"] = kept_nodes
    return details


@dataclass(frozen=True)
class Evidence:
    last_activity: datetime | None
    source: ActivitySource
    error: str | None = None
    last_busy: datetime | None = None


def utilization_window(ctx: ScanContext, spec: KindSpec, utilization: NodeUtilization) -> timedelta:
    windows = rule_windows(ctx.cfg, spec.name, "idle_for")
    return windows[-1] if windows else utilization.default_window


def _evidence(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    utilization: NodeUtilization,
    found: dict[str, Looked],
    suspect: set[str] | None = None,
) -> dict[str, Evidence]:
    """Per ARN: node utilization where published, else the last resize. `suspect` gets the
    ARNs of clusters whose stored node ids may be out of date: one of them publishes nothing
    (replaced?) or none does though the cluster published before."""
    now = ctx.now
    suspect = set() if suspect is None else suspect
    scaled = {arn: parse_time(one.details.get("last_scaled")) for arn, one in found.items()}
    evidence = {
        arn: Evidence(scaled[arn], ActivitySource.LAST_SCALED)
        for arn, one in found.items()
        if not one.error
    }
    published = {
        arn: one
        for arn, one in found.items()
        if not one.error and one.details.get("eks_cluster") and _running(one.nodes)
    }
    if not published:
        return evidence
    window = utilization_window(ctx, spec, utilization)
    start, period = now - window, metric_period(window)
    queries: list[dict[str, Any]] = []
    owners: dict[str, tuple[str, str, str]] = {}  # query id -> (arn, instance id, metric)
    for arn, one in published.items():
        for node in _running(one.nodes):
            dimensions = [
                {"Name": "ClusterName", "Value": one.details["eks_cluster"]},
                {"Name": "InstanceId", "Value": node.instance_id},
                {"Name": "NodeName",
                 "Value": utilization.node_name.format(instance_id=node.instance_id)},
            ]  # fmt: skip
            for metric in utilization.busy_at:
                query_id = f"q{len(queries)}"
                owners[query_id] = (arn, node.instance_id, metric)
                stat = {
                    "Metric": {
                        "Namespace": utilization.namespace,
                        "MetricName": metric,
                        "Dimensions": dimensions,
                    },
                    "Period": period,
                    "Stat": "Maximum",
                }
                queries.append({"Id": query_id, "MetricStat": stat, "ReturnData": True})
    client = ctx.aws.client(target.account, target.region, "cloudwatch")
    try:
        points = metric_data(client, queries, start, now)
    except AWS_ERRORS as exc:
        why = f"node utilization unavailable: {error_text(exc)}"
        target.errors.append(
            f"{target.account_id} {target.region}: GetMetricData failed, clusters publishing "
            f"node utilization there are unknown this cycle: {error_text(exc)}"
        )
        for arn in published:
            evidence[arn] = Evidence(None, ActivitySource.UNKNOWN, why)
        return evidence
    newest: dict[tuple[str, str], datetime] = {}
    busy: dict[str, datetime] = {}
    any_point: set[str] = set()
    for query_id, series in points.items():
        arn, instance_id, metric = owners[query_id]
        if series:
            any_point.add(arn)
            key = (arn, instance_id)
            newest[key] = max(series[-1][0], newest.get(key, series[-1][0]))
        used = [when for when, value in series if value >= utilization.busy_at[metric]]
        if used:
            # stamped at the period's start: the busy stretch may have lasted to its end
            when = min(used[-1] + timedelta(seconds=period), now)
            busy[arn] = max(when, busy.get(arn, when))
    stale_after = max(utilization.stale_after, timedelta(seconds=2 * period))
    for arn, one in published.items():
        if arn not in any_point:
            # No datapoint at all: a cluster that never published is judged by its last
            # resize; one that did before has gone silent, and silence is not idleness.
            if one.details["publishes_utilization"]:
                why = f"no node utilization published in the last {human(window)}"
                evidence[arn] = Evidence(None, ActivitySource.UNKNOWN, why)
                suspect.add(arn)
            continue
        one.details["publishes_utilization"] = True
        silent = [
            n.instance_id
            for n in _running(one.nodes)
            if (n.launched is None or n.launched < now - stale_after)
            and newest.get((arn, n.instance_id), start) < now - stale_after
        ]
        if silent:
            suspect.add(arn)
        if silent and arn not in busy:
            why = (
                f"node(s) {', '.join(sorted(silent)[:3])} publish no utilization since "
                f"{human(stale_after)} ago or more"
            )
            evidence[arn] = Evidence(None, ActivitySource.UNKNOWN, why)
            continue
        last_busy = busy.get(arn)
        since = max(t for t in (last_busy or start, scaled[arn]) if t is not None)
        evidence[arn] = Evidence(since, ActivitySource.NODE_UTILIZATION, last_busy=last_busy)
    return evidence


def _relist(
    ctx: ScanContext,
    target: Target,
    client: Any,
    spec: KindSpec,
    utilization: NodeUtilization,
    found: dict[str, Looked],
    evidence: dict[str, Evidence],
    suspect: set[str],
) -> None:
    """List the nodes of the EKS clusters judged on stored node ids that need them now:

    - `suspect` ones (a stored node stopped publishing, or all did): unknown this cycle
      unless another node is busy; listed so the next cycle queries the ids they have now;
    - ones whose node utilization could make them idle by a rule of the kind (no busy node
      within its shortest `idle_for`): a node replaced at the same count would be neither
      queried nor seen launching, so a busy replacement could pass for an idle cluster.
      The same node ids: the judgement stands. Others: unknown this cycle, never idle.

    A listing that fails makes the cluster unknown and drops its stored ids (the next cycle
    lists again)."""
    windows = rule_windows(ctx.cfg, spec.name, "idle_for")
    shortest = windows[0] if windows else utilization_window(ctx, spec, utilization)
    todo = [
        arn
        for arn, one in found.items()
        if one.stored_nodes
        and one.described is not None
        and not one.error
        and (
            arn in suspect
            or (
                (seen := evidence.get(arn)) is not None
                and seen.source is ActivitySource.NODE_UTILIZATION
                and (seen.last_activity is None or seen.last_activity <= ctx.now - shortest)
            )
        )
    ]
    answers = concurrently(lambda arn: _nodes_or_error(client, found[arn].name), todo)
    for arn, answer in zip(todo, answers, strict=True):
        one = found[arn]
        before = {n.instance_id for n in _running(one.nodes)}
        if isinstance(answer, Exception):
            one.details.pop("nodes", None)
            why = f"its nodes could not be listed: {error_text(answer)}"
            evidence[arn] = Evidence(None, ActivitySource.UNKNOWN, why)
            target.errors.append(
                f"{target.account_id} {target.region}: cluster {one.name} is unknown this "
                f"cycle, {why}"
            )
            continue
        assert one.described is not None
        one.details = _details(ctx, spec, one.described, answer, one.details)
        one.nodes, one.stored_nodes = answer, False
        now_running = {n.instance_id for n in _running(answer)}
        if now_running != before and arn not in suspect:
            why = "its nodes changed since last listed: their utilization is read next cycle"
            evidence[arn] = Evidence(None, ActivitySource.UNKNOWN, why)


def _nodes_or_error(client: Any, name: str) -> list[Node] | Exception:
    try:
        return _list_nodes(client, name)
    except AWS_ERRORS as exc:
        return exc  # the caller makes the cluster unknown


def _running(nodes: list[Node]) -> list[Node]:
    return [n for n in nodes if n.status == "Running"]


def busy_when(utilization: NodeUtilization) -> str:
    """For people: "node at 5 % GPU or 10 % CPU or more"."""
    parts = [f"{limit:g} % {_LABELS.get(m, m)}" for m, limit in utilization.busy_at.items()]
    return f"node at {' or '.join(parts)} or more"


def _price(
    ctx: ScanContext, target: Target, spec: KindSpec, groups: list[dict[str, Any]]
) -> tuple[Decimal | None, str]:
    """What the cluster costs per hour now: Σ groups x current count x price."""
    if not groups:
        return None, "unknown"
    if sum(g["current"] for g in groups) == 0:
        return Decimal(0), "zero-instances"
    total, sources = Decimal(0), []
    for group in groups:
        if group["current"] == 0:
            continue
        price = ctx.prices.price(group["instance_type"], target.region, spec.price_component)
        if price.usd_per_hour is None:
            return None, "unknown"  # never a partial sum that looks like the whole cost
        total += price.usd_per_hour * group["current"]
        sources.append(price.source)
    return total, combined_source(sources)


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    cluster: dict[str, Any],
    one: Looked,
    tags: dict[str, str],
    shared_error: str | None,
    evidence: Evidence | None,
) -> Resource:
    config: ClusterScan = spec.scanner_config
    name, status = cluster[spec.name_field], cluster[spec.status_field]
    groups: list[dict[str, Any]] = one.details.get("groups", [])
    count = sum(g["current"] for g in groups)
    types = sorted({g["instance_type"] for g in groups if g["current"] and g["instance_type"]})
    usd_per_hour, price_source = _price(ctx, target, spec, groups)
    created = utc(cluster.get("CreationTime"))
    running = status in spec.running_states and (count > 0 or not groups)
    oldest = parse_time((one.details.get("launched") or {}).get("oldest"))
    error = shared_error or one.error or (evidence.error if evidence else None)
    if error is None and running and not groups:
        error = "instance groups unknown"
    details = dict(one.details)
    if evidence is not None and evidence.source is ActivitySource.NODE_UTILIZATION:
        details["busy_when"] = busy_when(config.utilization)
        details["last_busy"] = evidence.last_busy.isoformat() if evidence.last_busy else None
    return Resource(
        arn=cluster[spec.arn_field],
        kind=spec.name,
        name=name,
        account=target.account_id,
        region=target.region,
        status=status,
        running=running,
        instance_type=types[0] if len(types) == 1 else ("mixed" if types else None),
        instance_count=count,
        usd_per_hour=usd_per_hour,
        price_source=price_source,
        created_at=created,
        # since its oldest running node came up (a cluster scaled to zero and back restarts)
        running_since=(oldest or created) if running else None,
        last_activity=evidence.last_activity if evidence else None,
        activity_source=(ActivitySource.UNKNOWN if error or evidence is None else evidence.source),
        tags=tags,
        evidence_error=error or (None if evidence else "no evidence"),
        details=details,
    )


# --- reserved capacity -------------------------------------------------------------------------


def reserved_capacity(ctx: ScanContext, target: Target, client: Any) -> None:
    """A finding per Active training plan with unused instances (not a resource: nothing
    to act on, the fee is paid either way; the point is to use what was bought). Plans are
    listed hourly (`guard.scanners.shared.every`): a finding, never an input of an action;
    one whose end has passed since is left out."""
    try:
        plans = every(
            ctx,
            ("list_training_plans", target.account_id, target.region),
            lambda: list(
                pages(
                    client,
                    "list_training_plans",
                    "TrainingPlanSummaries",
                    MaxResults=100,
                    Filters=[{"Name": "Status", "Value": "Active"}],
                )
            ),
        )
        plans = [p for p in plans if (end := utc(p.get("EndTime"))) is None or end > ctx.now]
    except AWS_ERRORS as exc:
        target.errors.append(
            f"{target.account_id} {target.region}: ListTrainingPlans failed, reserved "
            f"capacity not checked this cycle: {error_text(exc)}"
        )
        return
    for plan in plans:
        finding = unused_capacity(target, plan, ctx.now)
        if finding is not None:
            target.findings.append(finding)


def unused_capacity(target: Target, plan: dict[str, Any], now: datetime) -> Finding | None:
    """The finding for one plan, or None when it is not Active or fully used.

    Committed to unused capacity = UpfrontFee x AvailableInstanceCount / TotalInstanceCount
    (the plan's fee spread evenly over its instances); the part of it for the time still
    ahead = that x (EndTime - now) / (EndTime - StartTime)."""
    total = int(plan.get("TotalInstanceCount") or 0)
    in_use = int(plan.get("InUseInstanceCount") or 0)
    unused = int(plan.get("AvailableInstanceCount", total - in_use))
    if plan.get("Status") != "Active" or total <= 0 or unused <= 0:
        return None
    unused = min(unused, total)
    types = sorted(
        {
            s["InstanceType"]
            for s in plan.get("ReservedCapacitySummaries", [])
            if "InstanceType" in s
        }
    )
    what = f"{' / '.join(types)} " if types else ""
    start, end = utc(plan.get("StartTime")), utc(plan.get("EndTime"))
    until = f" until {end:%Y-%m-%d %H:%M} UTC" if end else ""
    head = f"{unused} of {total} reserved {what}instance(s) unused while the plan is Active{until}"
    currency = str(plan.get("CurrencyCode") or "USD")
    try:
        fee = Decimal(str(plan["UpfrontFee"]))
    except (KeyError, InvalidOperation):
        fee = None
    usd = None
    if fee is None or not fee.is_finite():
        money = "; its upfront fee is unknown"
    else:
        committed = (fee * unused / total).quantize(Decimal("0.01"))
        money = (
            f"; {_money(committed, currency)} of its {_money(fee, currency)} upfront fee is "
            f"committed to them (fee x {unused}/{total} unused)"
        )
        if start and end and end > start and end > now:
            left = end - max(now, start)
            ahead = (committed * Decimal(left / (end - start))).quantize(Decimal("0.01"))
            money += f", {_money(ahead, currency)} of it for the {human(left)} still ahead"
        usd = committed if currency == "USD" else None
    targets = ", ".join(plan.get("TargetResources", [])) or "its target"
    return Finding(
        account=target.account_id,
        region=target.region,
        subject=f"training plan {plan['TrainingPlanName']}",
        problem=head + money,
        fix=(
            f"run work on it ({targets}: name it as TrainingPlanArn in a HyperPod instance "
            "group or a training job's ResourceConfig); the fee is paid whether it is used "
            "or not"
        ),
        usd=usd,
    )


def _money(amount: Decimal, currency: str) -> str:
    return f"${amount:,.2f}" if currency == "USD" else f"{amount:,.2f} {currency}"
