"""boto3 sessions and clients: one per account, adaptive retries, calls counted.

Credentials and endpoints come from the standard boto3 chain (`AWS_ENDPOINT_URL` included).
Member accounts are reached by assuming their `role_arn` with STS.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from guard.config import Account

BOTO_CONFIG = BotoConfig(
    retries={"mode": "adaptive", "max_attempts": 5},  # backs off on throttling, per client
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=16,
)


# What a failed AWS call raises: an answer from AWS, or no answer (network, credentials).
AWS_ERRORS = (ClientError, BotoCoreError)


def error_text(exc: Exception) -> str:
    """`Code: Message` of a botocore error: what the on-call needs, without the request."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return str(exc)


class CallCounter:
    """Counts logical AWS API calls, and the ones that failed after botocore's retries, by
    "service:Operation", thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.signing_name}:{model.name}"
        with self._lock:
            self._counts[name] += 1

    def after_call(self, model: Any, http_response: Any = None, **_: Any) -> None:
        """botocore's after-call (an answer, maybe an error status) and after-call-error
        (no answer: connection refused, timed out) events."""
        if http_response is not None and http_response.status_code < 400:
            return
        with self._lock:
            self._errors[f"{model.service_model.signing_name}:{model.name}"] += 1

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


class Aws:
    """Hands out clients per (account, region, service), all counted by one `CallCounter`."""

    def __init__(self, counter: CallCounter | None = None) -> None:
        self.counter = counter or CallCounter()
        self._sessions: dict[str, boto3.Session] = {}
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self._own_account: str | None = None

    def client(self, account: Account | None, region: str, service: str) -> Any:
        key = (account.id if account else "", region, service)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session(account).client(
                    service, region_name=region, config=BOTO_CONFIG
                )
                client.meta.events.register("before-call.*.*", self.counter)
                client.meta.events.register("after-call.*.*", self.counter.after_call)
                client.meta.events.register("after-call-error.*.*", self.counter.after_call)
                self._clients[key] = client
            return client

    def account_id(self, account: Account | None, region: str) -> str:
        if account is not None:
            return account.id
        with self._lock:
            cached = self._own_account
        if cached is None:
            cached = str(self.client(None, region, "sts").get_caller_identity()["Account"])
            with self._lock:
                self._own_account = cached
        return cached

    def _session(self, account: Account | None) -> boto3.Session:
        name = account.id if account else ""
        session = self._sessions.get(name)
        if session is None:
            session = boto3.Session(botocore_session=_botocore_session())
            if account is not None and account.role_arn:
                session = _assumed_session(session, account.role_arn, account.external_id)
            self._sessions[name] = session
        return session


# One loader for every session: each session would otherwise parse and keep its own copy of
# the service models (SageMaker's alone is ~20 MB in memory), once per member account.
_LOADER = botocore.loaders.create_loader()


def _botocore_session() -> botocore.session.Session:
    session = botocore.session.get_session()
    session.register_component("data_loader", _LOADER)
    return session


def _assumed_session(
    base: boto3.Session, role_arn: str, external_id: str | None = None
) -> boto3.Session:
    """A session whose credentials refresh themselves by re-assuming the role before expiry."""
    from botocore.credentials import RefreshableCredentials

    sts = base.client("sts", config=BOTO_CONFIG)

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
