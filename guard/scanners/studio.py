"""Studio apps (JupyterLab, Code Editor, KernelGateway, JupyterServer, Canvas, RStudio,
TensorBoard, DetailedProfiler: every AppType) and the domains and user profiles that leave
them without built-in idle shutdown.

Calls grow with pages, not apps: one ListApps across all domains (100 per page), the app
tags from the Resource Groups Tagging API, space owners from ListSpaces and user-profile
owner tags from the tagging API, all paged by 100 (ListApps and ListSpaces are shared with the
storage kind's scan). What decides no action is read hourly (`guard.scanners.shared.every`):
ListDomains, ListUserProfiles and the profiles' owner tags; the idle-shutdown check describes
each domain and user profile once and again only when its LastModifiedTime changes (user
profiles from the second scan of an account and region on, 100 a scan). An app's
own listing and tags (status, exemption, snooze, heartbeat) are read every scan.

An app's activity is the heartbeat tag written by the shipped Studio lifecycle scripts
(`cost-guard lifecycle-config studio-jupyterlab|studio-code-editor|studio-kernel-gateway`);
without it, an app has been idle since it was created, as SageMaker gives no other activity
signal for apps. A heartbeat that stopped looking, or cannot reach Jupyter, makes it `unknown`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from guard.aws import AWS_ERRORS, error_text, pages
from guard.kinds import KindSpec
from guard.model import ActivitySource, Finding, Resource
from guard.scanners.evidence import heartbeat_details, stopped_finding
from guard.scanners.evidence import read as read_heartbeat
from guard.scanners.shared import RECENT, every, kind_tags, studio_domains
from guard.scanning import ScanContext, Target, list_all, listing, utc
from guard.store import Store

PAGE = 100  # MaxResults of ListApps, ListSpaces, ListUserProfiles and ListDomains
# Apps SageMaker's built-in idle shutdown (AppLifecycleManagement) can stop.
IDLE_SHUTDOWN_APPS = {"JupyterLabAppSettings": "JupyterLab", "CodeEditorAppSettings": "Code Editor"}
# Instance type of apps that run on a free, shared system instance (Studio Classic's
# JupyterServer "default" app): they cost nothing, whatever their status.
SYSTEM_INSTANCE = "system"
# Apps billed by session-hour rather than by a ResourceSpec instance: app type -> (price key's
# instance-type column, component). A Canvas app is a session, billed per session-hour while
# it runs (AWS usage type `<REGION>-Canvas:Session-Hrs`); no bundled figure has a source, so
# it is unknown (never $0) unless the Price List API has it.
SESSION_BILLED = {"Canvas": ("canvas-session", "Canvas")}
# First-time describes of user profiles per scan: a domain with thousands of profiles is
# checked over a few cycles instead of one burst (what was checked is cached), from the second
# scan of the account and region on (PROFILE_CHECK: the scan cursor saying there was a first).
MAX_PROFILE_DESCRIBES = 100
PROFILE_CHECK = "studio-user-profile-check"

# What each domain / profile check found, by (key) -> (LastModifiedTime, result). Kept per
# store, i.e. per deployment and database, for as long as the process runs (the daemon); a
# new process describes everything once more.
_Cache = dict[tuple[str, ...], tuple[Any, tuple[str, ...]]]
_caches: weakref.WeakKeyDictionary[Store, _Cache] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Owner:
    who: str | None  # email, Slack id or user profile name; None = unknown
    source: str  # for people: where it came from


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def app_arn(region: str, account: str, app: dict[str, Any]) -> str:
    """ListApps returns no ARN; SageMaker's is app/<domain>/<profile or space>/<type>/<name>
    with the type lower-cased (e.g. .../alice-space/jupyterlab/default)."""
    owner = app.get("SpaceName") or app.get("UserProfileName") or ""
    return (
        f"arn:{partition(region)}:sagemaker:{region}:{account}:app/{app['DomainId']}/{owner}/"
        f"{app['AppType'].lower()}/{app['AppName']}"
    )


def app_name(app: dict[str, Any]) -> str:
    """Readable and unique in an account and region: domain/space-or-user/type/name."""
    owner = app.get("SpaceName") or app.get("UserProfileName") or "?"
    return f"{app['DomainId']}/{owner}/{app['AppType']}/{app['AppName']}"


def request_key(app: dict[str, Any]) -> dict[str, str]:
    """The parameters naming the app in DescribeApp and DeleteApp."""
    key = {name: app[name] for name in ("DomainId", "AppType", "AppName")}
    if app.get("SpaceName"):
        key["SpaceName"] = app["SpaceName"]
    else:
        key["UserProfileName"] = app["UserProfileName"]
    return key


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    client = ctx.aws.client(target.account, target.region, "sagemaker")
    # Without DomainIdEquals, ListApps pages through the apps of every domain at once.
    # A Deleted app stays listed for a while but no longer exists: treated as gone.
    listed = list_all(
        client, target, spec, keep=lambda app: app.get(spec.status_field) != "Deleted"
    )
    spaces = _spaces(ctx, target, client) if any(a.get("SpaceName") for a in listed) else {}
    _idle_shutdown_findings(ctx, target, client, spaces)
    if not listed:
        return

    arns = {id(app): app_arn(target.region, target.account_id, app) for app in listed}
    since = ctx.now - RECENT  # created since the shared page of tags was maybe read
    recent = [arns[id(a)] for a in listed if (utc(a.get("CreationTime")) or ctx.now) >= since]
    tags, evidence_error = kind_tags(ctx, target, spec, recent)
    needs_owner = any(ctx.cfg.tags.owner not in tags.get(arn, {}) for arn in arns.values())
    profile_owners = _profile_owner_tags(ctx, target) if needs_owner else {}
    stopped: list[str] = []  # running apps whose heartbeat stopped looking
    for app in listed:
        arn = arns[id(app)]
        owner = _owner(ctx, target, app, tags.get(arn, {}), spaces, profile_owners)
        res = _resource(ctx, target, spec, app, arn, tags.get(arn, {}), owner, evidence_error)
        target.resources.append(res)
        heartbeat = read_heartbeat(res.tags, ctx.cfg)
        if res.running and heartbeat and heartbeat.stopped(ctx.cfg, ctx.now, res.running_since):
            stopped.append(res.name)
    if stopped:
        target.findings.append(
            stopped_finding(target.account_id, target.region, "Studio apps", stopped)
        )


def _resource(
    ctx: ScanContext,
    target: Target,
    spec: KindSpec,
    app: dict[str, Any],
    arn: str,
    app_tags: dict[str, str],
    owner: Owner,
    evidence_error: str | None,
) -> Resource:
    app_type, status = app["AppType"], app[spec.status_field]
    instance_type = (app.get("ResourceSpec") or {}).get(spec.type_field)
    # Apps with no instance of their own (no ResourceSpec.InstanceType, or the free "system"
    # instance of Studio Classic's default JupyterServer) bill nothing: listed at $0 and not
    # "running" in the costly sense, so no idle or budget rule ever acts on them.
    free = (not instance_type or instance_type == SYSTEM_INSTANCE) and (
        app_type not in SESSION_BILLED
    )
    running = status in spec.running_states and not free
    billing: dict[str, str] = {}
    if app_type in SESSION_BILLED:  # priced per session-hour, whatever instance it names
        instance_type, component = SESSION_BILLED[app_type]
        billing = {"billing": f"per {app_type} session-hour while the app runs"}
    else:
        component = spec.price_component.format(app_type=app_type)
    if running:
        price = ctx.prices.price(instance_type, target.region, component)
        usd_per_hour, price_source = price.usd_per_hour, price.source
    else:
        usd_per_hour, price_source = Decimal(0), "none"
    heartbeat = read_heartbeat(app_tags, ctx.cfg)
    beat = heartbeat.last_activity if heartbeat else None
    created = utc(app.get("CreationTime"))
    running_since = created if running else None  # an app runs from creation to deletion
    # A heartbeat that stopped looking, or cannot reach Jupyter, leaves the app unknown.
    problem = heartbeat.problem(ctx.cfg, ctx.now, running_since) if heartbeat and running else None
    evidence_error = evidence_error or problem
    source = (
        ActivitySource.UNKNOWN
        if evidence_error
        else ActivitySource.HEARTBEAT_TAG
        if beat
        else ActivitySource.IN_SERVICE_SINCE
    )
    seen = heartbeat_details(heartbeat, ActivitySource.HEARTBEAT_TAG, beat) if heartbeat else {}
    return Resource(
        arn=arn,
        kind=spec.name,
        name=app_name(app),
        account=target.account_id,
        region=target.region,
        status=status,
        running=running,
        instance_type=instance_type,
        instance_count=1,
        usd_per_hour=usd_per_hour,
        price_source=price_source,
        created_at=created,
        running_since=running_since,
        last_activity=beat,
        activity_source=source,
        tags=dict(app_tags),
        evidence_error=evidence_error,
        details={
            # Who is told when the app has no owner tag of its own: inherited from the space
            # or user profile (`owner_from` says which), so the warning reaches the person.
            "owner": owner.who,
            "key": request_key(app),
            "domain_id": app["DomainId"],
            "app_type": app_type,
            "space": app.get("SpaceName"),
            "user_profile": app.get("UserProfileName"),
            "owner_from": owner.source,
            **billing,
            **seen,
        },
    )


# --- owners ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    owner: str | None  # OwnerUserProfileName of a private space; None for a shared one
    shared: bool


def _spaces(ctx: ScanContext, target: Target, client: Any) -> dict[tuple[str, str], Space]:
    """Every space by (domain, name), with its owner: one call per 100 spaces."""
    found: dict[tuple[str, str], Space] = {}
    try:
        # the same listing as the storage kind's (spaces' volumes): one read per scan
        for item in listing(client, target, "list_spaces", "Spaces"):
            owner = (item.get("OwnershipSettingsSummary") or {}).get("OwnerUserProfileName")
            sharing = (item.get("SpaceSharingSettingsSummary") or {}).get("SharingType")
            found[(item["DomainId"], item["SpaceName"])] = Space(owner, sharing == "Shared")
    except AWS_ERRORS as exc:
        # Owners only route messages; exemptions and activity come from the app's own tags.
        target.errors.append(
            f"{target.account_id} {target.region}: ListSpaces failed, owners of Studio apps "
            f"in spaces are unknown this cycle: {error_text(exc)}"
        )
    return found


def _profile_owner_tags(ctx: ScanContext, target: Target) -> dict[str, str]:
    """The owner tag of each user profile that has one, by user-profile ARN. Read hourly
    (`guard.scanners.shared.every`): it only routes messages, and an app's own tags (its
    exemption, snooze and heartbeat) are read every scan."""
    client = ctx.aws.client(target.account, target.region, "resourcegroupstaggingapi")

    def read() -> dict[str, str]:
        found: dict[str, str] = {}
        for item in pages(
            client,
            "get_resources",
            "ResourceTagMappingList",
            ResourceTypeFilters=["sagemaker:user-profile"],
            ResourcesPerPage=100,
        ):
            tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
            if owner := tags.get(ctx.cfg.tags.owner):
                found[item["ResourceARN"]] = owner
        return found

    try:
        return every(ctx, ("profile-owner-tags", target.account_id, target.region), read)
    except AWS_ERRORS as exc:
        target.errors.append(
            f"{target.account_id} {target.region}: user-profile tags unavailable, Studio "
            f"owners fall back to profile names this cycle: {error_text(exc)}"
        )
        return {}


def _owner(
    ctx: ScanContext,
    target: Target,
    app: dict[str, Any],
    app_tags: dict[str, str],
    spaces: dict[tuple[str, str], Space],
    profile_owners: dict[str, str],
) -> Owner:
    """The app's owner tag; else the owner tag of its user profile (the space owner's for a
    private space); else the owner `owners.studio_profiles` maps that profile to; else the
    profile's name."""
    if app_tags.get(ctx.cfg.tags.owner):
        return Owner(app_tags[ctx.cfg.tags.owner], "app tag")
    domain, profile = app["DomainId"], app.get("UserProfileName")
    via = "user profile"
    if app.get("SpaceName"):
        space = spaces.get((domain, app["SpaceName"]))
        if space is None or space.owner is None:
            return Owner(None, "shared space" if space else "space unknown")
        profile, via = space.owner, "space owner"
    if not profile:
        return Owner(None, "unknown")
    profile_arn = (
        f"arn:{partition(target.region)}:sagemaker:{target.region}:{target.account_id}:"
        f"user-profile/{domain}/{profile}"
    )
    if profile_arn in profile_owners:
        return Owner(profile_owners[profile_arn], f"{via} {profile} (its owner tag)")
    if mapped := ctx.cfg.owners.studio_profiles.get(profile):
        return Owner(mapped, f"{via} {profile} (owners.studio_profiles)")
    return Owner(profile, f"{via} {profile}")


# --- idle-shutdown findings -----------------------------------------------------------------


def _idle_shutdown_findings(
    ctx: ScanContext, target: Target, client: Any, spaces: dict[tuple[str, str], Space]
) -> None:
    """Findings for domains whose JupyterLab / Code Editor apps have no built-in idle
    shutdown, and for user profiles that turn it off. A failure here is reported and skipped:
    it never stops the apps from being listed and judged."""
    try:
        domains = studio_domains(ctx, target, client)
        shared = {domain for (domain, _), space in spaces.items() if space.shared}
        names = {}
        for domain in domains:
            names[domain["DomainId"]] = domain.get("DomainName", "")
            _check_domain(_cache(ctx), target, client, domain, domain["DomainId"] in shared)
        if domains:
            # The first scan of a target spends its calls on what prices and judges (every
            # resource and endpoint config is new); this check, one call per user profile
            # and deciding nothing, starts at the next scan (the cursor says there was one).
            started = ctx.store.scan_cursor(target.account_id, target.region, PROFILE_CHECK)
            target.cursors.append((target.account_id, target.region, PROFILE_CHECK, ctx.now))
            profiles = every(
                ctx,
                ("list_user_profiles", target.account_id, target.region),
                lambda: list(pages(client, "list_user_profiles", "UserProfiles",
                                   MaxResults=PAGE)),
            )  # fmt: skip
            budget = MAX_PROFILE_DESCRIBES if started else 0
            _check_profiles(_cache(ctx), target, client, names, profiles, budget)
    except AWS_ERRORS as exc:
        target.errors.append(
            f"{target.account_id} {target.region}: Studio idle-shutdown check incomplete: "
            f"{error_text(exc)}"
        )


def _cache(ctx: ScanContext) -> _Cache:
    with _cache_lock:
        return _caches.setdefault(ctx.store, {})


def _is_cached(cache: _Cache, key: tuple[str, ...], version: Any) -> bool:
    with _cache_lock:
        hit = cache.get(key)
    return hit is not None and hit[0] == version


def _cached(
    cache: _Cache, key: tuple[str, ...], version: Any, compute: Callable[[], tuple[str, ...]]
) -> tuple[str, ...]:
    """`compute()` once per (key, version): a domain or profile is described again only
    after its LastModifiedTime moves."""
    with _cache_lock:
        hit = cache.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = compute()
    with _cache_lock:
        cache[key] = (version, value)
    return value


def _lifecycle(settings: dict[str, Any] | None, app_settings: str) -> str | None:
    """ENABLED / DISABLED as configured, None when not set at this level."""
    idle = (
        ((settings or {}).get(app_settings) or {})
        .get("AppLifecycleManagement", {})
        .get("IdleSettings", {})
    )
    value = idle.get("LifecycleManagement")
    return str(value) if value else None


def _check_domain(
    cache: _Cache, target: Target, client: Any, domain: dict[str, Any], shared: bool
) -> None:
    domain_id = domain["DomainId"]

    def missing() -> tuple[str, ...]:
        described = client.describe_domain(DomainId=domain_id)
        users = described.get("DefaultUserSettings")
        gaps = [
            f"{title} apps"
            for field, title in IDLE_SHUTDOWN_APPS.items()
            if _lifecycle(users, field) != "ENABLED"
        ]
        spaces = described.get("DefaultSpaceSettings")
        if _lifecycle(spaces, "JupyterLabAppSettings") != "ENABLED":
            gaps.append("shared-space JupyterLab apps")
        return tuple(gaps)

    key = ("domain", target.account_id, target.region, domain_id)
    gaps = list(_cached(cache, key, str(domain.get("LastModifiedTime")), missing))
    if not shared:
        # The space default matters only where shared spaces exist (seen this scan).
        gaps = [gap for gap in gaps if not gap.startswith("shared-space")]
    if not gaps:
        return
    target.findings.append(
        Finding(
            account=target.account_id,
            region=target.region,
            subject=f"domain {domain_id} ({domain.get('DomainName', '')})",
            problem=(
                f"no built-in idle shutdown for {', '.join(gaps)}: an app left open keeps "
                "its instance billing until someone deletes it"
            ),
            fix=(
                "Turn on idle shutdown for the domain (Studio > Domain settings > App "
                "configurations > JupyterLab / Code Editor > Idle shutdown), or: aws sagemaker "
                f"update-domain --domain-id {domain_id} --default-user-settings "
                '\'{"JupyterLabAppSettings":{"AppLifecycleManagement":{"IdleSettings":'
                '{"LifecycleManagement":"ENABLED","IdleTimeoutInMinutes":60}}}}\' '
                "(likewise CodeEditorAppSettings, and --default-space-settings for shared "
                "spaces). Needs SageMaker Distribution 2.0+ images."
            ),
        )
    )


def _check_profiles(
    cache: _Cache,
    target: Target,
    client: Any,
    domains: dict[str, str],
    profiles: list[dict[str, Any]],
    budget: int,
) -> None:
    """User profiles that set idle shutdown to DISABLED (a profile that does not set it
    inherits the domain's, which `_check_domain` covers). `profiles`: ListUserProfiles, read
    hourly; those not described yet are described from it over the next cycles, at most
    `budget` in this one."""
    for profile in profiles:
        domain_id, name = profile["DomainId"], profile["UserProfileName"]
        key = ("user-profile", target.account_id, target.region, domain_id, name)
        version = str(profile.get("LastModifiedTime"))
        if not _is_cached(cache, key, version):
            if budget <= 0:
                continue  # checked in a later cycle
            budget -= 1

        def disabled(domain_id: str = domain_id, name: str = name) -> tuple[str, ...]:
            described = client.describe_user_profile(DomainId=domain_id, UserProfileName=name)
            settings = described.get("UserSettings")
            return tuple(
                title
                for field, title in IDLE_SHUTDOWN_APPS.items()
                if _lifecycle(settings, field) == "DISABLED"
            )

        off = _cached(cache, key, version, disabled)
        if off:
            finding = _profile_finding(target, domain_id, domains.get(domain_id, ""), name, off)
            target.findings.append(finding)


def _profile_finding(
    target: Target, domain_id: str, domain_name: str, name: str, off: tuple[str, ...]
) -> Finding:
    return Finding(
        account=target.account_id,
        region=target.region,
        subject=f"user profile {name} in domain {domain_id} ({domain_name})",
        problem=(
            f"idle shutdown is turned off for {' and '.join(off)} apps of this user, "
            "overriding the domain: they run until someone deletes them"
        ),
        fix=(
            f"aws sagemaker update-user-profile --domain-id {domain_id} "
            f"--user-profile-name {name} --user-settings "
            '\'{"JupyterLabAppSettings":{"AppLifecycleManagement":{"IdleSettings":'
            '{"LifecycleManagement":"ENABLED","IdleTimeoutInMinutes":60}}}}\' '
            "(likewise CodeEditorAppSettings), or remove the override so the domain's applies."
        ),
    )
