"""What an instance costs per hour, by (instance type, region, component).

Lookup order, per price: the AWS Price List API price cached in the database (`prices` table)
-> the bundled table `guard/data/prices.csv` (sourced on-demand prices, each row naming its
source and date) -> *unknown*. An unknown price is counted and shown as unknown, never as $0.

The cache is filled by `refresh_prices` (one paginated `pricing:GetProducts` query per
configured region); every attempt is recorded in `price_refreshes`. A failed refresh leaves
the cached prices as they were. `cycle_prices` applies the refresh policy
(`pricing.refresh_every`, `pricing.retry_after`) and builds the cycle's `PriceBook`, which
holds everything in memory: one dict lookup per resource.

What the parser relies on in a `GetProducts` PriceList item (ServiceCode `AmazonSageMaker`):
- `product.attributes.locationType` must be "AWS Region" (Outposts / Local Zone SKUs are
  skipped); `regionCode` names the region;
- the instance type is `instanceName` (else `instanceType` before any "-suffix", else the part
  of `usagetype` after ":"), kept only when it starts with "ml.";
- the component comes from `platoinstancetype`, else `component`, else the `usagetype`
  operation (`USE1-Host:ml.m5.xlarge`, `USE1-Studio:JupyterLab-ml.t3.medium`, ...). Values
  vary in case and punctuation ("Studio-JupyterLab", "studio-codeeditor"), so they are
  compared with case and punctuation removed. Components we do not bill by (asynchronous
  inference, Data Wrangler, RStudio, HyperPod, "SpotTraining", free-tier SKUs...) are skipped;
- prices are the `terms.OnDemand.*.priceDimensions.*` with unit "Hrs" and a USD price > 0.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from guard.aws import AWS_ERRORS, Aws, error_text, pages
from guard.config import Config, PricingConfig
from guard.kinds import price_list_components, price_usage_operations
from guard.tables import PriceRefreshRow, PriceRow

if TYPE_CHECKING:
    from guard.model import Resource
    from guard.store import Store

log = logging.getLogger(__name__)

API = "api"
BUNDLED = "bundled"
UNKNOWN = "unknown"
SPOT_ESTIMATE = "spot-estimate"

SERVICE_CODE = "AmazonSageMaker"
PAGE_SIZE = 100  # GetProducts' MaxResults limit

Key = tuple[str, str, str]  # (instance type, region, component)


@dataclass(frozen=True)
class Price:
    usd_per_hour: Decimal | None
    source: str  # "api" | "bundled" | "unknown" | "spot-estimate"


@cache
def bundled_prices() -> dict[Key, Decimal]:
    table: dict[Key, Decimal] = {}
    text = resources.files("guard").joinpath("data/prices.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(io.StringIO(text)):
        key = (row["instance_type"], row["region"], row["component"])
        table[key] = Decimal(row["usd_per_hour"])
    return table


def combined_source(sources: Iterable[str]) -> str:
    """The source of a sum of prices (endpoint variants, job instance groups): the weakest."""
    seen = set(sources)
    for weakest in (UNKNOWN, BUNDLED, SPOT_ESTIMATE):
        if weakest in seen:
            return weakest
    return API if seen else UNKNOWN


# --- status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceStatus:
    """Where this cycle's prices come from, said plainly."""

    source: str  # "api" when cached API prices are in use, else "bundled"
    fetched_at: datetime | None  # when the cached API prices were fetched
    status: str  # one sentence for people
    api_error: str | None = None  # the last refresh's error while the API is unavailable
    failing_since: datetime | None = None


def _utc(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


_DEFAULT_SPOT_SAVINGS = PricingConfig().spot_savings

BUNDLED_ONLY = PriceStatus(
    source=BUNDLED,
    fetched_at=None,
    status="Prices from the bundled table (pricing.source: bundled); "
    "the AWS Price List API is not used.",
)


class PriceBook:
    """Looks prices up in memory; one instance per cycle.

    `PriceBook()` is the bundled table alone; `PriceBook.load(store, cfg)` adds the prices
    cached from the AWS Price List API (which win over the bundled ones).
    """

    def __init__(
        self,
        table: Mapping[Key, Decimal] | None = None,
        *,
        api: Mapping[Key, Decimal] | None = None,
        status: PriceStatus = BUNDLED_ONLY,
        spot_savings: Decimal = _DEFAULT_SPOT_SAVINGS,
    ) -> None:
        self._table = bundled_prices() if table is None else table
        self._api = api or {}
        self.status = status
        self.spot_savings = spot_savings

    @classmethod
    def load(cls, store: Store, cfg: Config) -> PriceBook:
        """The book for one cycle: the cached API prices (unless `pricing.source: bundled`)
        over the bundled table, and the status of the API source."""
        savings = cfg.pricing.spot_savings
        if cfg.pricing.source == BUNDLED:
            return cls(status=BUNDLED_ONLY, spot_savings=savings)
        api = cached_prices(store)
        return cls(api=api, status=_api_status(store, bool(api)), spot_savings=savings)

    def price(self, instance_type: str | None, region: str, component: str) -> Price:
        if instance_type is None:
            return Price(None, UNKNOWN)
        key = (instance_type, region, component)
        value = self._api.get(key)
        if value is not None:
            return Price(value, API)
        value = self._table.get(key)
        if value is not None:
            return Price(value, BUNDLED)
        return Price(None, UNKNOWN)

    def spot(self, on_demand: Price) -> Price:
        """A managed spot training price, estimated from the on-demand one.

        SageMaker bills spot training for `BillableTimeInSeconds`, less than the time it ran,
        and states the saving as (1 - BillableTimeInSeconds / TrainingTimeInSeconds); AWS
        says managed spot training can "optimize the cost of training models up to 90% over
        on-demand instances"
        (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html).
        The actual saving is known only after the job, so $/h while it runs is on-demand x
        (1 - `pricing.spot_savings`), labelled "spot-estimate".
        """
        if on_demand.usd_per_hour is None:
            return on_demand
        return Price(on_demand.usd_per_hour * (1 - self.spot_savings), SPOT_ESTIMATE)


def prices_report(
    book: PriceBook, resources: Sequence[Resource], refresh: RefreshResult | None = None
) -> dict[str, Any]:
    """`report["prices"]`: where prices came from and how many running resources have none."""
    running = [r for r in resources if r.running]
    by_source: Counter[str] = Counter({API: 0, BUNDLED: 0, UNKNOWN: 0})
    for res in running:
        by_source[UNKNOWN if res.usd_per_hour is None else res.price_source] += 1
    status = book.status
    report: dict[str, Any] = {
        "source": status.source,
        "fetched_at": status.fetched_at.isoformat() if status.fetched_at else None,
        "status": status.status,
        "unknown": sum(1 for r in running if r.usd_per_hour is None),
        "by_source": dict(sorted(by_source.items())),
    }
    if refresh is not None:
        report["refresh"] = refresh.summary()
    return report


# --- the cache ----------------------------------------------------------------------------


def cached_prices(store: Store) -> dict[Key, Decimal]:
    with store.session() as s:
        rows = s.execute(
            select(PriceRow.instance_type, PriceRow.region, PriceRow.component,
                   PriceRow.usd_per_hour)
        )  # fmt: skip
        return {(t, r, c): Decimal(v) for t, r, c, v in rows}


@dataclass(frozen=True)
class _History:
    last_ok: datetime | None  # the newest successful refresh (or the newest cached price)
    last_failure: PriceRefreshRow | None  # the newest failed attempt
    failing_since: datetime | None  # first failure after the last success, if still failing


def _history(store: Store) -> _History:
    with store.session() as s:
        last_ok = s.scalar(select(func.max(PriceRefreshRow.at)).where(PriceRefreshRow.ok))
        if last_ok is None:  # attempts pruned: the cache itself says when it was fetched
            last_ok = s.scalar(select(func.max(PriceRow.fetched_at)))
        last_failure = s.scalars(
            select(PriceRefreshRow)
            .where(PriceRefreshRow.ok.is_(False))
            .order_by(PriceRefreshRow.at.desc(), PriceRefreshRow.id.desc())
            .limit(1)
        ).first()
        failing_since = None
        if last_failure is not None and (last_ok is None or last_failure.at > last_ok):
            since = select(func.min(PriceRefreshRow.at)).where(PriceRefreshRow.ok.is_(False))
            if last_ok is not None:
                since = since.where(PriceRefreshRow.at > last_ok)
            failing_since = s.scalar(since)
        return _History(_aware(last_ok), last_failure, _aware(failing_since))


def _aware(when: datetime | None) -> datetime | None:
    # max()/min() bypass the column type on SQLite: naive there, UTC by construction
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def _api_status(store: Store, cached: bool) -> PriceStatus:
    history = _history(store)
    source = API if cached else BUNDLED
    fetched = history.last_ok if cached else None
    if history.failing_since is not None and history.last_failure is not None:
        error = history.last_failure.detail
        fallback = (
            f"using the prices fetched {_utc(fetched)}, bundled where missing"
            if fetched
            else "using bundled prices"
        )
        return PriceStatus(
            source=source,
            fetched_at=fetched,
            status=f"Price List API unavailable ({error}) since "
            f"{_utc(history.failing_since)}; {fallback}.",
            api_error=error,
            failing_since=history.failing_since,
        )
    if fetched is None:
        return PriceStatus(
            source=BUNDLED,
            fetched_at=None,
            status="No prices fetched from the AWS Price List API yet; using bundled prices.",
        )
    return PriceStatus(
        source=API,
        fetched_at=fetched,
        status=f"Prices from the AWS Price List API, fetched {_utc(fetched)}; "
        "bundled where the API has none.",
    )


# --- refreshing -----------------------------------------------------------------------------


@dataclass
class RefreshResult:
    """One attempt to refresh the cache from the Price List API."""

    at: datetime
    ok: bool
    prices: int = 0  # how many prices were stored
    by_region: dict[str, dict[str, int]] = field(default_factory=dict)  # region -> component -> n
    skipped: dict[str, int] = field(default_factory=dict)  # why items were not used -> count
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "ok": self.ok, "prices": self.prices,
                "error": self.error}  # fmt: skip


def refresh_due(cfg: Config, store: Store, now: datetime) -> bool:
    """Whether a cycle should refresh now: the source is the API, the newest successful
    refresh is older than `refresh_every`, and the last failure is older than `retry_after`."""
    if cfg.pricing.source != API:
        return False
    history = _history(store)
    if history.last_ok is not None and now - history.last_ok < cfg.pricing.refresh_every:
        return False
    failure = history.last_failure
    return failure is None or now - failure.at >= cfg.pricing.retry_after


def refresh_prices(cfg: Config, aws: Aws, store: Store, now: datetime) -> RefreshResult:
    """Fetch every configured region's SageMaker instance prices and store them, whatever the
    age of the cache (the cycle's policy is `refresh_due`). All or nothing: when any call
    fails, nothing is written but the attempt, and the cached prices stay in use."""
    try:
        client = aws.client(None, cfg.pricing.api_region, "pricing")
        found: dict[Key, tuple[Decimal, str]] = {}
        skipped: Counter[str] = Counter()
        for region in cfg.regions:
            for item in _products(client, region):
                parsed = parse_price_item(item)
                if isinstance(parsed, str):
                    skipped[parsed] += 1
                    continue
                key, usd, usage_type = parsed
                if key[1] != region:
                    skipped["other region"] += 1
                    continue
                # Two SKUs for one key: keep the higher price (never understate a cost).
                if key not in found or usd > found[key][0]:
                    found[key] = (usd, usage_type)
    except AWS_ERRORS as exc:
        return _failed(store, now, error_text(exc), cfg)
    except (ValueError, KeyError, TypeError) as exc:  # an answer we cannot read
        return _failed(store, now, f"unreadable Price List API answer: {exc!r}", cfg)
    if not found:
        regions = ", ".join(cfg.regions)
        return _failed(store, now, f"the Price List API has no SageMaker prices for {regions}", cfg)
    by_region: dict[str, Counter[str]] = defaultdict(Counter)
    for _, region, component in found:
        by_region[region][component] += 1
    _store_prices(store, found, now, cfg)
    result = RefreshResult(
        at=now,
        ok=True,
        prices=len(found),
        by_region={r: dict(sorted(c.items())) for r, c in sorted(by_region.items())},
        skipped=dict(sorted(skipped.items())),
    )
    log.info("stored %d prices from the AWS Price List API (%s)", len(found),
             ", ".join(f"{r}: {sum(c.values())}" for r, c in result.by_region.items()))  # fmt: skip
    return result


def cycle_prices(
    cfg: Config, aws: Aws, store: Store, now: datetime
) -> tuple[PriceBook, RefreshResult | None]:
    """The cycle's book: refresh first when due, then load the cache."""
    refreshed = None
    if refresh_due(cfg, store, now):
        try:
            refreshed = refresh_prices(cfg, aws, store, now)
        except Exception as exc:  # a bug in pricing must not stop the cycle from acting
            log.exception("price refresh failed")
            refreshed = _failed(store, now, f"{type(exc).__name__}: {exc}", cfg)
    if refreshed is not None and not refreshed.ok:
        log.warning("AWS Price List API refresh failed (%s); next try after %s",
                    refreshed.error, cfg.pricing.retry_after)  # fmt: skip
    return PriceBook.load(store, cfg), refreshed


def _products(client: Any, region: str) -> Iterable[Any]:
    filters = [
        {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
    ]
    return pages(
        client, "get_products", "PriceList",
        ServiceCode=SERVICE_CODE, Filters=filters, FormatVersion="aws_v1",
        PaginationConfig={"PageSize": PAGE_SIZE},
    )  # fmt: skip


def _failed(store: Store, now: datetime, error: str, cfg: Config) -> RefreshResult:
    error = error[:500]
    with store.session() as s:
        _record_attempt(s, now, ok=False, count=0, detail=error, cfg=cfg)
    return RefreshResult(at=now, ok=False, error=error)


def _record_attempt(
    s: Session, now: datetime, *, ok: bool, count: int, detail: str, cfg: Config
) -> None:
    s.add(PriceRefreshRow(at=now, ok=ok, prices=count, detail=detail))
    # the attempts are history: kept as long as the rest of it
    s.execute(delete(PriceRefreshRow).where(PriceRefreshRow.at < now - cfg.history_retention))


def _store_prices(
    store: Store, found: Mapping[Key, tuple[Decimal, str]], now: datetime, cfg: Config
) -> None:
    regions = sorted({region for _, region, _ in found})
    with store.session() as s:
        existing = {
            (row.instance_type, row.region, row.component): row
            for row in s.scalars(select(PriceRow).where(PriceRow.region.in_(regions)))
        }
        for key, (usd, usage_type) in found.items():
            row = existing.get(key)
            if row is None:
                instance_type, region, component = key
                s.add(
                    PriceRow(
                        instance_type=instance_type, region=region, component=component,
                        usd_per_hour=usd, usage_type=usage_type, fetched_at=now,
                    )
                )  # fmt: skip
            else:
                row.usd_per_hour, row.usage_type, row.fetched_at = usd, usage_type, now
        detail = f"{len(found)} prices for {', '.join(regions)}"
        _record_attempt(s, now, ok=True, count=len(found), detail=detail, cfg=cfg)


# --- parsing one PriceList item ---------------------------------------------------------------

_LETTERS = re.compile(r"[^a-z0-9]")


def _norm(value: str) -> str:
    return _LETTERS.sub("", value.lower())


# platoinstancetype / component values (normalized) -> our component names, and usage type
# operations (`USE1-Host:ml.m5.xlarge` -> "host") -> component: each kind's entry declares its
# own (`KindSpec.price_list_components`, `price_usage_operations`).
_COMPONENTS = price_list_components()
_USAGE_OPERATIONS = price_usage_operations()
# Studio apps (`Studio:JupyterLab-ml.t3.medium`) and RStudio (`RStudio:RSessionGateway-ml.…`)
_STUDIO_USAGE = re.compile(r"^R?Studio:([A-Za-z]+)-(ml\..+)$")
# An hourly item billed per session or size, not per ml. instance (`Canvas:Session-Hrs`):
# keyed by "<operation>-<what>", lower case ("canvas-session"), as the kinds look it up.
_PER_HOUR_ITEM = re.compile(r"^([A-Za-z]+):([A-Za-z]+)-Hrs$")


def parse_price_item(item: str | Mapping[str, Any]) -> tuple[Key, Decimal, str] | str:
    """One `GetProducts` PriceList item -> ((type, region, component), $/h, usage type), or
    the reason it is not used."""
    data = json.loads(item) if isinstance(item, str) else item
    attrs: Mapping[str, str] = data.get("product", {}).get("attributes", {})
    if attrs.get("locationType", "AWS Region") != "AWS Region":
        return "not an AWS Region"
    region = attrs.get("regionCode")
    if not region:
        return "no region"
    usage_type = attrs.get("usagetype", "")
    component, usage_instance = _component(attrs, usage_type)
    if component is None:
        return "component not used"
    instance_type = _instance_type(attrs) or usage_instance or _per_hour_item(usage_type)
    if not instance_type:
        return "not an ml. instance"
    usd = _hourly_usd(data.get("terms", {}).get("OnDemand", {}))
    if usd is None:
        return "no hourly on-demand price"
    return (instance_type, region, component), usd, usage_type


def _component(attrs: Mapping[str, str], usage_type: str) -> tuple[str | None, str | None]:
    """Our component name, and the instance type the usage type names (if any)."""
    head, _, rest = usage_type.partition(":")
    operation = head.rsplit("-", 1)[-1]  # "USE1-Host" -> "Host"
    studio = _STUDIO_USAGE.match(f"{operation}:{rest}")
    usage_instance = studio.group(2) if studio else rest if rest.startswith("ml.") else None
    for name in ("platoinstancetype", "component"):
        value = attrs.get(name)
        if value:  # the first attribute present decides: "SpotTraining" is not "Training"
            return _COMPONENTS.get(_norm(value)), usage_instance
    if studio:
        return _COMPONENTS.get(_norm(f"studio{studio.group(1)}")), usage_instance
    return _USAGE_OPERATIONS.get(operation.lower()), usage_instance


def _per_hour_item(usage_type: str) -> str | None:
    """`USE1-Canvas:Session-Hrs` -> "canvas-session"; None for anything else."""
    head, _, rest = usage_type.partition(":")
    found = _PER_HOUR_ITEM.match(f"{head.rsplit('-', 1)[-1]}:{rest}")
    return f"{found.group(1)}-{found.group(2)}".lower() if found else None


def _instance_type(attrs: Mapping[str, str]) -> str | None:
    for name in ("instanceName", "instanceType"):
        value = attrs.get(name, "").split("-")[0]
        if value.startswith("ml."):
            return value
    return None


def _hourly_usd(on_demand: Mapping[str, Any]) -> Decimal | None:
    best: Decimal | None = None
    for term in on_demand.values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit") != "Hrs":
                continue
            try:
                usd = Decimal(str(dimension.get("pricePerUnit", {}).get("USD", "")))
            except InvalidOperation:
                continue
            if usd > 0 and (best is None or usd > best):
                best = usd
    return best
