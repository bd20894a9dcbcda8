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
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.resourcegroupstaggingapi import responses as tagging_responses
from moto.sagemaker import models as sm_models
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
        if self._get_param("TagsPerPage") is not None:
            return original_get_resources(self)
        backend = self.backend
        original_backend_call = backend.get_resources

        def uncapped(**kwargs: Any) -> Any:
            return original_backend_call(**{**kwargs, "tags_per_page": 10**9})

        with _tagging_lock:  # the backend object is shared by concurrent requests
            backend.get_resources = uncapped
            try:
                return original_get_resources(self)
            finally:
                del backend.get_resources

    tagging_responses.ResourceGroupsTaggingAPIResponse.get_resources = get_resources  # type: ignore[method-assign]

    from guard.sim import endpoints, jobs, studio  # they import this module for `now()`

    endpoints.install()
    jobs.install()
    studio.install()


def now() -> datetime:
    """The simulated clock's time, naive UTC as moto keeps it."""
    return naive_utc(_clock.now()) if _clock else datetime.now(UTC).replace(tzinfo=None)


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
