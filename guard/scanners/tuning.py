"""Hyperparameter tuning and AutoML jobs: the parents of training jobs, listed as what the
person launched and priced as their running children.

Tuning jobs: ListHyperParameterTuningJobs(StatusEquals=InProgress) carries each job's
`TrainingJobStatusCounters` (how many children run now, every cycle, at no extra call); its
record, once per job, ever, gives its training job definition (instance type and count per
child, managed spot): SageMaker `Search` for the new ones by the page (`guard.scanners.search`),
DescribeHyperParameterTuningJob for any Search leaves out.
$/h = price(type, Training) x count x running children.

AutoML jobs choose their candidates' instances themselves, so their running children are found
as the running training jobs naming them (`AutoMLJobArn` in DescribeTrainingJob): one
ListTrainingJobs(StatusEquals=InProgress, created since the oldest running AutoML job; none
when the training-job kind's scan of the same target already listed the running ones) and one
DescribeTrainingJob per training job not seen before by this process. $/h = the sum of those
children's price(type, Training) x count.

The training-job scanner defers to the parent (`JobShape.parents`): a child is not priced or
warned about there. A parent works until it ends, so only its runtime is evidence (`running_for`
rules, schedules); a rule's `stop` stops the parent and with it every running child.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found, pages
from guard.kinds import KindSpec
from guard.model import ActivitySource, Resource
from guard.pricing import combined_source
from guard.scanners import search
from guard.scanners.shared import kind_tags
from guard.scanning import ScanContext, Target, concurrently, list_all, utc
from guard.store import Store

TUNING = "list_hyper_parameter_tuning_jobs"  # the tuning entry's list operation
ZERO = "zero-instances"  # no child runs right now: $0/h, as an endpoint at zero instances


@dataclass(frozen=True)
class Child:
    """A training job as far as pricing its parent goes."""

    parent: str  # the parent's ARN, "" when it has none
    instance_type: str | None
    count: int
    spot: bool


# Training jobs this process has described for their parent, per store (a job's parent,
# instance type and count never change); pruned to the running ones every scan.
_children: weakref.WeakKeyDictionary[Store, dict[str, Child]] = weakref.WeakKeyDictionary()
_children_lock = threading.Lock()


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    listed = list_all(client, target, spec)
    if not listed:
        return
    tags, evidence_error = kind_tags(ctx, target, spec)
    if spec.list_operation == TUNING:
        _tuning_jobs(ctx, target, spec, client, listed, tags, evidence_error)
    else:
        _automl_jobs(ctx, target, spec, client, listed, tags, evidence_error)


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    job: Mapping[str, Any],
    *,
    instance_type: str | None,
    count: int,
    price: tuple[Decimal | None, str],
    tags: dict[str, str],
    evidence_error: str | None,
    details: dict[str, Any],
) -> Resource:
    status = job[spec.status_field]
    running = status in spec.running_states
    started = utc(job.get("CreationTime"))
    if started is not None:
        details = {**details, "runtime_seconds": max(int((ctx.now - started).total_seconds()), 0)}
    return Resource(
        arn=job[spec.arn_field],
        kind=spec.name,
        name=job[spec.name_field],
        account=target.account_id,
        region=target.region,
        status=status,
        running=running,
        instance_type=instance_type,
        instance_count=count,
        usd_per_hour=price[0] if running else Decimal(0),
        price_source=price[1] if running else "not-running",
        created_at=started,
        running_since=started if running else None,
        last_activity=None,  # a job works until it ends: its runtime is the evidence
        activity_source=ActivitySource.UNKNOWN
        if evidence_error
        else ActivitySource.IN_SERVICE_SINCE,
        tags=tags,
        evidence_error=evidence_error,
        details=details,
    )


def _describe(call: Any, **params: Any) -> dict[str, Any] | Exception | None:
    try:
        return dict(call(**params))
    except ClientError as exc:
        return None if not_found(exc) else exc
    except AWS_ERRORS as exc:
        return exc


# --- hyperparameter tuning jobs ----------------------------------------------------------------


def definition_facts(described: Mapping[str, Any]) -> dict[str, Any]:
    """Instance type, count and spot of each child, from the tuning job's training job
    definition(s) (ResourceConfig, or HyperParameterTuningResourceConfig with its first
    InstanceConfigs entry)."""
    definitions = [described["TrainingJobDefinition"]] if described.get(
        "TrainingJobDefinition"
    ) else list(described.get("TrainingJobDefinitions") or [])  # fmt: skip
    types: list[str] = []
    counts: list[int] = []
    spot = False
    for definition in definitions:
        config = definition.get("ResourceConfig") or definition.get(
            "HyperParameterTuningResourceConfig"
        ) or {}  # fmt: skip
        first = (config.get("InstanceConfigs") or [{}])[0]
        instance_type = config.get("InstanceType") or first.get("InstanceType")
        if instance_type:
            types.append(str(instance_type))
        counts.append(int(config.get("InstanceCount") or first.get("InstanceCount") or 1))
        spot = spot or bool(definition.get("EnableManagedSpotTraining"))
    limits = (described.get("HyperParameterTuningJobConfig") or {}).get("ResourceLimits") or {}
    return {
        # several definitions of different types: a running child's type is not known here
        "instance_type": types[0] if len(set(types)) == 1 else "+".join(sorted(set(types))) or None,
        "several_types": len(set(types)) > 1,
        "instance_count_per_child": max(counts) if counts else 1,
        "spot": spot,
        "max_training_jobs": limits.get("MaxNumberOfTrainingJobs"),
        "max_parallel_training_jobs": limits.get("MaxParallelTrainingJobs"),
    }


def _tuning_jobs(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    client: Any,
    listed: list[dict[str, Any]],
    tags: Mapping[str, dict[str, str]],
    evidence_error: str | None,
) -> None:
    known = ctx.store.known_details(
        spec.name, target.account_id, target.region, [job[spec.arn_field] for job in listed]
    )
    facts = {
        arn: known[arn]
        for job in listed
        if (arn := job[spec.arn_field]) in known and "instance_count_per_child" in known[arn]
    }
    new = [job for job in listed if job[spec.arn_field] not in facts]
    try:  # by the page; what Search leaves out is described one by one
        records = search.tuning_records(client, target, spec, new)
    except AWS_ERRORS:
        records = {}  # the Describes below answer for each, and decide what is unknown
    answers = concurrently(
        lambda job: (
            records.get(job[spec.arn_field])
            or _describe(
                getattr(client, spec.describe_operation), **{spec.name_param: job[spec.name_field]}
            )
        ),
        new,
    )
    failed: dict[str, str] = {}
    for job, answer in zip(new, answers, strict=True):
        if isinstance(answer, Exception):
            failed[job[spec.arn_field]] = f"describe failed: {error_text(answer)}"
        elif answer is not None:
            facts[job[spec.arn_field]] = definition_facts(answer)
    if failed:
        target.errors.append(
            f"{target.account_id} {target.region}: {len(failed)} tuning job(s) could not be "
            f"described and are unknown this cycle: {next(iter(failed.values()))}"
        )
    for job in listed:
        arn = job[spec.arn_field]
        if arn not in facts and arn not in failed:
            continue  # gone between the listing and its Describe
        fact = {k: v for k, v in facts.get(arn, {}).items() if k not in ("runtime_seconds",)}
        counters = job.get("TrainingJobStatusCounters") or {}
        running = int(counters.get("InProgress") or 0)
        per_child = int(fact.get("instance_count_per_child") or 1)
        price = _tuning_price(ctx, target, spec, fact, running * per_child)
        target.resources.append(
            _resource(
                ctx, target, spec, job,
                instance_type=fact.get("instance_type"), count=running * per_child, price=price,
                tags=tags.get(arn, {}), evidence_error=evidence_error or failed.get(arn),
                details={
                    **fact,
                    "running_children": running,
                    "completed_children": int(counters.get("Completed") or 0),
                    "billing": f"{running} running training job(s), billed as Training",
                },
            )
        )  # fmt: skip


def _tuning_price(
    ctx: ScanContext, target: Target, spec: KindSpec, fact: Mapping[str, Any], instances: int
) -> tuple[Decimal | None, str]:
    if instances == 0:
        return Decimal(0), ZERO
    if fact.get("several_types") or not fact.get("instance_type"):
        return None, "unknown"
    price = ctx.prices.price(fact["instance_type"], target.region, spec.price_component)
    if fact.get("spot"):
        price = ctx.prices.spot(price)
    if price.usd_per_hour is None:
        return None, price.source
    return price.usd_per_hour * instances, price.source


# --- AutoML jobs ------------------------------------------------------------------------------


def _automl_jobs(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    client: Any,
    listed: list[dict[str, Any]],
    tags: Mapping[str, dict[str, str]],
    evidence_error: str | None,
) -> None:
    running_jobs = [j for j in listed if j[spec.status_field] in spec.running_states]
    children, why = running_children(ctx, target, client, running_jobs, spec)
    for job in listed:
        arn = job[spec.arn_field]
        mine = [c for c in children if c.parent == arn]
        price = _automl_price(ctx, target, spec, mine) if why is None else (None, "unknown")
        types = sorted({c.instance_type for c in mine if c.instance_type})
        details: dict[str, Any] = {
            "running_children": len(mine),
            "secondary_status": job.get("AutoMLJobSecondaryStatus"),
            "billing": f"{len(mine)} running training job(s), billed as Training",
        }
        if why is not None:
            details["price_error"] = why
        target.resources.append(
            _resource(
                ctx, target, spec, job,
                instance_type="+".join(types) or None, count=sum(c.count for c in mine),
                price=price, tags=tags.get(arn, {}), evidence_error=evidence_error,
                details=details,
            )
        )  # fmt: skip


def _automl_price(
    ctx: ScanContext, target: Target, spec: KindSpec, children: list[Child]
) -> tuple[Decimal | None, str]:
    if not children:
        return Decimal(0), ZERO
    total, sources = Decimal(0), []
    for child in children:
        price = ctx.prices.price(child.instance_type, target.region, spec.price_component)
        if child.spot:
            price = ctx.prices.spot(price)
        if price.usd_per_hour is None:
            return None, price.source
        total += price.usd_per_hour * child.count
        sources.append(price.source)
    return total, combined_source(sources)


def running_children(
    ctx: ScanContext,
    target: Target,
    client: Any,
    parents: list[dict[str, Any]],
    spec: KindSpec,
) -> tuple[list[Child], str | None]:
    """The running training jobs whose parent is one of `parents`, and why they could not
    all be found (then the parents' price is unknown; they are listed and judged anyway)."""
    if not parents:
        return [], None
    created = [t for p in parents if (t := utc(p.get("CreationTime"))) is not None]
    oldest = min(created, default=ctx.now - timedelta(days=30))
    with _children_lock:
        seen = _children.setdefault(ctx.store, {})
    after = oldest - timedelta(seconds=1)
    # The running training jobs, as the training-job kind's scan of this target listed them
    # (guard.scanning.list_all keeps it): filtered here instead of listed again.
    shared = target.listings.get(("list_training_jobs", (("StatusEquals", "InProgress"),)))
    try:
        if isinstance(shared, list):
            listed = [j for j in shared if (utc(j.get("CreationTime")) or ctx.now) > after]
        else:
            listed = list(
                pages(
                    client, "list_training_jobs", "TrainingJobSummaries", MaxResults=100,
                    StatusEquals="InProgress", CreationTimeAfter=after,
                )
            )  # fmt: skip
    except AWS_ERRORS as exc:
        return _failed(target, f"ListTrainingJobs failed: {error_text(exc)}")
    with _children_lock:
        new = [job for job in listed if job["TrainingJobArn"] not in seen]
    answers = concurrently(
        lambda job: _describe(client.describe_training_job, TrainingJobName=job["TrainingJobName"]),
        new,
    )
    errors = []
    with _children_lock:
        for job, answer in zip(new, answers, strict=True):
            if isinstance(answer, Exception):
                errors.append(error_text(answer))
            elif answer is not None:
                seen[job["TrainingJobArn"]] = _child(answer)
        running = {job["TrainingJobArn"] for job in listed}
        for arn in [a for a in seen if a not in running]:  # ended: never needed again
            del seen[arn]
        found = [seen[a] for a in running if a in seen]
    if errors:
        return _failed(target, f"{len(errors)} DescribeTrainingJob failed: {errors[0]}")
    return [c for c in found if c.parent], None


def _failed(target: Target, why: str) -> tuple[list[Child], str]:
    target.errors.append(
        f"{target.account_id} {target.region}: running children of AutoML jobs unknown, their "
        f"price is unknown this cycle: {why}"
    )
    return [], why


def _child(described: Mapping[str, Any]) -> Child:
    config = described.get("ResourceConfig") or {}
    instance_type = config.get("SelectedInstanceType") or config.get("InstanceType")
    count = config.get("SelectedInstanceCount") or config.get("InstanceCount") or 1
    return Child(
        parent=str(described.get("AutoMLJobArn") or ""),
        instance_type=str(instance_type) if instance_type else None,
        count=int(count),
        spot=bool(described.get("EnableManagedSpotTraining")),
    )
