"""Inference components: listed 100 per page, priced by their share of the endpoint's instances.

A component is described when it is new, and again whenever its listing's LastModifiedTime or
status moved since the describe stored with it, or it is not InService (its copy count moves
with its own auto scaling, through UpdateInferenceComponentRuntimeConfig: Updating, and a new
LastModifiedTime); each endpoint hosting them is read every cycle (its instance count moves
with managed instance scaling, which no listing shows), by the page with `Search` (up to 100
named endpoints a call; its index trails by seconds, so a count may be that old), and with
DescribeEndpoint for any Search does not return; an endpoint config never changes,
so it is described once per name, ever (`_Configs`, shared with the endpoint scanner).

**$/h.** The instances of an endpoint variant are billed once (Hosting x current instances) and
that money is split between the components on the variant, never counted twice: each gets
copies x per-copy need / the same sum over the variant's components, the per-copy need being
the accelerators a copy requires when every component there says so, else its minimum memory,
else 1. When no component has a copy left but the variant still has instances (a managed
scaling minimum above 0), the instances are split by per-copy need alone: the components hold
them, and their `scale-to-zero` releases them. A variant whose instances, price or any
component's needs are not known prices its components as unknown (never a partial share).
The endpoint itself is listed by its own kind at $0/h (`price_source` `inference-components`).

**Evidence.** CloudWatch `AWS/SageMaker` `Invocations` per `InferenceComponentName`, with
GetMetricData over the longest `idle_for` of the kind's rules (24 h without one). A change of
its runtime config (LastModifiedTime) counts as activity: a component scaled up again is not
idle at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found
from guard.kinds import KindSpec
from guard.model import ActivitySource, Resource
from guard.scanners import search
from guard.scanners.endpoint import BILLING_STATES, CONFIGS, Evidence, _Configs, describe
from guard.scanners.shared import kind_tags
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

DEFAULT_WINDOW = timedelta(hours=24)
NAMESPACE = "AWS/SageMaker"
METRIC = "Invocations"
ADAPTER = "adapter"  # price_source of an adapter component: it rides on its base component


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    listed = list_all(client, target, spec)
    if not listed:
        return
    tags, shared_error = kind_tags(ctx, target, spec)
    known = ctx.store.known_details(spec.name, target.account_id, target.region)
    # Endpoint configs never change: those the endpoint kind's scan of this target already
    # read or described this cycle are not described again.
    configs = target.shared.get(CONFIGS) or _Configs(client, {})
    configs.learn(known)

    described = concurrently(
        lambda item: (
            _stored(item, known.get(item["InferenceComponentArn"], {}))
            or _describe_component(client, item)
        ),
        listed,
    )
    endpoint_names = sorted({item["EndpointName"] for item in listed})
    # Their instance counts move under managed instance scaling without a new LastModifiedTime,
    # so they are read every scan: by the page (Search), then one by one what it left out.
    try:
        records = search.endpoints_named(client, target, spec, endpoint_names)
    except AWS_ERRORS:
        records = {}  # DescribeEndpoint answers for each, as before Search; it decides errors
    endpoints = dict(
        zip(
            endpoint_names,
            concurrently(
                lambda name: _describe_endpoint(client, name, configs, records.get(name)),
                endpoint_names,
            ),
            strict=True,
        )
    )
    components: list[dict[str, Any]] = []
    for item, (found, error) in zip(listed, described, strict=True):
        if found is None and error is None:
            continue  # deleted since it was listed
        endpoint, endpoint_error = endpoints[item["EndpointName"]]
        components.append(_facts(item, found, error or endpoint_error, endpoint))
    _share_instances(ctx, target, spec, components)

    running = {c["name"]: c for c in components if c["running"]}
    evidence: dict[str, Evidence] = {}
    if running:
        try:
            evidence = invocations(ctx, target, spec, running)
        except AWS_ERRORS as exc:
            shared_error = shared_error or f"Invocations metrics unavailable: {error_text(exc)}"
            target.errors.append(
                f"{target.account_id} {target.region}: GetMetricData failed, "
                f"inference components there are unknown this cycle: {error_text(exc)}"
            )
    for component in components:
        arn = component["arn"]
        error = shared_error or component["error"]
        if component["error"] and not shared_error:
            target.errors.append(
                f"{target.account_id} {target.region}: inference component "
                f"{component['name']} is unknown this cycle: {component['error']}"
            )
        target.resources.append(
            _resource(spec, target, component, tags.get(arn, {}), evidence, error)
        )


# Statuses in which nothing moves without a new LastModifiedTime: a stored describe stands.
SETTLED = ("InService", "Failed")


def _listed_as(item: dict[str, Any]) -> list[str]:
    """What a stored describe must match to stand in for a new one: the listing's
    LastModifiedTime and status."""
    stamp = utc(item.get("LastModifiedTime"))
    return [stamp.isoformat() if stamp else "", str(item.get("InferenceComponentStatus"))]


def _stored(item: dict[str, Any], details: dict[str, Any]) -> tuple[dict[str, Any], None] | None:
    """The describe answer rebuilt from what the last snapshot stored, when the component has
    not changed since (same LastModifiedTime and status, a settled one); else None."""
    listed_as = _listed_as(item)
    if details.get("described_as") != listed_as or listed_as[1] not in SETTLED:
        return None
    needs = {
        "NumberOfAcceleratorDevicesRequired": details.get("accelerators"),
        "MinMemoryRequiredInMb": details.get("memory_mb"),
    }
    described: dict[str, Any] = {
        "VariantName": details.get("variant"),
        "Specification": {
            "ComputeResourceRequirements": {k: v for k, v in needs.items() if v is not None}
        },
    }
    if not details.get("adapter"):
        described["RuntimeConfig"] = {
            "DesiredCopyCount": int(details.get("copies", 0)),
            "CurrentCopyCount": int(details.get("current_copies", 0)),
        }
    return described, None


def _describe_component(
    client: Any, item: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        name = item["InferenceComponentName"]
        return dict(client.describe_inference_component(InferenceComponentName=name)), None
    except ClientError as exc:
        if not_found(exc):  # ValidationException "Could not find inference component"
            return None, None
        return {}, error_text(exc)
    except AWS_ERRORS as exc:
        return {}, error_text(exc)


def _describe_endpoint(
    client: Any, name: str, configs: _Configs, record: dict[str, Any] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(the endpoint's details as the endpoint scanner stores them, error), from its Search
    `record` when there is one, else from DescribeEndpoint."""
    try:
        found = describe(client, name, "", configs, record)
    except AWS_ERRORS as exc:
        return None, f"DescribeEndpoint {name} failed: {error_text(exc)}"
    if found is None:
        return None, None  # the endpoint is gone: its components are on their way out
    return found, None


def _facts(
    item: dict[str, Any],
    described: dict[str, Any] | None,
    error: str | None,
    endpoint: dict[str, Any] | None,
) -> dict[str, Any]:
    described = described or {}
    spec = described.get("Specification") or {}
    needs = spec.get("ComputeResourceRequirements") or {}
    runtime = described.get("RuntimeConfig")
    variant_name = item.get("VariantName") or described.get("VariantName")
    variant = next(
        (v for v in (endpoint or {}).get("variants", []) if v["name"] == variant_name), None
    )
    endpoint_billing = (endpoint or {}).get("endpoint_status") in BILLING_STATES
    return {
        "arn": item["InferenceComponentArn"],
        "name": item["InferenceComponentName"],
        "status": item["InferenceComponentStatus"],
        "created": utc(item.get("CreationTime")),
        "modified": utc(item.get("LastModifiedTime")),
        "endpoint_name": item["EndpointName"],
        "variant": variant_name,
        "adapter": bool(described) and runtime is None,
        "copies": int((runtime or {}).get("DesiredCopyCount", 0)),
        "current_copies": int((runtime or {}).get("CurrentCopyCount", 0)),
        "accelerators": needs.get("NumberOfAcceleratorDevicesRequired"),
        "memory_mb": needs.get("MinMemoryRequiredInMb"),
        "instance_type": (variant or {}).get("instance_type"),
        "instance_count": int((variant or {}).get("count", 0)) if endpoint_billing else 0,
        "min_instance_count": (variant or {}).get("min_instance_count"),
        "config_name": (endpoint or {}).get("config_name"),
        "config_variants": (endpoint or {}).get("config_variants"),
        "config_async": (endpoint or {}).get("config_async"),
        "error": error or (None if described or endpoint else "not described"),
        # the listing this describe belongs to: while it is the same, no describe is needed
        "described_as": _listed_as(item) if described else None,
        "running": False,
        "usd_per_hour": None,
        "price_source": "unknown",
        "share": None,
    }


def _per_copy(group: list[dict[str, Any]]) -> tuple[str, list[float]]:
    """What one copy of each component needs, in the unit every component of the group states."""
    if all(c["accelerators"] for c in group):
        return "accelerators", [float(c["accelerators"]) for c in group]
    if all(c["memory_mb"] for c in group):
        return "memory", [float(c["memory_mb"]) for c in group]
    return "copies", [1.0 for _ in group]


def _share_instances(
    ctx: ScanContext, target: Target, spec: KindSpec, components: list[dict[str, Any]]
) -> None:
    """Split each variant's instance $/h between its components (see the module's docstring)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for component in components:
        if component["adapter"]:
            component["price_source"] = ADAPTER  # its base component carries the instances
            component["usd_per_hour"] = Decimal(0)
            continue
        groups.setdefault((component["endpoint_name"], component["variant"]), []).append(component)
    for group in groups.values():
        if any(c["error"] for c in group):
            # Copies or instances not known: judged as running and unknown, never a partial share
            for component in group:
                component["running"] = component["status"] in spec.running_states
            continue
        count = group[0]["instance_count"]
        for component in group:
            component["running"] = (
                component["status"] in spec.running_states
                and count > 0
                and (component["current_copies"] > 0 or not any(c["current_copies"] for c in group))
            )
        if count == 0:
            for component in group:
                component["usd_per_hour"], component["price_source"] = Decimal(0), "zero-instances"
            continue
        price = ctx.prices.price(group[0]["instance_type"], target.region, spec.price_component)
        if price.usd_per_hour is None:
            continue  # unknown, never $0
        unit, needs = _per_copy(group)
        weights = [n * c["current_copies"] for n, c in zip(needs, group, strict=True)]
        if not any(weights):  # no copies left: the instances are held for them all
            weights = needs
        total = sum(weights)
        variant_usd = price.usd_per_hour * count
        for weight, component in zip(weights, group, strict=True):
            share = Decimal(str(weight)) / Decimal(str(total))
            component["share"] = f"{share:.4f}"
            component["share_by"] = unit
            component["variant_usd_per_hour"] = str(variant_usd)
            component["usd_per_hour"] = (variant_usd * share).quantize(Decimal("0.0001"))
            component["price_source"] = price.source


def invocation_window(ctx: ScanContext, spec: KindSpec) -> timedelta:
    windows = rule_windows(ctx.cfg, spec.name, "idle_for")
    return windows[-1] if windows else DEFAULT_WINDOW


def invocations(
    ctx: ScanContext, target: Target, spec: KindSpec, running: dict[str, dict[str, Any]]
) -> dict[str, Evidence]:
    """The last invocation of each component over the window (Sum per InferenceComponentName);
    none at all = idle since the later of its creation and the window's start."""
    window, now = invocation_window(ctx, spec), ctx.now
    start, period = now - window, metric_period(window)
    names = sorted(running)
    queries = [
        {
            "Id": f"q{i}",
            "MetricStat": {
                "Metric": {
                    "Namespace": NAMESPACE,
                    "MetricName": METRIC,
                    "Dimensions": [{"Name": "InferenceComponentName", "Value": name}],
                },
                "Period": period,
                "Stat": "Sum",
            },
            "ReturnData": True,
        }
        for i, name in enumerate(names)
    ]
    client = ctx.aws.client(target.account, target.region, "cloudwatch")
    series = metric_data(client, queries, start, now)
    found: dict[str, Evidence] = {}
    for i, name in enumerate(names):
        used = [when for when, value in series.get(f"q{i}", []) if value > 0]
        if used:  # stamped at the period's start: the call may have come up to a period later
            when = min(used[-1] + timedelta(seconds=period), now)
            found[name] = Evidence(when, ActivitySource.INVOCATIONS)
        else:
            created = running[name]["created"]
            found[name] = Evidence(max(created or start, start), ActivitySource.NO_INVOCATIONS)
    return found


def _resource(
    spec: KindSpec,
    target: Target,
    component: dict[str, Any],
    tags: dict[str, str],
    evidence: dict[str, Evidence],
    error: str | None,
) -> Resource:
    name = component["name"]
    found = evidence.get(name)
    last_activity, source = (
        (found.last_activity, found.source) if found else (None, ActivitySource.IN_SERVICE_SINCE)
    )
    running = bool(component["running"])
    # a change of its runtime config (a scale-up, a restore) counts as activity
    since: datetime | None = component["modified"] or component["created"]
    details = {
        key: component[key]
        for key in (
            "endpoint_name", "variant", "copies", "current_copies", "accelerators", "memory_mb",
            "instance_count", "min_instance_count", "adapter", "config_name", "config_variants",
            "config_async", "described_as",
            "share", "share_by", "variant_usd_per_hour",
        )
        if component.get(key) is not None
    }  # fmt: skip
    return Resource(
        arn=component["arn"],
        kind=spec.name,
        name=name,
        account=target.account_id,
        region=target.region,
        status=component["status"],
        running=running,
        instance_type=component["instance_type"],
        instance_count=component["current_copies"],  # copies, on the endpoint's instances
        usd_per_hour=component["usd_per_hour"],
        price_source=component["price_source"],
        created_at=component["created"],
        running_since=since if running else None,
        last_activity=last_activity,
        activity_source=ActivitySource.UNKNOWN if error else source,
        tags=tags,
        evidence_error=error,
        details=details,
    )
