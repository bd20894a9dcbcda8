"""The one place where moto is extended for what SageMaker does and moto does not.

Everything that tests, `cost-guard demo` and the benchmark need beyond stock moto lives in
this package (`guard/sim/`), applied once per process by `install(clock)`: this module holds
the shared parts, and `endpoints.py`, `jobs.py` and `studio.py` the patches for their kinds.
Here:

- notebook instance types: moto validates against an old list without g4dn/g5/g6; any
  `ml.*` type is accepted, as SageMaker's own API does for current families;
- notebook lifecycle: StopNotebookInstance moves to `Stopping` (real SageMaker takes minutes),
  `Simulator.settle()` finishes it to `Stopped`; times come from the simulated clock;
- AddTags overwrites an existing key instead of appending a duplicate (as AWS does);
- Resource Groups Tagging API: without `TagsPerPage`, AWS pages by `ResourcesPerPage` only,
  while moto also cuts every page at 100 tags;
- fault injection and request counting at the HTTP boundary (`guard/sim/faults.py`).
- for the newer kinds (`mlflow.py`, `hyperpod.py`, `inference.py`, `tuning.py`,
  `training_plans.py`): offset paging, timestamp parameters, one transition time, and tags
  on resources kept outside moto's tables (`tag_source`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import botocore.session
from moto.core.resource_tagging import TaggedResource
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.resourcegroupstaggingapi import exceptions as tagging_exceptions
from moto.resourcegroupstaggingapi import responses as tagging_responses
from moto.sagemaker import models as sm_models
from moto.sagemaker.exceptions import AWSValidationException
from moto.sagemaker.exceptions import ValidationError as SageMakerValidationError
from werkzeug.serving import make_server

from guard.model import Clock
from guard.sim.faults import FaultInjector

_installed = False
_clock: Clock | None = None
_tagging_lock = threading.Lock()


def naive_utc(when: datetime) -> datetime:
    """moto keeps naive UTC datetimes."""
    return when.astimezone(UTC).replace(tzinfo=None)


def install(clock: Clock) -> None:
    """Patch moto's classes (idempotent); the latest clock given is the one used."""
    global _installed, _clock
    _clock = clock
    if _installed:
        return
    _installed = True
    notebook = sm_models.FakeSagemakerNotebookInstance

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if not str(instance_type).startswith("ml."):
            raise SageMakerValidationError(message=f"Invalid instance type {instance_type!r}")

    def stop(self: Any) -> None:
        if self.status == "InService":
            self.status = "Stopping"
            self.last_modified_time = now()

    def start(self: Any) -> None:
        self.status = "InService"
        self.last_modified_time = now()

    notebook.validate_instance_type = validate_instance_type  # type: ignore[method-assign]
    notebook.stop = stop  # type: ignore[method-assign]
    notebook.start = start  # type: ignore[method-assign]

    def add_tags(self: Any, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
        resource = self._get_resource_from_arn(arn)
        new = {t["Key"]: t["Value"] for t in tags}
        resource.tags = [t for t in resource.tags if t["Key"] not in new] + [
            {"Key": k, "Value": v} for k, v in new.items()
        ]
        return list(resource.tags)

    sm_models.SageMakerModelBackend.add_tags = add_tags  # type: ignore[method-assign]

    original_get_resources = tagging_responses.ResourceGroupsTaggingAPIResponse.get_resources

    def get_resources(self: Any) -> Any:
        by_arn = self._get_param("ResourceARNList")
        if by_arn:
            # As AWS: 1 to 100 ARNs, answered in one response, and no paging parameters with
            # them (moto would page them by its default of 50).
            paging = ("ResourcesPerPage", "TagsPerPage", "PaginationToken")
            if len(by_arn) > 100 or any(self._get_param(p) is not None for p in paging):
                raise tagging_exceptions.ResourceGroupsTaggingAPIError(
                    "InvalidParameterException",
                    "ResourceARNList takes 1 to 100 ARNs and no paging parameters",
                )
        elif self._get_param("TagsPerPage") is not None:
            return original_get_resources(self)
        backend = self.backend
        original_backend_call = backend.get_resources

        def uncapped(**kwargs: Any) -> Any:
            per_page = {"resources_per_page": 100} if by_arn else {}
            return original_backend_call(**{**kwargs, "tags_per_page": 10**9, **per_page})

        with _tagging_lock:  # the backend object is shared by concurrent requests
            backend.get_resources = uncapped
            try:
                return original_get_resources(self)
            finally:
                del backend.get_resources

    tagging_responses.ResourceGroupsTaggingAPIResponse.get_resources = get_resources  # type: ignore[method-assign]

    _patch_tag_sources()

    from guard.sim import endpoints, jobs, studio  # they import this module for `now()`

    endpoints.install()
    jobs.install()
    studio.install()

    from guard.sim import hyperpod, inference, mlflow, search, training_plans, tuning

    for newer in (mlflow, hyperpod, inference, tuning, training_plans, search):
        newer.install()


def now() -> datetime:
    """The simulated clock's time, naive UTC as moto keeps it."""
    return naive_utc(_clock.now()) if _clock else datetime.now(UTC).replace(tzinfo=None)


# --- shared by the modules of the newer kinds (mlflow, hyperpod, inference, tuning, ...) ------

TRANSITION = timedelta(minutes=10)  # how long a Creating/Stopping/Updating/... state lasts
PAGE_LIMIT = 100  # MaxResults of SageMaker's List* calls is 1..100
_Item = TypeVar("_Item")
# (ARN marker such as ":mlflow-tracking-server/", tagging-API type, backend -> resources)
_tag_sources: list[tuple[str, str, Callable[[Any], Iterable[Any]]]] = []


def offset_page(
    items: Sequence[_Item], token: str | None, limit: int | None
) -> tuple[list[_Item], str | None]:
    """One page of `items` and the token of the next (an offset), as the List* calls page."""
    try:
        start = int(token) if token else 0
    except ValueError:
        raise AWSValidationException("Invalid pagination token") from None
    end = start + min(int(limit or PAGE_LIMIT), PAGE_LIMIT)
    return list(items[start:end]), (str(end) if end < len(items) else None)


def as_naive(value: Any) -> datetime | None:
    """A timestamp request parameter (datetime, epoch seconds or ISO text) as naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return naive_utc(value) if value.tzinfo else value
    if isinstance(value, int | float) or str(value).replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)
    return naive_utc(datetime.fromisoformat(str(value)))


@functools.cache
def model_enum(shape: str) -> tuple[str, ...]:
    """The values botocore's SageMaker model allows for an enum shape (e.g. AppType)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for(shape).enum)


def tag_source(arn_marker: str, resource_type: str, items: Callable[[Any], Iterable[Any]]) -> None:
    """Resources kept outside moto's own tables (objects with `.arn` and a `.tags` list) become
    visible to AddTags/ListTags/DeleteTags and to the Resource Groups Tagging API."""
    _tag_sources.append((arn_marker, resource_type, items))


def _patch_tag_sources() -> None:
    backend_class = sm_models.SageMakerModelBackend
    original_lookup = backend_class._get_resource_from_arn
    original_iter = backend_class.iter_tagged_resources

    def get_resource_from_arn(self: Any, arn: str) -> Any:
        for marker, _, items in _tag_sources:
            if marker in arn:
                for item in items(self):
                    if item.arn == arn:
                        return item
                raise SageMakerValidationError(message=f"Could not find resource {arn}")
        return original_lookup(self, arn)

    def iter_tagged_resources(self: Any) -> Iterator[TaggedResource]:
        yield from original_iter(self)
        for _, resource_type, items in _tag_sources:
            for item in items(self):
                tags = {t["Key"]: t["Value"] for t in item.tags}
                yield TaggedResource(arn=item.arn, tags=tags, resource_type=resource_type)

    backend_class._get_resource_from_arn = get_resource_from_arn  # type: ignore[method-assign]
    backend_class.iter_tagged_resources = iter_tagged_resources  # type: ignore[method-assign]


class SimServer(ThreadedMotoServer):
    """moto's threaded server on 127.0.0.1, an OS-chosen port, with the fault injector."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults = FaultInjector(DomainDispatcherApplication(create_backend_app))
        self.listening = False

    def start(self) -> None:
        super().start()
        self._port = self.get_host_and_port()[1]  # a restart listens on the same port
        self.listening = True

    def down(self) -> None:
        """Stop listening: connections to the port are refused (moto's state is kept)."""
        if not self.listening:
            return
        assert self._server is not None and self._thread is not None
        self._server_ready_event.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self.listening = False

    def up(self) -> None:
        """Listen again on the same port, after `down()`."""
        if not self.listening:
            self.start()

    def stop(self) -> None:
        self.down()

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address,
            self._port,
            self.faults,
            True,
            request_handler=MotoRequestHandler,
        )
        server, faults = self._server, self.faults
        shutdown_request = server.shutdown_request

        def close(request: Any) -> None:
            if faults.close_with_reset(request):
                server.close_request(request)  # no FIN first: the client sees a reset
            else:
                shutdown_request(request)

        server.shutdown_request = close  # type: ignore[method-assign]
        self._server_ready_event.set()
        self._server.serve_forever()
