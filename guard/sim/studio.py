"""Studio in the simulator: user profiles, spaces and apps, which moto 5 does not have.

moto knows Studio domains (create/describe/list/delete, settings passed through); everything
under a domain is added here:

- CreateUserProfile / DescribeUserProfile / ListUserProfiles,
- CreateSpace / DescribeSpace / ListSpaces (with OwnershipSettings and SpaceSharingSettings),
- CreateApp / DescribeApp / ListApps / DeleteApp: DeleteApp moves the app to `Deleted` and
  leaves its space (and the space's volume) alone, as Studio does; a deleted app stays
  listed as `Deleted`, and DescribeApp of an app never created answers ResourceNotFound,
- tags on apps, user profiles and spaces: AddTags / ListTags / DeleteTags and the Resource
  Groups Tagging API types `sagemaker:app`, `sagemaker:user-profile`, `sagemaker:space`.

State lives on moto's per-account, per-region SageMaker backend object, so moto's reset
(which re-initialises every backend) forgets it together with everything else. List calls
page by an offset token, at most 100 per page as AWS does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core.resource_tagging import TaggedResource
from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase

PAGE_LIMIT = 100  # ListApps / ListSpaces / ListUserProfiles: MaxResults is 1..100
_installed = False


def app_arn(region: str, account: str, domain: str, owner: str, app_type: str, name: str) -> str:
    """The app's ARN as SageMaker forms it: the app type is lower-cased in the ARN."""
    return f"arn:aws:sagemaker:{region}:{account}:app/{domain}/{owner}/{app_type.lower()}/{name}"


@dataclass
class FakeUserProfile:
    arn: str
    domain_id: str
    name: str
    user_settings: dict[str, Any]
    created: datetime
    tags: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "DomainId": self.domain_id,
            "UserProfileName": self.name,
            "Status": "InService",
            "CreationTime": self.created,
            "LastModifiedTime": self.created,
        }

    def describe(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "UserProfileArn": self.arn,
            "UserSettings": self.user_settings,
        }


@dataclass
class FakeSpace:
    arn: str
    domain_id: str
    name: str
    owner: str | None
    sharing: str
    settings: dict[str, Any]
    created: datetime
    tags: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "DomainId": self.domain_id,
            "SpaceName": self.name,
            "Status": "InService",
            "CreationTime": self.created,
            "LastModifiedTime": self.created,
            "SpaceSharingSettingsSummary": {"SharingType": self.sharing},
        }
        if self.owner:
            summary["OwnershipSettingsSummary"] = {"OwnerUserProfileName": self.owner}
        return summary

    def describe(self) -> dict[str, Any]:
        described = {
            "DomainId": self.domain_id,
            "SpaceArn": self.arn,
            "SpaceName": self.name,
            "Status": "InService",
            "CreationTime": self.created,
            "LastModifiedTime": self.created,
            "SpaceSettings": self.settings,
            "SpaceSharingSettings": {"SharingType": self.sharing},
        }
        if self.owner:
            described["OwnershipSettings"] = {"OwnerUserProfileName": self.owner}
        return described


@dataclass
class FakeApp:
    arn: str
    domain_id: str
    app_type: str
    name: str
    user: str | None
    space: str | None
    resource_spec: dict[str, Any]
    created: datetime
    status: str = "InService"
    tags: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        # ListApps (AppDetails) carries no ARN: callers build it from these fields.
        summary: dict[str, Any] = {
            "DomainId": self.domain_id,
            "AppType": self.app_type,
            "AppName": self.name,
            "Status": self.status,
            "CreationTime": self.created,
        }
        if self.resource_spec:
            summary["ResourceSpec"] = self.resource_spec
        if self.user:
            summary["UserProfileName"] = self.user
        if self.space:
            summary["SpaceName"] = self.space
        return summary

    def describe(self) -> dict[str, Any]:
        return {**self.summary(), "AppArn": self.arn}


@dataclass
class StudioState:
    """Everything under the Studio domains of one account and region."""

    users: dict[tuple[str, str], FakeUserProfile] = field(default_factory=dict)
    spaces: dict[tuple[str, str], FakeSpace] = field(default_factory=dict)
    apps: dict[str, FakeApp] = field(default_factory=dict)  # by ARN

    def by_arn(self, arn: str) -> FakeUserProfile | FakeSpace | FakeApp | None:
        if arn in self.apps:
            return self.apps[arn]
        found: list[FakeUserProfile | FakeSpace] = [
            *(p for p in self.users.values() if p.arn == arn),
            *(s for s in self.spaces.values() if s.arn == arn),
        ]
        return found[0] if found else None


def state(backend: Any) -> StudioState:
    """The Studio state of one moto backend (created on first use, gone with moto's reset)."""
    found = backend.__dict__.get("_cost_guard_studio")
    if found is None:
        found = backend.__dict__["_cost_guard_studio"] = StudioState()
    return found  # type: ignore[no-any-return]


def _page(items: list[dict[str, Any]], token: str | None, limit: int | None) -> tuple[Any, Any]:
    start = int(token or 0)
    size = min(int(limit or PAGE_LIMIT), PAGE_LIMIT)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _arn(backend: Any, resource: str, path: str) -> str:
    return f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}:{resource}/{path}"


def _domain(backend: Any, domain_id: str) -> Any:
    if domain_id not in backend.domains:
        raise SageMakerValidationError(message=f"Could not find domain '{domain_id}'.")
    return backend.domains[domain_id]


# --- backend operations (plain functions on a moto backend) -------------------------------


def create_user_profile(
    backend: Any, domain_id: str, name: str, settings: dict[str, Any], tags: list[Any]
) -> FakeUserProfile:
    _domain(backend, domain_id)
    key = (domain_id, name)
    if key in state(backend).users:
        raise ResourceInUseException(message=f"User profile {name} already exists")
    arn = _arn(backend, "user-profile", f"{domain_id}/{name}")
    profile = FakeUserProfile(arn, domain_id, name, settings, moto_ext.now(), list(tags))
    state(backend).users[key] = profile
    return profile


def create_space(
    backend: Any,
    domain_id: str,
    name: str,
    *,
    owner: str | None,
    sharing: str,
    settings: dict[str, Any],
    tags: list[Any],
) -> FakeSpace:
    _domain(backend, domain_id)
    key = (domain_id, name)
    if key in state(backend).spaces:
        raise ResourceInUseException(message=f"Space {name} already exists")
    arn = _arn(backend, "space", f"{domain_id}/{name}")
    space = FakeSpace(arn, domain_id, name, owner, sharing, settings, moto_ext.now(), list(tags))
    state(backend).spaces[key] = space
    return space


def create_app(
    backend: Any,
    domain_id: str,
    app_type: str,
    name: str,
    *,
    user: str | None,
    space: str | None,
    resource_spec: dict[str, Any],
    tags: list[Any],
) -> FakeApp:
    _domain(backend, domain_id)
    app_types = moto_ext.model_enum("AppType")
    if app_type not in app_types:
        raise SageMakerValidationError(
            message=f"Value '{app_type}' at 'appType' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(app_types)}]"
        )
    if bool(user) == bool(space):
        raise SageMakerValidationError(message="Exactly one of UserProfileName or SpaceName")
    studio = state(backend)
    if space and (domain_id, space) not in studio.spaces:
        raise ResourceNotFound(message=f"Space {space} does not exist")
    if user and (domain_id, user) not in studio.users:
        raise ResourceNotFound(message=f"User profile {user} does not exist")
    owner = str(space or user)
    arn = app_arn(backend.region_name, backend.account_id, domain_id, owner, app_type, name)
    existing = studio.apps.get(arn)
    if existing is not None and existing.status not in ("Deleted", "Failed"):
        raise ResourceInUseException(message=f"App {arn} already exists")
    app = FakeApp(arn, domain_id, app_type, name, user, space, resource_spec, moto_ext.now())
    app.tags = list(tags)
    studio.apps[arn] = app  # a re-created app starts with fresh tags, as on AWS
    return app


def find_app(backend: Any, params: Mapping[str, Any]) -> FakeApp:
    owner = params.get("SpaceName") or params.get("UserProfileName") or ""
    arn = app_arn(
        backend.region_name,
        backend.account_id,
        params["DomainId"],
        owner,
        params["AppType"],
        params["AppName"],
    )
    app = state(backend).apps.get(arn)
    if app is None:
        raise ResourceNotFound(message=f"App with name {params['AppName']} does not exist")
    return app


# --- HTTP handlers added to moto's SageMakerResponse ---------------------------------------


def _handlers() -> dict[str, Callable[[Any], Any]]:
    def create_user_profile_(self: Any) -> ActionResult:
        profile = create_user_profile(
            self.sagemaker_backend,
            self._get_param("DomainId"),
            self._get_param("UserProfileName"),
            self._get_param("UserSettings") or {},
            self._get_param("Tags") or [],
        )
        return ActionResult({"UserProfileArn": profile.arn})

    def describe_user_profile_(self: Any) -> ActionResult:
        key = (self._get_param("DomainId"), self._get_param("UserProfileName"))
        profile = state(self.sagemaker_backend).users.get(key)
        if profile is None:
            raise ResourceNotFound(message=f"User profile {key[1]} does not exist")
        return ActionResult(profile.describe())

    def list_user_profiles_(self: Any) -> ActionResult:
        domain = self._get_param("DomainIdEquals")
        contains = self._get_param("UserProfileNameContains") or ""
        items = [
            p.summary()
            for p in state(self.sagemaker_backend).users.values()
            if (not domain or p.domain_id == domain) and contains in p.name
        ]
        page, token = _page(items, self._get_param("NextToken"), self._get_param("MaxResults"))
        return ActionResult({"UserProfiles": page, "NextToken": token})

    def create_space_(self: Any) -> ActionResult:
        ownership = self._get_param("OwnershipSettings") or {}
        sharing = (self._get_param("SpaceSharingSettings") or {}).get("SharingType", "Private")
        space = create_space(
            self.sagemaker_backend,
            self._get_param("DomainId"),
            self._get_param("SpaceName"),
            owner=ownership.get("OwnerUserProfileName"),
            sharing=sharing,
            settings=self._get_param("SpaceSettings") or {},
            tags=self._get_param("Tags") or [],
        )
        return ActionResult({"SpaceArn": space.arn})

    def describe_space_(self: Any) -> ActionResult:
        key = (self._get_param("DomainId"), self._get_param("SpaceName"))
        space = state(self.sagemaker_backend).spaces.get(key)
        if space is None:
            raise ResourceNotFound(message=f"Space {key[1]} does not exist")
        return ActionResult(space.describe())

    def list_spaces_(self: Any) -> ActionResult:
        domain = self._get_param("DomainIdEquals")
        contains = self._get_param("SpaceNameContains") or ""
        items = [
            s.summary()
            for s in state(self.sagemaker_backend).spaces.values()
            if (not domain or s.domain_id == domain) and contains in s.name
        ]
        page, token = _page(items, self._get_param("NextToken"), self._get_param("MaxResults"))
        return ActionResult({"Spaces": page, "NextToken": token})

    def create_app_(self: Any) -> ActionResult:
        app = create_app(
            self.sagemaker_backend,
            self._get_param("DomainId"),
            self._get_param("AppType"),
            self._get_param("AppName"),
            user=self._get_param("UserProfileName"),
            space=self._get_param("SpaceName"),
            resource_spec=self._get_param("ResourceSpec") or {},
            tags=self._get_param("Tags") or [],
        )
        return ActionResult({"AppArn": app.arn})

    def describe_app_(self: Any) -> ActionResult:
        return ActionResult(find_app(self.sagemaker_backend, self._app_params()).describe())

    def delete_app_(self: Any) -> EmptyResult:
        app = find_app(self.sagemaker_backend, self._app_params())
        if app.status in ("Deleting", "Deleted"):
            raise SageMakerValidationError(message=f"App {app.name} is already {app.status}")
        app.status = "Deleted"  # AWS passes through Deleting; the space is left alone
        return EmptyResult()

    def list_apps_(self: Any) -> ActionResult:
        filters = {
            "domain_id": self._get_param("DomainIdEquals"),
            "user": self._get_param("UserProfileNameEquals"),
            "space": self._get_param("SpaceNameEquals"),
        }
        items = [
            a.summary()
            for a in state(self.sagemaker_backend).apps.values()
            if all(not want or getattr(a, attr) == want for attr, want in filters.items())
        ]
        page, token = _page(items, self._get_param("NextToken"), self._get_param("MaxResults"))
        return ActionResult({"Apps": page, "NextToken": token})

    def app_params(self: Any) -> dict[str, Any]:
        names = ("DomainId", "AppType", "AppName", "SpaceName", "UserProfileName")
        return {name: self._get_param(name) for name in names}

    return {
        "create_user_profile": create_user_profile_,
        "describe_user_profile": describe_user_profile_,
        "list_user_profiles": list_user_profiles_,
        "create_space": create_space_,
        "describe_space": describe_space_,
        "list_spaces": list_spaces_,
        "create_app": create_app_,
        "describe_app": describe_app_,
        "delete_app": delete_app_,
        "list_apps": list_apps_,
        "_app_params": app_params,
    }


def _patch_tags() -> None:
    """ARNs of Studio things have more than one `/`: moto's lookup by ARN cannot split them."""
    backend_class = sm_models.SageMakerModelBackend
    original_lookup = backend_class._get_resource_from_arn
    original_iter = backend_class.iter_tagged_resources

    def get_resource_from_arn(self: Any, arn: str) -> Any:
        found = state(self).by_arn(arn)
        if found is not None:
            return found
        if ":app/" in arn or ":user-profile/" in arn or ":space/" in arn:
            raise SageMakerValidationError(message=f"Could not find resource {arn}")
        return original_lookup(self, arn)

    def iter_tagged_resources(self: Any) -> Iterator[TaggedResource]:
        yield from original_iter(self)
        studio = state(self)
        for resource_type, items in (
            ("sagemaker:user-profile", studio.users.values()),
            ("sagemaker:space", studio.spaces.values()),
            ("sagemaker:app", studio.apps.values()),
        ):
            for item in items:
                if isinstance(item, FakeApp) and item.status == "Deleted":
                    continue  # a deleted app's tags are gone with it
                tags = {t["Key"]: t["Value"] for t in item.tags}
                yield TaggedResource(arn=item.arn, tags=tags, resource_type=resource_type)

    backend_class._get_resource_from_arn = get_resource_from_arn  # type: ignore[method-assign]
    backend_class.iter_tagged_resources = iter_tagged_resources  # type: ignore[method-assign]


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in _handlers().items():
        setattr(sm_responses.SageMakerResponse, name, handler)
    _patch_tags()


# --- seeding ---------------------------------------------------------------------------


def idle_settings(enabled: bool, minutes: int = 60) -> dict[str, Any]:
    """App settings with built-in idle shutdown on (`enabled`) or explicitly off."""
    idle: dict[str, Any] = {"LifecycleManagement": "ENABLED" if enabled else "DISABLED"}
    if enabled:
        idle["IdleTimeoutInMinutes"] = minutes
    return {"AppLifecycleManagement": {"IdleSettings": idle}}


def _tag_list(tags: Mapping[str, str] | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in (tags or {}).items()]


class StudioSeeding(SimBase):
    """Studio domains, user profiles, spaces and apps, created through the API over HTTP
    (the fleet helper writes in-process, for speed)."""

    def add_domain(
        self,
        name: str,
        *,
        idle_shutdown: bool = False,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A domain; with `idle_shutdown`, JupyterLab and Code Editor apps of its users stop
        themselves after 60 idle minutes (AppLifecycleManagement)."""
        user_settings: dict[str, Any] = {"ExecutionRole": FAKE_ROLE}
        if idle_shutdown:
            user_settings["JupyterLabAppSettings"] = idle_settings(True)
            user_settings["CodeEditorAppSettings"] = idle_settings(True)
        arn = self.client("sagemaker", region, account).create_domain(
            DomainName=name,
            AuthMode="IAM",
            DefaultUserSettings=user_settings,
            SubnetIds=["subnet-0123456789abcdef0"],
            VpcId="vpc-0123456789abcdef0",
        )["DomainArn"]
        return str(arn).rsplit("/", 1)[-1]

    def add_user_profile(
        self,
        domain_id: str,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        idle_shutdown: bool | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A user profile; `idle_shutdown` True/False overrides the domain, None inherits."""
        settings: dict[str, Any] = {}
        if idle_shutdown is not None:
            settings["JupyterLabAppSettings"] = idle_settings(idle_shutdown)
            settings["CodeEditorAppSettings"] = idle_settings(idle_shutdown)
        params: dict[str, Any] = {
            "DomainId": domain_id,
            "UserProfileName": name,
            "Tags": _tag_list(tags),
        }
        if settings:
            params["UserSettings"] = settings
        arn = self.client("sagemaker", region, account).create_user_profile(**params)
        return str(arn["UserProfileArn"])

    def add_space(
        self,
        domain_id: str,
        name: str,
        owner: str | None = None,
        *,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """A private space of `owner` (a user profile name), or a shared one without owner."""
        params: dict[str, Any] = {
            "DomainId": domain_id,
            "SpaceName": name,
            "SpaceSettings": {"AppType": "JupyterLab"},
            "SpaceSharingSettings": {"SharingType": "Private" if owner else "Shared"},
        }
        if owner:
            params["OwnershipSettings"] = {"OwnerUserProfileName": owner}
        arn = self.client("sagemaker", region, account).create_space(**params)
        return str(arn["SpaceArn"])

    def add_app(
        self,
        domain_id: str,
        app_type: str = "JupyterLab",
        name: str = "default",
        *,
        space: str | None = None,
        user: str | None = None,
        instance_type: str | None = "ml.t3.medium",
        created_at: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
    ) -> str:
        """An app in a space (JupyterLab, CodeEditor) or of a user (JupyterServer,
        KernelGateway, Canvas), running since `created_at`; `instance_type=None` = no
        ResourceSpec, as Studio's default JupyterServer app has."""
        params: dict[str, Any] = {
            "DomainId": domain_id,
            "AppType": app_type,
            "AppName": name,
            "Tags": _tag_list(tags),
        }
        if space:
            params["SpaceName"] = space
        if user:
            params["UserProfileName"] = user
        if instance_type:
            params["ResourceSpec"] = {"InstanceType": instance_type}
        region = region or self.regions[0]
        arn = str(self.client("sagemaker", region, account).create_app(**params)["AppArn"])
        if created_at is not None:
            app = state(self._sagemaker(region, account)).apps[arn]
            app.created = moto_ext.naive_utc(created_at)
        return arn

    def app_status(self, arn: str, *, region: str | None = None, account: str | None = None) -> str:
        return state(self._sagemaker(region or self.regions[0], account)).apps[arn].status

    def space_exists(
        self, domain_id: str, name: str, *, region: str | None = None, account: str | None = None
    ) -> bool:
        studio = state(self._sagemaker(region or self.regions[0], account))
        return (domain_id, name) in studio.spaces

    def set_app_tags(
        self,
        arn: str,
        tags: Mapping[str, str],
        *,
        region: str | None = None,
        account: str | None = None,
    ) -> None:
        self.client("sagemaker", region, account).add_tags(ResourceArn=arn, Tags=_tag_list(tags))

    def add_app_fleet(
        self,
        count: int,
        *,
        domains: int = 3,
        region: str | None = None,
        running_for: timedelta = timedelta(hours=6),
        active_share: float = 0.3,
        instance_types: tuple[str, ...] = ("ml.t3.medium", "ml.m5.xlarge", "ml.g5.xlarge"),
        account: str | None = None,
    ) -> list[str]:
        """Seed in-process (no HTTP): `count` JupyterLab apps spread over `domains` domains,
        each in a private space of its own user; `active_share` of them carry a heartbeat
        tag from 10 minutes ago, the rest have been idle since they started."""
        region = region or self.regions[0]
        backend = self._sagemaker(region, account)
        now = self.clock.now()
        domain_ids = [
            self.add_domain(f"fleet{d}", region=region, account=account) for d in range(domains)
        ]
        active_every = max(1, round(1 / active_share)) if active_share > 0 else 0
        arns = []
        for i in range(count):
            domain_id, user = domain_ids[i % domains], f"user{i:05d}"
            create_user_profile(backend, domain_id, user, {}, [])
            create_space(
                backend, domain_id, f"space{i:05d}",
                owner=user, sharing="Private", settings={}, tags=[],
            )  # fmt: skip
            tags = [{"Key": "team", "Value": f"team-{i % 7}"}]
            if active_every and i % active_every == 0:
                beat = (now - timedelta(minutes=10)).isoformat(timespec="seconds")
                tags.append({"Key": "cost-guard:last-activity", "Value": beat})
            app = create_app(
                backend, domain_id, "JupyterLab", "default", user=None, space=f"space{i:05d}",
                resource_spec={"InstanceType": instance_types[i % len(instance_types)]},
                tags=tags,
            )  # fmt: skip
            app.created = moto_ext.naive_utc(now - running_for)
            arns.append(app.arn)
        return arns
