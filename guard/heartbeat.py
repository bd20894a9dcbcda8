"""The heartbeat: runs *on* a notebook instance or a Studio JupyterLab app, every 5 minutes.

It asks the local Jupyter server what its kernels, sessions and terminals did and writes the
newest real activity as the tag `cost-guard:last-activity` on its own SageMaker resource,
where the guard reads it (one Resource Groups Tagging API page covers 100 resources). A busy
kernel counts as activity now, and so does a terminal that was used — AWS's auto-stop sample
ignores terminals, so a long job started from a terminal looked idle.

Standard library and boto3 only (both exist on SageMaker's JupyterSystemEnv and in the
SageMaker Distribution images of Studio), no `guard` imports: `cost-guard lifecycle-config`
embeds this file in a lifecycle script.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import urllib.request
from datetime import UTC, datetime
from typing import Any

TAG = "cost-guard:last-activity"
METADATA = "/opt/ml/metadata/resource-metadata.json"  # SageMaker writes it on the instance
NOTEBOOK_SERVER = "https://localhost:8443"  # notebook instances: local TLS, self-signed
STUDIO_SERVER = "http://localhost:8888/jupyterlab/default"  # Studio JupyterLab apps
log = logging.getLogger("cost-guard-heartbeat")


def _get(base_url: str, path: str) -> Any:
    context = ssl.create_default_context()
    # The local Jupyter server of a notebook instance uses a self-signed certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"{base_url.rstrip('/')}{path}", timeout=10, context=context) as r:
        return json.load(r)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _kernel_activity(kernel: dict[str, Any], now: datetime) -> datetime | None:
    if kernel.get("execution_state") == "busy":
        return now  # a long computation logs nothing, but it is work
    return _parse(kernel.get("last_activity"))


def last_activity(base_url: str, now: datetime) -> datetime | None:
    """Newest activity of the server's kernels (also those behind sessions) and terminals;
    `now` while a kernel is busy."""
    kernels = list(_get(base_url, "/api/kernels"))
    kernels += [s["kernel"] for s in _get(base_url, "/api/sessions") if s.get("kernel")]
    seen = [when for k in kernels if (when := _kernel_activity(k, now)) is not None]
    for terminal in _get(base_url, "/api/terminals"):
        if (when := _parse(terminal.get("last_activity"))) is not None:
            seen.append(when)
    return max(seen) if seen else None


def read_metadata(metadata_path: str = METADATA) -> dict[str, Any]:
    with open(metadata_path) as handle:
        return dict(json.load(handle))


def resource_arn(metadata_path: str = METADATA) -> str:
    """This resource's ARN. On Studio, `ResourceArn` spells the app type as in the API
    ("JupyterLab"), while the app's real ARN (DescribeApp's AppArn, where tags attach) has it
    lower-cased, as `ResourceArnCaseSensitive` holds where the metadata has it."""
    metadata = read_metadata(metadata_path)
    arn = str(metadata.get("ResourceArnCaseSensitive") or metadata["ResourceArn"])
    resource, _, path = arn.partition(":app/")
    if not path:
        return arn
    parts = path.split("/")  # domain / space or user / type / name
    if len(parts) == 4:
        parts[2] = parts[2].lower()
    return f"{resource}:app/{'/'.join(parts)}"


def server_url(metadata_path: str = METADATA) -> str:
    """Studio apps' metadata name their AppType; a notebook instance's does not."""
    try:
        studio = "AppType" in read_metadata(metadata_path)
    except (OSError, ValueError):
        studio = False
    return STUDIO_SERVER if studio else NOTEBOOK_SERVER


def beat(sagemaker: Any, arn: str, base_url: str, now: datetime) -> datetime | None:
    """Write the tag when there is newer activity than it holds; return what was written."""
    activity = last_activity(base_url, now)
    if activity is None:
        return None
    activity = activity.replace(microsecond=0)  # the tag holds seconds; compare like with like
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
    current = _parse(tags.get(TAG))
    if current is not None and current >= activity:
        return None  # nothing new: no write, no CloudTrail noise
    stamp = activity.astimezone(UTC).isoformat(timespec="seconds")
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": TAG, "Value": stamp}])
    return activity


def main() -> int:
    import boto3

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    arn = os.environ.get("COST_GUARD_RESOURCE_ARN") or resource_arn()
    base_url = os.environ.get("COST_GUARD_JUPYTER_URL") or server_url()
    region = arn.split(":")[3]
    written = beat(boto3.client("sagemaker", region_name=region), arn, base_url, datetime.now(UTC))
    log.info("heartbeat %s: %s", arn, written.isoformat() if written else "no new activity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
