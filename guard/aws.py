"""boto3 sessions and clients: one per account, adaptive retries, calls counted.

Credentials and endpoints come from the standard boto3 chain (`AWS_ENDPOINT_URL` included).
Member accounts are reached by assuming their `role_arn` with STS.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from guard import botocore_data, kinds
from guard.config import Account

MAX_RETRIES = 5  # retries after the first attempt


def boto_config() -> BotoConfig:
    """Adaptive retries (backs off on throttling, per client), bounded timeouts. The standard
    `AWS_MAX_ATTEMPTS` environment variable overrides the number of attempts."""
    attempts = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()  # the first attempt included
    retries: Any = {"mode": "adaptive", "max_attempts": MAX_RETRIES}
    if attempts:
        retries = {"mode": "adaptive", "total_max_attempts": int(attempts)}
    return BotoConfig(
        retries=retries,
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=16,
    )


class AccountMismatch(Exception):
    """The credentials of a configured account belong to another account: its resources would
    be reported under the wrong id, so the account is not scanned."""


# What a failed AWS call raises: an answer from AWS, or no answer (network, credentials), or
# an answer from the wrong account.
AWS_ERRORS = (ClientError, BotoCoreError, AccountMismatch)

# Where a failed call went ("sagemaker:ListNotebookInstances in 123456789012/us-east-1"):
# botocore's own exceptions do not say; `Aws` clients attach it.
_CALL_KEY = "CostGuardCall"  # in a ClientError's response dict
_CALL_ATTR = "cost_guard_call"  # on a BotoCoreError


def error_text(exc: BaseException) -> str:
    """One readable line for a failed AWS call: which call, in which account and region (when
    made by an `Aws` client), and why: `Code: Message` of an answer, or what went wrong on the
    way (connection refused, timeout, no credentials). Never a traceback or an HTML page."""
    where = call_of(exc)
    why = _why(exc)
    return f"{where}: {why}" if where else why


def call_of(exc: BaseException) -> str | None:
    """ "service:Operation in account/region" of the failed call, when known."""
    if isinstance(exc, ClientError):
        where = exc.response.get(_CALL_KEY)
        return str(where) if where else None
    where = getattr(exc, _CALL_ATTR, None)
    return str(where) if where else None


def annotate(exc: BaseException, where: str) -> None:
    """Attach "service:Operation in account/region" to an error (first caller wins)."""
    if call_of(exc):
        return
    if isinstance(exc, ClientError):
        exc.response[_CALL_KEY] = where
    else:
        setattr(exc, _CALL_ATTR, where)


def connection_failed(exc: BaseException) -> bool:
    """No answer came back (refused, reset, timed out): a mutation may or may not have
    happened. An error answer (ClientError) means AWS said no."""
    return isinstance(exc, BotoCoreError) and not isinstance(
        exc, (NoCredentialsError, CredentialRetrievalError)
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Error")
        message = _plain(str(error.get("Message") or ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code.isdigit() or (not message and status):
            # No AWS error in the body (a load balancer's page): the HTTP status says it all.
            return f"HTTP {status or code} {message}".strip()
        return f"{code}: {message}".strip()
    kwargs = getattr(exc, "kwargs", {}) or {}
    url = kwargs.get("endpoint_url")
    at = f" ({url})" if url else ""
    cause = str(kwargs.get("error", "")).lower()
    if isinstance(exc, EndpointConnectionError):
        if "refused" in cause:
            return f"connection refused{at}"
        if "name or service" in cause or "nodename" in cause or "getaddrinfo" in cause:
            return f"DNS lookup failed{at}"
        return f"cannot connect{at}"
    if isinstance(exc, ConnectTimeoutError):
        return f"connect timeout{at}"
    if isinstance(exc, ReadTimeoutError):
        return f"read timeout: no answer in time{at}"
    if isinstance(exc, ConnectionClosedError):
        reset = "reset" in cause or "aborted" in cause
        return f"connection {'reset' if reset else 'closed'} before a complete answer{at}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (environment, profile, instance or pod role)"
    return _plain(str(exc))


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _plain(message: str, limit: int = 300) -> str:
    """An error message fit for one log line: an HTML page (a load balancer's 502) becomes its
    title (or its text), whitespace is collapsed, and the length bounded."""
    if "<html" in message.lower() or "<!doctype" in message.lower() or "<body" in message.lower():
        title = _TITLE.search(message)
        message = title.group(1) if title else _TAG.sub(" ", message)
        message = html.unescape(message)
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


class CallCounter:
    """Counts logical AWS API calls, and the ones that failed after botocore's retries, by
    "service:Operation", thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, model: Any, context: dict[str, Any] | None = None, **_: Any) -> None:
        """botocore's before-call event: one logical call (its retries are not counted)."""
        name = operation_name(model)
        if context is not None:
            context[_CONTEXT_KEY] = name  # for after-call-error, which carries no model
        with self._lock:
            self._counts[name] += 1

    def after_call(self, model: Any, http_response: Any = None, **_: Any) -> None:
        """botocore's after-call event: an answer, maybe an error status."""
        if http_response is not None and http_response.status_code < 400:
            return
        self.failed(operation_name(model))

    def failed(self, name: str) -> None:
        with self._lock:
            self._errors[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._errors.items()))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._errors.clear()

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


_CONTEXT_KEY = "cost_guard_operation"


def operation_name(model: Any) -> str:
    """ "service:Operation" of a botocore operation model, e.g. "sagemaker:StopNotebookInstance"."""
    return f"{model.service_model.signing_name}:{model.name}"


class Aws:
    """Hands out clients per (account, region, service), all counted by one `CallCounter`.

    Every client tags the errors of its calls with "service:Operation in account/region"
    (see `error_text`), and counts them once, whether AWS answered with an error or did not
    answer at all.
    """

    def __init__(
        self, counter: CallCounter | None = None, config: BotoConfig | None = None
    ) -> None:
        self.counter = counter or CallCounter()
        self.config = config
        self._sessions: dict[str, boto3.Session] = {}
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self._own_account: str | None = None
        self._verified: dict[str, str] = {}  # configured id -> id the credentials belong to
        self._verifying: dict[str, threading.Lock] = {}  # by configured id ("": the default)

    def client(self, account: Account | None, region: str, service: str) -> Any:
        if service not in botocore_data.SERVICES:  # its endpoints are not in the slim data
            raise ValueError(f"{service}: not in guard.botocore_data.SERVICES")
        key = (account.id if account else "", region, service)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                try:
                    session = self._session(account, region)
                except AWS_ERRORS as exc:  # assuming the member account's role failed
                    annotate(exc, f"sts:AssumeRole in {self._label(account)}/{region}")
                    raise
                client = session.client(
                    service, region_name=region, config=self.config or boto_config()
                )
                self._watch(client, account, region)
                self._clients[key] = client
            return client

    def _watch(self, client: Any, account: Account | None, region: str) -> None:
        events = client.meta.events

        def where(name: str) -> str:
            return f"{name} in {self._label(account)}/{region}"

        def after_call(model: Any, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
            if http_response is None or http_response.status_code < 400:
                return
            name = operation_name(model)
            self.counter.failed(name)
            if isinstance(parsed, dict):  # becomes the ClientError's `response`
                parsed[_CALL_KEY] = where(name)

        def after_call_error(
            exception: BaseException | None = None,
            context: dict[str, Any] | None = None,
            event_name: str = "",
            **_: Any,
        ) -> None:
            # No answer (refused, reset, timed out, no credentials): botocore gives the
            # exception and the request context, not the operation model.
            name = (context or {}).get(_CONTEXT_KEY) or _from_event(event_name)
            self.counter.failed(name)
            if exception is not None:
                annotate(exception, where(name))

        events.register("before-call.*.*", self.counter)
        events.register("after-call.*.*", after_call)
        events.register("after-call-error.*.*", after_call_error)

    def _label(self, account: Account | None) -> str:
        if account is not None:
            return account.id
        return self._own_account or "default account"

    def account_id(self, account: Account | None, region: str) -> str:
        """The id resources of `account` are reported under. A configured account's id is
        checked once per process against who its credentials belong to (STS
        GetCallerIdentity): a mismatch raises `AccountMismatch` rather than mislabel."""
        # One GetCallerIdentity per account: an account's regions are scanned at once, and
        # each would otherwise ask while the first answer is on its way.
        with self._lock:
            gate = self._verifying.setdefault(account.id if account else "", threading.Lock())
        if account is None:
            with gate:
                own = self._own_account or self._caller_account(None, region)
                self._own_account = own
                return own
        with gate:
            actual = self._verified.get(account.id)
            if actual is None:
                actual = self._verified[account.id] = self._caller_account(account, region)
        if actual != account.id:
            how = f"role {account.role_arn}" if account.role_arn else "the default credentials"
            raise AccountMismatch(
                f"account {account.id}{f' ({account.name})' if account.name else ''} is "
                f"configured, but {how} belong(s) to account {actual}: not scanned, so nothing "
                f"is reported under the wrong account (fix accounts[].id or role_arn)"
            )
        return account.id

    def _caller_account(self, account: Account | None, region: str) -> str:
        return str(self.client(account, region, "sts").get_caller_identity()["Account"])

    def _session(self, account: Account | None, region: str) -> boto3.Session:
        name = account.id if account else ""
        session = self._sessions.get(name)
        if session is None:
            session = boto3.Session(botocore_session=_botocore_session())
            if account is not None and account.role_arn:
                session = _assumed_session(
                    session, account.role_arn, account.external_id, self.config or boto_config()
                )
            self._sessions[name] = session
        return session


# One loader for every session: each session would otherwise parse and keep its own copy of
# the service models, once per member account. Slim: documentation emptied, and the endpoints
# of the guard's services only (five clients' models: 25 -> 11.5 MB resident); of the
# services only the kinds call, the operations they name (a SageMaker client: 0.82 -> 0.21 MB).
TRIMMED = ("sagemaker", "cloudwatch", "logs")
_LOADER = botocore_data.loader(operations={s: kinds.operations(s) for s in TRIMMED})


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    parsers = session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=_utc_timestamp)
    return session


def _utc_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, answering in UTC with one shared tzinfo. Its own gives
    every epoch timestamp a `tzlocal()` instance of its own (~0.5 KB each: 60 MB of a first
    cycle's 135 MB at 10,000 resources, held by the listings); the instants are the same."""
    if isinstance(value, (int, float)):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return datetime.fromtimestamp(value, UTC)
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed  # naive stays as botocore says


def _from_event(event_name: str) -> str:
    # "after-call-error.sagemaker.ListNotebookInstances" (the service id, not signing name)
    parts = event_name.split(".")
    return f"{parts[1]}:{parts[2]}" if len(parts) >= 3 else "aws:unknown"


def _assumed_session(
    base: boto3.Session, role_arn: str, external_id: str | None, config: BotoConfig
) -> boto3.Session:
    """A session whose credentials refresh themselves by re-assuming the role before expiry."""
    from botocore.credentials import RefreshableCredentials

    sts = base.client("sts", config=config)

    def refresh() -> dict[str, str]:
        extra = {"ExternalId": external_id} if external_id else {}
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="cost-guard", **extra)[
            "Credentials"
        ]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    botocore_session = _botocore_session()
    botocore_session._credentials = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    return boto3.Session(botocore_session=botocore_session)


def not_found(exc: ClientError) -> bool:
    """Whether AWS said the resource does not exist. SageMaker answers a Describe of something
    deleted with ValidationException "Could not find ..." or ResourceNotFound, by API."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), str(error.get("Message", "")).lower()
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and ("could not find" in message or "not found" in message)
    )


def pages(client: Any, operation: str, key: str, **params: Any) -> Iterable[Any]:
    """Every item under `key` across all pages of a paginated operation."""
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])
