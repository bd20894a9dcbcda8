"""A small AWS Data Exports Cost and Usage Report 2.0 in the simulator's S3: Parquet files with
CUR 2.0's column names, one line item per resource and hour, for tests and the demo."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class LineItem:
    resource_id: str  # the resource's ARN, as CUR 2.0 names it
    start: datetime  # the usage hour
    usd: Decimal
    usage_type: str = "USE1-Notebk:ml.m5.xlarge"
    product_code: str = "AmazonSageMaker"
    account: str = "123456789012"


def cur2_parquet(items: Iterable[LineItem]) -> bytes:
    """A CUR 2.0 Parquet file of `items` (a subset of its ~120 columns, same names/types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(items)
    table = pa.table(
        {
            "bill_payer_account_id": [r.account for r in rows],
            "line_item_usage_account_id": [r.account for r in rows],
            "line_item_line_item_type": ["Usage"] * len(rows),
            "line_item_product_code": [r.product_code for r in rows],
            "line_item_usage_type": [r.usage_type for r in rows],
            "line_item_resource_id": [r.resource_id for r in rows],
            "line_item_usage_start_date": pa.array(
                [r.start.astimezone(UTC) for r in rows], pa.timestamp("ms", tz="UTC")
            ),
            "line_item_usage_amount": [1.0] * len(rows),
            "line_item_unblended_cost": [float(r.usd) for r in rows],
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def put_cur_export(
    s3: Any, bucket: str, prefix: str, items: Iterable[LineItem], part: int = 1
) -> str:
    """Write one Parquet part of an export under `prefix` (CUR 2.0's layout:
    <prefix>/data/BILLING_PERIOD=YYYY-MM/<name>-0000N.snappy.parquet)."""
    rows = list(items)
    period = (rows[0].start if rows else datetime.now(UTC)).strftime("%Y-%m")
    key = f"{prefix.rstrip('/')}/data/BILLING_PERIOD={period}/cost-guard-{part:05d}.snappy.parquet"
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=cur2_parquet(rows))
    return key
