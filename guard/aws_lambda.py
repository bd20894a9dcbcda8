"""AWS Lambda entry point: one cycle per EventBridge invocation, state in Postgres.

`handler` is `guard.aws_lambda.handler` in the SAM template (deploy/lambda/template.yaml).
The config comes from where the CLI takes it (`COST_GUARD_CONFIG`, then `COST_GUARD_*`
environment variables, secrets from `SLACK_*`), read once per execution environment: the
built `Guard` (database engine, boto3 clients, assumed-role sessions) is kept across warm
invocations. A Lambda's disk is gone between cold starts and not shared by concurrent ones,
so a SQLite `database_url` is refused unless `COST_GUARD_LAMBDA_ALLOW_SQLITE=1` says the file
lives somewhere that persists (an EFS mount).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from sqlalchemy.engine import make_url

from guard.config import Config, ConfigError, config_path, load_config, mask_url
from guard.cycle import Guard, run_cycle
from guard.logs import NOISY, TEXT_FORMAT

log = logging.getLogger(__name__)

ALLOW_SQLITE_ENV = "COST_GUARD_LAMBDA_ALLOW_SQLITE"
_MAX_LISTED = 50  # actions/errors listed in the summary (the counts are always complete)

_guard: Guard | None = None
_lock = threading.Lock()


class LambdaSetupError(RuntimeError):
    """The function cannot run as configured; the message says what to change."""


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Run one cycle and return its summary (what `aws lambda invoke` prints).

    A cycle with scan errors still returns normally (the errors are in the summary and were
    logged); only a guard that cannot start or a cycle that breaks raises, so Lambda's
    Errors metric means "cost-guard is not running".
    """
    guard = _cached_guard()
    request_id = getattr(context, "aws_request_id", None)
    log.info("cycle starting (request %s, mode %s)", request_id, guard.cfg.mode)
    return summarize(run_cycle(guard))


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The cycle report cut down to what fits a log line and an invoke response."""
    summary: dict[str, Any] = {
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
    }
    if "skipped" in report:  # another invocation or replica holds the cycle lock
        return {**summary, "skipped": report["skipped"]}
    actions = report.get("actions", [])
    errors = [str(e) for e in report.get("errors", [])]
    summary.update(
        mode=report.get("mode"),
        resources=report.get("resources", 0),
        running=report.get("running", 0),
        usd_per_hour=str(report.get("usd_per_hour", "0")),
        warnings=report.get("warnings", 0),
        actions=[
            {k: a.get(k) for k in ("kind", "name", "rule", "action", "outcome")}
            for a in actions[:_MAX_LISTED]
        ],
        actions_total=len(actions),
        errors=errors[:_MAX_LISTED],
        errors_total=len(errors),
        duration_seconds=report.get("duration_seconds"),
        api_calls_total=report.get("api_calls_total"),
    )
    return summary


def reset() -> None:
    """Forget the cached Guard (tests; the next invocation builds a new one)."""
    global _guard
    with _lock:
        if _guard is not None:
            _guard.store.close()
        _guard = None


def _cached_guard() -> Guard:
    global _guard
    with _lock:
        if _guard is None:
            _guard = _build()
        return _guard


def _build() -> Guard:
    """Cold start: config, logging, checks, migrations, reconcile. Not repeated when warm."""
    from guard.wiring import build_guard

    try:
        cfg = load_config(config_path(None))
    except ConfigError as exc:
        raise LambdaSetupError(f"invalid configuration:\n{exc}") from None
    _setup_logging()
    check_database(cfg)
    log.info("cold start: mode %s, database %s", cfg.mode, mask_url(cfg.database_url))
    return build_guard(cfg)


def check_database(cfg: Config) -> None:
    """Refuse SQLite on Lambda unless `COST_GUARD_LAMBDA_ALLOW_SQLITE=1`."""
    try:
        backend = make_url(cfg.database_url).get_backend_name()
    except Exception:  # unparsable: the engine reports it (without printing the URL)
        return
    if backend != "sqlite" or os.environ.get(ALLOW_SQLITE_ENV, "").strip() == "1":
        return
    raise LambdaSetupError(
        f"database_url is SQLite ({mask_url(cfg.database_url)}), but a Lambda function's disk "
        "is wiped between cold starts and not shared by concurrent invocations, so snoozes, "
        "grace periods and the audit trail would be lost. Set COST_GUARD_DATABASE_URL to a "
        "Postgres URL (postgresql://user:password@host:5432/dbname, e.g. from Secrets "
        "Manager: the SAM template's DatabaseUrlSecretArn parameter), or set "
        f"{ALLOW_SQLITE_ENV}=1 if the SQLite file is on a persistent EFS mount."
    )


def _setup_logging() -> None:
    """Make the cycle's INFO lines reach CloudWatch once.

    The Lambda runtime puts its own handler on the root logger (it ships lines to
    CloudWatch, as text or JSON per the function's LoggingConfig) but leaves the root level
    at WARNING unless the function sets a log level: add no handler there, only the level.
    Outside Lambda (a local run) there is no handler, so one is added.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=TEXT_FORMAT)
    if not os.environ.get("AWS_LAMBDA_LOG_LEVEL"):  # LoggingConfig.ApplicationLogLevel wins
        root.setLevel(logging.INFO)
    for noisy in NOISY:  # slack_sdk logs request headers (the bot token) at DEBUG
        logging.getLogger(noisy).setLevel(logging.WARNING)
