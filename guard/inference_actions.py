"""Scale-to-zero for inference components and asynchronous endpoints, and their restore.

Both save what a restore needs, committed, *before* the first mutating call:

- an inference component: its copy count, and its endpoint's config name and managed-scaling
  minimum. `scale-to-zero` sets CopyCount 0 (UpdateInferenceComponentRuntimeConfig); when no
  other component on its endpoint variant has copies left and the variant's minimum is above 0,
  the endpoint moves to a copy of its config with `MinInstanceCount` 0 (CreateEndpointConfig
  `<config>-scaled-to-0`, UpdateEndpoint), so its instances go too. With other components
  still using the instances the endpoint is left alone. `cost-guard restore component NAME`
  puts the copies back, and the endpoint's own config if it was changed.
- an asynchronous endpoint (the endpoint kind's `scale-to-zero`, for an endpoint with an
  AsyncInferenceConfig): each variant's Application Auto Scaling target
  (`sagemaker:variant:DesiredInstanceCount`) is registered with MinCapacity 0, after its
  previous Min/MaxCapacity is saved; its scaling policy then takes it to 0 instances while the
  queue is empty. `cost-guard restore endpoint NAME` registers the saved minimum again (or
  removes a target cost-guard registered).

    rules:
      - id: idle-components
        kind: inference_component
        idle_for: 12h
        action: scale-to-zero
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from guard import failpoints
from guard.aws import AWS_ERRORS, error_text, not_found, pages
from guard.kinds.inference import INFERENCE_COMPONENT
from guard.model import Clock, Outcome, Resource
from guard.restoring import Restored, Seen, wait_until_ready
from guard.scanners.endpoint import min_instances
from guard.store import RestoreRecordRow, Store

SCALED_SUFFIX = "-scaled-to-0"
ASYNC_CAPACITY = "async-min-capacity"  # `restores` of an asynchronous endpoint's record
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# CreateEndpointConfig's request members that DescribeEndpointConfig answers with
_CONFIG_FIELDS = (
    "ProductionVariants", "DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig",
    "ExplainerConfig", "ShadowProductionVariants", "ExecutionRoleArn", "VpcConfig",
    "EnableNetworkIsolation",
)  # fmt: skip


class RestoreError(Exception):
    """Why a component or an endpoint's capacity cannot be restored, for people."""


def client_like(client: Any, service: str) -> Any:
    """A client of `service` with the same identity (a member account's assumed role
    included), region and retry settings as `client`: a handler is given the SageMaker
    client, and an asynchronous endpoint scales through Application Auto Scaling."""
    # botocore's accessor of the client's own credentials object (the same refreshing
    # credentials the guard's session made; frozen here for the few calls of one action)
    frozen = client._get_credentials().get_frozen_credentials()
    session = boto3.Session(
        aws_access_key_id=frozen.access_key,
        aws_secret_access_key=frozen.secret_key,
        aws_session_token=frozen.token,
        region_name=client.meta.region_name,
    )
    return session.client(service, config=client.meta.config)


# --- inference components --------------------------------------------------------------------


def scale_to_zero(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """Save the restore record, set CopyCount 0, and lower the endpoint's minimum if allowed."""
    runtime = described.get("RuntimeConfig")
    if runtime is None:
        return Outcome(
            "skipped",
            "not scaled: an adapter component has no copies of its own (scale its base "
            "component instead)",
        )
    copies = int(runtime.get("DesiredCopyCount", 0))
    endpoint_name, variant = str(described["EndpointName"]), str(described["VariantName"])
    endpoint = client.describe_endpoint(EndpointName=endpoint_name)
    summary: dict[str, Any] = next(
        (v for v in endpoint.get("ProductionVariants", []) if v["VariantName"] == variant), {}
    )
    minimum = min_instances(summary)
    busy = _others_with_copies(client, res.name, endpoint_name, variant)
    lower = (
        minimum is not None
        and minimum > 0
        and not busy
        and endpoint.get("EndpointStatus") == "InService"
    )
    saved = copies
    if copies == 0:  # a retry after a partial attempt: keep the count saved the first time
        previous = store.restore_record(res.kind, res.name)
        if previous is not None and previous.restored_at is None:
            saved = int(previous.record.get("copy_count", 0))
    config_name = str(endpoint["EndpointConfigName"])
    scaled_config = _scaled_name(config_name) if lower else None
    record = {
        "component": res.name,
        "endpoint_name": endpoint_name,
        "variant": variant,
        "copy_count": saved,
        "endpoint_config_name": config_name,
        "min_instance_count": minimum,
        "scaled_config_name": scaled_config,
    }
    if copies == 0 and not lower:
        return Outcome("skipped", "already at zero copies: nothing to do")
    store.save_restore_record(res, record, action_id, now)  # committed before any change
    failpoints.reached("component-after-restore-record")
    if copies > 0:
        client.update_inference_component_runtime_config(
            InferenceComponentName=res.name, DesiredRuntimeConfig={"CopyCount": 0}
        )
    done = f"scaled to zero copies (was {copies})"
    if lower and scaled_config is not None:
        try:
            _use_scaled_config(client, endpoint_name, config_name, scaled_config, variant)
        except AWS_ERRORS as exc:  # the copies are gone already: that part is done
            done += (
                f"; its endpoint {endpoint_name} keeps its minimum of {minimum} instance(s) "
                f"(lowering it failed: {error_text(exc)})"
            )
        else:
            done += (
                f"; endpoint {endpoint_name} moved to config {scaled_config} (minimum 0 "
                f"instances, was {minimum}), so its instances go too"
            )
    elif busy:
        done += f"; endpoint {endpoint_name} left as is: {', '.join(busy)} still use(s) it"
    return Outcome(
        "done",
        f"{done}. The component, its model and its endpoint are kept; "
        f"`cost-guard restore component {res.name}` brings its {saved} copies back.",
    )


def _others_with_copies(client: Any, name: str, endpoint: str, variant: str) -> list[str]:
    """The other components on the endpoint variant that still have copies."""
    busy = []
    listed = pages(
        client, "list_inference_components", "InferenceComponents",
        EndpointNameEquals=endpoint, VariantNameEquals=variant,
    )  # fmt: skip
    for other in listed:
        if other["InferenceComponentName"] == name:
            continue
        found = client.describe_inference_component(
            InferenceComponentName=other["InferenceComponentName"]
        )
        if int((found.get("RuntimeConfig") or {}).get("DesiredCopyCount", 0)) > 0:
            busy.append(str(other["InferenceComponentName"]))
    return busy


def _scaled_name(config_name: str) -> str:
    base = config_name.removesuffix(SCALED_SUFFIX)
    return base[: 63 - len(SCALED_SUFFIX)] + SCALED_SUFFIX


def _use_scaled_config(
    client: Any, endpoint: str, config_name: str, scaled: str, variant: str
) -> None:
    """The endpoint on a copy of its config whose variant may scale to 0 instances."""
    try:
        client.describe_endpoint_config(EndpointConfigName=scaled)
    except ClientError as exc:
        if not not_found(exc):
            raise
        config = client.describe_endpoint_config(EndpointConfigName=config_name)
        request = {k: config[k] for k in _CONFIG_FIELDS if config.get(k) not in (None, {}, [])}
        variants = []
        for v in request.get("ProductionVariants", []):
            v = dict(v)
            if v["VariantName"] == variant and "ManagedInstanceScaling" in v:
                v["ManagedInstanceScaling"] = {**v["ManagedInstanceScaling"], "MinInstanceCount": 0}
            variants.append(v)
        request["ProductionVariants"] = variants
        client.create_endpoint_config(EndpointConfigName=scaled, **request)
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName=scaled)


def restore_component(
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
    """Put back the copies (and the endpoint's own config) saved before `scale-to-zero`."""
    row = store.restore_record(INFERENCE_COMPONENT.name, name)
    if row is None:
        raise RestoreError(
            f"no restore record for inference component {name}: cost-guard never scaled a "
            "component of that name to zero (or its record was pruned)"
        )
    record, client = row.record, sagemaker(row.account, row.region)
    copies = int(record["copy_count"])
    what = f"{copies} copies of inference component {name}"

    def result(changed: bool, status: str, at: datetime | None, message: str) -> Restored:
        did = f"restored the {what} in {{where}}"
        hint = "`aws sagemaker describe-inference-component` shows when its copies are up"
        return Restored(name, row.account, row.region, changed, status, at, message, did, hint)

    try:
        described = client.describe_inference_component(InferenceComponentName=name)
    except ClientError as exc:
        if not_found(exc):
            raise RestoreError(
                f"cannot restore inference component {name}: it no longer exists"
            ) from exc
        raise
    changed = _restore_endpoint_config(client, record)
    desired = int((described.get("RuntimeConfig") or {}).get("DesiredCopyCount", 0))
    if desired != copies:
        status = str(described["InferenceComponentStatus"])
        if status != "InService":
            raise RestoreError(
                f"cannot restore inference component {name} now: it is {status}; try again "
                "once it is InService"
            )
        client.update_inference_component_runtime_config(
            InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": copies}
        )
        changed = True
    store.mark_restored(row.id, clock.now())
    if not changed:
        return result(False, "InService", None, f"inference component {name} has {copies} copies")
    if not wait:
        return result(True, "Updating", None, f"inference component {name} is being scaled up")

    def look() -> Seen:
        found = client.describe_inference_component(InferenceComponentName=name)
        status = str(found["InferenceComponentStatus"])
        current = int((found.get("RuntimeConfig") or {}).get("CurrentCopyCount", 0))
        failed = found.get("FailureReason", "no reason given") if status == "Failed" else None
        return Seen(status, status == "InService" and current == copies, failed)

    seen = wait_until_ready(look, clock=clock, sleep=sleep, timeout=timeout, poll_every=poll_every)
    if seen.ready:
        return result(True, seen.status, clock.now(), f"inference component {name} is back")
    if seen.failed is not None:
        return result(True, seen.status, None, f"inference component {name} failed: {seen.failed}")
    return result(True, seen.status, None, f"inference component {name} is still {seen.status}")


def _restore_endpoint_config(client: Any, record: dict[str, Any]) -> bool:
    """The endpoint back on its own config, if cost-guard moved it; True if it called."""
    scaled, endpoint = record.get("scaled_config_name"), str(record["endpoint_name"])
    if not scaled:
        return False
    try:
        described = client.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        if not_found(exc):
            raise RestoreError(f"cannot restore: endpoint {endpoint} no longer exists") from exc
        raise
    if described["EndpointConfigName"] != scaled:
        return False  # someone changed it since: theirs stays
    if described["EndpointStatus"] != "InService":
        raise RestoreError(
            f"cannot restore endpoint {endpoint}'s config now: it is "
            f"{described['EndpointStatus']}; try again once it is InService"
        )
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName=record["endpoint_config_name"])
    return True


# --- asynchronous endpoints ------------------------------------------------------------------


def _resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def async_scale_to_zero(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """MinCapacity 0 on each variant's scalable target, the previous capacities saved first."""
    scaling = client_like(client, "application-autoscaling")
    variants = [
        v for v in described.get("ProductionVariants", []) if "CurrentServerlessConfig" not in v
    ]
    ids = {_resource_id(res.name, v["VariantName"]): v for v in variants}
    targets = {
        t["ResourceId"]: t
        for t in pages(
            scaling,
            "describe_scalable_targets",
            "ScalableTargets",
            ServiceNamespace="sagemaker",
            ResourceIds=sorted(ids),
            ScalableDimension=DIMENSION,
        )
    }
    if ids and all(targets.get(i, {}).get("MinCapacity") == 0 for i in ids):
        return Outcome("skipped", "already allowed to scale to 0 instances: nothing to do")
    saved = [
        {
            "resource_id": resource_id,
            "variant": variant["VariantName"],
            "min_capacity": targets[resource_id]["MinCapacity"] if resource_id in targets else None,
            "max_capacity": (
                targets[resource_id]["MaxCapacity"]
                if resource_id in targets
                else max(1, int(variant.get("CurrentInstanceCount", 1)))
            ),
        }
        for resource_id, variant in sorted(ids.items())
    ]
    record = {"restores": ASYNC_CAPACITY, "endpoint_name": res.name, "targets": saved}
    store.save_restore_record(res, record, action_id, now)  # committed before the change
    failpoints.reached("async-after-restore-record")
    for target in saved:
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=target["resource_id"],
            ScalableDimension=DIMENSION,
            MinCapacity=0,
            MaxCapacity=target["max_capacity"],
        )
    was = ", ".join(
        f"{t['variant']}: minimum {t['min_capacity'] if t['min_capacity'] is not None else 'none'}"
        for t in saved
    )
    return Outcome(
        "done",
        f"allowed to scale to 0 instances (Application Auto Scaling MinCapacity 0; was {was}): "
        "its scaling policy takes it to 0 while the queue is empty. The endpoint stays and "
        f"queues requests; `cost-guard restore endpoint {res.name}` sets the minimum back.",
    )


def restore_capacity(row: RestoreRecordRow, client: Any, store: Store, now: datetime) -> Restored:
    """Register each saved minimum again (deregister a target cost-guard added)."""
    scaling = client_like(client, "application-autoscaling")
    for target in row.record["targets"]:
        if target["min_capacity"] is None:
            try:
                scaling.deregister_scalable_target(
                    ServiceNamespace="sagemaker",
                    ResourceId=target["resource_id"],
                    ScalableDimension=DIMENSION,
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ObjectNotFoundException":
                    raise
        else:
            scaling.register_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=target["resource_id"],
                ScalableDimension=DIMENSION,
                MinCapacity=int(target["min_capacity"]),
                MaxCapacity=int(target["max_capacity"]),
            )
    store.mark_restored(row.id, now)
    minimums = ", ".join(
        f"{t['variant']}: {t['min_capacity'] if t['min_capacity'] is not None else 'no target'}"
        for t in row.record["targets"]
    )
    return Restored(
        row.name, row.account, row.region, True, "InService", now,
        f"endpoint {row.name}'s minimum capacity is back ({minimums})",
        f"restored the minimum capacity of endpoint {row.name} in {{where}}",
        "Application Auto Scaling brings the instances up to the minimum",
    )  # fmt: skip
