"""The simulator's AWS fault layer: every way an AWS call can fail, at the HTTP boundary.

`FaultInjector` is WSGI middleware in front of moto (`SimServer` installs it). Each request is
matched by operation ("sagemaker:StopNotebookInstance"; "sagemaker:*" and "*" match more),
account (from the request's access key, as moto maps it) and region (from its signature),
against the faults injected so far; the first that matches (and has not run out) decides:

| kind            | what the client sees                                                  |
|-----------------|-----------------------------------------------------------------------|
| `denied`        | AccessDenied (400/403): AWS answered no (not retried by botocore)     |
| `reset`         | the connection closes before any answer (ConnectionClosedError)       |
| `reset-mid`     | headers and half a body, then the connection closes                   |
| `timeout`       | no answer for `seconds` (default 5), then the connection closes: a     |
|                 | client whose read timeout is shorter gets ReadTimeoutError            |
| `slow`          | the real answer, after `seconds`                                      |
| `expired`       | ExpiredTokenException / ExpiredToken (400/403)                        |
| `throttle`      | ThrottlingException / Throttling (400)                                |
| `5xx`           | ServiceUnavailable with `status` (default 503), in the API's protocol |
| `html502`       | a load balancer's HTML page with `status` (default 502)               |
| `applied-reset` | moto applies the call, then the connection closes before the answer   |

A connection *refused* cannot be injected per request (the connection is accepted before the
request says what it is): `Simulator.down()` stops listening on the simulator's port
(`up()` listens again, same port, same state), and `Simulator.env(unreachable=...)` points
chosen services at a closed port (`AWS_ENDPOINT_URL_<SERVICE>`).

`times=N` makes a fault hit only the first N matching requests; `rate=p` hits each matching
request with probability p (a seeded generator: runs repeat); `after="svc:Op"` arms it only
once that operation was requested (e.g. the re-check after a stop whose answer was lost).
`Fault.off()` removes one fault, `FaultInjector.heal()` all of them. `hits` counts what each
fault did.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

KINDS = (
    "denied", "reset", "reset-mid", "timeout", "slow", "expired", "throttle", "5xx", "html502",
    "applied-reset",
)  # fmt: skip

LB_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>awselb/2.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass
class Fault:
    """One injected failure; see the module docstring for the kinds."""

    kind: str
    operation: str = "*"
    account: str = "*"
    region: str = "*"
    times: int | None = None  # None: until removed
    rate: float = 1.0
    seconds: float = 0.0
    status: int = 0
    after: str | None = None  # only once this operation was requested (since the last reset)
    hits: int = 0
    _owner: FaultInjector | None = field(default=None, repr=False, compare=False)

    def matches(self, operation: str, account: str, region: str) -> bool:
        return (
            _glob(self.operation, operation)
            and self.account in ("*", account)
            and self.region in ("*", region)
        )

    def off(self) -> None:
        """Remove this fault (the API answers again)."""
        if self._owner is not None:
            self._owner.remove(self)


def _glob(pattern: str, operation: str) -> bool:
    if pattern in ("*", operation):
        return True
    return pattern.endswith(":*") and operation.startswith(pattern[:-1])


class FaultInjector:
    """WSGI middleware: counts requests by operation and fails the ones it is told to."""

    def __init__(self, app: Callable[..., Any], seed: int = 12) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._resets: set[int] = set()  # ids of sockets to close with a reset
        self._lock = threading.Lock()

    # --- the API ---------------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        operation: str = "*",
        *,
        account: str = "*",
        region: str = "*",
        times: int | None = None,
        rate: float = 1.0,
        seconds: float | None = None,
        status: int | None = None,
        after: str | None = None,
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        default_seconds = {"timeout": 5.0, "slow": 1.0}.get(kind, 0.0)
        default_status = {"5xx": 503, "html502": 502}.get(kind, 0)
        fault = Fault(
            kind, operation, account, region, times, rate,
            default_seconds if seconds is None else seconds,
            default_status if status is None else status, after,
        )  # fmt: skip
        fault._owner = self
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(self, operations: Iterable[str], region: str = "*") -> None:
        """AccessDenied for these operations (kept for the older tests)."""
        for op in operations:
            self.inject("denied", op, region=region)

    def slow(self, operations: Iterable[str], seconds: float) -> None:
        for op in operations:
            self.inject("slow", op, seconds=seconds)

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    # --- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        operation = operation_of(request)
        if not operation:
            return self.app(environ, start_response)
        scope = _credential_scope(request.headers.get("Authorization", ""))
        region = scope[2] if len(scope) > 3 else ""
        account = _account_of(scope[0] if scope else "")
        with self._lock:
            self.counts[operation] += 1
            fault = self._pick(operation, account, region)
        if fault is None:
            return self.app(environ, start_response)
        return self._apply(fault, request, operation, environ, start_response)

    def _drop(self, environ: dict[str, Any], body_read: bool = False) -> Any:
        """Drop the connection with a TCP reset, as a broken network path does: no answer, or
        none of the rest of it. (A clean close after a short body would pass for a complete
        answer: botocore does not enforce Content-Length.) The request body is read first,
        reads then see end-of-file, and the server's `shutdown_request` (see `SimServer`)
        closes the socket with SO_LINGER 0 instead of a FIN; the ConnectionResetError tells
        werkzeug the client is gone, so it logs and writes nothing more."""
        if not body_read:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            with contextlib.suppress(OSError, ValueError):
                environ["wsgi.input"].read(length)
        sock: socket.socket | None = environ.get("werkzeug.socket")
        if sock is not None:
            with self._lock:
                self._resets.add(id(sock))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        raise ConnectionResetError("simulated: connection dropped")

    def close_with_reset(self, sock: socket.socket) -> bool:
        """Whether `sock` was dropped by a fault: then it is made to close with a reset."""
        with self._lock:
            if id(sock) not in self._resets:
                return False
            self._resets.discard(id(sock))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return True

    def _pick(self, operation: str, account: str, region: str) -> Fault | None:
        for fault in self._faults:
            if not fault.matches(operation, account, region):
                continue
            if fault.times is not None and fault.hits >= fault.times:
                continue
            if fault.after is not None and not self.counts.get(fault.after):
                continue
            if fault.rate < 1.0 and self._random.random() >= fault.rate:
                continue
            fault.hits += 1
            return fault
        return None

    def _apply(
        self,
        fault: Fault,
        request: Request,
        operation: str,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Any:
        kind = fault.kind
        if kind == "slow":
            time.sleep(fault.seconds)  # a slow AWS API, e.g. to catch a cycle mid-flight
            return self.app(environ, start_response)
        if kind == "reset":
            return self._drop(environ)
        if kind == "timeout":
            time.sleep(fault.seconds)
            return self._drop(environ)
        if kind == "applied-reset":
            # AWS applies the call; the answer is lost on the way back.
            answer = self.app(environ, lambda *args, **kwargs: None)
            for _ in answer:
                pass
            return self._drop(environ, body_read=True)
        if kind == "reset-mid":
            return _half_then_drop(environ, start_response, lambda: self._drop(environ))
        if kind == "html502":
            page = LB_502.replace("502 Bad Gateway", f"{fault.status} Bad Gateway")
            return Response(page, status=fault.status, content_type="text/html")(
                environ, start_response
            )
        code, status = {
            "denied": (("AccessDeniedException", "AccessDenied"), 0),
            "expired": (("ExpiredTokenException", "ExpiredToken"), 0),
            "throttle": (("ThrottlingException", "Throttling"), 400),
            "5xx": (("ServiceUnavailableException", "ServiceUnavailable"), fault.status),
        }[kind]
        message = {
            "denied": f"simulated failure of {operation}",
            "expired": "The security token included in the request is expired",
            "throttle": "Rate exceeded",
            "5xx": "Service is unavailable. Please retry.",
        }[kind]
        return _error(request, code, message, status)(environ, start_response)


def _error(request: Request, codes: tuple[str, str], message: str, status: int) -> Response:
    """An AWS error in the protocol the caller speaks (JSON, or XML for query APIs such as
    STS), so botocore parses it as the ClientError real AWS would give."""
    json_code, xml_code = codes
    if request.headers.get("X-Amz-Target") or request.path.startswith("/service/"):
        body = json.dumps({"__type": json_code, "message": message})
        return Response(body, status=status or 400, content_type="application/x-amz-json-1.1")
    xml = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{xml_code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>sim</RequestId></ErrorResponse>"
    )
    return Response(xml, status=status or 403, content_type="text/xml")


def _half_then_drop(
    environ: dict[str, Any], start_response: Callable[..., Any], drop: Callable[[], Any]
) -> Iterator[bytes]:
    start_response(
        "200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", "4096")]
    )

    def body() -> Iterator[bytes]:
        yield b'{"NotebookInstances": ['
        drop()

    return body()


def operation_of(request: Request) -> str | None:
    """ "service:Operation" of a request, e.g. "sagemaker:StopNotebookInstance"."""
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
    if request.path.startswith("/service/"):  # Smithy RPC v2: /service/<Service>/operation/<Op>
        parts = request.path.strip("/").split("/")
        if len(parts) >= 4:
            service = {"GraniteServiceVersion20100801": "cloudwatch"}.get(parts[1], parts[1])
            return f"{service}:{parts[3]}"
    action = request.args.get("Action")
    if not action and (request.content_type or "").startswith("application/x-www-form-urlencoded"):
        # Read the form body, then put it back: moto reads the same stream after us.
        length = int(request.environ.get("CONTENT_LENGTH") or 0)
        body = request.environ["wsgi.input"].read(length)
        request.environ["wsgi.input"] = io.BytesIO(body)
        action = (parse_qs(body.decode()).get("Action") or [None])[0]
    scope = _credential_scope(request.headers.get("Authorization", ""))
    service = scope[3] if len(scope) > 3 else "query"
    return f"{service}:{action}" if action else None


def _credential_scope(auth: str) -> list[str]:
    # "... Credential=AKID/20260101/us-east-1/sagemaker/aws4_request, ..."
    return auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")


def _account_of(access_key: str) -> str:
    """The account moto serves this access key from (an assumed role's, or the default)."""
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(access_key)) if access_key else ""
