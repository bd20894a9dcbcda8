"""HyperPod cluster actions: scale chosen instance groups to zero (restorable), and restore.

`scale-to-zero` saves each chosen group's full specification (as DescribeCluster gives it,
and as UpdateCluster takes it) and commits it *before* UpdateCluster sets its InstanceCount
to 0. The cluster, its other groups and every group's settings stay: nothing is deleted, so
`cost-guard restore cluster NAME` is one UpdateCluster away. The handler runs from
`guard.actions` after its live checks (the cluster exists and is InService).

    rules:
      - id: idle-clusters
        kind: hyperpod_cluster
        idle_for: 6h
        action: scale-to-zero
        instance_groups: [workers]   # default: every group
        grace: 1h
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import not_found
from guard.kinds.hyperpod import HYPERPOD_CLUSTER
from guard.model import Clock, Outcome, Resource
from guard.restoring import Restored, Seen, wait_until_ready
from guard.store import Store


def _count(group: dict[str, Any]) -> int:
    """The instances a group has or is heading to."""
    return max(int(group.get("TargetCount", 0)), int(group.get("CurrentCount", 0)))


def _target(group: dict[str, Any]) -> int:
    """The instances a group is heading to (while a resize runs, not yet what it has)."""
    return int(group.get("TargetCount", group.get("CurrentCount", 0)))


def _groups_text(groups: Iterable[tuple[str, int, str | None]]) -> str:
    return ", ".join(f"{name}: {count} x {kind or '?'}" for name, count, kind in groups)


def chosen_groups(store: Store, res: Resource, action_id: int) -> list[str] | None:
    """The groups the acting rule chose (`instance_groups:`), None = all of them.

    The scanner stores each rule's choice in the resource's details; the audit row of this
    action says which rule it is (a budget or "Stop now" has no such rule: all groups)."""
    rule_id = next((row.rule_id for row in store.actions_of(res.arn) if row.id == action_id), None)
    chosen = (res.details.get("rule_groups") or {}).get(rule_id or "")
    return list(chosen) if chosen else None


def specification(client: Any, group: dict[str, Any]) -> dict[str, Any]:
    """A group's ClusterInstanceGroupSpecification (what UpdateCluster takes) from its
    ClusterInstanceGroupDetails (what DescribeCluster gives): the fields both shapes have, per
    the client's own service model, plus MinCount -> MinInstanceCount and its count."""
    model = client.meta.service_model.shape_for("ClusterInstanceGroupSpecification")
    spec = {key: value for key, value in group.items() if key in model.members}
    if "MinCount" in group and "MinInstanceCount" in model.members:
        spec["MinInstanceCount"] = group["MinCount"]
    spec["InstanceCount"] = _target(group)
    return spec


def scale_to_zero(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """Save every chosen group's specification, then UpdateCluster with InstanceCount 0."""
    groups = {g["InstanceGroupName"]: g for g in described.get("InstanceGroups", [])}
    chosen = chosen_groups(store, res, action_id)
    names = chosen if chosen is not None else list(groups)
    missing = [n for n in names if n not in groups]
    present = [groups[n] for n in names if n in groups]
    to_scale = [g for g in present if _count(g) > 0]
    if not to_scale:
        if not present:
            return Outcome(
                "skipped",
                f"not scaled: the cluster has no instance group named {', '.join(missing)} "
                f"(its groups: {', '.join(groups) or 'none'})",
            )
        already = ", ".join(g["InstanceGroupName"] for g in present)
        return Outcome("skipped", f"instance group(s) {already} already at zero: nothing to do")
    specs = [specification(client, g) for g in to_scale]
    record = {
        "cluster_name": res.name,
        "cluster_arn": res.arn,
        "groups": [
            {
                "name": g["InstanceGroupName"],
                "instance_type": g.get("InstanceType"),
                "instance_count": spec["InstanceCount"],
                "min_instance_count": g.get("MinCount"),
                "specification": spec,
                "described": g,
            }
            for g, spec in zip(to_scale, specs, strict=True)
        ],
    }
    store.save_restore_record(res, record, action_id, now)  # committed before the update
    zero = [{**spec, "InstanceCount": 0} for spec in specs]
    for spec in zero:
        if "MinInstanceCount" in spec:  # a minimum above 0 would refuse the update
            spec["MinInstanceCount"] = 0
    client.update_cluster(ClusterName=res.name, InstanceGroups=zero)
    was = _groups_text(
        (s["InstanceGroupName"], s["InstanceCount"], s.get("InstanceType")) for s in specs
    )
    scaled = {s["InstanceGroupName"] for s in specs}
    others = [
        (name, _count(g), g.get("InstanceType"))
        for name, g in groups.items()
        if name not in scaled and _count(g) > 0
    ]
    kept = f"; still running: {_groups_text(others)}" if others else ""
    unknown = f"; no group named {', '.join(missing)}" if missing else ""
    return Outcome(
        "done",
        f"instance group(s) scaled to zero instances (was {was}){kept}{unknown}. The cluster "
        "stays, with every instance group's settings (saved first); "
        f"`cost-guard restore cluster {res.name}` brings the instance counts back.",
    )


# --- restore -------------------------------------------------------------------------------


class RestoreError(Exception):
    """Why a cluster's instance counts cannot be restored, for people."""


def restore_cluster(
    store: Store,
    sagemaker: Callable[[str, str], Any],
    name: str,
    *,
    clock: Clock,
    sleep: Callable[[float], None],
    wait: bool = True,
    timeout: timedelta = timedelta(minutes=30),
    poll_every: timedelta = timedelta(seconds=30),
) -> Restored:
    """Scale the groups cost-guard scaled to zero back to their saved instance counts.

    The groups keep their settings as they are now (only the counts come from the record);
    a group deleted since is not re-added. `sagemaker(account, region)` gives a client;
    `clock` and `sleep` are injected so the wait is tested without waiting.
    """
    row = store.restore_record(HYPERPOD_CLUSTER.name, name)
    if row is None:
        raise RestoreError(
            f"no restore record for cluster {name}: cost-guard never scaled a cluster of that "
            "name to zero (or its record was pruned)"
        )
    client = sagemaker(row.account, row.region)
    try:
        described = client.describe_cluster(ClusterName=name)
    except ClientError as exc:
        if not_found(exc):
            raise RestoreError(
                f"cluster {name} no longer exists (cost-guard never deletes a cluster): its "
                "instance groups' saved specifications are in the restore record"
            ) from exc
        raise
    groups = {g["InstanceGroupName"]: g for g in described.get("InstanceGroups", [])}
    saved = list(row.record.get("groups", []))
    gone = [g["name"] for g in saved if g["name"] not in groups]
    todo = [
        g for g in saved if g["name"] in groups and _target(groups[g["name"]]) < g["instance_count"]
    ]
    text = _groups_text((g["name"], g["instance_count"], g.get("instance_type")) for g in todo)
    status = str(described["ClusterStatus"])

    def result(created: bool, status: str, at: datetime | None, message: str) -> Restored:
        did = f"scaled cluster {name} in {{where}} back to {text}"
        hint = "`aws sagemaker describe-cluster` shows when its nodes are up"
        return Restored(name, row.account, row.region, created, status, at, message, did, hint)

    if not todo:
        if len(gone) == len(saved):
            raise RestoreError(
                f"cannot restore cluster {name}: its instance group(s) {', '.join(gone)} no "
                "longer exist"
            )
        return result(False, status, None, f"cluster {name} already has its saved instance counts")
    if status != "InService":
        raise RestoreError(
            f"cluster {name} is {status}: its instance counts can change only while it is "
            "InService; try again in a few minutes"
        )
    update = []
    for group in todo:
        spec = specification(client, groups[group["name"]])
        spec["InstanceCount"] = group["instance_count"]
        if group.get("min_instance_count") is not None:
            spec["MinInstanceCount"] = group["min_instance_count"]
        update.append(spec)
    client.update_cluster(ClusterName=name, InstanceGroups=update)
    store.mark_restored(row.id, clock.now())
    note = f" (not restored: {', '.join(gone)} no longer exist)" if gone else ""
    if not wait:
        return result(True, "Updating", None, f"cluster {name} is scaling up{note}")
    wanted = {g["name"]: g["instance_count"] for g in todo}

    def look() -> Seen:
        described = client.describe_cluster(ClusterName=name)
        status = str(described["ClusterStatus"])
        current = {g["InstanceGroupName"]: int(g.get("CurrentCount", 0))
                   for g in described.get("InstanceGroups", [])}  # fmt: skip
        ready = status == "InService" and all(current.get(n, 0) >= c for n, c in wanted.items())
        failed = described.get("FailureMessage", "no reason given") if status == "Failed" else None
        return Seen(status, ready, failed)

    seen = wait_until_ready(look, clock=clock, sleep=sleep, timeout=timeout, poll_every=poll_every)
    if seen.ready:
        message = f"cluster {name} is InService with its saved instance counts{note}"
        return result(True, seen.status, clock.now(), message)
    if seen.failed is not None:
        return result(True, seen.status, None, f"cluster {name} failed to scale up: {seen.failed}")
    return result(True, seen.status, None, f"cluster {name} is still {seen.status}{note}")
