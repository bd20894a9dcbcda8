"""What is running: one scan of every enabled kind in every account and region.

Accounts and regions are scanned concurrently on a bounded pool; each kind's scanner lives in
`guard/scanners/`. A failed call never makes a resource look idle: its resources are
`unknown` for this cycle, or (when the listing itself failed) not judged at all, and one
account or region failing never stops the others.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from guard.aws import AWS_ERRORS, error_text
from guard.config import Account, Config
from guard.kinds import KINDS, KindSpec, load
from guard.model import Finding, Resource, ScanResult, parse_time
from guard.scanning import ScanContext, TagReads, Target

__all__ = [
    "Progress",
    "ScanContext",
    "Target",
    "reporting_progress",
    "scan",
    "scan_targets",
    "scanner",
]

log = logging.getLogger(__name__)

MAX_SCAN_WORKERS = 8


class Progress(Protocol):
    """Told what a scan has to do and each (account, region, kind) it finished."""

    def start(self, total: int) -> None: ...

    def advance(self, what: str) -> None: ...


_progress: list[Progress] = []  # the innermost `reporting_progress` (the CLI on a terminal)
SLOW_TARGET_SECONDS = 10.0  # a target scan this slow is logged, so a long first scan shows life


@contextlib.contextmanager
def reporting_progress(progress: Progress) -> Iterator[None]:
    """Scans in this block report to `progress` (from the scan's worker threads)."""
    _progress.append(progress)
    try:
        yield
    finally:
        _progress.remove(progress)


def _advance(what: str) -> None:
    for progress in _progress[-1:]:
        progress.advance(what)


def scan(ctx: ScanContext) -> ScanResult:
    """Scan every (account, region) concurrently; one failing never stops the others."""
    result = ScanResult()
    for target in scan_targets(ctx):
        result.resources.extend(target.resources)
        result.errors.extend(target.errors)
        result.scanned |= target.scanned
        result.cursors.extend(target.cursors)
        result.findings.extend(target.findings)
    return result


def scan_targets(ctx: ScanContext) -> Iterator[ScanResult]:
    """`scan`, one (account, region) at a time, in order, as each is done: the cycle saves
    and judges each before the next, so it never holds the whole fleet. At most two targets
    per worker are scanned ahead of the consumer (a slow database never piles them up)."""
    accounts: list[Account | None] = list(ctx.cfg.accounts) or [None]
    jobs = iter([(account, region) for account in accounts for region in ctx.cfg.regions])
    total = len(ctx.cfg.accounts or [None]) * len(ctx.cfg.regions)
    for progress in _progress[-1:]:
        progress.start(total * len(ctx.cfg.kinds))
    workers = max(1, min(MAX_SCAN_WORKERS, total))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        ahead: deque[Future[Target]] = deque(
            pool.submit(_scan_target, ctx, *job) for job in itertools.islice(jobs, 2 * workers)
        )
        while ahead:
            target = ahead.popleft().result()
            if (job := next(jobs, None)) is not None:
                ahead.append(pool.submit(_scan_target, ctx, *job))
            yield ScanResult(
                resources=target.resources, errors=target.errors, scanned=target.scanned,
                cursors=target.cursors, findings=target.findings,
            )  # fmt: skip
            del target


def _scan_target(ctx: ScanContext, account: Account | None, region: str) -> Target:
    label = account.name or account.id if account else "default account"
    started = time.monotonic()
    try:
        account_id = ctx.aws.account_id(account, region)
    except AWS_ERRORS as exc:
        for kind in ctx.cfg.kinds:
            _advance(f"{label} {region} {kind}")
        return Target(
            account, "?", region, errors=[f"{label} {region}: cannot reach: {error_text(exc)}"]
        )
    target = Target(account, account_id, region)
    for kind in ctx.cfg.kinds:
        before = (len(target.resources), len(target.findings), len(target.cursors))
        try:
            spec = KINDS[kind]
            scanner(spec)(ctx, target, spec)
            target.findings.extend(ignored_time_tags(ctx.cfg, target.resources[before[0] :]))
        except SQLAlchemyError:
            raise  # the database failed (an outage), not this scan: the whole cycle fails
        except Exception as exc:
            # Nothing of this kind here is judged this cycle: drop what the scan had found so
            # far and keep the kind out of `scanned`, so nothing is marked gone either.
            del target.resources[before[0] :], target.findings[before[1] :]
            del target.cursors[before[2] :]
            target.scanned.discard((account_id, region, kind))
            if isinstance(exc, AWS_ERRORS):
                why = error_text(exc)
                log.warning("scan of %s in %s %s failed: %s", kind, label, region, why)
            else:  # a bug, not an outage: keep the traceback for whoever debugs it
                why = f"internal error {type(exc).__name__}: {exc}"
                log.exception("scan of %s in %s %s crashed", kind, label, region)
            target.errors.append(f"{label} {region} {kind}: scan failed: {why}")
        _advance(f"{label} {region} {kind}")
    # The raw List* pages and the tags were kept for the kinds sharing them; the cycle needs
    # only the resources made of them, and the target may wait a while to be saved.
    target.listings.clear()
    target.tags = TagReads()
    took = time.monotonic() - started
    if took >= SLOW_TARGET_SECONDS:
        log.info("scanned %s %s in %.0f s: %d resources", label, region, took,
                 len(target.resources))  # fmt: skip
    return target


def ignored_time_tags(cfg: Config, resources: Iterable[Resource]) -> list[Finding]:
    """A finding for each time-valued tag (snooze; heartbeat where the kind reads one) whose
    value `parse_time` ignores: a typo, or a "forever" like 9999-12-31 that would overflow.
    The resource is judged without it (not snoozed; activity from its other evidence)."""
    found = []
    for res in resources:
        heartbeat = res.kind in KINDS and KINDS[res.kind].heartbeat  # the scanner reads it
        keys = [cfg.tags.snooze] + ([cfg.tags.heartbeat] if heartbeat else [])
        for key in keys:
            value = res.tags.get(key, "")
            if value.strip() and parse_time(value) is None:
                found.append(
                    Finding(
                        account=res.account,
                        region=res.region,
                        subject=f"{res.kind} {res.name}",
                        problem=(
                            f"tag {key}={shown(value)} is not a time between 2000 and 2200, "
                            "so it is ignored"
                        ),
                        fix=f"write an ISO 8601 time such as {key}=2026-12-01T18:00:00Z",
                    )
                )
    return found


def shown(value: str, limit: int = 40) -> str:
    """A tag value quoted for people: at most `limit` characters, nothing that could be read
    as markup or control characters."""
    cut = "".join(c if c.isprintable() and c not in "<>&`*_~|" else "?" for c in value[:limit])
    return repr(cut + ("…" if len(value) > limit else ""))


Scanner = Callable[[ScanContext, Target, KindSpec], None]


def scanner(spec: KindSpec) -> Scanner:
    """The kind's scan function, named by its registry entry (`KindSpec.scanner`)."""
    found: Scanner = load(spec.scanner)
    return found
