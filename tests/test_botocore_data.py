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
import botocore.session
import pytest

from guard import botocore_data
from guard.aws import Aws

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
