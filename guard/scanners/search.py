"""Describe-equivalent records by the page: SageMaker `Search`, 100 records per call.

The job and endpoint scanners still list their resources with List* (strongly consistent:
the listing alone says what exists and what runs); what they used to learn with one Describe
per new resource comes from here instead:

- training jobs: `Resource=TrainingJob`, the full job record;
- processing and transform jobs: `Resource=ExperimentTrialComponent`, the trial component
  SageMaker tracks each job as, whose `SourceDetail.ProcessingJob` / `.TransformJob` is the
  full job record;
- hyperparameter tuning jobs: `Resource=HyperParameterTuningJob`, the full job record
  (its training job definitions, which price it);
- endpoints: `Resource=Endpoint`, the record DescribeEndpoint would give (variants and
  their current instance counts). Endpoint configs are not searchable: the endpoint scanner
  still describes each distinct one once, and keeps it with the endpoint's stored details.

Search is eventually consistent, so a record is used only when it is complete and current
(a job's start time and instance type; an endpoint's LastModifiedTime equal to the
listing's); anything listed but not found this way is described as before. Search is used
only when it can save calls (two or more resources to learn about), and paging stops once it
has made as many calls as the Describes it would replace. Search denied (AccessDenied): one
log line and the Describe path, as before. Any other failure is raised: the scanner's kind is
unknown this cycle, as when its listing fails. Missing data never makes anything idle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from guard.kinds import KindSpec
from guard.kinds.jobs import JobShape
from guard.scanning import Target, utc

log = logging.getLogger(__name__)

PAGE = 100  # Search's MaxResults limit
VALUE_LIMIT = 1024  # a Filter's Value: FilterValue is at most 1,024 characters
DENIED = ("AccessDenied", "AccessDeniedException")


def job_records(
    client: Any, target: Target, spec: KindSpec, jobs: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Full records of the listed `jobs` (summaries) by ARN, as Describe*Job gives them; the
    ones Search did not return (or returned incomplete) are left out for a Describe."""
    shape = spec.scanner_config
    if not isinstance(shape, JobShape) or not shape.search_resource or len(jobs) < 2:
        return {}
    resource, path = shape.search_resource, shape.search_path
    wanted = {str(job[spec.arn_field]).lower(): job for job in jobs}
    filters = [_since("CreationTime", [utc(job.get("CreationTime")) for job in jobs])]
    if resource == path[0]:  # the job's own record: only running ones
        running = ",".join(spec.running_states)
        filters.append({"Name": spec.status_field, "Operator": "In", "Value": running})
    else:  # trial components of this kind of job only
        marker = ":" + spec.arn_pattern.split(":")[-1].split("/")[0] + "/"  # ":processing-job/"
        filters.append({"Name": "Source.SourceArn", "Operator": "Contains", "Value": marker})
    found: dict[str, dict[str, Any]] = {}
    for record in _search(client, target, spec, resource, filters, len(wanted)):
        job = _at(record, path)
        if not isinstance(job, dict):
            continue
        arn = str(job.get(spec.arn_field, "")).lower()
        if arn in wanted and _complete(job, shape):
            found[wanted[arn][spec.arn_field]] = job
            if len(found) == len(wanted):
                break
    return found


def tuning_records(
    client: Any, target: Target, spec: KindSpec, jobs: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """DescribeHyperParameterTuningJob-equivalent records of the listed tuning `jobs`
    (summaries) by ARN (`Resource=HyperParameterTuningJob`); those Search did not return, or
    returned without a training job definition (the price), are left out for a Describe."""
    if len(jobs) < 2:
        return {}
    wanted = {str(job[spec.arn_field]).lower(): job for job in jobs}
    filters = [
        _since("CreationTime", [utc(job.get("CreationTime")) for job in jobs]),
        {"Name": spec.status_field, "Operator": "In", "Value": ",".join(spec.running_states)},
    ]
    found: dict[str, dict[str, Any]] = {}
    for record in _search(client, target, spec, "HyperParameterTuningJob", filters, len(wanted)):
        job = record.get("HyperParameterTuningJob")
        if not isinstance(job, dict):
            continue
        listed = wanted.get(str(job.get(spec.arn_field, "")).lower())
        if listed is not None and (
            job.get("TrainingJobDefinition") or job.get("TrainingJobDefinitions")
        ):
            found[listed[spec.arn_field]] = job
            if len(found) == len(wanted):
                break
    return found


def endpoint_records(
    client: Any,
    target: Target,
    spec: KindSpec,
    listed: Sequence[Mapping[str, Any]],
    known: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, Any]]:
    """DescribeEndpoint-equivalent records by ARN for the listed endpoints whose stored
    details are missing or older than their LastModifiedTime (those the scanner would
    describe); only records as current as the listing are returned."""
    stale = {
        str(ep[spec.arn_field]).lower(): ep
        for ep in listed
        if (stamp := utc(ep.get("LastModifiedTime"))) is None
        or (known.get(ep[spec.arn_field]) or {}).get("last_modified") != stamp.isoformat()
    }
    if len(stale) < 2:
        return {}
    stamps = [utc(ep.get("LastModifiedTime")) for ep in stale.values()]
    filters = [_since("LastModifiedTime", stamps)]
    found: dict[str, dict[str, Any]] = {}
    for record in _search(client, target, spec, "Endpoint", filters, len(stale)):
        endpoint = record.get("Endpoint")
        if not isinstance(endpoint, dict):
            continue
        ep = stale.get(str(endpoint.get("EndpointArn", "")).lower())
        if ep is not None and utc(endpoint.get("LastModifiedTime")) == utc(
            ep.get("LastModifiedTime")
        ):
            found[ep[spec.arn_field]] = endpoint
            if len(found) == len(stale):
                break
    return found


def endpoints_named(
    client: Any, target: Target, spec: KindSpec, names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """DescribeEndpoint-equivalent records of the endpoints `names`, by name, whatever their
    LastModifiedTime: for endpoints whose instance count moves without it (managed instance
    scaling under inference components). `EndpointName` `In` a comma-separated list, in
    chunks that fit a filter value (1,024 characters), each one page of up to 100 records;
    a name Search does not return (not indexed yet) is left out for a DescribeEndpoint."""
    if len(names) < 2:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(names), VALUE_LIMIT, PAGE):
        wanted = set(chunk)
        filters = [{"Name": "EndpointName", "Operator": "In", "Value": ",".join(chunk)}]
        for record in _search(client, target, spec, "Endpoint", filters, 1):
            endpoint = record.get("Endpoint")
            if isinstance(endpoint, dict) and endpoint.get("EndpointName") in wanted:
                found[str(endpoint["EndpointName"])] = endpoint
    return found


def _chunks(values: Sequence[str], limit: int, most: int) -> Iterator[list[str]]:
    """`values` in runs whose comma-joined length stays within `limit`, `most` at a time."""
    chunk: list[str] = []
    for value in values:
        if chunk and (len(",".join([*chunk, value])) > limit or len(chunk) >= most):
            yield chunk
            chunk = []
        chunk.append(value)
    if chunk:
        yield chunk


def _search(
    client: Any,
    target: Target,
    spec: KindSpec,
    resource: str,
    filters: list[dict[str, str]],
    budget: int,
) -> Iterator[dict[str, Any]]:
    """SearchRecords page by page, oldest first (what is created while paging comes last),
    at most `budget` calls: beyond that the Describes it replaces are no dearer."""
    params: dict[str, Any] = {
        "Resource": resource,
        "SearchExpression": {"Filters": [f for f in filters if f]},
        "SortBy": "CreationTime",
        "SortOrder": "Ascending",
        "MaxResults": PAGE,
    }
    if not params["SearchExpression"]["Filters"]:
        del params["SearchExpression"]
    for _ in range(budget):
        try:
            page = client.search(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in DENIED:
                raise  # the scanner's kind is unknown this cycle, as for a failed listing
            log.warning(
                "%s %s: sagemaker:Search denied, %ss are described one by one "
                "(grant sagemaker:Search to read them by the page)",
                target.account_id, target.region, spec.title,
            )  # fmt: skip
            return
        yield from page.get("Results", [])
        token = page.get("NextToken")
        if not token:
            return
        params["NextToken"] = token


def _since(field: str, times: Sequence[datetime | None]) -> dict[str, str]:
    """`field` at or after the oldest of `times` (no filter if one is unknown)."""
    if not times or any(t is None for t in times):
        return {}
    oldest = min(t for t in times if t is not None)
    return {"Name": field, "Operator": "GreaterThanOrEqualTo", "Value": oldest.isoformat()}


def _at(record: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _complete(job: Mapping[str, Any], shape: JobShape) -> bool:
    """A record indexed before the job started lacks its start time; one without an instance
    type would cache a job without a price: both are described instead."""
    started = _at(job, shape.started_at[0].split("."))
    typed = any(_at(job, p.split(".")) for p in shape.instance_type) or (
        shape.instance_groups is not None and _at(job, shape.instance_groups.split("."))
    )
    return started is not None and bool(typed)
