"""What the bill says, per resource and day: the AWS Data Exports Cost and Usage Report 2.0
(or FOCUS 1.0) in S3, read as Parquet with PyArrow (the optional `billing` extra).

Once per local day (`billing.bucket` set), every `.parquet` object under `billing.prefix` is
read; the SageMaker line items are summed per resource id (an ARN) and UTC usage day and stored
in `billed_costs`, replacing the days the export covers (an export restates its month). The
inventory, the budget view and `cost-guard budget` set them against the guard's estimate.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from guard.aws import AWS_ERRORS, Aws, error_text
from guard.config import Config
from guard.store import Store

log = logging.getLogger(__name__)

# (resource id, usage start, cost, service) columns: CUR 2.0 first, then FOCUS 1.0
CUR2 = ("line_item_resource_id", "line_item_usage_start_date", "line_item_unblended_cost",
        "line_item_product_code")  # fmt: skip
FOCUS = ("ResourceId", "ChargePeriodStart", "BilledCost", "ServiceName")
SAGEMAKER = {"AmazonSageMaker", "Amazon SageMaker"}

Billed = dict[tuple[str, date], Decimal]


class BillingUnavailable(RuntimeError):
    """The export cannot be read (no PyArrow installed, an unknown layout)."""


def parse_parquet(data: bytes) -> Billed:
    """One export file -> billed USD per (resource id, UTC day), SageMaker line items only."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # the optional extra is not installed
        raise BillingUnavailable(
            "reading the billing export needs PyArrow: pip install 'sagemaker-cost-guard[billing]'"
        ) from exc
    table = pq.read_table(io.BytesIO(data))
    names = set(table.column_names)
    columns = next((c for c in (CUR2, FOCUS) if set(c) <= names), None)
    if columns is None:
        raise BillingUnavailable(f"not a CUR 2.0 or FOCUS export: columns {sorted(names)[:8]}…")
    rows = table.select(list(columns)).to_pylist()
    found: Billed = defaultdict(Decimal)
    rid, start, cost, service = columns
    for row in rows:
        if row[service] not in SAGEMAKER or not row[rid] or row[cost] is None:
            continue
        try:
            usd = Decimal(str(row[cost]))
        except InvalidOperation:
            continue
        found[(str(row[rid]), _day(row[start]))] += usd
    return dict(found)


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).date()


def read_export(aws: Aws, cfg: Config) -> Billed:
    """Every Parquet file of the configured export, summed."""
    bc = cfg.billing
    account = next((a for a in cfg.accounts if a.id == bc.account), None) if bc.account else None
    s3 = aws.client(account, bc.region, "s3")
    total: Billed = defaultdict(Decimal)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bc.bucket, Prefix=bc.prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".parquet"):
                continue
            body = s3.get_object(Bucket=bc.bucket, Key=obj["Key"])["Body"].read()
            for key, usd in parse_parquet(body).items():
                total[key] += usd
    return dict(total)


def match(billed: Billed, arns: Iterable[str]) -> Billed:
    """Line items matched to the resources the guard knows, by resource id (the ARN; the
    bill's case may differ from the API's)."""
    known = {arn.lower(): arn for arn in arns}
    found: Billed = defaultdict(Decimal)
    for (rid, day), usd in billed.items():
        arn = known.get(rid.lower())
        if arn is not None:
            found[(arn, day)] += usd
    return dict(found)


def refresh(cfg: Config, aws: Aws, store: Store, now: datetime, force: bool = False) -> list[str]:
    """Read the export once per local day; errors for people (the estimate stays)."""
    if not cfg.billing.enabled:
        return []
    midnight = datetime.combine(now.astimezone(cfg.tz).date(), time(), cfg.tz)
    last = store.billed_fetched_at()
    if not force and last is not None and last >= midnight:
        return []
    try:
        billed = read_export(aws, cfg)
    except (BillingUnavailable, *AWS_ERRORS) as exc:
        why = str(exc) if isinstance(exc, BillingUnavailable) else error_text(exc)
        log.warning("billing export s3://%s/%s: %s", cfg.billing.bucket, cfg.billing.prefix, why)
        return [f"billing export s3://{cfg.billing.bucket}/{cfg.billing.prefix}: {why}"]
    matched = match(billed, (r.arn for r in store.resources(include_gone=True)))
    store.save_billed(matched, now)
    log.info("billing export: %d resource-day(s) matched of %d", len(matched), len(billed))
    return []


def reconcile(
    estimated: Mapping[date, Decimal], billed: Mapping[date, Decimal], threshold: float
) -> list[dict[str, Any]]:
    """Per day with a billed figure: estimated vs billed, flagged when they differ by more
    than `threshold` of the billed figure."""
    rows = []
    for day in sorted(billed):
        est, bill = estimated.get(day, Decimal(0)), billed[day]
        diff = est - bill
        flagged = abs(diff) > abs(bill) * Decimal(str(threshold)) if bill else est > 0
        rows.append(
            {
                "day": day.isoformat(),
                "estimated_usd": str(est.quantize(Decimal("0.01"))),
                "billed_usd": str(bill.quantize(Decimal("0.01"))),
                "difference_usd": str(diff.quantize(Decimal("0.01"))),
                "flagged": bool(flagged),
            }
        )
    return rows


def month_range(now: datetime, cfg: Config) -> tuple[date, date]:
    today = now.astimezone(cfg.tz).date()
    return today.replace(day=1), today + timedelta(days=1)
