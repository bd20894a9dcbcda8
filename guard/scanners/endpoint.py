"""Real-time endpoints: listed 100 per page, described only when changed, idle from Invocations.

DescribeEndpoint (variants, current instance counts) runs only for an endpoint that is new or
whose LastModifiedTime moved since the stored snapshot; an endpoint config never changes, so
DescribeEndpointConfig (instance types) runs once per config name ever. Evidence is the
CloudWatch `AWS/SageMaker` `Invocations` metric per EndpointName *and* VariantName (SageMaker
publishes it with both dimensions: EndpointName alone matches nothing), read with
GetMetricData, 500 queries per call, over the longest `idle_for` of the endpoint rules; an
asynchronous endpoint (AsyncInferenceConfig) is also busy while requests wait in its queue
(`ApproximateBacklogSize` per EndpointName, Maximum) and is priced as asynchronous inference.

An endpoint built for inference components (its config's variants name no model) is judged by
its components: when a kind listing them is enabled, the money of its instances is on them and
the endpoint is listed at $0/h (`price_source` `inference-components`), not running as an
endpoint; without one, it is priced here but `unknown` (its Invocations are per component), so
no endpoint rule ever acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found
from guard.kinds import KINDS, KindSpec
from guard.model import ActivitySource, Resource
from guard.pricing import combined_source
from guard.scanners.search import endpoint_records
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

DEFAULT_WINDOW = timedelta(hours=24)  # how far back to look when no rule sets idle_for
NAMESPACE = "AWS/SageMaker"
METRIC = "Invocations"
BACKLOG = "ApproximateBacklogSize"  # asynchronous endpoints: requests waiting in the queue
ASYNC_COMPONENT = "AsyncInference"  # Price List usage type `USE1-AsyncInf:ml.…`
HOSTING_ESTIMATE = "hosting-estimate"  # async price unknown: the same type's Hosting price
COMPONENTS_PRICED = "inference-components"  # its instances are priced on its components
# Statuses in which an endpoint's instances exist and bill, though only InService is acted on.
BILLING_STATES = ("InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed")


def invocation_window(ctx: ScanContext) -> timedelta:
    windows = rule_windows(ctx.cfg, "endpoint", "idle_for")
    return windows[-1] if windows else DEFAULT_WINDOW


CONFIGS = "endpoint_configs"  # `Target.shared` key of the endpoint scan's `_Configs`


class _Configs:
    """Endpoint configs by name: first from what earlier scans stored, else DescribeEndpointConfig.

    A config is immutable (an update creates a new one), so what was stored stays true.
    """

    def __init__(self, client: Any, known: dict[str, dict[str, Any]]) -> None:
        self._client = client
        self._variants: dict[str, dict[str, dict[str, Any]] | None] = {}
        self._async: dict[str, bool] = {}
        self.learn(known)

    def learn(self, known: dict[str, dict[str, Any]]) -> None:
        """Take the configs recorded in these stored details (a resource's, by ARN)."""
        cached = [
            details
            for details in known.values()
            if details.get("config_name")
            and details.get("config_variants")
            # stored before the model and AsyncInferenceConfig were recorded: described again
            and "config_async" in details
            and all("model" in v for v in details["config_variants"].values())
        ]
        for details in cached:
            self._variants.setdefault(details["config_name"], details["config_variants"])
            self._async.setdefault(details["config_name"], bool(details["config_async"]))

    def is_async(self, name: str) -> bool:
        """Has the config an AsyncInferenceConfig (an asynchronous endpoint)? After `variants`."""
        return self._async.get(name, False)

    def variants(self, name: str) -> dict[str, dict[str, Any]] | None:
        """Per variant: instance type, serverless, minimum instances; None if the config is gone."""
        if name not in self._variants:
            try:
                described = self._client.describe_endpoint_config(EndpointConfigName=name)
            except ClientError as exc:
                if not not_found(exc):
                    raise
                self._variants[name] = None  # deleted while the endpoint kept running
            else:
                self._async[name] = "AsyncInferenceConfig" in described
                self._variants[name] = {
                    v["VariantName"]: {
                        "instance_type": v.get("InstanceType"),
                        "serverless": "ServerlessConfig" in v,
                        "min_instance_count": min_instances(v),
                        "model": v.get("ModelName"),  # none: a variant for inference components
                    }
                    for v in described.get("ProductionVariants", [])
                }
        return self._variants[name]


def min_instances(variant: dict[str, Any]) -> int | None:
    """A variant's managed-scaling minimum (0 = it may scale to zero); None when not managed."""
    scaling = variant.get("ManagedInstanceScaling") or {}
    if scaling.get("Status", "ENABLED") != "ENABLED" or "MinInstanceCount" not in scaling:
        return None
    return int(scaling["MinInstanceCount"])


def describe(
    client: Any, name: str, last_modified: str, configs: _Configs, found: Any = None
) -> dict[str, Any] | None:
    """The details stored for an endpoint (None if it vanished since it was listed), from
    its Search record when `found` (guard.scanners.search), else from DescribeEndpoint."""
    try:
        described = found or client.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        if not_found(exc):
            return None
        raise
    config_name = described["EndpointConfigName"]
    config = configs.variants(config_name)
    variants = []
    for summary in described.get("ProductionVariants", []):
        from_config = (config or {}).get(summary["VariantName"], {})
        serverless = "CurrentServerlessConfig" in summary or bool(from_config.get("serverless"))
        minimum = min_instances(summary)
        variants.append(
            {
                "name": summary["VariantName"],
                "instance_type": from_config.get("instance_type"),
                "count": 0 if serverless else int(summary.get("CurrentInstanceCount", 0)),
                "serverless": serverless,
                "min_instance_count": (
                    minimum if minimum is not None else from_config.get("min_instance_count")
                ),
            }
        )
    instance_variants = [v for v in (config or {}).values() if not v.get("serverless")]
    return {
        "endpoint_status": described.get("EndpointStatus", ""),
        "async": configs.is_async(config_name),
        "config_async": configs.is_async(config_name),
        "components": bool(instance_variants) and not any(v["model"] for v in instance_variants),
        "config_name": config_name,
        "config_variants": config or {},
        "config_missing": config is None,
        "last_modified": last_modified,
        "variants": variants,
    }


@dataclass(frozen=True)
class Evidence:
    last_activity: datetime | None
    source: ActivitySource


def invocations(
    ctx: ScanContext,
    target: Target,
    endpoints: dict[str, tuple[datetime | None, list[str]]],
    queued: frozenset[str] = frozenset(),
) -> dict[str, Evidence]:
    """Last invocation per endpoint name over the window, from its variants' Sum datapoints.

    `endpoints` maps name -> (created, variant names); for the asynchronous ones (`queued`) a
    period with requests waiting (ApproximateBacklogSize above 0) is activity too. No datapoint
    at all means no invocation since the later of its creation and the window's start.
    """
    window, now = invocation_window(ctx), ctx.now
    start, period = now - window, metric_period(window)
    owners: dict[str, str] = {}
    queries: list[dict[str, Any]] = []
    for name, (_created, variants) in endpoints.items():
        for variant in variants:
            query_id = f"q{len(queries)}"
            owners[query_id] = name
            dimensions = [
                {"Name": "EndpointName", "Value": name},
                {"Name": "VariantName", "Value": variant},
            ]
            metric = {"Namespace": NAMESPACE, "MetricName": METRIC, "Dimensions": dimensions}
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": {"Metric": metric, "Period": period, "Stat": "Sum"},
                    "ReturnData": True,
                }
            )
    for name in sorted(queued & endpoints.keys()):
        query_id = f"b{len(queries)}"
        owners[query_id] = name
        dimensions = [{"Name": "EndpointName", "Value": name}]
        metric = {"Namespace": NAMESPACE, "MetricName": BACKLOG, "Dimensions": dimensions}
        queries.append(
            {
                "Id": query_id,
                "MetricStat": {"Metric": metric, "Period": period, "Stat": "Maximum"},
                "ReturnData": True,
            }
        )
    client = ctx.aws.client(target.account, target.region, "cloudwatch")
    last: dict[str, datetime] = {}
    for query_id, series in metric_data(client, queries, start, now).items():
        used = [when for when, value in series if value > 0]
        if used:
            # A datapoint is stamped at its period's start; the call may have come up to a
            # period later, so take the end (never overstating idleness).
            when = min(used[-1] + timedelta(seconds=period), now)
            name = owners[query_id]
            last[name] = max(when, last.get(name, when))
    return {
        name: (
            Evidence(last[name], ActivitySource.INVOCATIONS)
            if name in last
            else Evidence(max(created or start, start), ActivitySource.NO_INVOCATIONS)
        )
        for name, (created, _variants) in endpoints.items()
    }


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    # Every status is listed (not only InService): an endpoint that is Updating still exists
    # and bills, and one missing from a complete listing would be recorded as gone.
    listed = list_all(client, target, spec)
    if not listed:
        return
    tags, shared_error = kind_tags(ctx, target, spec)

    known = ctx.store.known_details(spec.name, target.account_id, target.region)
    # kept for this target's inference components (their scan comes later): what this scan
    # read or described is not described again
    configs = target.shared[CONFIGS] = _Configs(client, known)
    details: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    records = endpoint_records(client, target, spec, listed, known)  # by the page
    described = concurrently(
        lambda ep: _details(
            client, ep, known.get(ep[spec.arn_field]), configs, records.get(ep[spec.arn_field])
        ),
        listed,
    )
    for ep, (found, error) in zip(listed, described, strict=True):
        arn = ep[spec.arn_field]
        if found is None and error is None:
            continue  # deleted between the listing and the describe
        details[arn] = found or {}
        if error:
            errors[arn] = error
            target.errors.append(
                f"{target.account_id} {target.region}: DescribeEndpoint of {ep['EndpointName']} "
                f"failed, it is unknown this cycle: {error}"
            )

    evidence: dict[str, Evidence] = {}
    in_service = {
        ep[spec.name_field]: (utc(ep.get("CreationTime")), [v["name"] for v in d["variants"]])
        for ep in listed
        if (d := details.get(ep[spec.arn_field])) is not None
        and d.get("variants")
        and not d.get("components")  # judged by its inference components
        and ep[spec.status_field] in spec.running_states
    }
    queued = frozenset(
        ep[spec.name_field] for ep in listed if details.get(ep[spec.arn_field], {}).get("async")
    )
    if in_service:
        try:
            evidence = invocations(ctx, target, in_service, queued)
        except AWS_ERRORS as exc:
            shared_error = shared_error or f"Invocations metrics unavailable: {error_text(exc)}"
            target.errors.append(
                f"{target.account_id} {target.region}: GetMetricData failed, "
                f"endpoints there are unknown this cycle: {error_text(exc)}"
            )

    for ep in listed:
        arn = ep[spec.arn_field]
        if arn in details:
            error = shared_error or errors.get(arn)
            target.resources.append(
                _resource(ctx, target, spec, ep, details[arn], tags.get(arn, {}), evidence, error)
            )


def _details(
    client: Any,
    ep: dict[str, Any],
    cached: dict[str, Any] | None,
    configs: _Configs,
    record: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """(details, error): the stored details while LastModifiedTime is unchanged, else fresh."""
    stamp = utc(ep.get("LastModifiedTime"))
    last_modified = stamp.isoformat() if stamp else ""
    fresh = cached and cached.get("last_modified") == last_modified and "async" in cached
    if last_modified and cached and fresh:
        return cached, None
    try:
        return describe(client, ep["EndpointName"], last_modified, configs, record), None
    except AWS_ERRORS as exc:
        # Keep what was known (for the inventory), but without a fresh "last_modified" so the
        # next scan describes it again; the error makes it unknown this cycle.
        stale = {k: v for k, v in (cached or {}).items() if k != "last_modified"}
        return stale, error_text(exc)


def _price(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    status: str,
    variants: list[dict[str, Any]],
    queued: bool = False,
) -> tuple[Decimal | None, str]:
    """What the endpoint costs per hour now: Σ variant price x current instances.

    An asynchronous endpoint is billed as asynchronous inference (`USE1-AsyncInf:…`); where
    that price is not known, the same type's Hosting price stands in, labelled
    `hosting-estimate` (the two are equal where both are published, not for every type)."""
    if not variants:
        return None, "unknown"
    if all(v["serverless"] for v in variants):
        return Decimal(0), "serverless"  # billed per request, nothing while idle
    if sum(v["count"] for v in variants) == 0:
        return Decimal(0), "zero-instances"
    if status not in BILLING_STATES:
        return Decimal(0), "not-running"
    total, sources = Decimal(0), []
    for variant in variants:
        if variant["serverless"] or variant["count"] == 0:
            continue
        price = ctx.prices.price(variant["instance_type"], target.region, spec.price_component)
        if queued:
            exact = ctx.prices.price(variant["instance_type"], target.region, ASYNC_COMPONENT)
            estimated = price.usd_per_hour is not None and exact.usd_per_hour is None
            price = price if estimated else exact
            if estimated:
                sources.append(HOSTING_ESTIMATE)
        if price.usd_per_hour is None:
            return None, "unknown"  # never a partial sum that looks like the whole cost
        total += price.usd_per_hour * variant["count"]
        sources.append(price.source)
    if HOSTING_ESTIMATE in sources and "unknown" not in sources:
        return total, HOSTING_ESTIMATE
    return total, combined_source(sources)


def components_priced(ctx: ScanContext) -> bool:
    """Is a kind listing inference components enabled? Then it carries their instances' $/h."""
    return any(KINDS[k].list_operation == "list_inference_components" for k in ctx.cfg.kinds)


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    ep: dict[str, Any],
    details: dict[str, Any],
    tags: dict[str, str],
    evidence: dict[str, Evidence],
    error: str | None,
) -> Resource:
    name, status = ep[spec.name_field], ep[spec.status_field]
    variants: list[dict[str, Any]] = details.get("variants", [])
    count = sum(v["count"] for v in variants if not v["serverless"])
    types = sorted({v["instance_type"] for v in variants if v.get("instance_type")})
    usd_per_hour, price_source = _price(
        ctx, target, spec, status, variants, bool(details.get("async"))
    )
    created = utc(ep.get("CreationTime"))
    # Without its variants the instance count is not known: treat it as running (and unknown).
    running = status in spec.running_states and (count > 0 or not variants)
    if details.get("components"):
        if components_priced(ctx):  # its instances' money is on its components
            usd_per_hour, price_source, running = Decimal(0), COMPONENTS_PRICED, False
        elif error is None and running:
            error = "hosts inference components: judged by them (enable their kind)"
    found = evidence.get(name)
    last_activity, source = (
        (found.last_activity, found.source) if found else (None, ActivitySource.IN_SERVICE_SINCE)
    )
    if error is None and running and not variants:
        error = "endpoint variants unknown"
    return Resource(
        arn=ep[spec.arn_field],
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
        running_since=created if running else None,
        last_activity=last_activity,
        activity_source=ActivitySource.UNKNOWN if error else source,
        tags=tags,
        evidence_error=error,
        details=details,
    )
