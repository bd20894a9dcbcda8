"""What every scanner shares: the scan target, the context, paging, tags and metrics.

Calls grow with pages, not resources: list calls page by 100, tags come from the Resource
Groups Tagging API (100 per page), metrics from GetMetricData (500 queries per call).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, Aws, pages
from guard.config import Account, Config
from guard.kinds import KindSpec
from guard.model import Finding, Resource, ScanResult
from guard.pricing import PriceBook
from guard.store import Store

T = TypeVar("T")
R = TypeVar("R")

DESCRIBE_WORKERS = 4
METRIC_QUERIES_PER_CALL = 500  # GetMetricData's limit
METRIC_POINTS_PER_CALL = 100_800  # GetMetricData's limit on datapoints returned per call


@dataclass
class TagReads:
    """The tags read in this scan of a target (`guard.scanners.shared.kind_tags`), kept as
    {ARN: {key: value}} rather than as the API's pages: every kind reads from the one mapping,
    and its resources share its dicts (the pages' per-tag {"Key", "Value"} dicts are dropped
    as each page is read)."""

    # by the ResourceTypeFilters of a shared paged read, or the error it failed with
    by_type: dict[tuple[str, ...], dict[str, dict[str, str]] | Exception] = field(
        default_factory=dict
    )
    asked: set[str] = field(default_factory=set)  # ARNs read by ARN in this scan
    by_arn: dict[str, dict[str, str]] = field(default_factory=dict)  # and the tags found


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
    findings: list[Finding] = field(default_factory=list)
    # Listings of this scan by (operation, params), or the error they failed with: two kinds
    # that list the same thing (notebooks, and the storage of stopped ones) call AWS once.
    listings: dict[tuple[str, tuple[tuple[str, Any], ...]], list[dict[str, Any]] | Exception] = (
        field(default_factory=dict)
    )
    tags: TagReads = field(default_factory=TagReads)
    # What one kind's scan leaves for a later kind's in this target, besides listings and
    # tags: the endpoint configs the endpoint scan read, for the inference components'.
    shared: dict[str, Any] = field(default_factory=dict)

    def take(self, order: tuple[int, int]) -> ScanResult:
        """What the scan found since the last `take` (a kind's part of the target, at `order`
        in the scan), handed over to be saved and judged while the target's other kinds are
        scanned: the target keeps only what later kinds share (listings, tags, `shared`)."""
        part = ScanResult(
            self.resources, self.errors, self.scanned, self.cursors, self.findings, order
        )
        self.resources, self.errors, self.scanned = [], [], set()
        self.cursors, self.findings = [], []
        return part


@dataclass(frozen=True)
class ScanContext:
    cfg: Config
    aws: Aws
    store: Store
    prices: PriceBook
    now: datetime


def list_all(
    client: Any,
    target: Target,
    spec: KindSpec,
    keep: Callable[[dict[str, Any]], bool] = lambda item: True,
) -> list[dict[str, Any]]:
    """Every resource of a kind (100 per page, with the kind's list filters), and the listing
    recorded as complete: only a complete listing may mark resources gone."""
    found = listing(client, target, spec.list_operation, spec.list_key, **spec.list_params)
    listed = [item for item in found if keep(item)]
    target.scanned.add((target.account_id, target.region, spec.name))
    return listed


def listing(client: Any, target: Target, operation: str, key: str, **params: Any) -> list[Any]:
    """Every item of a List* call (100 per page), once per scan of `target` whichever kind asks
    first (Studio apps and spaces are read by the Studio kind and by the storage kind); a
    failure is raised to every caller, without calling again."""
    cache_key = _listing_key(operation, params)
    if cache_key not in target.listings:
        try:
            target.listings[cache_key] = list(
                pages(client, operation, key, MaxResults=100, **params)
            )
        except AWS_ERRORS as exc:
            target.listings[cache_key] = exc  # the next kind listing it fails the same, uncalled
    found = target.listings[cache_key]
    if isinstance(found, Exception):
        raise found
    return found


def listing_key(spec: KindSpec) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """Where `list_all` keeps a kind's listing in `Target.listings` (a scanner that builds
    the same listing another way, e.g. the jobs' changes since the last one, puts it there)."""
    return _listing_key(spec.list_operation, spec.list_params)


def _listing_key(
    operation: str, params: Mapping[str, Any]
) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return (operation, tuple(sorted(params.items())))


def concurrently(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`fn` over `items` on a few threads, results in order: for the Describe calls of new
    resources, which cannot be batched. Few workers, because every account and region is
    already being scanned in parallel and adaptive retries absorb throttling."""
    if len(items) < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(DESCRIBE_WORKERS, thread_name_prefix="describe") as pool:
        return list(pool.map(fn, items))


def rule_windows(cfg: Config, kind: str, selector: str) -> list[timedelta]:
    """The windows the rules of `kind` look back over with `selector` (e.g. idle_for)."""
    return sorted(
        {window for rule in cfg.rules if rule.kind == kind and (window := getattr(rule, selector))}
    )


def metric_period(window: timedelta, queries_per_call: int = METRIC_QUERIES_PER_CALL) -> int:
    """A period (seconds, a multiple of 60) that keeps a full batch under the datapoint cap."""
    points_per_query = METRIC_POINTS_PER_CALL // queries_per_call
    seconds = int(window.total_seconds()) // points_per_query + 1
    return max(60, -(-seconds // 60) * 60)


def metric_data(
    client: Any,
    queries: Sequence[dict[str, Any]],
    start: datetime,
    end: datetime,
) -> dict[str, list[tuple[datetime, float]]]:
    """GetMetricData for many queries, 500 per call, following NextToken.

    Returns (timestamp, value) points per query Id, oldest first. A query with no data has
    an empty list: the caller decides what "no datapoints" means (it is not always idleness).
    """
    points: dict[str, list[tuple[datetime, float]]] = {q["Id"]: [] for q in queries}
    for first in range(0, len(queries), METRIC_QUERIES_PER_CALL):
        params: dict[str, Any] = {
            "MetricDataQueries": list(queries[first : first + METRIC_QUERIES_PER_CALL]),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        while True:
            page = client.get_metric_data(**params)
            for result in page.get("MetricDataResults", []):
                if result.get("StatusCode") in ("Forbidden", "InternalError"):
                    # One query failing inside a successful call would otherwise read as "no
                    # datapoints" — as idleness. Fail the whole batch: its resources are unknown.
                    raise ClientError(
                        {"Error": {"Code": result["StatusCode"], "Message": _messages(page)}},
                        "GetMetricData",
                    )
                series = points.setdefault(result["Id"], [])
                series.extend(
                    (_utc_required(when), float(value))
                    for when, value in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=False
                    )
                )
            token = page.get("NextToken")
            if not token:
                break
            params["NextToken"] = token
    for series in points.values():
        series.sort()
    return points


def utc(when: datetime | None) -> datetime | None:
    return when.astimezone(UTC) if when else None


def _messages(page: dict[str, Any]) -> str:
    texts = [m.get("Value", "") for m in page.get("Messages", [])]
    return "; ".join(t for t in texts if t) or "a metric query was not answered"


def _utc_required(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
