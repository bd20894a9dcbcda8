"""Inference components, scale-to-zero and asynchronous endpoints in the simulator.

moto 5.2 has no inference components, and around them:

- CreateInferenceComponent / DescribeInferenceComponent / ListInferenceComponents /
  UpdateInferenceComponentRuntimeConfig / DeleteInferenceComponent are added, shaped as the
  botocore model: `Creating` -> `InService`, `Updating` -> `InService`, `Deleting` -> gone,
  each after `moto_ext.TRANSITION` of simulated time (or `Simulator.settle()`). CopyCount 0
  is allowed. An unknown component, endpoint or variant answers ValidationException (the
  model lists no ResourceNotFound for these calls), as does an update while not `InService`;
- an endpoint variant hosting components follows them the way managed instance scaling does:
  when every component on it has 0 copies and its `MinInstanceCount` is 0, it drops to 0
  instances; when a component gets copies again it comes back to max(1, MinInstanceCount);
- an endpoint config for components has variants without `ModelName` (moto answers a
  server error) and an `ExecutionRoleArn` (moto drops it);
- UpdateEndpoint (missing in moto): `Updating`, then the new config's variants (and so its
  ManagedInstanceScaling) take effect; refused unless the endpoint is `InService`;
- DescribeEndpoint returns the config's `AsyncInferenceConfig` (moto leaves it out);
- Application Auto Scaling accepts every SageMaker scalable dimension of the botocore model
  (moto lacks `sagemaker:inference-component:DesiredCopyCount`). Registering a target does not
  scale anything by itself: `Simulator.scale_to_minimum(endpoint)` plays what Application
  Auto Scaling does once the backlog stays empty.

Metrics: `component_invocations` (AWS/SageMaker Invocations, dimension InferenceComponentName)
and `async_backlog` (AWS/SageMaker ApproximateBacklogSize, dimension EndpointName).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from moto.applicationautoscaling import models as aas_models
from moto.applicationautoscaling import responses as aas_responses
from moto.applicationautoscaling.exceptions import AWSValidationException as AASValidationException
from moto.backends import get_backend
from moto.core.responses import ActionResult
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceInUseException
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase
from guard.sim.endpoints import _variant

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.4"
_NEXT = {"Creating": "InService", "Updating": "InService"}
_installed = False


@dataclass
class FakeInferenceComponent:
    arn: str
    name: str
    endpoint_name: str
    endpoint_arn: str
    variant: str
    specification: dict[str, Any]
    created: datetime
    desired_copies: int | None  # None: an adapter component, without runtime config
    current_copies: int = 0
    status: str = "Creating"
    modified: datetime | None = None
    changes_at: datetime | None = None
    tags: list[dict[str, str]] = field(default_factory=list)

    def move(self, status: str, at: datetime) -> None:
        self.status, self.modified = status, at
        self.changes_at = at + moto_ext.TRANSITION if status in (*_NEXT, "Deleting") else None

    def summary(self) -> dict[str, Any]:
        return {
            "CreationTime": self.created,
            "InferenceComponentArn": self.arn,
            "InferenceComponentName": self.name,
            "EndpointArn": self.endpoint_arn,
            "EndpointName": self.endpoint_name,
            "VariantName": self.variant,
            "InferenceComponentStatus": self.status,
            "LastModifiedTime": self.modified or self.created,
        }

    def describe(self) -> dict[str, Any]:
        spec = dict(self.specification)
        container = spec.pop("Container", None)
        if container is not None:  # the API answers what it resolved the image to
            image = container.get("Image", IMAGE)
            spec["Container"] = {
                **{k: v for k, v in container.items() if k != "Image"},
                "DeployedImage": {
                    "SpecifiedImage": image,
                    "ResolvedImage": image,
                    "ResolutionTime": self.created,
                },
            }
        described = {
            **self.summary(),
            "Specification": spec,
        }
        if self.desired_copies is not None:
            described["RuntimeConfig"] = {
                "DesiredCopyCount": self.desired_copies,
                "CurrentCopyCount": self.current_copies,
            }
        return described


def components(backend: Any) -> dict[str, FakeInferenceComponent]:
    """The inference components of one moto backend by name, settled to now."""
    found: dict[str, FakeInferenceComponent] = backend.__dict__.setdefault(
        "_cost_guard_inference_components", {}
    )
    settle(backend, found, moto_ext.now())
    return found


def settle(backend: Any, found: dict[str, FakeInferenceComponent], at: datetime | None) -> None:
    """End transitions due by `at` (every one when `at` is None)."""
    touched = set()
    for name, component in list(found.items()):
        if component.changes_at is None or (at is not None and at < component.changes_at):
            continue
        when = component.changes_at if at is not None else moto_ext.now()
        if component.status == "Deleting":
            del found[name]
        else:
            component.move(_NEXT[component.status], when)
            if component.desired_copies is not None:
                component.current_copies = component.desired_copies
        touched.add((component.endpoint_name, component.variant))
    for endpoint_name, variant in touched:
        _follow_components(backend, found, endpoint_name, variant)


def _follow_components(
    backend: Any, found: dict[str, FakeInferenceComponent], endpoint_name: str, variant: str
) -> None:
    """Managed instance scaling: a variant whose components have no copies left releases its
    instances when its minimum allows; copies coming back bring an instance back."""
    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        return
    copies = [c.current_copies for c in found.values()
              if c.endpoint_name == endpoint_name and c.variant == variant
              and c.desired_copies is not None]  # fmt: skip
    for summary in endpoint.production_variants:
        scaling = summary.get("ManagedInstanceScaling") or {}
        if summary["VariantName"] != variant or scaling.get("Status") != "ENABLED":
            continue
        minimum = int(scaling.get("MinInstanceCount", 1))
        current = int(summary.get("CurrentInstanceCount") or 0)
        if copies and not any(copies) and minimum == 0:
            count = 0
        elif any(copies) and current == 0:
            count = max(1, minimum)
        else:
            continue
        summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = count
        endpoint.last_modified_time = moto_ext.now()


def _find(backend: Any, name: str) -> FakeInferenceComponent:
    component = components(backend).get(name)
    if component is None:
        prefix = f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}"
        arn = f"{prefix}:inference-component/{name}"
        raise SageMakerValidationError(message=f"Could not find inference component '{arn}'.")
    return component


def create_component(backend: Any, params: Mapping[str, Any]) -> FakeInferenceComponent:
    name = params["InferenceComponentName"]
    found = components(backend)
    if name in found:
        raise ResourceInUseException(message=f"Inference component {name} already exists")
    endpoint = backend.endpoints.get(params["EndpointName"])
    if endpoint is None:
        arn = sm_models.FakeEndpoint.arn_formatter(
            params["EndpointName"], backend.account_id, backend.region_name
        )
        raise SageMakerValidationError(message=f"Could not find endpoint '{arn}'.")
    variants = [v["VariantName"] for v in endpoint.production_variants]
    variant = params.get("VariantName") or variants[0]
    if variant not in variants:
        raise SageMakerValidationError(
            message=f"Variant {variant} does not exist on endpoint {endpoint.endpoint_name}."
        )
    spec = params.get("Specification") or (params.get("Specifications") or [None])[0]
    if not spec:
        raise SageMakerValidationError(message="Specification is required")
    runtime = params.get("RuntimeConfig")
    if runtime is None and not spec.get("BaseInferenceComponentName"):
        raise SageMakerValidationError(message="RuntimeConfig is required")
    now = moto_ext.now()
    component = FakeInferenceComponent(
        arn=f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}"
        f":inference-component/{name}",
        name=name,
        endpoint_name=endpoint.endpoint_name,
        endpoint_arn=endpoint.arn,
        variant=variant,
        specification=dict(spec),
        created=now,
        desired_copies=None if runtime is None else int(runtime["CopyCount"]),
        tags=list(params.get("Tags") or []),
    )
    component.move("Creating", now)
    found[name] = component
    return component


def update_copies(backend: Any, name: str, copies: int) -> FakeInferenceComponent:
    component = _find(backend, name)
    if component.status != "InService":
        raise SageMakerValidationError(
            message=f"Inference component {name} cannot be updated while it is {component.status}."
        )
    if component.desired_copies is None:
        raise SageMakerValidationError(
            message=f"Inference component {name} is an adapter: it has no runtime config."
        )
    if copies < 0:
        raise SageMakerValidationError(message="CopyCount must be at least 0")
    component.desired_copies = copies
    component.move("Updating", moto_ext.now())
    return component


def _at(value: Any) -> datetime:
    when = moto_ext.as_naive(value)
    if when is None:
        raise SageMakerValidationError(message=f"Invalid timestamp {value!r}")
    return when


def _sort_key(by: str) -> Callable[[FakeInferenceComponent], Any]:
    if by == "Name":
        return lambda c: c.name
    if by == "Status":
        return lambda c: c.status
    return lambda c: c.created


# --- endpoints: configs for components, UpdateEndpoint, AsyncInferenceConfig ---------------------

_updates: dict[str, tuple[str, datetime]] = {}  # endpoint ARN -> (new config, when it applies)


def forget() -> None:
    """No pending updates (kept beside moto's backends: moto's reset does not clear them)."""
    _updates.clear()


def _settle_endpoint(endpoint: Any, at: datetime | None) -> None:
    pending = _updates.get(endpoint.arn)
    if pending is None or endpoint.endpoint_status != "Updating":
        return
    config_name, when = pending
    if at is not None and at < when:
        return
    backend = get_backend("sagemaker")[endpoint.arn.split(":")[4]][endpoint.arn.split(":")[3]]
    config = backend.endpoint_configs.get(config_name)
    if config is not None:
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(
            config.production_variants
        )
        endpoint.async_inference_config = config.async_inference_config or None
        # managed instance scaling under the new config (e.g. a minimum lowered to 0)
        found = backend.__dict__.setdefault("_cost_guard_inference_components", {})
        for summary in endpoint.production_variants:
            _follow_components(backend, found, endpoint.endpoint_name, summary["VariantName"])
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = when if at is not None else moto_ext.now()
    del _updates[endpoint.arn]


def _patch_endpoints() -> None:
    backend_class = sm_models.SageMakerModelBackend
    original_validate = backend_class.validate_production_variants

    def validate_production_variants(self: Any, variants: list[dict[str, Any]]) -> None:
        # A variant for inference components names no model: the components bring theirs.
        original_validate(self, [v for v in variants if "ModelName" in v])

    original_create_endpoint = backend_class.create_endpoint

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        endpoint: Any = original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        config = self.endpoint_configs[endpoint_config_name]
        endpoint.async_inference_config = config.async_inference_config or None
        return endpoint

    backend_class.validate_production_variants = validate_production_variants  # type: ignore[method-assign,assignment]
    backend_class.create_endpoint = create_endpoint  # type: ignore[method-assign]

    original_create_config = sm_responses.SageMakerResponse.create_endpoint_config

    def create_endpoint_config(self: Any) -> ActionResult:
        result = original_create_config(self)
        role = self._get_param("ExecutionRoleArn")
        if role:
            config = self.sagemaker_backend.endpoint_configs[self._get_param("EndpointConfigName")]
            config.execution_role_arn = role
        return result

    sm_responses.SageMakerResponse.create_endpoint_config = create_endpoint_config  # type: ignore[method-assign]

    endpoint = sm_models.FakeEndpoint
    original_response = endpoint.response_object.fget  # type: ignore[attr-defined]
    original_summary = endpoint.summary

    def response_object(self: Any) -> dict[str, Any]:
        _settle_endpoint(self, moto_ext.now())
        return dict(original_response(self))

    def summary(self: Any) -> dict[str, Any]:
        _settle_endpoint(self, moto_ext.now())
        return dict(original_summary(self))

    endpoint.response_object = property(response_object)  # type: ignore[assignment,method-assign]
    endpoint.summary = summary  # type: ignore[method-assign]


def _update_endpoint(self: Any) -> ActionResult:
    backend = self.sagemaker_backend
    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    endpoint = backend.endpoints.get(name)
    if endpoint is None:
        arn = sm_models.FakeEndpoint.arn_formatter(name, backend.account_id, backend.region_name)
        raise SageMakerValidationError(message=f"Could not find endpoint '{arn}'.")
    if config_name not in backend.endpoint_configs:
        arn = sm_models.FakeEndpointConfig.arn_formatter(
            config_name, backend.account_id, backend.region_name
        )
        raise SageMakerValidationError(message=f"Could not find endpoint configuration '{arn}'.")
    status = endpoint.summary()["EndpointStatus"]
    if status != "InService":
        raise SageMakerValidationError(
            message=f"Cannot update in-progress endpoint '{endpoint.arn}' (status {status})."
        )
    now = moto_ext.now()
    endpoint.endpoint_status, endpoint.last_modified_time = "Updating", now
    _updates[endpoint.arn] = (config_name, now + moto_ext.TRANSITION)
    return ActionResult({"EndpointArn": endpoint.arn})


def _patch_application_autoscaling() -> None:
    """Every scalable dimension of the botocore model (moto's list lacks SageMaker's newer)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("application-autoscaling")
    values = model.shape_for("ScalableDimension").enum
    known = Enum(  # type: ignore[misc]
        "ScalableDimensionValueSet", {f"D{i}": value for i, value in enumerate(values)}
    )
    modules: tuple[Any, ...] = (aas_models, aas_responses)
    for module in modules:  # both look the enum up at call time
        module.ScalableDimensionValueSet = known

    backend_class = aas_models.ApplicationAutoscalingBackend
    original_register = backend_class.register_scalable_target

    def register_scalable_target(
        self: Any, namespace: str, r_id: str, dimension: str, min_capacity: int | None,
        *args: Any, **kwargs: Any,
    ) -> Any:  # fmt: skip
        if namespace == "sagemaker":
            _check_sagemaker_target(self, r_id, dimension, min_capacity)
        return original_register(self, namespace, r_id, dimension, min_capacity, *args, **kwargs)

    backend_class.register_scalable_target = register_scalable_target  # type: ignore[method-assign]


def _check_sagemaker_target(
    scaling: Any, r_id: str, dimension: str, min_capacity: int | None
) -> None:
    """What Application Auto Scaling checks of a SageMaker target: it exists, and only an
    asynchronous endpoint's variant may scale to 0 instances (a real-time variant keeps one;
    inference-component endpoints scale to 0 through their components)."""
    backend = get_backend("sagemaker")[scaling.account_id][scaling.region_name]
    parts = r_id.split("/")
    if dimension.startswith("sagemaker:variant:"):
        endpoint = backend.endpoints.get(parts[1]) if len(parts) == 4 else None
        variants = [v["VariantName"] for v in endpoint.production_variants] if endpoint else []
        if endpoint is None or parts[3] not in variants:
            raise AASValidationException(f"The resource {r_id} does not exist.")
        is_async = bool(getattr(endpoint, "async_inference_config", None))
        if min_capacity == 0 and dimension.endswith("DesiredInstanceCount") and not is_async:
            raise AASValidationException(
                f"MinCapacity 0 is supported only for asynchronous inference endpoints: {r_id}"
            )
    is_component = dimension == "sagemaker:inference-component:DesiredCopyCount"
    if is_component and (len(parts) != 2 or parts[1] not in components(backend)):
        raise AASValidationException(f"The resource {r_id} does not exist.")


# --- HTTP handlers added to moto's SageMakerResponse -----------------------------------------


def _handlers() -> dict[str, Callable[[Any], ActionResult]]:
    def create_(self: Any) -> ActionResult:
        names = ("InferenceComponentName", "EndpointName", "VariantName", "Specification",
                 "Specifications", "RuntimeConfig", "Tags")  # fmt: skip
        component = create_component(self.sagemaker_backend, {n: self._get_param(n) for n in names})
        return ActionResult({"InferenceComponentArn": component.arn})

    def describe_(self: Any) -> ActionResult:
        name = self._get_param("InferenceComponentName")
        return ActionResult(_find(self.sagemaker_backend, name).describe())

    def update_runtime_(self: Any) -> ActionResult:
        wanted = self._get_param("DesiredRuntimeConfig") or {}
        component = update_copies(
            self.sagemaker_backend,
            self._get_param("InferenceComponentName"),
            int(wanted.get("CopyCount", -1)),
        )
        return ActionResult({"InferenceComponentArn": component.arn})

    def delete_(self: Any) -> ActionResult:
        component = _find(self.sagemaker_backend, self._get_param("InferenceComponentName"))
        if component.status != "Deleting":
            component.move("Deleting", moto_ext.now())
        return ActionResult({})

    def list_(self: Any) -> ActionResult:
        filters: dict[str, Callable[[FakeInferenceComponent, Any], bool]] = {
            "EndpointNameEquals": lambda c, v: c.endpoint_name == v,
            "VariantNameEquals": lambda c, v: c.variant == v,
            "StatusEquals": lambda c, v: c.status == v,
            "NameContains": lambda c, v: v in c.name,
            "CreationTimeAfter": lambda c, v: c.created > _at(v),
            "CreationTimeBefore": lambda c, v: c.created < _at(v),
            "LastModifiedTimeAfter": lambda c, v: (c.modified or c.created) > _at(v),
            "LastModifiedTimeBefore": lambda c, v: (c.modified or c.created) < _at(v),
        }
        wanted = {k: self._get_param(k) for k in filters if self._get_param(k) is not None}
        found = [
            c
            for c in components(self.sagemaker_backend).values()
            if all(filters[k](c, v) for k, v in wanted.items())
        ]
        descending = (self._get_param("SortOrder") or "Descending") == "Descending"
        found.sort(key=_sort_key(self._get_param("SortBy") or "CreationTime"), reverse=descending)
        page, token = moto_ext.offset_page(
            found, self._get_param("NextToken"), self._get_param("MaxResults")
        )
        return ActionResult(
            {"InferenceComponents": [c.summary() for c in page], "NextToken": token}
        )

    return {
        "create_inference_component": create_,
        "describe_inference_component": describe_,
        "update_inference_component_runtime_config": update_runtime_,
        "delete_inference_component": delete_,
        "list_inference_components": list_,
        "update_endpoint": _update_endpoint,
    }


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in _handlers().items():
        setattr(sm_responses.SageMakerResponse, name, handler)
    _patch_endpoints()
    _patch_application_autoscaling()
    moto_ext.tag_source(
        ":inference-component/",
        "sagemaker:inference-component",
        lambda backend: list(components(backend).values()),
    )


# --- seeding -----------------------------------------------------------------------------------


class InferenceSeeding(SimBase):
    """Inference components, asynchronous endpoints and their metrics."""

    def add_component_endpoint(
        self,
        name: str,
        instance_type: str = "ml.g5.2xlarge",
        count: int = 1,
        *,
        min_instance_count: int = 0,
        max_instance_count: int = 4,
        tags: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """An InService endpoint made for inference components (variant `AllTraffic` without a
        model, ExecutionRoleArn on the config, managed instance scaling from
        `min_instance_count`); `count=0` = already scaled to zero."""
        region = region or self.regions[0]
        client = self.client("sagemaker", region, account)
        client.create_endpoint_config(
            EndpointConfigName=f"{name}-config",
            ExecutionRoleArn=FAKE_ROLE,
            ProductionVariants=[{
                "VariantName": "AllTraffic",
                "InstanceType": instance_type,
                "InitialInstanceCount": max(count, 1),
                "ManagedInstanceScaling": {
                    "Status": "ENABLED",
                    "MinInstanceCount": min_instance_count,
                    "MaxInstanceCount": max_instance_count,
                },
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
            }],
        )  # fmt: skip
        arn = client.create_endpoint(
            EndpointName=name,
            EndpointConfigName=f"{name}-config",
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )["EndpointArn"]
        self._place_endpoint(name, count, created_at, region, account)
        return str(arn)

    def add_inference_component(
        self,
        name: str,
        endpoint: str,
        copies: int = 1,
        *,
        variant: str = "AllTraffic",
        memory_mb: int = 8192,
        accelerators: float | None = 1,
        tags: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """An InService component with `copies` copies on `endpoint`'s `variant` since
        `created_at`."""
        region = region or self.regions[0]
        requirements: dict[str, Any] = {"MinMemoryRequiredInMb": memory_mb}
        if accelerators:
            requirements["NumberOfAcceleratorDevicesRequired"] = accelerators
        arn = self.client("sagemaker", region, account).create_inference_component(
            InferenceComponentName=name,
            EndpointName=endpoint,
            VariantName=variant,
            Specification={
                "Container": {"Image": IMAGE, "ArtifactUrl": f"s3://sim-models/{name}.tar.gz"},
                "ComputeResourceRequirements": requirements,
            },
            RuntimeConfig={"CopyCount": copies},
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )["InferenceComponentArn"]
        backend = self._sagemaker(region, account)
        component = components(backend)[name]
        when = moto_ext.naive_utc(created_at or self.clock.now())
        component.created = when
        component.move("InService", when)
        component.current_copies = copies
        return str(arn)

    def component_copies(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> tuple[int, int] | None:
        """(desired, current) copies of a component; None once it is deleted."""
        component = components(self._sagemaker(region or self.regions[0], account)).get(name)
        if component is None:
            return None
        return (component.desired_copies or 0, component.current_copies)

    def component_invocations(
        self,
        name: str,
        times: Iterable[datetime],
        *,
        count: float = 1.0,
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """`name` was invoked at each of `times` (AWS/SageMaker Invocations per component)."""
        self.put_metric(
            "AWS/SageMaker",
            "Invocations",
            {"InferenceComponentName": name},
            [(when, count) for when in times],
            region=region,
            account=account,
        )

    def add_async_endpoint(
        self,
        name: str,
        instance_type: str = "ml.g5.xlarge",
        count: int = 1,
        *,
        min_capacity: int | None = None,
        max_capacity: int = 4,
        tags: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """An InService asynchronous endpoint (AsyncInferenceConfig on its config); with
        `min_capacity`, its variant is registered with Application Auto Scaling
        (`sagemaker:variant:DesiredInstanceCount`) between that and `max_capacity`."""
        region = region or self.regions[0]
        client = self.client("sagemaker", region, account)
        client.create_model(
            ModelName=f"{name}-model",
            ExecutionRoleArn=FAKE_ROLE,
            PrimaryContainer={"Image": IMAGE},
        )
        spec = {"name": "AllTraffic", "instance_type": instance_type, "count": count}
        client.create_endpoint_config(
            EndpointConfigName=f"{name}-config",
            ProductionVariants=[_variant(f"{name}-model", spec)],
            AsyncInferenceConfig={
                "OutputConfig": {"S3OutputPath": f"s3://sim-async/{name}/out"},
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
            },
        )
        arn = client.create_endpoint(
            EndpointName=name,
            EndpointConfigName=f"{name}-config",
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )["EndpointArn"]
        self._place_endpoint(name, count, created_at, region, account)
        if min_capacity is not None:
            self.client("application-autoscaling", region, account).register_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=f"endpoint/{name}/variant/AllTraffic",
                ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                MinCapacity=min_capacity,
                MaxCapacity=max_capacity,
            )
        return str(arn)

    def async_backlog(
        self,
        endpoint: str,
        points: Iterable[tuple[datetime, float]],
        *,
        metric: str = "ApproximateBacklogSize",
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        """Queued requests of an async endpoint over time (AWS/SageMaker, EndpointName); also
        `ApproximateBacklogSizePerInstance` or `HasBacklogWithoutCapacity` by `metric`."""
        self.put_metric(
            "AWS/SageMaker", metric, {"EndpointName": endpoint}, points,
            region=region, account=account,
        )  # fmt: skip

    def scale_to_minimum(
        self, endpoint: str, *, region: str | None = None, account: str | None = None
    ) -> None:
        """What Application Auto Scaling does once an endpoint stays idle: each variant with a
        registered scalable target goes to its MinCapacity."""
        region = region or self.regions[0]
        scaling = get_backend("applicationautoscaling")[account or self.account_id][region]
        targets = scaling.targets.get("sagemaker:variant:DesiredInstanceCount", {})
        found = self._sagemaker(region, account).endpoints[endpoint]
        for summary in found.production_variants:
            target = targets.get(f"endpoint/{endpoint}/variant/{summary['VariantName']}")
            if target is not None:
                minimum = int(target.min_capacity or 0)
                summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = minimum
                found.last_modified_time = moto_ext.now()

    def _place_endpoint(
        self,
        name: str,
        count: int,
        created_at: datetime | None,
        region: str,
        account: str | None,
    ) -> None:
        endpoint = self._sagemaker(region, account).endpoints[name]
        when = moto_ext.naive_utc(created_at or self.clock.now())
        endpoint.creation_time = endpoint.last_modified_time = when
        endpoint.endpoint_status = "InService"
        for summary in endpoint.production_variants:
            summary["CurrentInstanceCount"] = summary["DesiredInstanceCount"] = count

    def settle_inference(self) -> None:
        """Finish component and endpoint-update transitions now."""
        for region in self.regions:
            backend = self._sagemaker(region)
            settle(backend, components(backend), None)
            for endpoint in backend.endpoints.values():
                _settle_endpoint(endpoint, None)
