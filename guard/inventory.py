"""What is running: one scan of every enabled kind in every account and region.

Calls grow with pages, not resources: list calls page by 100, tags come from the Resource
Groups Tagging API (100 per page) and notebook activity from DescribeLogStreams ordered by
last event (50 per page), read only back to where the previous scan ended. Accounts and
regions are scanned concurrently. A failed call never makes a resource look idle: its
resources are `unknown` for this cycle, or (when the listing itself failed) not judged at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, Aws, error_text
from guard.config import Account, Config
from guard.kinds import KINDS, NOTEBOOK, KindSpec
from guard.model import ActivitySource, Resource, ScanResult, parse_time
from guard.pricing import PriceBook
from guard.store import Store

log = logging.getLogger(__name__)

NOTEBOOK_LOG_GROUP = "/aws/sagemaker/NotebookInstances"
JUPYTER_STREAM_SUFFIX = "/jupyter.log"
MAX_SCAN_WORKERS = 8


@dataclass
class Target:
    """One account in one region, and what its scan found."""

    account: Account | None
    account_id: str
    region: str
    resources: list[Resource] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    scanned: set[tuple[str, str, str]] = field(default_factory=set)
    cursors: list[tuple[str, str, str, datetime]] = field(default_factory=list)


@dataclass(frozen=True)
class ScanContext:
    cfg: Config
    aws: Aws
    store: Store
    prices: PriceBook
    now: datetime


def scan(ctx: ScanContext) -> ScanResult:
    """Scan every (account, region) concurrently; one failing never stops the others."""
    accounts: list[Account | None] = list(ctx.cfg.accounts) or [None]
    jobs = [(account, region) for account in accounts for region in ctx.cfg.regions]
    workers = max(1, min(MAX_SCAN_WORKERS, len(jobs)))
    result = ScanResult()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        for target in pool.map(lambda job: _scan_target(ctx, *job), jobs):
            result.resources.extend(target.resources)
            result.errors.extend(target.errors)
            result.scanned |= target.scanned
            result.cursors.extend(target.cursors)
    return result


def _scan_target(ctx: ScanContext, account: Account | None, region: str) -> Target:
    label = account.name or account.id if account else "default account"
    try:
        account_id = ctx.aws.account_id(account, region)
    except AWS_ERRORS as exc:
        return Target(
            account, "?", region, errors=[f"{label} {region}: cannot reach: {error_text(exc)}"]
        )
    target = Target(account, account_id, region)
    for kind in ctx.cfg.kinds:
        try:
            SCANNERS[kind](ctx, target, KINDS[kind])
        except AWS_ERRORS as exc:
            # The listing failed: nothing of this kind here is judged this cycle.
            target.errors.append(f"{label} {region} {kind}: listing failed: {error_text(exc)}")
            log.warning("scan of %s in %s %s failed: %s", kind, label, region, error_text(exc))
    return target


def _pages(client: Any, operation: str, key: str, **params: Any) -> Iterable[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def fetch_tags(ctx: ScanContext, target: Target, spec: KindSpec) -> dict[str, dict[str, str]]:
    """Tags of every resource of a kind, 100 per call (ListTags would be one per resource)."""
    client = ctx.aws.client(target.account, target.region, "resourcegroupstaggingapi")
    tags: dict[str, dict[str, str]] = {}
    for item in _pages(
        client,
        "get_resources",
        "ResourceTagMappingList",
        ResourceTypeFilters=[spec.tagging_type],
        ResourcesPerPage=100,
    ):
        tags[item["ResourceARN"]] = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
    return tags


def jupyter_activity(
    ctx: ScanContext, target: Target, since: datetime | None
) -> dict[str, datetime]:
    """Last Jupyter event per notebook name, newest streams first, back to `since`.

    Streams come ordered by last event, so the scan stops at the first stream older than
    `since`: a notebook not seen has had no event since then. `since=None` reads everything.
    """
    client = ctx.aws.client(target.account, target.region, "logs")
    latest: dict[str, datetime] = {}
    cutoff_ms = int(since.timestamp() * 1000) if since else None
    params: dict[str, Any] = {
        "logGroupName": NOTEBOOK_LOG_GROUP,
        "orderBy": "LastEventTime",
        "descending": True,
        "limit": 50,
    }
    try:
        while True:
            page = client.describe_log_streams(**params)
            for stream in page.get("logStreams", []):
                last = stream.get("lastEventTimestamp")
                if last is None or (cutoff_ms is not None and last < cutoff_ms):
                    return latest
                name = stream["logStreamName"]
                if name.endswith(JUPYTER_STREAM_SUFFIX):
                    notebook = name.removesuffix(JUPYTER_STREAM_SUFFIX)
                    when = datetime.fromtimestamp(last / 1000, UTC)
                    latest[notebook] = max(when, latest.get(notebook, when))
            token = page.get("nextToken")
            if not token or not page.get("logStreams"):
                return latest
            params["nextToken"] = token
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return latest  # no notebook has ever logged here
        raise


def scan_notebooks(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    cfg, now = ctx.cfg, ctx.now
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    listed = list(_pages(client, spec.list_operation, spec.list_key, MaxResults=100))
    target.scanned.add((target.account_id, target.region, spec.name))
    if not listed:
        return

    evidence_error: str | None = None
    tags: dict[str, dict[str, str]] = {}
    try:
        tags = fetch_tags(ctx, target, spec)
    except AWS_ERRORS as exc:
        # Without tags we cannot know exemptions or snoozes: nothing here may be acted on.
        evidence_error = f"tags unavailable: {error_text(exc)}"

    source = "notebook-jupyter-log"
    cursor = ctx.store.scan_cursor(target.account_id, target.region, source)
    jupyter: dict[str, datetime] = {}
    if any(nb[spec.status_field] in spec.running_states for nb in listed):
        since = cursor - cfg.activity_log_overlap if cursor else None
        try:
            jupyter = jupyter_activity(ctx, target, since)
            if evidence_error is None:
                # Advance only when this cycle's findings will be stored: an unknown
                # resource's activity is not saved, so the next scan must read it again.
                target.cursors.append((target.account_id, target.region, source, now))
        except AWS_ERRORS as exc:
            evidence_error = evidence_error or f"Jupyter logs unavailable: {error_text(exc)}"
            target.errors.append(
                f"{target.account_id} {target.region}: DescribeLogStreams failed, "
                f"notebooks there are unknown this cycle: {error_text(exc)}"
            )
    known = ctx.store.last_activity(spec.name, target.account_id, target.region)

    for nb in listed:
        arn, name, status = nb[spec.arn_field], nb[spec.name_field], nb[spec.status_field]
        running = status in spec.running_states
        nb_tags = tags.get(arn, {})
        signals: list[tuple[datetime, ActivitySource]] = []
        if arn in known:
            signals.append(known[arn])
        if name in jupyter:
            signals.append((jupyter[name], ActivitySource.JUPYTER_LOG))
        beat = parse_time(nb_tags.get(cfg.tags.heartbeat))
        if beat:
            signals.append((beat, ActivitySource.HEARTBEAT_TAG))
        last_activity, activity_source = (
            max(signals, key=lambda s: s[0]) if signals else (None, ActivitySource.IN_SERVICE_SINCE)
        )
        if evidence_error:
            activity_source = ActivitySource.UNKNOWN
        price = ctx.prices.price(nb.get(spec.type_field), target.region, spec.price_component)
        target.resources.append(
            Resource(
                arn=arn,
                kind=spec.name,
                name=name,
                account=target.account_id,
                region=target.region,
                status=status,
                running=running,
                instance_type=nb.get(spec.type_field),
                instance_count=1,
                usd_per_hour=price.usd_per_hour if running else Decimal(0),
                price_source=price.source if running else "not-running",
                created_at=_utc(nb.get("CreationTime")),
                running_since=_utc(nb.get("LastModifiedTime")) if running else None,
                last_activity=last_activity,
                activity_source=activity_source,
                tags=nb_tags,
                evidence_error=evidence_error,
            )
        )


SCANNERS: dict[str, Callable[[ScanContext, Target, KindSpec], None]] = {
    NOTEBOOK.name: scan_notebooks,
}


def _utc(when: datetime | None) -> datetime | None:
    return when.astimezone(UTC) if when else None
