"""Real-time endpoints in the simulator: moto patches and seeding helpers.

moto 5.2.5 models endpoints, but not as SageMaker behaves where the guard looks:

- times come from `utcnow()`, not the simulated clock, so CreationTime/LastModifiedTime are
  set from it (the scanner's describe cache keys on LastModifiedTime);
- endpoint-config instance types are checked against an old list (no g5/g6/inf2);
- a variant's `ManagedInstanceScaling` (inference-component endpoints, which may scale to
  zero) is dropped, and a variant at zero instances loses its `CurrentInstanceCount`;
- CreateEndpoint is InService at once; SageMaker takes minutes. With `create_delay` set, a
  new endpoint stays `Creating` until the simulated clock passes it (restore's wait is tested);
- UpdateEndpointWeightsAndCapacities accepts zero instances for any endpoint and leaves
  LastModifiedTime alone; SageMaker refuses zero unless the variant's minimum is zero;
- GetMetricData scans every datapoint of the region for every period of every query, and
  compares naive request times with the aware timestamps `put_metric` writes. It is answered
  here from an index by (namespace, metric, dimensions), so 500-query calls stay fast.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from moto.cloudwatch import models as cw_models
from moto.cloudwatch.exceptions import ValidationError as CloudWatchValidationError
from moto.core.exceptions import JsonRESTError
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase
from guard.sim.moto_ext import naive_utc

_installed = False
_create_delay = timedelta(0)
_ready_at: dict[str, datetime] = {}  # endpoint ARN -> when Creating becomes InService
_index_lock = threading.Lock()
_MAX_QUERIES = 500  # GetMetricData's limit: a bigger batch is a bug in the caller
_moto_get_metric_data: Any = None  # moto's own, for metric-math queries the index cannot answer


def set_create_delay(delay: timedelta) -> None:
    """How long a created endpoint stays `Creating` (simulated time); zero = InService at once."""
    global _create_delay
    _create_delay = delay


def forget() -> None:
    """Back to no delay and no pending creates: this state lives beside moto's process-wide
    backends, so moto's reset does not clear it."""
    set_create_delay(timedelta(0))
    _ready_at.clear()


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process)."""
    global _installed, _moto_get_metric_data
    if _installed:
        return
    _installed = True
    _patch_endpoint()
    _patch_endpoint_config()
    _patch_update_weights()
    _moto_get_metric_data = cw_models.CloudWatchBackend.get_metric_data
    cw_models.CloudWatchBackend.get_metric_data = _get_metric_data  # type: ignore[method-assign]


# --- endpoints -----------------------------------------------------------------------------


def _patch_endpoint() -> None:
    endpoint = sm_models.FakeEndpoint
    original_init = endpoint.__init__
    original_response = endpoint.response_object.fget  # type: ignore[attr-defined]
    original_summary = endpoint.summary

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.creation_time = self.last_modified_time = moto_ext.now()
        if _create_delay > timedelta(0):
            self.endpoint_status = "Creating"
            _ready_at[self.arn] = self.creation_time + _create_delay

    def process_variants(self: Any, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        summaries = []
        for variant in variants:
            summary: dict[str, Any] = {"VariantName": variant["VariantName"]}
            if "ServerlessConfig" in variant:
                summary["CurrentServerlessConfig"] = dict(variant["ServerlessConfig"])
                summary["DesiredServerlessConfig"] = dict(variant["ServerlessConfig"])
            else:
                count = int(variant.get("InitialInstanceCount", 1))
                summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = count
            weight = variant.get("InitialVariantWeight", 1.0)
            summary["CurrentWeight"] = summary["DesiredWeight"] = weight
            if "ManagedInstanceScaling" in variant:
                summary["ManagedInstanceScaling"] = dict(variant["ManagedInstanceScaling"])
            summaries.append(summary)
        return summaries

    def settle(self: Any) -> None:
        ready = _ready_at.get(self.arn)
        if self.endpoint_status == "Creating" and ready is not None and moto_ext.now() >= ready:
            self.endpoint_status = "InService"
            self.last_modified_time = ready

    def response_object(self: Any) -> dict[str, Any]:
        settle(self)
        return dict(original_response(self))

    def summary(self: Any) -> dict[str, Any]:
        settle(self)
        return dict(original_summary(self))

    endpoint.__init__ = init  # type: ignore[method-assign]
    endpoint._process_production_variants = process_variants  # type: ignore[method-assign,assignment]
    endpoint.response_object = property(response_object)  # type: ignore[assignment,method-assign]
    endpoint.summary = summary  # type: ignore[method-assign]


def _patch_endpoint_config() -> None:
    config = sm_models.FakeEndpointConfig
    original_init = config.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.creation_time = moto_ext.now()

    def validate_instance_type(self: Any, instance_type: str) -> None:
        # SageMaker's own list grows every year; any `ml.*` type is accepted here.
        if not str(instance_type).startswith("ml."):
            raise SageMakerValidationError(message=f"Invalid instance type {instance_type!r}")

    config.__init__ = init  # type: ignore[method-assign]
    config.validate_instance_type = validate_instance_type  # type: ignore[method-assign]


def _patch_update_weights() -> None:
    backend = sm_models.SageMakerModelBackend
    original = backend.update_endpoint_weights_and_capacities

    def update(
        self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
    ) -> str:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is not None:
            _refuse_zero_without_minimum_zero(endpoint, desired_weights_and_capacities)
        arn = str(original(self, endpoint_name, desired_weights_and_capacities))
        self.endpoints[endpoint_name].last_modified_time = moto_ext.now()
        return arn

    backend.update_endpoint_weights_and_capacities = update  # type: ignore[method-assign]


def _refuse_zero_without_minimum_zero(endpoint: Any, desired: list[dict[str, Any]]) -> None:
    variants = {v["VariantName"]: v for v in endpoint.production_variants}
    for wanted in desired:
        if wanted.get("DesiredInstanceCount") != 0:
            continue
        scaling = variants.get(wanted.get("VariantName"), {}).get("ManagedInstanceScaling", {})
        if scaling.get("MinInstanceCount") != 0:
            raise JsonRESTError(
                "ValidationException",
                f"Variant {wanted.get('VariantName')} of endpoint {endpoint.endpoint_name} "
                "cannot scale to 0 instances: its managed instance scaling minimum is not 0.",
            )


# --- GetMetricData from an index --------------------------------------------------------------

_SeriesKey = tuple[str, str, frozenset[tuple[str, str]]]


class _MetricIndex:
    """Datapoints by (namespace, metric, dimensions), grown as moto's list grows."""

    def __init__(self) -> None:
        self.source_id = 0
        self.indexed = 0
        self.series: dict[_SeriesKey, list[tuple[datetime, Any]]] = {}

    def refresh(self, data: list[Any]) -> None:
        if id(data) != self.source_id or len(data) < self.indexed:
            self.source_id, self.indexed, self.series = id(data), 0, {}
        for datum in data[self.indexed :]:
            key = (datum.namespace, datum.name, _dims(datum.dimensions))
            self.series.setdefault(key, []).append((_naive(datum.timestamp), datum))
        self.indexed = len(data)


def _dims(dimensions: Iterable[Any]) -> frozenset[tuple[str, str]]:
    return frozenset((d.name, d.value) for d in dimensions)


def _naive(when: datetime) -> datetime:
    return naive_utc(when) if when.tzinfo else when


def _get_metric_data(
    self: Any,
    queries: list[dict[str, Any]],
    start_time: datetime,
    end_time: datetime,
    scan_by: str = "TimestampAscending",
) -> list[dict[str, Any]]:
    if len(queries) > _MAX_QUERIES:
        raise CloudWatchValidationError(
            f"The collection MetricDataQueries must not have a size greater than {_MAX_QUERIES}."
        )
    if any("MetricStat" not in query for query in queries):
        return list(_moto_get_metric_data(self, queries, start_time, end_time, scan_by))
    start, end = _naive(start_time).replace(microsecond=0), _naive(end_time).replace(microsecond=0)
    if start >= end:
        raise CloudWatchValidationError("The parameter EndTime must be greater than StartTime.")
    with _index_lock:
        index: _MetricIndex = self.__dict__.setdefault("_sim_metric_index", _MetricIndex())
        index.refresh(self.metric_data)
        return [
            _answer(query, index, start, end, scan_by)
            for query in queries
            if query.get("ReturnData", True)
        ]


def _answer(
    query: dict[str, Any], index: _MetricIndex, start: datetime, end: datetime, scan_by: str
) -> dict[str, Any]:
    stat = query["MetricStat"]
    metric = stat["Metric"]
    dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
    period = timedelta(seconds=int(stat["Period"]))
    buckets: dict[datetime, list[Any]] = {}
    for when, datum in index.series.get((metric["Namespace"], metric["MetricName"], dims), []):
        if start <= when < end and (not stat.get("Unit") or datum.unit == stat["Unit"]):
            bucket = start + period * ((when - start) // period)
            buckets.setdefault(bucket, []).append(datum)
    timestamps = sorted(buckets, reverse=scan_by == "TimestampDescending")
    values = []
    for bucket in timestamps:
        stats = cw_models.Statistics([stat["Stat"]], bucket)
        stats.metric_data = buckets[bucket]
        values.append(stats.get_statistics_for_type(stat["Stat"]))
    return {
        "id": query["Id"],
        "label": query.get("Label") or f"{metric['MetricName']} {stat['Stat']}",
        "values": values,
        "timestamps": timestamps,
        "status_code": "Complete",
    }


# --- seeding -----------------------------------------------------------------------------


class EndpointSeeding(SimBase):
    """Real-time endpoints and their Invocations metrics in the simulated account."""

    def add_endpoint(
        self,
        name: str,
        instance_type: str = "ml.m5.xlarge",
        count: int = 1,
        *,
        region: str | None = None,
        account: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        serverless: bool = False,
        variants: Sequence[Mapping[str, Any]] | None = None,
        min_instance_count: int | None = None,
    ) -> str:
        """Create model, endpoint config `<name>-config` and an InService endpoint over HTTP.

        `variants` ({"name", "instance_type", "count"} each) replaces the single `AllTraffic`
        variant; `min_instance_count` turns on managed instance scaling with that minimum (0 =
        an inference-component endpoint that may scale to zero); `count=0` with it seeds an
        endpoint already scaled to zero.
        """
        region = region or self.regions[0]
        client = self.client("sagemaker", region, account)
        model = f"{name}-model"
        client.create_model(
            ModelName=model,
            ExecutionRoleArn=FAKE_ROLE,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        )
        specs = variants or [{"name": "AllTraffic", "instance_type": instance_type, "count": count}]
        client.create_endpoint_config(
            EndpointConfigName=f"{name}-config",
            ProductionVariants=[
                _variant(model, spec, serverless, min_instance_count) for spec in specs
            ],
        )
        response = client.create_endpoint(
            EndpointName=name,
            EndpointConfigName=f"{name}-config",
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        endpoint = self._sagemaker(region, account).endpoints[name]
        when = naive_utc(created_at or self.clock.now())
        endpoint.creation_time = endpoint.last_modified_time = when
        endpoint.endpoint_status = "InService"
        # CreateEndpointConfig wants at least one instance: zero is where scaling ended up.
        counts = {spec["name"]: int(spec.get("count", 1)) for spec in specs}
        for variant in endpoint.production_variants:
            if not serverless:
                variant["CurrentInstanceCount"] = counts[variant["VariantName"]]
                variant["DesiredInstanceCount"] = counts[variant["VariantName"]]
        return str(response["EndpointArn"])

    def add_endpoint_fleet(
        self,
        count: int,
        *,
        prefix: str = "ep",
        region: str | None = None,
        instance_types: tuple[str, ...] = ("ml.m5.xlarge", "ml.g5.xlarge", "ml.inf2.xlarge"),
        running_for: timedelta = timedelta(days=3),
        active_share: float = 0.3,
        account: str | None = None,
    ) -> list[str]:
        """Seed `count` endpoints in-process (no HTTP), each with its own config and three
        tags; `active_share` of them were invoked 10 minutes ago."""
        region = region or self.regions[0]
        backend = self._sagemaker(region, account)
        now = self.clock.now()
        backend.create_model(
            model_name=f"{prefix}-model",
            execution_role_arn=FAKE_ROLE,
            primary_container={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
            vpc_config=None,
            containers=None,
            tags=None,
        )
        active_every = max(1, round(1 / active_share)) if active_share > 0 else 0
        names = []
        for i in range(count):
            name = f"{prefix}-{i:05d}"
            spec = {"name": "AllTraffic", "instance_type": instance_types[i % len(instance_types)]}
            backend.create_endpoint_config(
                endpoint_config_name=f"{name}-config",
                production_variants=[_variant(f"{prefix}-model", spec | {"count": 1})],
                data_capture_config={},
                async_inference_config={},
                tags=[],
                kms_key_id="",
            )
            tags = {"owner": f"user{i % 50}@example.com", "team": f"team-{i % 7}", "env": "dev"}
            endpoint = backend.create_endpoint(
                endpoint_name=name,
                endpoint_config_name=f"{name}-config",
                tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
            endpoint.creation_time = endpoint.last_modified_time = naive_utc(now - running_for)
            endpoint.endpoint_status = "InService"
            if active_every and i % active_every == 0:
                self.invocations(
                    name, [now - timedelta(minutes=10)], region=region, account=account
                )
            names.append(name)
        return names

    def invocations(
        self,
        name: str,
        times: Iterable[datetime],
        *,
        variant: str = "AllTraffic",
        region: str | None = None,
        account: str | None = None,
        count: float = 1.0,
    ) -> None:
        """`name`'s variant was invoked at each of `times` (AWS/SageMaker Invocations)."""
        self.put_metric(
            "AWS/SageMaker",
            "Invocations",
            {"EndpointName": name, "VariantName": variant},
            [(when, count) for when in times],
            region=region,
            account=account,
        )

    def endpoint_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str | None:
        """The endpoint's status as SageMaker sees it; None once it is deleted."""
        endpoint = self._sagemaker(region or self.regions[0], account).endpoints.get(name)
        return None if endpoint is None else str(endpoint.summary()["EndpointStatus"])

    def endpoint_variants(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """The endpoint's variant summaries (current instance counts, scaling)."""
        endpoint = self._sagemaker(region or self.regions[0], account).endpoints[name]
        return [dict(v) for v in endpoint.production_variants]

    def set_endpoint_create_delay(self, delay: timedelta) -> None:
        """How long CreateEndpoint stays `Creating` in simulated time (restore's wait)."""
        set_create_delay(delay)


def _variant(
    model: str,
    spec: Mapping[str, Any],
    serverless: bool = False,
    min_instance_count: int | None = None,
) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": spec["name"], "ModelName": model}
    if serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
        return variant
    variant["InstanceType"] = spec["instance_type"]
    variant["InitialInstanceCount"] = max(int(spec.get("count", 1)), 1)
    variant["InitialVariantWeight"] = 1.0
    if min_instance_count is not None:
        variant["ManagedInstanceScaling"] = {
            "Status": "ENABLED",
            "MinInstanceCount": min_instance_count,
            "MaxInstanceCount": max(int(spec.get("count", 1)), 1) * 4,
        }
    return variant
