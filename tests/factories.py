"""Test data shared by the tests: a notebook as one cycle saw it, and a Guard from rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from guard.config import Config, Secrets
from guard.cycle import Guard
from guard.model import ActivitySource, ManualClock, Resource
from guard.wiring import build_guard


def guard_for(
    clock: ManualClock,
    db_url: str,
    rules: list[dict[str, Any]],
    secrets: Secrets | None = None,
    **settings: Any,
) -> Guard:
    """A Guard with these rules and settings; AWS through boto3's default chain (pointed at
    the simulator by the `aws_env` fixture), no Slack secrets unless given."""
    cfg = Config.model_validate(
        {
            "database_url": db_url,
            "rules": rules,
            "secrets": secrets or Secrets.model_validate({}),
            **settings,
        }
    )
    return build_guard(cfg, clock)


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
