"""Test data shared by the pure tests: a notebook as one cycle saw it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.model import ActivitySource, Resource


def notebook(now: datetime, name: str = "nb", **changes: Any) -> Resource:
    """An ml.m5.xlarge notebook, InService for 8 h, last Jupyter use 3 h before `now`."""
    values: dict[str, Any] = dict(
        arn=f"arn:aws:sagemaker:us-east-1:123456789012:notebook-instance/{name}",
        kind="notebook",
        name=name,
        account="123456789012",
        region="us-east-1",
        status="InService",
        running=True,
        instance_type="ml.m5.xlarge",
        instance_count=1,
        usd_per_hour=Decimal("0.23"),
        price_source="bundled",
        created_at=now - timedelta(hours=8),
        running_since=now - timedelta(hours=8),
        last_activity=now - timedelta(hours=3),
        activity_source=ActivitySource.JUPYTER_LOG,
        tags={"owner": "ada@example.com"},
    )
    values.update(changes)
    return Resource(**values)
