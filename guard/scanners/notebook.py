"""Notebook instances: listed 100 per page, tags in bulk, Jupyter activity from CloudWatch Logs.

Activity comes from DescribeLogStreams ordered by last event (50 per page), read only back to
where the previous scan ended, and from the heartbeat tags the shipped lifecycle script writes
(kernels, terminals, terminal jobs, busy processes, GPU); the newest signal wins. A heartbeat
that stopped looking, or that cannot reach Jupyter, makes the notebook `unknown`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text
from guard.kinds import KindSpec
from guard.model import ActivitySource, Resource
from guard.scanners.evidence import heartbeat_details, stopped_finding
from guard.scanners.evidence import read as read_heartbeat
from guard.scanners.shared import kind_tags
from guard.scanning import ScanContext, Target, list_all, utc

NOTEBOOK_LOG_GROUP = "/aws/sagemaker/NotebookInstances"
JUPYTER_STREAM_SUFFIX = "/jupyter.log"


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


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    cfg, now = ctx.cfg, ctx.now
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    listed = list_all(client, target, spec)
    if not listed:
        return
    tags, evidence_error = kind_tags(ctx, target, spec)

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
    stopped: list[str] = []  # running notebooks whose heartbeat stopped looking

    for nb in listed:
        arn, name, status = nb[spec.arn_field], nb[spec.name_field], nb[spec.status_field]
        running = status in spec.running_states
        nb_tags = tags.get(arn, {})
        running_since = utc(nb.get("LastModifiedTime")) if running else None
        # Evidence fusion: the newest of the stored activity, the Jupyter log and the
        # heartbeat (kernels, terminals, processes, GPU) wins.
        signals: list[tuple[datetime, ActivitySource]] = []
        if arn in known:
            signals.append(known[arn])
        if name in jupyter:
            signals.append((jupyter[name], ActivitySource.JUPYTER_LOG))
        heartbeat = read_heartbeat(nb_tags, cfg)
        if heartbeat and heartbeat.last_activity:
            signals.append((heartbeat.last_activity, ActivitySource.HEARTBEAT_TAG))
        last_activity, activity_source = (
            max(signals, key=lambda s: s[0]) if signals else (None, ActivitySource.IN_SERVICE_SINCE)
        )
        details: dict[str, Any] = {}
        if heartbeat:
            details = heartbeat_details(heartbeat, activity_source, last_activity)
        # A heartbeat that stopped looking, or that cannot see Jupyter, leaves processes and
        # kernels unseen: unknown, never idle.
        problem = heartbeat.problem(cfg, now, running_since) if heartbeat and running else None
        if heartbeat and running and heartbeat.stopped(cfg, now, running_since):
            stopped.append(name)
        resource_error = evidence_error or problem
        if resource_error:
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
                created_at=utc(nb.get("CreationTime")),
                running_since=running_since,
                stopped_since=None if running else utc(nb.get("LastModifiedTime")),
                last_activity=last_activity,
                activity_source=activity_source,
                tags=nb_tags,
                evidence_error=resource_error,
                details=details,
            )
        )
    if stopped:
        target.findings.append(
            stopped_finding(target.account_id, target.region, "notebooks", stopped)
        )
