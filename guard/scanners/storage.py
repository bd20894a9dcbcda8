"""Storage that keeps billing after a stop: stopped notebook instances' volumes and the EBS
volumes of Studio spaces none of whose apps runs. Listed, priced per GB-month, never acted on.

Calls: ListNotebookInstances, ListSpaces and ListApps (each shared with the notebook or Studio
kind's scan of the same account and region: one read), one DescribeNotebookInstance per stopped
notebook (its VolumeSizeInGB; again only when its LastModifiedTime moves), one DescribeSpace
per space (its EbsVolumeSizeInGb, cached likewise; spared when ListSpaces already carries it),
the notebooks' tags in the same pages as every other kind's (`guard.scanners.shared.kind_tags`)
and the tags of the spaces without a running app by ARN.

$/h = GB x $/GB-month / 730 (AWS bills storage per GB-month; 730 hours make its month).
The $/GB-month comes from guard/data/storage_prices.csv (each row sourced), else unknown.

Evidence: when it was last started. A stopped notebook's last start is the one the guard's own
snapshot saw (read once, when it is first seen stopped); without one, its stop time stands in
(its last start was earlier, so it looks less idle than it is, never more). A space's last
start is its newest app's creation in ListApps (deleted apps stay listed for a while), kept
from cycle to cycle, and never earlier than the space's LastModifiedTime.
"""

from __future__ import annotations

import csv
import io
import threading
import weakref
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from botocore.exceptions import ClientError

from guard.aws import AWS_ERRORS, error_text, not_found
from guard.kinds import KindSpec
from guard.model import ActivitySource, Resource, parse_time
from guard.scanners.shared import kind_tags, tags_of
from guard.scanning import ScanContext, Target, concurrently, list_all, listing, utc
from guard.store import Store

HOURS_PER_MONTH = Decimal(730)
# storage_prices.csv `kind` per volume, and the parent's tagging type
NOTEBOOK_VOLUME = "notebook-ml-storage"  # no sourced row yet: unknown
SPACE_VOLUME = "studio-space-ebs"
# Space app types whose storage is an EBS volume of the space (Studio Classic's use the
# domain's EFS, billed by EFS, not here).
EBS_SPACES = ("JupyterLab", "CodeEditor")
RUNNING_APP = ("InService", "Pending")
# Spaces without an EBS volume are not listed, so the snapshot cannot cache their Describe:
# (space ARN, LastModifiedTime) seen without one, per store, for as long as the process runs.
_no_ebs: weakref.WeakKeyDictionary[Store, set[tuple[str, str | None]]] = weakref.WeakKeyDictionary()
_no_ebs_lock = threading.Lock()


@cache
def storage_prices() -> dict[tuple[str, str], tuple[Decimal, str]]:
    """(volume kind, region) -> ($ per GB-month, source) from guard/data/storage_prices.csv."""
    text = resources.files("guard").joinpath("data/storage_prices.csv").read_text("utf-8")
    return {
        (row["kind"], row["region"]): (Decimal(row["usd"]), row["source"])
        for row in csv.DictReader(io.StringIO(text))
        if row["unit"] == "GB-Mo"
    }


def price(volume: str, region: str, size_gb: int | None) -> tuple[Decimal | None, str, str]:
    """($/h, price source, how it is billed) for `size_gb` GB of `volume` storage."""
    found = storage_prices().get((volume, region))
    if size_gb is None or found is None:
        what = f"{size_gb} GB" if size_gb is not None else "unknown size"
        return None, "unknown", f"{what} of storage per GB-month, at an unknown price"
    per_month = found[0]
    usd = (Decimal(size_gb) * per_month / HOURS_PER_MONTH).quantize(Decimal("0.000001"))
    return usd, "bundled", f"{size_gb} GB x ${per_month} per GB-month (/ 730 h)"


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    stopped = list_all(
        client, target, spec, lambda nb: nb.get("NotebookInstanceStatus") == "Stopped"
    )
    spaces = listing(client, target, "list_spaces", "Spaces")
    if not stopped and not spaces:
        return
    tags, evidence_error = kind_tags(ctx, target, spec)  # the notebooks' (spaces': below)
    known = ctx.store.known_details(spec.name, target.account_id, target.region)
    _notebook_volumes(ctx, target, spec, client, stopped, known, tags, evidence_error)
    if spaces:
        _space_volumes(ctx, target, spec, client, spaces, known, evidence_error)


def _iso(when: datetime | None) -> str | None:
    moment = utc(when)
    return moment.isoformat() if moment else None


def _describe(call: Any, **params: Any) -> dict[str, Any] | Exception | None:
    try:
        return dict(call(**params))
    except ClientError as exc:
        return None if not_found(exc) else exc
    except AWS_ERRORS as exc:
        return exc


def _volume(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    *,
    arn: str,
    name: str,
    status: str,
    volume: str,
    facts: dict[str, Any],
    tags: dict[str, str],
    created: datetime | None,
    evidence_error: str | None,
) -> Resource:
    size = facts.get("size_gb")
    usd, source, billing = price(volume, target.region, size)
    last = parse_time(facts.get("last_started"))
    # days since it was last started, recomputed every cycle (inventory, digest, messages)
    days = (ctx.now - last).days if last else None
    seen: dict[str, Any] = {"days_since_start": days}
    if last is not None:
        seen["evidence"] = f"{days} d since {facts.get('last_started_from') or 'last start'}"
    return Resource(
        arn=f"{arn}/volume",  # not the notebook's or space's own ARN: a resource of its own
        kind=spec.name,
        name=name,
        account=target.account_id,
        region=target.region,
        status=status,
        running=True,  # it bills
        instance_type=volume,
        instance_count=1,
        usd_per_hour=usd,
        price_source=source,
        created_at=created,
        running_since=created,  # billed since the volume was created
        last_activity=None if evidence_error else last,
        activity_source=ActivitySource.UNKNOWN if evidence_error else ActivitySource.LAST_START,
        tags=dict(tags),
        evidence_error=evidence_error,
        details={**facts, **seen, "billing": billing, "volume_of": arn},
    )


# --- stopped notebook instances ----------------------------------------------------------------


def _notebook_volumes(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    client: Any,
    stopped: list[dict[str, Any]],
    known: Mapping[str, dict[str, Any]],
    tags: Mapping[str, dict[str, str]],
    evidence_error: str | None,
) -> None:
    facts: dict[str, dict[str, Any]] = {}
    todo = []
    for nb in stopped:
        arn, modified = nb[spec.arn_field], _iso(nb.get("LastModifiedTime"))
        cached = known.get(f"{arn}/volume", {})
        if cached.get("modified") == modified and cached.get("size_gb") is not None:
            facts[arn] = cached
        else:
            todo.append(nb)
    answers = concurrently(
        lambda nb: _describe(
            client.describe_notebook_instance, NotebookInstanceName=nb[spec.name_field]
        ),
        todo,
    )
    failed: dict[str, str] = {}
    for nb, answer in zip(todo, answers, strict=True):
        arn, name = nb[spec.arn_field], nb[spec.name_field]
        if isinstance(answer, Exception):
            failed[arn] = f"describe failed: {error_text(answer)}"
            continue
        if answer is None:
            continue  # deleted since the listing
        stopped_at = _iso(nb.get("LastModifiedTime"))
        # The guard's snapshot of the notebook, saved before this cycle: its last run began
        # at its running_since (read once, when first seen stopped: cached below).
        before = ctx.store.resource(arn)
        started = before.running_since if before is not None else None
        facts[arn] = {
            "size_gb": answer.get(spec.type_field),
            "modified": stopped_at,
            "stopped_at": stopped_at,
            "last_started": started.isoformat() if started else stopped_at,
            "last_started_from": "last start" if started else "stopped at (started before)",
            "volume_of_kind": "notebook instance",
            "console": f"notebook-instances/{name}",
        }
    if failed:
        target.errors.append(
            f"{target.account_id} {target.region}: {len(failed)} stopped notebook(s) could not "
            f"be described; their volumes are unknown this cycle: {next(iter(failed.values()))}"
        )
    for nb in stopped:
        arn = nb[spec.arn_field]
        if arn not in facts and arn not in failed:
            continue
        target.resources.append(
            _volume(
                ctx, target, spec, arn=arn, name=nb[spec.name_field],
                status=nb[spec.status_field], volume=NOTEBOOK_VOLUME,
                facts=facts.get(arn, {"volume_of_kind": "notebook instance"}),
                tags=tags.get(arn, {}), created=utc(nb.get("CreationTime")),
                evidence_error=evidence_error or failed.get(arn),
            )
        )  # fmt: skip


# --- Studio spaces -----------------------------------------------------------------------------


def _space_arn(target: Target, domain: str, space: str) -> str:
    partition = "aws-cn" if target.region.startswith("cn-") else "aws"
    return f"arn:{partition}:sagemaker:{target.region}:{target.account_id}:space/{domain}/{space}"


def _space_volumes(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    client: Any,
    spaces: list[dict[str, Any]],
    known: Mapping[str, dict[str, Any]],
    evidence_error: str | None,
) -> None:
    # Which spaces run an app now, and each space's newest app start: one ListApps.
    running: set[tuple[str, str]] = set()
    newest: dict[tuple[str, str], datetime] = {}
    try:
        for app in listing(client, target, "list_apps", "Apps"):  # the Studio kind's too
            if not app.get("SpaceName"):
                continue
            key = (app["DomainId"], app["SpaceName"])
            if app.get("Status") in RUNNING_APP:
                running.add(key)
            created = utc(app.get("CreationTime"))
            if created is not None and (key not in newest or created > newest[key]):
                newest[key] = created
    except AWS_ERRORS as exc:
        # Without the apps, a space in use would look idle: all spaces unknown this cycle.
        evidence_error = evidence_error or f"ListApps failed: {error_text(exc)}"
        target.errors.append(
            f"{target.account_id} {target.region}: ListApps failed, Studio space volumes are "
            f"unknown this cycle: {error_text(exc)}"
        )
    idle = [
        s for s in spaces
        if s.get("Status") == "InService" and (s["DomainId"], s["SpaceName"]) not in running
    ]  # fmt: skip
    # The tags of the spaces listed here (none runs an app), by ARN: the tags of every space
    # would be pages of them, most of them running an app and so not listed at all.
    try:
        tags = tags_of(
            ctx, target, [_space_arn(target, s["DomainId"], s["SpaceName"]) for s in idle]
        )
    except AWS_ERRORS as exc:
        tags, evidence_error = {}, evidence_error or f"tags unavailable: {error_text(exc)}"
    settings: dict[str, dict[str, Any]] = {}
    todo = []
    with _no_ebs_lock:
        no_ebs = _no_ebs.setdefault(ctx.store, set())
    for space in idle:
        arn = _space_arn(target, space["DomainId"], space["SpaceName"])
        if (arn, _iso(space.get("LastModifiedTime"))) in no_ebs:
            continue
        cached = known.get(f"{arn}/volume", {})
        summary = space.get("SpaceSettingsSummary") or {}
        if summary.get("AppType") and summary.get("SpaceStorageSettings") is not None:
            settings[arn] = summary  # ListSpaces already says it: no Describe
        elif cached.get("modified") == _iso(space.get("LastModifiedTime")) and cached.get(
            "app_type"
        ):
            settings[arn] = {
                "AppType": cached["app_type"],
                "SpaceStorageSettings": {
                    "EbsStorageSettings": {"EbsVolumeSizeInGb": cached.get("size_gb")}
                },
            }
        else:
            todo.append(space)
    answers = concurrently(
        lambda s: _describe(
            client.describe_space, DomainId=s["DomainId"], SpaceName=s["SpaceName"]
        ),
        todo,
    )
    failed: dict[str, str] = {}
    for space, answer in zip(todo, answers, strict=True):
        arn = _space_arn(target, space["DomainId"], space["SpaceName"])
        if isinstance(answer, Exception):
            failed[arn] = f"describe failed: {error_text(answer)}"
        elif answer is not None:
            settings[arn] = answer.get("SpaceSettings") or {}
    if failed:
        target.errors.append(
            f"{target.account_id} {target.region}: {len(failed)} Studio space(s) could not be "
            f"described; their volumes are unknown this cycle: {next(iter(failed.values()))}"
        )
    for space in idle:
        domain, name = space["DomainId"], space["SpaceName"]
        arn = _space_arn(target, domain, name)
        if arn not in settings and arn not in failed:
            continue  # deleted since the listing
        setting = settings.get(arn, {})
        app_type = setting.get("AppType")
        if arn in settings and app_type not in EBS_SPACES:
            # no EBS volume of its own (Studio Classic spaces use the domain's EFS)
            with _no_ebs_lock:
                no_ebs.add((arn, _iso(space.get("LastModifiedTime"))))
            continue
        size = ((setting.get("SpaceStorageSettings") or {}).get("EbsStorageSettings") or {}).get(
            "EbsVolumeSizeInGb"
        )
        cached = known.get(f"{arn}/volume", {})
        # The newest of: an app's start now in ListApps, the start remembered from an earlier
        # cycle (deleted apps drop out of ListApps), the space's own last change.
        candidates = [
            (newest.get((domain, name)), "its newest app started"),
            (parse_time(cached.get("last_started")), cached.get("last_started_from") or ""),
            (utc(space.get("LastModifiedTime")) or utc(space.get("CreationTime")),
             "space last modified (no app seen)"),
        ]  # fmt: skip
        seen = [(t, why) for t, why in candidates if t is not None]
        last, last_from = max(seen, key=lambda c: c[0]) if seen else (None, "")
        owner = (space.get("OwnershipSettingsSummary") or {}).get("OwnerUserProfileName")
        facts = {
            "size_gb": size,
            "app_type": app_type,
            "modified": _iso(space.get("LastModifiedTime")),
            "last_started": last.isoformat() if last else None,
            "last_started_from": last_from,
            "volume_of_kind": "Studio space",
            "domain_id": domain,
            "space": name,
            "owner": owner,
            "console": f"studio/{domain}",
        }  # fmt: skip
        target.resources.append(
            _volume(
                ctx, target, spec, arn=arn, name=f"{domain}/{name}", status=space["Status"],
                volume=SPACE_VOLUME, facts=facts, tags=tags.get(arn, {}),
                created=utc(space.get("CreationTime")),
                evidence_error=evidence_error or failed.get(arn),
            )
        )  # fmt: skip
