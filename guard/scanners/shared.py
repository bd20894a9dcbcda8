"""What the scanners of one (account, region) share within a scan, and what is read on a slower
cadence than the cycle.

- listings: `guard.scanning.listing` makes a List* call once per scan of a target, whichever
  kind asks first (`list_all` is that, with the kind's filters).
- `kind_tags`: tags, by the page, fresh every scan (exemptions, snoozes, owners and heartbeats
  live there). Kinds whose listing names every resource of their type (notebooks, endpoints,
  apps, ...) share one paged GetResources filtered by all of their types, so a target pays
  ceil(all of them / 100) calls instead of one partial page per kind. Kinds that list only what
  runs (jobs `InProgress`) are read by ARN (ResourceARNList, 100 a call), so the tags of every
  job that ever ran are never paged through; the ARNs of every such kind go in the same batches.
- `every`: a fact that decides no action (a finding, an owner to route a message to) read again
  only once its period has passed on the injected clock, per store, for as long as the process
  runs (the daemon); a new process reads it again at once.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from guard.aws import AWS_ERRORS, error_text, pages
from guard.kinds import KINDS, KindSpec
from guard.scanning import ScanContext, Target, list_all, utc
from guard.store import Store

T = TypeVar("T")

PAGE = 100  # MaxResults of the List* calls; ResourcesPerPage and ResourceARNList of GetResources
# How often facts that decide no action are read again (Studio domains and user profiles, the
# profiles' owner tags, training plans): a finding or an owner an hour late is still right.
SLOW = timedelta(hours=1)
# Resources created this long before the cycle began, or later, may be newer than the shared
# page of tags read early in the scan: theirs are read by ARN as well.
RECENT = timedelta(minutes=5)


# --- tags ------------------------------------------------------------------------------------


def kind_tags(
    ctx: ScanContext, target: Target, spec: KindSpec, arns: Iterable[str] = ()
) -> tuple[dict[str, dict[str, str]], str | None]:
    """(tags by ARN, None), or ({}, why) when they cannot be read: without tags, exemptions,
    snoozes and heartbeats are invisible, so the caller makes its resources unknown. The
    mapping may be shared with the target's other kinds: read it, never change it.

    `arns`: for a kind listing only part of its type (`list_params`), the ARNs it needs beyond
    its listing (e.g. jobs that ran at the last snapshot and ended since); for any other kind,
    ARNs of resources created since the cycle began, whose listing carries no ARN (Studio
    apps): see `_by_type`."""
    try:
        if spec.list_params:
            return _by_arn(ctx, target, spec, set(arns)), None
        return _by_type(ctx, target, spec, set(arns)), None
    except AWS_ERRORS as exc:
        return {}, f"tags unavailable: {error_text(exc)}"


def _enabled(ctx: ScanContext, spec: KindSpec) -> list[KindSpec]:
    """The kinds this scan covers (the asking one included, for a scanner run on its own)."""
    kinds = [KINDS[k] for k in ctx.cfg.kinds if k in KINDS]
    return kinds if spec in kinds else [*kinds, spec]


def _mapping(items: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {i["ResourceARN"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])} for i in items}


def _by_type(
    ctx: ScanContext, target: Target, spec: KindSpec, recent: set[str]
) -> dict[str, dict[str, str]]:
    """Tags of every kind listing all of its type, in shared pages. Those pages were read when
    the first kind of the target asked, maybe before this kind's listing: a resource created
    since the cycle began (`RECENT`: clocks differ) and not in them may have come too late for
    them, so its tags are read by its ARN (never judged without its exemption for being new)."""
    types = tuple(sorted({k.tagging_type for k in _enabled(ctx, spec) if not k.list_params}))
    kept = target.tags.by_type
    if types not in kept:
        client = ctx.aws.client(target.account, target.region, "resourcegroupstaggingapi")
        try:
            kept[types] = _mapping(
                pages(client, "get_resources", "ResourceTagMappingList",
                      ResourceTypeFilters=list(types), ResourcesPerPage=PAGE)
            )  # fmt: skip
        except AWS_ERRORS as exc:
            kept[types] = exc  # every kind sharing it is unknown, uncalled
    tags = kept[types]  # other kinds' ARNs too: callers look up their own
    if isinstance(tags, Exception):
        raise tags
    since = ctx.now - RECENT
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    recent |= {
        item[spec.arn_field]
        for item in list_all(client, target, spec)
        if spec.arn_field in item and (utc(item.get("CreationTime")) or ctx.now) >= since
    }
    recent -= tags.keys()
    return {**tags, **tags_of(ctx, target, recent)} if recent else tags


def _by_arn(
    ctx: ScanContext, target: Target, spec: KindSpec, extra: set[str]
) -> dict[str, dict[str, str]]:
    """Tags of the kind's listed resources and `extra`, by ARN. The first kind asking reads
    the listed ARNs of every such kind in the same batches (their listings are made now, once:
    `list_all` keeps them for their own scans)."""
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    wanted = set(extra) | {item[spec.arn_field] for item in list_all(client, target, spec)}
    pooled = set(wanted)
    if not target.tags.asked:
        for kind in _enabled(ctx, spec):
            if kind.list_params and kind is not spec:
                # a failed listing fails that kind's own scan (it is kept), not this one
                with contextlib.suppress(*AWS_ERRORS):
                    pooled |= {item[kind.arn_field] for item in list_all(client, target, kind)}
    return tags_of(ctx, target, wanted, also=pooled)


def tags_of(
    ctx: ScanContext, target: Target, arns: Iterable[str], also: Iterable[str] = ()
) -> dict[str, dict[str, str]]:
    """The tags of `arns` (those without tags are left out), read by ARN, 100 a call, each
    ARN once per scan of `target`; `also`: ARNs read in the same batches for later askers.
    A failure is raised (and nothing kept: they are asked again by the next caller)."""
    wanted = set(arns)
    kept = target.tags
    todo = sorted((wanted | set(also)) - kept.asked)
    if todo:
        tagging = ctx.aws.client(target.account, target.region, "resourcegroupstaggingapi")
        found: dict[str, dict[str, str]] = {}
        for first in range(0, len(todo), PAGE):
            # ResourceARNList takes no paging parameters: up to 100 ARNs, all in one answer
            found.update(
                _mapping(pages(tagging, "get_resources", "ResourceTagMappingList",
                               ResourceARNList=todo[first : first + PAGE]))
            )  # fmt: skip
        # Kept only when every batch was read: a failure leaves them to be asked again.
        kept.by_arn.update(found)
        kept.asked.update(todo)
    return {arn: kept.by_arn[arn] for arn in wanted if arn in kept.by_arn}


# --- a slower cadence --------------------------------------------------------------------------

_slow: weakref.WeakKeyDictionary[Store, dict[tuple[str, ...], tuple[datetime, Any]]] = (
    weakref.WeakKeyDictionary()
)
_slow_lock = threading.Lock()


def every(
    ctx: ScanContext,
    key: tuple[str, ...],
    fetch: Callable[[], T],
    period: timedelta = SLOW,
    *,
    fresh: bool = False,
) -> T:
    """`fetch()`'s answer, read again only once `period` has passed since it was last read
    (ctx.now, the injected clock), per store and `key` (account and region included), or
    when `fresh` (the caller saw something the kept answer cannot explain). A failure is
    raised and nothing is kept, so the next scan reads it again."""
    with _slow_lock:
        kept = _slow.setdefault(ctx.store, {}).get(key)
    if not fresh and kept is not None and timedelta(0) <= ctx.now - kept[0] < period:
        value: T = kept[1]
        return value
    value = fetch()
    with _slow_lock:
        _slow.setdefault(ctx.store, {})[key] = (ctx.now, value)
    return value


def studio_domains(
    ctx: ScanContext, target: Target, client: Any, *, fresh: bool = False
) -> list[dict[str, Any]]:
    """The Studio domains (ListDomains), read hourly: they only make findings (idle shutdown,
    MLflow servers left by a deleted domain); `fresh` reads them now."""
    return every(
        ctx,
        ("list_domains", target.account_id, target.region),
        lambda: list(pages(client, "list_domains", "Domains", MaxResults=PAGE)),
        fresh=fresh,
    )
