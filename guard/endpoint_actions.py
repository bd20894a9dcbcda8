"""Endpoint actions that need more than one call: delete (restorable), scale-to-zero, restore.

Delete stores what recreating the endpoint needs (its name, endpoint-config name, variants and
tags) and commits it *before* DeleteEndpoint: the config and the model are never deleted, so
`cost-guard restore endpoint NAME` is one CreateEndpoint away. These handlers run from
`guard.actions` after its live checks (the endpoint exists and is InService).

    rules:
      - id: idle-endpoints
        kind: endpoint
        idle_for: 24h
        action: delete          # or scale-to-zero, for inference-component endpoints
        grace: 2h
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from guard import failpoints
from guard.aws import not_found, pages
from guard.inference_actions import ASYNC_CAPACITY, async_scale_to_zero, restore_capacity
from guard.model import Clock, Outcome, Resource
from guard.restoring import Restored, Seen, wait_until_ready
from guard.scanners.endpoint import min_instances
from guard.store import Store


def _instances(variants: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{v['VariantName']}: {v.get('CurrentInstanceCount', 0)} instance(s)" for v in variants
    )


def _tags(client: Any, res: Resource) -> list[dict[str, str]]:
    """The endpoint's tags: this cycle's (from the tagging API) or, if none, ListTags."""
    if res.tags:
        return [{"Key": k, "Value": v} for k, v in res.tags.items()]
    listed = pages(client, "list_tags", "Tags", ResourceArn=res.arn)
    return [{"Key": t["Key"], "Value": t["Value"]} for t in listed]


def delete(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """Save the restore record, then DeleteEndpoint (config and model stay)."""
    config_name = str(described["EndpointConfigName"])
    try:
        config = client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as exc:
        if not not_found(exc):
            raise
        # Without its config it could never be recreated: leave it for a person to decide.
        return Outcome(
            "skipped",
            f"not deleted: its endpoint config {config_name} no longer exists, so "
            "`cost-guard restore` could not recreate it",
        )
    variants = described.get("ProductionVariants", [])
    record = {
        "endpoint_name": res.name,
        "endpoint_arn": res.arn,
        "endpoint_config_name": config_name,
        "variants": variants,
        "config_variants": config.get("ProductionVariants", []),
        "models": sorted({v["ModelName"] for v in config.get("ProductionVariants", [])}),
        "tags": _tags(client, res),
    }
    store.save_restore_record(res, record, action_id, now)  # committed before the delete
    failpoints.reached("endpoint-after-restore-record")
    client.delete_endpoint(EndpointName=res.name)
    models = ", ".join(record["models"]) or "none"
    return Outcome(
        "done",
        f"endpoint deleted (was InService; {_instances(variants)}). Its endpoint config "
        f"{config_name} and model(s) {models} are kept; "
        f"`cost-guard restore endpoint {res.name}` recreates it.",
    )


def scale_to_zero(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """Set every instance-backed variant to 0 instances, where the endpoint allows it.

    Only variants with managed instance scaling and a minimum of 0 (inference-component
    endpoints) may run at zero instances; for any other endpoint SageMaker refuses, so the
    action is refused here with the reason, before any call. An asynchronous endpoint scales to
    zero through Application Auto Scaling instead (`guard.inference_actions`).
    """
    if "AsyncInferenceConfig" in described:
        return async_scale_to_zero(client, store, res, described, action_id, now)
    variants = [v for v in described.get("ProductionVariants", []) if not _serverless(v)]
    stored = {v["name"]: v for v in res.details.get("variants", [])}
    blocked = [
        v["VariantName"] for v in variants if _minimum(v, stored.get(v["VariantName"], {})) != 0
    ]
    if blocked or not variants:
        return Outcome(
            "skipped",
            "not scaled to zero: only endpoints whose variants allow a minimum of 0 instances "
            "(managed instance scaling with MinInstanceCount 0, i.e. inference-component "
            f"endpoints) can scale to zero, and variant(s) {', '.join(blocked) or 'none'} "
            "do not. Use a `delete` rule for this endpoint instead (restorable).",
        )
    if all(v.get("CurrentInstanceCount", 0) == 0 for v in variants):
        return Outcome("skipped", "already at zero instances: nothing to do")
    client.update_endpoint_weights_and_capacities(
        EndpointName=res.name,
        DesiredWeightsAndCapacities=[
            {"VariantName": v["VariantName"], "DesiredInstanceCount": 0} for v in variants
        ],
    )
    return Outcome(
        "done",
        f"scaled to zero instances (was {_instances(variants)}). "
        "The endpoint stays; it scales up again when traffic returns.",
    )


def _serverless(variant: dict[str, Any]) -> bool:
    return "CurrentServerlessConfig" in variant


def _minimum(summary: dict[str, Any], stored: dict[str, Any]) -> int | None:
    live = min_instances(summary)
    return live if live is not None else stored.get("min_instance_count")


# --- restore -------------------------------------------------------------------------------


class RestoreError(Exception):
    """Why an endpoint cannot be restored, for people."""


def restore_endpoint(
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
    """Recreate a deleted endpoint from its stored record (same config name, same tags); for
    an asynchronous endpoint cost-guard scaled to zero, register its saved minimum again.

    `sagemaker(account, region)` gives a client; `clock` and `sleep` are injected so the wait
    for InService is tested without waiting. Raises `RestoreError` when there is no record or
    the endpoint config is gone.
    """
    row = store.restore_record("endpoint", name)
    if row is None:
        raise RestoreError(
            f"no restore record for endpoint {name}: cost-guard never deleted an endpoint "
            "of that name (or its record was pruned)"
        )
    record, client = row.record, sagemaker(row.account, row.region)
    if record.get("restores") == ASYNC_CAPACITY:
        return restore_capacity(row, client, store, clock.now())
    config_name = str(record["endpoint_config_name"])

    def result(created: bool, status: str, at: datetime | None, message: str) -> Restored:
        did = f"recreated endpoint {name} in {{where}} from endpoint config {config_name}"
        hint = "`aws sagemaker describe-endpoint` shows when it is ready"
        return Restored(name, row.account, row.region, created, status, at, message, did, hint)

    status = _status(client, name)
    if status is not None:
        return result(False, status, None, f"endpoint {name} already exists ({status})")
    try:
        client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as exc:
        if not_found(exc):
            raise RestoreError(
                f"cannot recreate endpoint {name}: its endpoint config {config_name} no longer "
                "exists (someone deleted it after cost-guard deleted the endpoint)"
            ) from exc
        raise
    tags = [t for t in record.get("tags", []) if not str(t["Key"]).startswith("aws:")]
    client.create_endpoint(EndpointName=name, EndpointConfigName=config_name, Tags=tags)
    store.mark_restored(row.id, clock.now())
    if not wait:
        return result(True, "Creating", None, f"endpoint {name} is being created")
    return _wait(client, name, clock, sleep, timeout, poll_every, result)


def _status(client: Any, name: str) -> str | None:
    try:
        return str(client.describe_endpoint(EndpointName=name)["EndpointStatus"])
    except ClientError as exc:
        if not_found(exc):
            return None
        raise


def _wait(
    client: Any,
    name: str,
    clock: Clock,
    sleep: Callable[[float], None],
    timeout: timedelta,
    poll_every: timedelta,
    result: Callable[[bool, str, datetime | None, str], Restored],
) -> Restored:
    def look() -> Seen:
        described = client.describe_endpoint(EndpointName=name)
        status = str(described["EndpointStatus"])
        failed = described.get("FailureReason", "no reason given") if status == "Failed" else None
        return Seen(status, status == "InService", failed)

    seen = wait_until_ready(look, clock=clock, sleep=sleep, timeout=timeout, poll_every=poll_every)
    if seen.ready:
        return result(True, seen.status, clock.now(), f"endpoint {name} is InService again")
    if seen.failed is not None:
        return result(True, seen.status, None, f"endpoint {name} failed to create: {seen.failed}")
    return result(True, seen.status, None, f"endpoint {name} is still {seen.status}")
