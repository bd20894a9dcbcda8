"""The slim botocore data (`guard.botocore_data`) against botocore's own: the same models
without their documentation, the same endpoints for the guard's services, and no client of a
service whose endpoints it dropped."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.model
import botocore.session
import pytest

from guard import botocore_data, kinds
from guard.aws import _LOADER, TRIMMED, Aws

GUARD = Path(__file__).resolve().parent.parent / "guard"
# one region of every partition botocore knows, and a region newer than most endpoint lists
REGIONS = (
    "us-east-1", "eu-west-1", "ap-southeast-5", "us-gov-west-1", "cn-north-1", "us-iso-east-1",
)  # fmt: skip


def _undocumented(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: ""
            if key in ("documentation", "documentationUrl") and isinstance(value, str)
            else _undocumented(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_undocumented(item) for item in data]
    return data


@pytest.mark.parametrize("service", sorted(botocore_data.SERVICES))
def test_a_service_model_is_botocores_with_its_documentation_emptied(service: str) -> None:
    full = botocore.loaders.create_loader().load_service_model(service, "service-2")
    slim = botocore_data.loader().load_service_model(service, "service-2")
    assert slim == _undocumented(full)
    assert full != slim  # it had documentation
    # plain dicts, in botocore's order (members are serialized in it)
    assert type(slim["shapes"]) is dict and not isinstance(slim["shapes"], OrderedDict)
    assert list(slim["shapes"]) == list(full["shapes"])


def test_a_member_named_documentation_is_kept(tmp_path: Path) -> None:
    text = '{"members": {"documentation": {"shape": "String"}}, "documentation": "<p>x</p>"}'
    (tmp_path / "model.json").write_text(text)
    loaded = botocore_data.SlimJSONFileLoader().load_file(str(tmp_path / "model"))
    assert loaded == {"members": {"documentation": {"shape": "String"}}, "documentation": ""}


def _session(loader: botocore.loaders.Loader) -> boto3.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    return boto3.Session(
        botocore_session=core, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


class _Sent(Exception):
    """Raised in place of sending: the request as botocore built it, endpoint resolved."""


def _request_url(client: Any) -> str:
    """The URL of a call with no required parameter, built but not sent: endpoint rules and
    client context parameters are resolved at call time, not when the client is made."""
    model = client.meta.service_model
    operation = next(
        name
        for name in model.operation_names
        if not (shape := model.operation_model(name).input_shape) or not shape.required_members
    )

    def stop(request: Any, **_: Any) -> None:
        raise _Sent(request.url)

    client.meta.events.register("before-send", stop)
    with pytest.raises(_Sent) as sent:
        getattr(client, botocore.xform_name(operation))()
    return str(sent.value)


@pytest.mark.parametrize("service", sorted(botocore_data.SERVICES))
def test_endpoints_and_signing_are_botocores(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_DATA_PATH", "AWS_USE_FIPS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    full, slim = _session(botocore.loaders.create_loader()), _session(botocore_data.loader())
    for region in REGIONS:
        theirs, ours = full.client(service, region), slim.client(service, region)
        assert ours.meta.endpoint_url == theirs.meta.endpoint_url, (service, region)
        assert ours.meta.region_name == theirs.meta.region_name
        assert ours._request_signer._region_name == theirs._request_signer._region_name
        assert ours._request_signer._signing_name == theirs._request_signer._signing_name
        assert _request_url(ours) == _request_url(theirs), (service, region)
    slim_partitions = botocore_data.loader().load_data("endpoints")["partitions"]
    assert all(set(p["services"]) <= botocore_data.SERVICES for p in slim_partitions)


def test_no_client_of_a_service_whose_endpoints_were_dropped() -> None:
    with pytest.raises(ValueError, match=r"ec2: not in guard\.botocore_data\.SERVICES"):
        Aws().client(None, "us-east-1", "ec2")


def test_every_service_the_guard_asks_for_is_kept() -> None:
    """`Aws.client(...)` calls with a literal service name, anywhere in the guard: a path the
    suite does not take would otherwise meet the ValueError above in production."""
    asked = set()
    for path in GUARD.rglob("*.py"):
        if "/sim/" in str(path):
            continue
        asked |= set(re.findall(r'\.client\(\s*[^()]*?,\s*"([a-z0-9-]+)"\s*\)', path.read_text()))
    assert "sagemaker" in asked and "organizations" in asked
    assert asked <= botocore_data.SERVICES, asked - botocore_data.SERVICES


def _named_in_the_guard(service: str) -> set[str]:
    """The operations of `service` the guard's source names, as a method ("list_apps") or an
    operation ("ListApps"), outside the simulator and the heartbeat (which runs on the
    notebook, with boto3's own data). Flask's `create_app` is not SageMaker's CreateApp."""
    model = botocore.session.get_session().get_service_model(service)
    by_method = {botocore.xform_name(name): name for name in model.operation_names}
    named = set()
    # and the bench's naive loop, which calls through `Aws` as the guard does
    for path in [*GUARD.rglob("*.py"), GUARD.parent / "bench" / "naive.py"]:
        if "/sim/" in str(path) or path.name == "heartbeat.py":
            continue
        text = path.read_text().replace("create_app", "")
        named |= {by_method[w] for w in re.findall(r"[a-z][a-z0-9_]+", text) if w in by_method}
        named |= set(re.findall(r'"([A-Z][A-Za-z0-9]+)"', text)) & set(model.operation_names)
    return named


@pytest.mark.parametrize("service", TRIMMED)
def test_a_trimmed_model_keeps_every_operation_the_guard_names(service: str) -> None:
    """A call missing from the trimmed model would be an AttributeError in production, on a
    path the suite may not take: every operation the source names must be kept."""
    named = _named_in_the_guard(service)
    assert named, service
    assert named <= kinds.operations(service), named - kinds.operations(service)


@pytest.mark.parametrize("service", TRIMMED)
def test_a_trimmed_model_is_botocores_for_the_operations_it_keeps(service: str) -> None:
    full = _undocumented(botocore.loaders.create_loader().load_service_model(service, "service-2"))
    ours = _LOADER.load_service_model(service, "service-2")
    kept = kinds.operations(service)
    assert set(ours["operations"]) == kept < set(full["operations"])
    assert list(ours["operations"]) == [name for name in full["operations"] if name in kept]
    assert {k: v for k, v in ours.items() if k not in ("operations", "shapes")} == {
        k: v for k, v in full.items() if k not in ("operations", "shapes")
    }
    for name, operation in ours["operations"].items():
        assert operation == full["operations"][name]
    for name, shape in ours["shapes"].items():
        assert shape == full["shapes"][name]
    # every shape a kept operation reaches resolves (botocore raises for a missing one)
    model = botocore.model.ServiceModel(ours, service)
    seen: set[str] = set()

    def walk(shape: Any) -> None:
        if shape is None or shape.name in seen:
            return
        seen.add(shape.name)
        for member in getattr(shape, "members", {}).values():
            walk(member)
        for attr in ("member", "key", "value"):
            walk(getattr(shape, attr, None))

    for name in model.operation_names:
        operation = model.operation_model(name)
        walk(operation.input_shape)
        walk(operation.output_shape)
        for error in operation.error_shapes:
            walk(error)
    assert seen <= set(ours["shapes"])


def test_a_trimmed_client_makes_its_calls_and_not_the_others() -> None:
    client = _session(_LOADER).client("sagemaker", "us-east-1")
    assert hasattr(client, "list_notebook_instances") and hasattr(client, "search")
    assert client.can_paginate("list_notebook_instances")
    assert not hasattr(client, "create_training_job")  # never called by the guard
    assert client.exceptions.ResourceNotFound.__name__ == "ResourceNotFound"
