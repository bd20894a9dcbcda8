"""Training, processing and transform jobs: one scanner driven by each entry's `JobShape`.

What runs is the `StatusEquals=InProgress` listing (100 per page), made in full at most an
hour apart (`FULL_LISTING`); in between, only what changed is listed (`LastModifiedTimeAfter`
the previous listing, no status filter: a job is never deleted and every status change moves
its LastModifiedTime) and merged into the running set that listing left (kept in process
memory, per store: see `running_listing`). Jobs are described once: a job's
instance type and count, start time and runtime limit never change, so they are kept in the
resource's stored `details` and every later cycle rebuilds the job from there, by ARN,
without a Describe. Evidence is the runtime, the share of `MaxRuntimeInSeconds` used and,
when a rule asks for it, the peak per-host utilization over the rule's window from
GetMetricData (500 queries per call). Missing metrics never make a job look stalled.
"""

from __future__ import annotations

import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found, pages
from guard.config import UTILIZATION_METRICS, Config
from guard.kinds import KINDS, KindSpec
from guard.kinds.jobs import JobShape
from guard.model import ActivitySource, Resource, parse_time, utilization_key
from guard.pricing import combined_source
from guard.scanners.search import job_records
from guard.scanners.shared import PAGE, SLOW, kind_tags
from guard.scanning import (
    ScanContext,
    Target,
    concurrently,
    list_all,
    listing_key,
    metric_data,
    metric_period,
    utc,
)
from guard.store import Store

# SageMaker publishes job utilization once a minute and CloudWatch serves it within minutes;
# a datapoint this close to either end of a window (or two periods, if longer) counts as
# covering that end.
METRIC_EDGE = timedelta(minutes=5)


def shape_of(spec: KindSpec) -> JobShape:
    """Where the kind's Describe answer keeps its facts: the entry's `scanner_config`."""
    if not isinstance(spec.scanner_config, JobShape):
        raise TypeError(f"the {spec.name} entry has no JobShape in its scanner_config")
    return spec.scanner_config


# Facts a cached `details` must hold to stand in for a Describe.
CACHED_FACTS = ("instance_type", "instance_count", "started_at")


def _find(data: Mapping[str, Any], *paths: str) -> Any:
    for path in paths:
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None:
            return value
    return None


def facts(described: Mapping[str, Any], shape: JobShape) -> dict[str, Any]:
    """The immutable facts of one described job, as JSON-ready `details`."""
    groups = [(_find(described, *shape.instance_type), _find(described, *shape.instance_count))]
    if groups[0][0] is None and shape.instance_groups:
        groups = [
            (g.get("InstanceType"), g.get("InstanceCount"))
            for g in _find(described, shape.instance_groups) or []
        ]
    types = sorted({str(t) for t, _ in groups if t})
    started = utc(_find(described, *shape.started_at))
    details: dict[str, Any] = {
        "instance_type": "+".join(types) or None,
        "instance_count": sum(int(c or 0) for _, c in groups),
        "max_runtime_seconds": _find(described, shape.max_runtime) if shape.max_runtime else None,
        "spot": bool(_find(described, shape.spot)) if shape.spot else False,
        "started_at": started.isoformat() if started else None,
    }
    if len(groups) > 1:
        details["instance_groups"] = [[t, int(c or 0)] for t, c in groups]
    if shape.parents and (parent := _find(described, *shape.parents)):
        details["parent_arn"] = str(parent)  # a tuning or AutoML job's child: deferred
    return details


def _cached(details: Mapping[str, Any]) -> bool:
    return all(details.get(k) is not None for k in CACHED_FACTS)


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    running_listing(ctx, client, target, spec)
    listed = list_all(client, target, spec)  # as `running_listing` left it
    was_running = ctx.store.running_names(spec.name, target.account_id, target.region)
    listed_arns = {job[spec.arn_field] for job in listed}
    ended = {arn: name for arn, name in was_running.items() if arn not in listed_arns}
    if not listed and not ended:
        return
    tags, evidence_error = kind_tags(ctx, target, spec, ended)

    known = ctx.store.known_details(
        spec.name, target.account_id, target.region, listed_arns | ended.keys()
    )
    _ended_jobs(ctx, client, target, spec, ended, known, tags)
    details, failed = _job_facts(client, spec, listed, known, target)
    utilization: dict[str, dict[str, float]] = {}
    try:
        names = {job[spec.arn_field]: job[spec.name_field] for job in listed}
        utilization = job_utilization(ctx, target, spec, details, names)
    except AWS_ERRORS as exc:
        evidence_error = evidence_error or f"utilization metrics unavailable: {error_text(exc)}"
        target.errors.append(
            f"{target.account_id} {target.region}: GetMetricData failed, {spec.title}s there "
            f"are unknown this cycle: {error_text(exc)}"
        )

    for job in listed:
        arn = job[spec.arn_field]
        if arn not in details and arn not in failed:
            continue  # gone between the listing and its Describe
        target.resources.append(
            _resource(
                ctx, target, spec, job, details.get(arn, {}),
                tags=tags.get(arn, {}),
                utilization=utilization.get(arn, {}),
                evidence_error=evidence_error or failed.get(arn),
            )
        )  # fmt: skip


# --- what runs: a full listing hourly, the changes in between -------------------------------

# The full InProgress listing is made again at least this often, whatever the changes said: a
# bound on how long anything a listing of changes could miss (AWS not moving a job's
# LastModifiedTime) would go unseen.
FULL_LISTING = SLOW
# Changes are listed from this long before the previous listing's cycle began: LastModifiedTime
# is stamped by AWS's clock and `ctx.now` is ours, so a few minutes of skew between the two must
# not hide a change. Changes listed twice are merged twice, to the same result.
OVERLAP = timedelta(minutes=10)


@dataclass(frozen=True)
class _Running:
    """A kind's running jobs in one (account, region) as of the listing of the cycle that
    began at `listed_at`: ARN -> (name, CreationTime), all that the summaries rebuilt from it
    are read for (by this scanner, the tag reads, Search and the tuning scanner)."""

    listed_at: datetime
    full_at: datetime  # the cycle of the last full InProgress listing
    jobs: dict[str, tuple[str, datetime | None]]


_kept: weakref.WeakKeyDictionary[Store, dict[tuple[str, str, str], _Running]] = (
    weakref.WeakKeyDictionary()
)
_kept_lock = threading.Lock()


def _merged_marker(spec: KindSpec) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """`Target.listings` key saying `running_listing` has settled this kind's listing."""
    return (f"{spec.list_operation}:running", ())


def running_listing(ctx: ScanContext, client: Any, target: Target, spec: KindSpec) -> None:
    """Put the running jobs of every enabled job kind in `target.listings`, where `list_all`
    finds them (the job kinds read each other's listed ARNs for their tags, in one batch: the
    first job kind scanned settles all of them, so none is listed in full for another).

    Per kind: the full `StatusEquals=InProgress` listing when nothing trustworthy is kept (a
    new process, a failed listing), when the kept one is an hour old (`FULL_LISTING`) or when
    the clock went back; else the jobs changed since the kept listing (`OVERLAP` earlier),
    merged into it: a job changed to InProgress joins, one changed to anything else leaves.
    Either way it is kept for the next cycle. A failed listing forgets what was kept and is
    raised to the kind's scan like a failed `list_all` (nothing of it judged or marked gone)."""
    for kind in _job_kinds(ctx, spec):
        marker = _merged_marker(kind)
        if marker in target.listings:
            continue
        target.listings[marker] = []
        key = listing_key(kind)
        if key in target.listings:  # already listed in full this scan, by another kind
            found = target.listings[key]
            _keep(ctx, target, kind, found if isinstance(found, list) else None, full=True)
            continue
        place = (target.account_id, target.region, kind.name)
        with _kept_lock:
            kept = _kept.get(ctx.store, {}).get(place)
        full = (
            kept is None
            or not timedelta(0) <= ctx.now - kept.full_at < FULL_LISTING
            or ctx.now < kept.listed_at
        )
        try:
            if full or kept is None:
                listed: list[dict[str, Any]] = list(
                    pages(client, kind.list_operation, kind.list_key, MaxResults=PAGE,
                          **kind.list_params)
                )  # fmt: skip
            else:
                changed = pages(
                    client, kind.list_operation, kind.list_key, MaxResults=PAGE,
                    LastModifiedTimeAfter=kept.listed_at - OVERLAP,
                )  # fmt: skip
                listed = _merge(kind, kept, changed)
        except AWS_ERRORS as exc:
            target.listings[key] = exc  # the kind's scan fails on it, uncalled again
            _keep(ctx, target, kind, None, full=False)
            continue
        target.listings[key] = listed
        _keep(ctx, target, kind, listed, full=full)


def _job_kinds(ctx: ScanContext, spec: KindSpec) -> list[KindSpec]:
    """The job kinds this scan covers (the asking one first: a scanner run on its own)."""
    others = [
        KINDS[k]
        for k in ctx.cfg.kinds
        if k in KINDS and k != spec.name and isinstance(KINDS[k].scanner_config, JobShape)
    ]
    return [spec, *others]


def _running_status(spec: KindSpec) -> str:
    return str(spec.list_params.get("StatusEquals", spec.running_states[0]))


def _merge(
    spec: KindSpec, kept: _Running, changed: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The kept running set with the changes applied, as summaries of the full listing."""
    jobs = dict(kept.jobs)
    running = _running_status(spec)
    for job in changed:
        arn = job[spec.arn_field]
        if job.get(spec.status_field) == running:
            jobs[arn] = (job[spec.name_field], utc(job.get("CreationTime")))
        else:  # ended (or stopping): out of the InProgress listing
            jobs.pop(arn, None)
    return [_summary(spec, arn, name, created) for arn, (name, created) in jobs.items()]


def _summary(spec: KindSpec, arn: str, name: str, created: datetime | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        spec.arn_field: arn,
        spec.name_field: name,
        spec.status_field: _running_status(spec),
    }
    if created is not None:
        summary["CreationTime"] = created
    return summary


def _keep(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    listed: Sequence[Mapping[str, Any]] | None,
    *,
    full: bool,
) -> None:
    """Keep `listed` as the kind's running set of this cycle (None: forget it)."""
    place = (target.account_id, target.region, spec.name)
    with _kept_lock:
        kept = _kept.setdefault(ctx.store, {})
        before = kept.pop(place, None)
        if listed is None or (not full and before is None):
            return
        kept[place] = _Running(
            listed_at=ctx.now,
            full_at=ctx.now if full or before is None else before.full_at,
            jobs={
                job[spec.arn_field]: (job[spec.name_field], utc(job.get("CreationTime")))
                for job in listed
            },
        )


def _ended_jobs(
    ctx: ScanContext,
    client: Any,
    target: Target,
    spec: KindSpec,
    ended: Mapping[str, str],
    known: Mapping[str, dict[str, Any]],
    tags: Mapping[str, dict[str, str]],
) -> None:
    """Jobs that ran at the last snapshot and are no longer listed InProgress: one Describe
    each (once: next cycle they are no longer running) for their final status and end time,
    so their spend ends when AWS says the job ended. One that cannot be described is left
    out, and the snapshot treats it as gone."""
    shape = shape_of(spec)
    todo = sorted(ended.items())
    answers = concurrently(lambda item: _describe(client, spec, item[1]), todo)
    for (arn, _), answer in zip(todo, answers, strict=True):
        if not isinstance(answer, dict) or answer.get(spec.status_field) in spec.running_states:
            continue
        res = _resource(
            ctx, target, spec, answer, {**known.get(arn, {}), **facts(answer, shape)},
            tags=tags.get(arn, {}), utilization={}, evidence_error=None,
        )  # fmt: skip
        target.resources.append(replace(res, stopped_since=utc(answer.get(shape.ended_at))))


def _job_facts(
    client: Any,
    spec: KindSpec,
    listed: Sequence[Mapping[str, Any]],
    known: Mapping[str, dict[str, Any]],
    target: Target,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Facts per ARN, from the cache or one Describe per new job; and why a Describe failed.

    A job whose Describe fails is unknown this cycle; the others are judged as usual.
    """
    details = {
        arn: dict(known[arn])
        for job in listed
        if (arn := job[spec.arn_field]) in known and _cached(known[arn])
    }
    new = [job for job in listed if job[spec.arn_field] not in details]
    failed: dict[str, str] = {}
    if not new:
        return details, failed
    shape = shape_of(spec)
    for arn, record in job_records(client, target, spec, new).items():  # by the page
        details[arn] = facts(record, shape)
    new = [job for job in new if job[spec.arn_field] not in details]
    answers = concurrently(lambda job: _describe(client, spec, job[spec.name_field]), new)
    for job, answer in zip(new, answers, strict=True):
        arn = job[spec.arn_field]
        if isinstance(answer, Exception):
            failed[arn] = f"describe failed: {error_text(answer)}"
        elif answer is not None:
            details[arn] = facts(answer, shape)
    if failed:
        first = next(iter(failed.values()))
        target.errors.append(
            f"{target.account_id} {target.region}: {len(failed)} {spec.title}(s) could not be "
            f"described and are unknown this cycle: {first}"
        )
    return details, failed


def _describe(client: Any, spec: KindSpec, name: str) -> dict[str, Any] | Exception | None:
    """The job as Describe*Job sees it; None if it no longer exists; the error if it failed."""
    try:
        described: dict[str, Any] = getattr(client, spec.describe_operation)(
            **{spec.name_param: name}
        )
        return described
    except ClientError as exc:
        failure: Exception = exc  # botocore is untyped: name what this is
        return None if not_found(exc) else failure
    except AWS_ERRORS as exc:
        failure = exc
        return failure


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    job: Mapping[str, Any],
    details: dict[str, Any],
    *,
    tags: dict[str, str],
    utilization: dict[str, float],
    evidence_error: str | None,
) -> Resource:
    status = job[spec.status_field]
    # A child of a tuning or AutoML job is listed and acted on as its parent (which prices
    # its running children): here it is "deferred", not running, $0, never warned about.
    parent = details.get("parent_arn")
    running = status in spec.running_states and not parent
    started = parse_time(details.get("started_at")) or utc(job.get("CreationTime"))
    details = {**details, **runtime_evidence(details, started, ctx.now)} if details else {}
    price, source = job_price(ctx, target.region, spec, details)
    return Resource(
        arn=job[spec.arn_field],
        kind=spec.name,
        name=job[spec.name_field],
        account=target.account_id,
        region=target.region,
        status=status,
        running=running,
        instance_type=details.get("instance_type"),
        instance_count=int(details.get("instance_count") or 0),
        usd_per_hour=price if running else Decimal(0),
        price_source=source if running else "parent" if parent else "not-running",
        created_at=utc(job.get("CreationTime")),
        running_since=started if running else None,
        last_activity=None,  # a job's activity is its utilization, judged per rule window
        activity_source=ActivitySource.UNKNOWN
        if evidence_error
        else ActivitySource.IN_SERVICE_SINCE,
        tags=tags,
        evidence_error=evidence_error,
        details=details,
        utilization=utilization,
    )


def runtime_evidence(
    details: Mapping[str, Any], started: datetime | None, now: datetime
) -> dict[str, Any]:
    """How long the job has run and what share of its MaxRuntimeInSeconds that is (recomputed
    every cycle; the cache only keeps the immutable facts)."""
    if started is None:
        return {}
    seconds = max(int((now - started).total_seconds()), 0)
    evidence: dict[str, Any] = {"runtime_seconds": seconds}
    limit = details.get("max_runtime_seconds")
    if limit:
        evidence["max_runtime_used"] = round(seconds / int(limit), 4)
    return evidence


def job_price(
    ctx: ScanContext, region: str, spec: KindSpec, details: Mapping[str, Any]
) -> tuple[Decimal | None, str]:
    """$/h of the whole job: price x count, summed over instance groups; None if any unknown.

    Managed spot training is priced as an estimate: on-demand x (1 - pricing.spot_savings),
    source "spot-estimate" (see `PriceBook.spot`).
    """
    groups = details.get("instance_groups") or [
        [details.get("instance_type"), details.get("instance_count") or 0]
    ]
    total, sources = Decimal(0), []
    for instance_type, count in groups:
        price = ctx.prices.price(instance_type, region, spec.price_component)
        if details.get("spot"):
            price = ctx.prices.spot(price)
        if price.usd_per_hour is None:
            return None, price.source
        total += price.usd_per_hour * int(count)
        sources.append(price.source)
    return total, combined_source(sources)


# --- utilization ---------------------------------------------------------------------------


def utilization_asks(cfg: Config, kind: str) -> dict[timedelta, list[str]]:
    """The metrics each window of this kind's `utilization_below` rules looks at."""
    asks: dict[timedelta, set[str]] = defaultdict(set)
    for rule in cfg.rules:
        if rule.kind == kind and rule.utilization_below is not None:
            asks[rule.utilization_below.window] |= set(rule.utilization_below.thresholds)
    return {window: sorted(metrics) for window, metrics in sorted(asks.items())}


def job_utilization(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    details: Mapping[str, dict[str, Any]],
    names: Mapping[str, str],
) -> dict[str, dict[str, float]]:
    """Peak utilization per ARN and `utilization_key`, only where metrics cover the window.

    `names`: job name per ARN (the Host dimension names the job as created; an ARN is
    lower-cased by SageMaker).
    """
    asks = utilization_asks(ctx.cfg, spec.name)
    if not asks or not spec.utilization_namespace:
        return {}
    client = ctx.aws.client(target.account, target.region, "cloudwatch")
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for window, metrics in asks.items():
        start = ctx.now - window
        # Only a job that has run the whole window can have stalled for all of it.
        jobs = {
            arn: (names[arn], int(d["instance_count"]))
            for arn, d in details.items()
            if arn in names
            and not d.get("parent_arn")  # a child: its parent is judged
            and (started := parse_time(d.get("started_at")))
            and started <= start
        }
        if not jobs:
            continue
        period = metric_period(window)
        queries, owners = _queries(spec, jobs, metrics, period)
        points = metric_data(client, queries, start, ctx.now)
        series: dict[tuple[str, str], list[list[tuple[datetime, float]]]] = defaultdict(list)
        for query_id, (arn, metric) in owners.items():
            series[(arn, metric)].append(points.get(query_id, []))
        edge = max(METRIC_EDGE, timedelta(seconds=2 * period))
        for (arn, metric), hosts in series.items():
            peak = peak_if_covered(hosts, start, ctx.now, edge)
            if peak is not None:
                found[arn][utilization_key(metric, window)] = peak
    return dict(found)


def _queries(
    spec: KindSpec, jobs: Mapping[str, tuple[str, int]], metrics: Iterable[str], period: int
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """One Maximum query per (job, host algo-1..algo-N, metric); ids map back to (arn, metric)."""
    queries: list[dict[str, Any]] = []
    names: dict[str, tuple[str, str]] = {}
    for arn, (job, count) in jobs.items():
        for host in range(1, max(count, 1) + 1):
            for metric in metrics:
                query_id = f"q{len(queries)}"
                names[query_id] = (arn, metric)
                queries.append(
                    {
                        "Id": query_id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": spec.utilization_namespace,
                                "MetricName": UTILIZATION_METRICS[metric],
                                "Dimensions": [{"Name": "Host", "Value": f"{job}/algo-{host}"}],
                            },
                            "Period": period,
                            "Stat": "Maximum",
                        },
                        "ReturnData": True,
                    }
                )
    return queries, names


def peak_if_covered(
    hosts: Sequence[Sequence[tuple[datetime, float]]],
    start: datetime,
    end: datetime,
    edge: timedelta,
) -> float | None:
    """The peak over every host's points, or None unless every host's points span the window.

    Coverage means a datapoint within `edge` of the window's start and one within `edge` of
    its end, for every host: a host that stopped reporting, or started reporting late, leaves
    part of the window unseen, and an unseen stretch is never taken for a stalled job. (Gaps
    in the middle are accepted: SageMaker hosts report steadily while they are up.)
    """
    if not hosts:
        return None
    for points in hosts:
        if not points or points[0][0] > start + edge or points[-1][0] < end - edge:
            return None
    return max(value for points in hosts for _, value in points)
