"""MLflow tracking servers: listed 100 per page, sized by one Describe per server (again only
when its LastModifiedTime moves), tags in bulk; their stop handler and `cost-guard restore
mlflow NAME`.

Evidence: AWS exposes no activity signal for a tracking server (no CloudWatch metric, no
last-request time), so a running server is `in-service-since` the time it last started, for
`running_for` and schedule rules. A server created from a Studio domain (`CreatedBy.DomainId`,
or its `sagemaker:domain-arn` tag) that keeps running after that domain was deleted is a
finding: nobody can open it from Studio any more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found
from guard.kinds import KindSpec
from guard.model import ActivitySource, Clock, Finding, Outcome, Resource
from guard.restoring import Restored, Seen, wait_until_ready
from guard.scanners.shared import kind_tags, studio_domains
from guard.scanning import ScanContext, Target, concurrently, list_all, utc
from guard.store import Store

KIND = "mlflow_server"
DOMAIN_TAG = "sagemaker:domain-arn"
# What a Describe answer gives that the listing does not; cached in `details`.
CACHED_FACTS = ("size", "modified")


def price_key(size: str | None) -> str | None:
    """The price table's instance-type column for a size: "Small" -> "mlflow-small"."""
    return f"mlflow-{size.lower()}" if size else None


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    # A Deleting server no longer answers and stops billing: treated as gone.
    listed = list_all(client, target, spec, keep=lambda s: s[spec.status_field] != "Deleting")
    if not listed:
        return
    tags, evidence_error = kind_tags(ctx, target, spec)
    known = ctx.store.known_details(spec.name, target.account_id, target.region)
    facts, failed = _facts(client, spec, listed, known)
    if failed:
        target.errors.append(
            f"{target.account_id} {target.region}: {len(failed)} MLflow tracking server(s) "
            f"could not be described and are unknown this cycle: {next(iter(failed.values()))}"
        )
    resources = []
    for server in listed:
        arn = server[spec.arn_field]
        if arn not in facts and arn not in failed:
            continue  # deleted between the listing and its Describe
        res = _resource(
            ctx, target, spec, server, facts.get(arn, {}), tags.get(arn, {}),
            evidence_error or failed.get(arn),
        )  # fmt: skip
        resources.append(res)
    target.resources.extend(resources)
    _orphan_findings(ctx, target, client, [r for r in resources if r.running])


def _facts(
    client: Any,
    spec: KindSpec,
    listed: list[dict[str, Any]],
    known: Mapping[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Size and Studio domain per ARN: cached while LastModifiedTime is unchanged (a resize
    is an UpdateMlflowTrackingServer, which moves it), else one Describe."""
    facts: dict[str, dict[str, Any]] = {}
    todo = []
    for server in listed:
        arn, modified = server[spec.arn_field], _iso(server.get("LastModifiedTime"))
        cached = known.get(arn, {})
        if all(cached.get(k) for k in CACHED_FACTS) and cached["modified"] == modified:
            facts[arn] = {k: cached.get(k) for k in (*CACHED_FACTS, "domain_id", "user_profile")}
        else:
            todo.append(server)
    failed: dict[str, str] = {}

    def describe(server: dict[str, Any]) -> dict[str, Any] | Exception | None:
        try:
            return dict(
                client.describe_mlflow_tracking_server(**{spec.name_param: server[spec.name_field]})
            )
        except ClientError as exc:
            return None if not_found(exc) else exc
        except AWS_ERRORS as exc:
            return exc

    for server, answer in zip(todo, concurrently(describe, todo), strict=True):
        arn = server[spec.arn_field]
        if isinstance(answer, Exception):
            failed[arn] = f"describe failed: {error_text(answer)}"
        elif answer is not None:
            created_by = answer.get("CreatedBy") or {}
            facts[arn] = {
                "size": answer.get(spec.type_field),
                "modified": _iso(server.get("LastModifiedTime")),
                "domain_id": created_by.get("DomainId"),
                "user_profile": created_by.get("UserProfileName"),
            }
    return facts, failed


def _iso(when: datetime | None) -> str | None:
    moment = utc(when)
    return moment.isoformat() if moment else None


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    server: dict[str, Any],
    facts: dict[str, Any],
    server_tags: dict[str, str],
    evidence_error: str | None,
) -> Resource:
    status = server[spec.status_field]
    running = status in spec.running_states
    size = facts.get("size")
    key = price_key(size)
    if running:
        price = ctx.prices.price(key, target.region, spec.price_component)
        usd_per_hour, price_source = price.usd_per_hour, price.source
    else:
        usd_per_hour, price_source = Decimal(0), "none"
    created = utc(server.get("CreationTime"))
    # Up since it last started: a Started server's LastModifiedTime is its start (or a later
    # update, which only makes it look younger: never older than it is).
    since = utc(server.get("LastModifiedTime")) or created
    domain = facts.get("domain_id") or _domain_from_tag(server_tags)
    return Resource(
        arn=server[spec.arn_field],
        kind=spec.name,
        name=server[spec.name_field],
        account=target.account_id,
        region=target.region,
        status=status,
        running=running,
        instance_type=key,
        instance_count=1,
        usd_per_hour=usd_per_hour,
        price_source=price_source,
        created_at=created,
        running_since=since if running else None,
        last_activity=None,
        activity_source=ActivitySource.UNKNOWN
        if evidence_error
        else ActivitySource.IN_SERVICE_SINCE,
        tags=dict(server_tags),
        evidence_error=evidence_error,
        details={
            **facts,
            "mlflow_version": server.get("MlflowVersion"),
            "domain_id": domain,
            "evidence": "no activity metric exists for MLflow tracking servers: time since start",
        },
    )


def _domain_from_tag(tags: Mapping[str, str]) -> str | None:
    arn = tags.get(DOMAIN_TAG, "")
    return arn.rsplit("/", 1)[-1] if "/" in arn else None


def _orphan_findings(
    ctx: ScanContext, target: Target, client: Any, running: list[Resource]
) -> None:
    """A finding per running server whose Studio domain no longer exists (ListDomains, read
    hourly and shared with the Studio kind; read again at once when a server names a domain
    it lacks, so a new domain is never taken for a deleted one). A failed call is reported
    and finds nothing: a missing answer is not a deletion."""
    from_studio = [r for r in running if r.details.get("domain_id")]
    if not from_studio:
        return
    try:
        domains = {d["DomainId"] for d in studio_domains(ctx, target, client)}
        if any(r.details["domain_id"] not in domains for r in from_studio):
            domains = {d["DomainId"] for d in studio_domains(ctx, target, client, fresh=True)}
    except AWS_ERRORS as exc:
        target.errors.append(
            f"{target.account_id} {target.region}: ListDomains failed, MLflow tracking servers "
            f"whose Studio domain was deleted are not checked this cycle: {error_text(exc)}"
        )
        return
    for res in from_studio:
        domain = res.details["domain_id"]
        if domain in domains:
            continue
        target.findings.append(
            Finding(
                account=target.account_id,
                region=target.region,
                subject=f"MLflow tracking server {res.name}",
                problem=(
                    f"keeps running ({res.status}) although its Studio domain {domain} was "
                    "deleted: nobody can open it from Studio, and it bills every hour"
                ),
                fix=(
                    f"aws sagemaker stop-mlflow-tracking-server --tracking-server-name "
                    f"{res.name} --region {res.region} (or delete it once its data is saved)"
                ),
            )
        )


# --- the stop action and its restore -------------------------------------------------------


def stop(
    client: Any,
    store: Store,
    res: Resource,
    described: dict[str, Any],
    action_id: int,
    now: datetime,
) -> Outcome:
    """Save what `cost-guard restore mlflow` needs (where the server is), then stop it."""
    record = {
        "tracking_server_name": res.name,
        "tracking_server_arn": res.arn,
        "size": described.get("TrackingServerSize"),
        "status_before": described.get("TrackingServerStatus"),
        "tracking_server_url": described.get("TrackingServerUrl"),
    }
    store.save_restore_record(res, record, action_id, now)  # committed before the stop
    client.stop_mlflow_tracking_server(TrackingServerName=res.name)
    return Outcome(
        "done",
        f"MLflow tracking server stopped (was {record['status_before']}). Its experiments, "
        "runs and registered models are kept; "
        f"`cost-guard restore mlflow {res.name}` starts it again.",
    )


class RestoreError(Exception):
    """Why a tracking server cannot be started again, for people."""


STARTABLE = ("Stopped", "StartFailed")


def restore_server(
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
    """StartMlflowTrackingServer for a server cost-guard stopped, found from the record its
    stop saved; with `wait`, until it is Started (or `timeout`)."""
    row = store.restore_record(KIND, name)
    if row is None:
        raise RestoreError(
            f"no record of MLflow tracking server {name}: cost-guard never stopped a tracking "
            "server of that name (or its record was pruned)"
        )
    client = sagemaker(row.account, row.region)

    def result(started: bool, status: str, at: datetime | None, message: str) -> Restored:
        did = f"started MLflow tracking server {name} in {{where}}"
        hint = "`aws sagemaker describe-mlflow-tracking-server` shows when it is Started"
        return Restored(name, row.account, row.region, started, status, at, message, did, hint)

    try:
        status = str(
            client.describe_mlflow_tracking_server(TrackingServerName=name)["TrackingServerStatus"]
        )
    except ClientError as exc:
        if not_found(exc):
            raise RestoreError(
                f"MLflow tracking server {name} no longer exists (deleted after cost-guard "
                "stopped it): there is nothing to start"
            ) from exc
        raise
    if status == "Stopping":
        raise RestoreError(
            f"MLflow tracking server {name} is still Stopping: try again in a few minutes"
        )
    if status not in STARTABLE:
        return result(False, status, None, f"MLflow tracking server {name} is {status}")
    client.start_mlflow_tracking_server(TrackingServerName=name)
    store.mark_restored(row.id, clock.now())
    if not wait:
        return result(True, "Starting", None, f"MLflow tracking server {name} is starting")

    def look() -> Seen:
        found = client.describe_mlflow_tracking_server(TrackingServerName=name)
        status = str(found["TrackingServerStatus"])
        return Seen(status, status == "Started", "StartFailed" if status == "StartFailed" else None)

    seen = wait_until_ready(look, clock=clock, sleep=sleep, timeout=timeout, poll_every=poll_every)
    server = f"MLflow tracking server {name}"
    if seen.ready:
        return result(True, seen.status, clock.now(), f"{server} is Started")
    if seen.failed is not None:
        return result(True, seen.status, None, f"{server} failed to start")
    return result(True, seen.status, None, f"{server} is still {seen.status}")
