"""Logging for the CLI and the daemon: plain text for people, or one JSON object per line for
log collectors (`log_format: json`, or `COST_GUARD_LOG_FORMAT=json` before the config loads).

A record's `extra=` fields become top-level JSON keys, e.g. the cycle line:
`{"time": ..., "level": "INFO", "logger": "guard.cycle", "message": "cycle done: ...",
"event": "cycle", "instance": "host:42", "resources": 12, "running": 7, ...}`.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import date, datetime
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Quiet even with --verbose: slack_sdk logs request headers (the bot token) at DEBUG, botocore
# logs signed requests. Secrets must never reach a log line.
NOISY = (
    "botocore", "boto3", "urllib3", "apscheduler.executors", "apscheduler.scheduler",
    "werkzeug", "alembic", "slack_sdk", "slack_bolt",
)  # fmt: skip


class _JsonFormatter(JsonFormatter):
    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # "time" first: what a person reading raw lines looks for
        return {"time": log_data.pop("time", None), **log_data}


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def env_format() -> LogFormat:
    """The format asked for in the environment (the config file is not read yet)."""
    value = os.environ.get("COST_GUARD_LOG_FORMAT", "").strip().lower()
    return "json" if value == "json" else "text"


def setup(verbose: bool = False, fmt: LogFormat = "text") -> None:
    """(Re)configure the root logger: one stderr handler in the given format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            _JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601 in UTC, with microseconds
                json_default=_jsonable,  # Decimal, datetime in extras
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler._cost_guard = True  # type: ignore[attr-defined]  # ours: replaced on a re-setup
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_cost_guard", False)]
    # Like logging.basicConfig: when someone else configured logging (a host application,
    # pytest's capture), leave their handlers alone and add none.
    if len(ours) == len(root.handlers):
        for old in ours:
            root.removeHandler(old)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
