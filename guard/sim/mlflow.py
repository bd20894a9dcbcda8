"""SageMaker MLflow tracking servers in the simulator (moto 5.2 has none of their API).

- CreateMlflowTrackingServer / DescribeMlflowTrackingServer / ListMlflowTrackingServers /
  StopMlflowTrackingServer / StartMlflowTrackingServer / DeleteMlflowTrackingServer, shaped
  as the botocore model has them (TrackingServerStatus, IsActive, paging by NextToken);
- states follow SageMaker's enum: Creating -> Created, Stopping -> Stopped, Starting ->
  Started, Deleting -> gone. A transition lasts `moto_ext.TRANSITION` of simulated time (or
  until `Simulator.settle()`); Stop is refused with ConflictException unless the server runs,
  Start unless it is stopped; an unknown name answers ResourceNotFound;
- tags through AddTags/ListTags/DeleteTags and the Resource Groups Tagging API
  (`sagemaker:mlflow-tracking-server`);
- a server created from Studio names its domain and user profile in `CreatedBy` (and carries
  the `sagemaker:domain-arn` tag), which is how a server outliving its domain is found.

State lives on moto's per-account, per-region SageMaker backend, so moto's reset forgets it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ConflictException, ResourceInUseException, ResourceNotFound
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError

from guard.sim import moto_ext
from guard.sim.base import FAKE_ROLE, SimBase

SIZES = ("Small", "Medium", "Large")
DEFAULT_VERSION = "2.16.2"
RUNNING = ("Created", "Started", "Updated", "MaintenanceComplete", "StopFailed")
STOPPABLE = RUNNING
STARTABLE = ("Stopped", "StartFailed")
# IsActive: the server is up (and billed) from Created until it is Stopped or Deleting.
ACTIVE = (*RUNNING, "Updating", "UpdateFailed", "MaintenanceInProgress", "MaintenanceFailed",
          "Stopping")  # fmt: skip
_NEXT = {"Creating": "Created", "Stopping": "Stopped", "Starting": "Started", "Updating": "Updated"}
_installed = False


@dataclass
class FakeTrackingServer:
    arn: str
    name: str
    artifact_store_uri: str
    size: str
    version: str
    role_arn: str
    created: datetime
    status: str = "Creating"
    modified: datetime | None = None
    changes_at: datetime | None = None  # when the current transitional state ends
    automatic_model_registration: bool = False
    maintenance_window: str = "Tue:03:30"
    created_by: dict[str, Any] = field(default_factory=dict)
    tags: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        region = self.arn.split(":")[3]
        token = hashlib.sha256(self.arn.encode()).hexdigest()[:12]
        return f"https://t-{token}.{region}.experiments.sagemaker.aws"

    def move(self, status: str, at: datetime) -> None:
        """Enter `status`; a transitional one ends `TRANSITION` later."""
        self.status, self.modified = status, at
        self.changes_at = at + moto_ext.TRANSITION if status in (*_NEXT, "Deleting") else None

    def summary(self) -> dict[str, Any]:
        return {
            "TrackingServerArn": self.arn,
            "TrackingServerName": self.name,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified or self.created,
            "TrackingServerStatus": self.status,
            "IsActive": "Active" if self.status in ACTIVE else "Inactive",
            "MlflowVersion": self.version,
        }

    def describe(self) -> dict[str, Any]:
        described = {
            **self.summary(),
            "ArtifactStoreUri": self.artifact_store_uri,
            "TrackingServerSize": self.size,
            "RoleArn": self.role_arn,
            "TrackingServerUrl": self.url,
            "WeeklyMaintenanceWindowStart": self.maintenance_window,
            "AutomaticModelRegistration": self.automatic_model_registration,
        }
        if self.created_by:
            described["CreatedBy"] = self.created_by
            described["LastModifiedBy"] = self.created_by
        return described


def servers(backend: Any) -> dict[str, FakeTrackingServer]:
    """The tracking servers of one moto backend by name, transitions settled to now."""
    found: dict[str, FakeTrackingServer] = backend.__dict__.setdefault("_cost_guard_mlflow", {})
    settle(found, moto_ext.now())
    return found


def settle(found: dict[str, FakeTrackingServer], at: datetime | None) -> None:
    """End transitional states due by `at` (every one when `at` is None)."""
    for name, server in list(found.items()):
        if server.changes_at is None or (at is not None and at < server.changes_at):
            continue
        when = server.changes_at if at is not None else moto_ext.now()
        if server.status == "Deleting":
            del found[name]
        else:
            server.move(_NEXT[server.status], when)


def _find(backend: Any, name: str) -> FakeTrackingServer:
    server = servers(backend).get(name)
    if server is None:
        raise ResourceNotFound(message=f"Tracking server with name {name} not found")
    return server


def create_server(backend: Any, params: Mapping[str, Any]) -> FakeTrackingServer:
    name = params["TrackingServerName"]
    found = servers(backend)
    if name in found:
        raise ResourceInUseException(message=f"Tracking server {name} already exists")
    size = params.get("TrackingServerSize") or "Small"
    if size not in SIZES:
        raise SageMakerValidationError(
            message=f"Value '{size}' at 'trackingServerSize' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(SIZES)}]"
        )
    arn = (
        f"arn:aws:sagemaker:{backend.region_name}:{backend.account_id}"
        f":mlflow-tracking-server/{name}"
    )
    server = FakeTrackingServer(
        arn=arn,
        name=name,
        artifact_store_uri=params["ArtifactStoreUri"],
        size=size,
        version=params.get("MlflowVersion") or DEFAULT_VERSION,
        role_arn=params["RoleArn"],
        created=moto_ext.now(),
        automatic_model_registration=bool(params.get("AutomaticModelRegistration")),
        maintenance_window=params.get("WeeklyMaintenanceWindowStart") or "Tue:03:30",
        tags=list(params.get("Tags") or []),
    )
    server.move("Creating", server.created)
    found[name] = server
    return server


def _sort_key(by: str) -> Callable[[FakeTrackingServer], Any]:
    if by == "Name":
        return lambda s: s.name
    if by == "Status":
        return lambda s: s.status
    return lambda s: s.created


# --- HTTP handlers added to moto's SageMakerResponse ---------------------------------------


def _handlers() -> dict[str, Callable[[Any], ActionResult]]:
    def create_(self: Any) -> ActionResult:
        names = (
            "TrackingServerName", "ArtifactStoreUri", "TrackingServerSize", "MlflowVersion",
            "RoleArn", "AutomaticModelRegistration", "WeeklyMaintenanceWindowStart", "Tags",
        )  # fmt: skip
        server = create_server(self.sagemaker_backend, {n: self._get_param(n) for n in names})
        return ActionResult({"TrackingServerArn": server.arn})

    def describe_(self: Any) -> ActionResult:
        server = _find(self.sagemaker_backend, self._get_param("TrackingServerName"))
        return ActionResult(server.describe())

    def list_(self: Any) -> ActionResult:
        after = moto_ext.as_naive(self._get_param("CreatedAfter"))
        before = moto_ext.as_naive(self._get_param("CreatedBefore"))
        status = self._get_param("TrackingServerStatus")
        version = self._get_param("MlflowVersion")
        found = [
            s
            for s in servers(self.sagemaker_backend).values()
            if (after is None or s.created > after)
            and (before is None or s.created < before)
            and (not status or s.status == status)
            and (not version or s.version == version)
        ]
        # AWS lists newest first unless told otherwise.
        descending = (self._get_param("SortOrder") or "Descending") == "Descending"
        found.sort(key=_sort_key(self._get_param("SortBy") or "CreationTime"), reverse=descending)
        page, token = moto_ext.offset_page(
            found, self._get_param("NextToken"), self._get_param("MaxResults")
        )
        return ActionResult(
            {"TrackingServerSummaries": [s.summary() for s in page], "NextToken": token}
        )

    def stop_(self: Any) -> ActionResult:
        server = _find(self.sagemaker_backend, self._get_param("TrackingServerName"))
        if server.status not in STOPPABLE:
            raise ConflictException(
                f"Tracking server {server.name} cannot be stopped in status {server.status}"
            )
        server.move("Stopping", moto_ext.now())
        return ActionResult({"TrackingServerArn": server.arn})

    def start_(self: Any) -> ActionResult:
        server = _find(self.sagemaker_backend, self._get_param("TrackingServerName"))
        if server.status not in STARTABLE:
            raise ConflictException(
                f"Tracking server {server.name} cannot be started in status {server.status}"
            )
        server.move("Starting", moto_ext.now())
        return ActionResult({"TrackingServerArn": server.arn})

    def delete_(self: Any) -> ActionResult:
        server = _find(self.sagemaker_backend, self._get_param("TrackingServerName"))
        if server.status != "Deleting":
            server.move("Deleting", moto_ext.now())
        return ActionResult({"TrackingServerArn": server.arn})

    return {
        "create_mlflow_tracking_server": create_,
        "describe_mlflow_tracking_server": describe_,
        "list_mlflow_tracking_servers": list_,
        "stop_mlflow_tracking_server": stop_,
        "start_mlflow_tracking_server": start_,
        "delete_mlflow_tracking_server": delete_,
    }


def install() -> None:
    """Add the API to moto (idempotent: called once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name, handler in _handlers().items():
        setattr(sm_responses.SageMakerResponse, name, handler)
    moto_ext.tag_source(
        ":mlflow-tracking-server/",
        "sagemaker:mlflow-tracking-server",
        lambda backend: list(servers(backend).values()),
    )


# --- seeding ---------------------------------------------------------------------------------


class MlflowSeeding(SimBase):
    """MLflow tracking servers: created over HTTP, then placed in time in-process."""

    def add_mlflow_server(
        self,
        name: str,
        size: str = "Small",
        *,
        status: str = "Created",
        created_at: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        region: str | None = None,
        account: str | None = None,
        version: str = DEFAULT_VERSION,
        domain_id: str | None = None,
        user_profile: str | None = None,
    ) -> str:
        """A tracking server in `status` since `created_at` (default now). `domain_id` (and
        `user_profile`) = created from that Studio domain: `CreatedBy` and the
        `sagemaker:domain-arn` tag say so, as on AWS."""
        region = region or self.regions[0]
        response = self.client("sagemaker", region, account).create_mlflow_tracking_server(
            TrackingServerName=name,
            ArtifactStoreUri=f"s3://sim-mlflow/{name}",
            TrackingServerSize=size,
            MlflowVersion=version,
            RoleArn=FAKE_ROLE,
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        backend = self._sagemaker(region, account)
        server = servers(backend)[name]
        when = moto_ext.naive_utc(created_at or self.clock.now())
        server.created = when
        server.move(status, when)
        if domain_id:
            prefix = f"arn:aws:sagemaker:{region}:{backend.account_id}"
            server.created_by = {"DomainId": domain_id}
            server.tags.append(
                {"Key": "sagemaker:domain-arn", "Value": f"{prefix}:domain/{domain_id}"}
            )
            if user_profile:
                server.created_by["UserProfileName"] = user_profile
                server.created_by["UserProfileArn"] = (
                    f"{prefix}:user-profile/{domain_id}/{user_profile}"
                )
        return str(response["TrackingServerArn"])

    def mlflow_status(
        self, name: str, *, region: str | None = None, account: str | None = None
    ) -> str | None:
        """The server's status as SageMaker reports it now; None once it is deleted."""
        server = servers(self._sagemaker(region or self.regions[0], account)).get(name)
        return None if server is None else server.status

    def settle_mlflow(self) -> None:
        """Finish every transition now (Creating -> Created, Stopping -> Stopped, ...)."""
        for region in self.regions:
            settle(servers(self._sagemaker(region)), None)
