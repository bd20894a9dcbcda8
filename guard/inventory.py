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
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from guard.aws import AWS_ERRORS, error_text
from guard.config import Account, Config
from guard.kinds import KINDS, KindSpec, load
from guard.model import Finding, Resource, ScanResult, parse_time
from guard.scanning import ScanContext, Target

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
    for target in sorted(scan_targets(ctx), key=lambda part: part.order):
        result.resources.extend(target.resources)
        result.errors.extend(target.errors)
        result.scanned |= target.scanned
        result.cursors.extend(target.cursors)
        result.findings.extend(target.findings)
    return result


def scan_targets(ctx: ScanContext) -> Generator[ScanResult, None, None]:
    """`scan`, a kind of one (account, region) at a time, as each is done, whichever target it
    is from: the cycle judges each part (and saves it, with others once they make a chunk)
    before taking the next, so it holds neither the fleet nor even whole targets (an account
    and region of 12,000 resources is handed over a kind at a time). Each part carries its
    place in the scan (`ScanResult.order`), for the cycle to keep what it decides in a fixed
    order. At most two targets per worker are scanned ahead of the consumer (a slow database
    never piles them up)."""
    accounts: list[Account | None] = list(ctx.cfg.accounts) or [None]
    jobs = enumerate([(account, region) for account in accounts for region in ctx.cfg.regions])
    total = len(ctx.cfg.accounts or [None]) * len(ctx.cfg.regions)
    for progress in _progress[-1:]:
        progress.start(total * len(ctx.cfg.kinds))
    workers = max(1, min(MAX_SCAN_WORKERS, total))
    # (target, part) as the workers hand them over; (target, None) once a target is done
    parts: SimpleQueue[tuple[int, ScanResult | None]] = SimpleQueue()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        running: dict[int, Future[None]] = {}

        def start(n: int, job: tuple[Account | None, str]) -> None:
            def work() -> None:
                try:
                    _scan_target(ctx, n, *job, lambda part: parts.put((n, part)))
                finally:
                    parts.put((n, None))  # always: the consumer waits for it

            running[n] = pool.submit(work)

        for n, job in itertools.islice(jobs, 2 * workers):
            start(n, job)
        try:
            while running:
                n, part = parts.get()
                if part is None:
                    running.pop(n).result()  # the database failed in the worker: cycle fails
                    if (next_job := next(jobs, None)) is not None:
                        start(*next_job)
                    continue
                yield part
                del part  # not held while the next part is awaited
        finally:  # the cycle stopped taking parts (it failed): start no other target
            pool.shutdown(cancel_futures=True)


def _scan_target(
    ctx: ScanContext,
    position: int,
    account: Account | None,
    region: str,
    hand_over: Callable[[ScanResult], None],
) -> None:
    """Scan one target, handing each kind's part over as soon as it is done."""
    label = account.name or account.id if account else "default account"
    started = time.monotonic()
    try:
        account_id = ctx.aws.account_id(account, region)
    except AWS_ERRORS as exc:
        for kind in ctx.cfg.kinds:
            _advance(f"{label} {region} {kind}")
        why = f"{label} {region}: cannot reach: {error_text(exc)}"
        hand_over(ScanResult(errors=[why], order=(position, 0)))
        return
    target = Target(account, account_id, region)
    count = 0
    for place, kind in enumerate(ctx.cfg.kinds):
        try:
            spec = KINDS[kind]
            scanner(spec)(ctx, target, spec)
            target.findings.extend(ignored_time_tags(ctx.cfg, target.resources))
        except SQLAlchemyError:
            raise  # the database failed (an outage), not this scan: the whole cycle fails
        except Exception as exc:
            # Nothing of this kind here is judged this cycle: drop what the scan had found so
            # far and keep the kind out of `scanned`, so nothing is marked gone either.
            target.resources, target.findings, target.cursors = [], [], []
            target.scanned.discard((account_id, region, kind))
            if isinstance(exc, AWS_ERRORS):
                why = error_text(exc)
                log.warning("scan of %s in %s %s failed: %s", kind, label, region, why)
            else:  # a bug, not an outage: keep the traceback for whoever debugs it
                why = f"internal error {type(exc).__name__}: {exc}"
                log.exception("scan of %s in %s %s crashed", kind, label, region)
            target.errors.append(f"{label} {region} {kind}: scan failed: {why}")
        count += len(target.resources)
        hand_over(target.take((position, place)))
        _advance(f"{label} {region} {kind}")
    took = time.monotonic() - started
    if took >= SLOW_TARGET_SECONDS:
        log.info("scanned %s %s in %.0f s: %d resources", label, region, took, count)


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
