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
- fault injection and request counting at the HTTP boundary (`FaultInjector`).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

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
from werkzeug.wrappers import Request, Response

from guard.model import Clock

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


class FaultInjector:
    """WSGI middleware: counts requests by operation and fails the operations it is told to.

    A failure is an `AccessDeniedException` (HTTP 400): botocore does not retry it, so a test of
    "a failing call makes its resources unknown" runs without backoff sleeps.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._failing: dict[str, str] = {}  # operation -> region ("*" = every region)
        self._delays: dict[str, float] = {}  # operation -> seconds the answer takes
        self._lock = threading.Lock()

    def fail(self, operations: Iterable[str], region: str = "*") -> None:
        with self._lock:
            for op in operations:
                self._failing[op] = region

    def slow(self, operations: Iterable[str], seconds: float) -> None:
        with self._lock:
            for op in operations:
                self._delays[op] = seconds

    def heal(self) -> None:
        with self._lock:
            self._failing.clear()
            self._delays.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        operation = _operation(request)
        region = _region(request)
        if operation:
            with self._lock:
                self.counts[operation] += 1
                failing = self._failing.get(operation)
                delay = self._delays.get(operation, 0.0)
            if delay:
                time.sleep(delay)  # a slow AWS API, e.g. to catch a cycle mid-flight
            if failing is not None and failing in ("*", region):
                return _access_denied(request, operation)(environ, start_response)
        return self.app(environ, start_response)


def _access_denied(request: Request, operation: str) -> Response:
    """An AccessDenied error in the protocol the caller speaks (JSON, or XML for query APIs
    such as STS), so botocore parses it as the ClientError real AWS would give."""
    message = f"simulated failure of {operation}"
    if request.headers.get("X-Amz-Target") or request.path.startswith("/service/"):
        body = json.dumps({"__type": "AccessDeniedException", "message": message})
        return Response(body, status=400, content_type="application/x-amz-json-1.1")
    xml = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        f"<Message>{message}</Message></Error><RequestId>sim</RequestId></ErrorResponse>"
    )
    return Response(xml, status=403, content_type="text/xml")


def _operation(request: Request) -> str | None:
    target = request.headers.get("X-Amz-Target")
    if target:
        prefix, _, op = target.partition(".")
        service = {
            "SageMaker": "sagemaker",
            "Logs_20140328": "logs",
            "ResourceGroupsTaggingAPI_20170126": "tagging",
            "GraniteServiceVersion20100801": "cloudwatch",
            "AWSPriceListService": "pricing",
            "AWSInsightsIndexService": "ce",
        }.get(prefix, prefix.lower())
        return f"{service}:{op}"
    if request.path.startswith("/moto-api"):
        return None
    action = request.args.get("Action")
    if not action and request.content_type.startswith("application/x-www-form-urlencoded"):
        # Read the form body, then put it back: moto reads the same stream after us.
        length = int(request.environ.get("CONTENT_LENGTH") or 0)
        body = request.environ["wsgi.input"].read(length)
        request.environ["wsgi.input"] = io.BytesIO(body)
        action = (parse_qs(body.decode()).get("Action") or [None])[0]
    service = _service_from_auth(request.headers.get("Authorization", ""))
    return f"{service}:{action}" if action else None


def _credential_scope(auth: str) -> list[str]:
    # "... Credential=AKID/20260101/us-east-1/sagemaker/aws4_request, ..."
    return auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")


def _region(request: Request) -> str:
    parts = _credential_scope(request.headers.get("Authorization", ""))
    return parts[2] if len(parts) > 3 else ""


def _service_from_auth(auth: str) -> str:
    parts = _credential_scope(auth)
    return parts[3] if len(parts) > 3 else "query"


class SimServer(ThreadedMotoServer):
    """moto's threaded server on 127.0.0.1, an OS-chosen port, with the fault injector."""

    def __init__(self) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self.faults = FaultInjector(DomainDispatcherApplication(create_backend_app))

    def _server_entry(self) -> None:
        self._server = make_server(
            self._ip_address,
            self._port,
            self.faults,
            True,
            request_handler=MotoRequestHandler,
        )
        self._server_ready_event.set()
        self._server.serve_forever()
