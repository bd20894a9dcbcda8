"""The deployment artefacts, checked offline: CloudFormation/SAM templates (cfn-lint, and their
IAM statements equal to what `guard.iam.policy` generates), Kubernetes manifests (the bundled
Kubernetes schemas in strict mode, a vendored ServiceMonitor CRD schema, cross-references)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from guard import aws_lambda
from guard.config import Config, TagKeys, load_config
from guard.iam import policy
from guard.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_TEMPLATE = ROOT / "deploy" / "lambda" / "template.yaml"
MEMBER_TEMPLATE = ROOT / "deploy" / "iam" / "member-account-role.yaml"
K8S = ROOT / "deploy" / "k8s"
SERVICEMONITOR_SCHEMA = Path(__file__).parent / "schemas" / "servicemonitor-v1.json"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


# --- CloudFormation ----------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short intrinsics: `!Ref X` -> {"Ref": X}, `!If [...]` ->
    {"Fn::If": [...]}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def _template(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)
    return loaded


def _statements(
    node: Any, under: tuple[str, ...] = ()
) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """Every IAM statement in `node` with the template conditions (Fn::If) it sits under."""
    found: list[tuple[dict[str, Any], tuple[str, ...]]] = []
    if isinstance(node, dict):
        if "Fn::If" in node:
            condition, then, _else = node["Fn::If"]
            return _statements(then, (*under, condition))  # the else branch is AWS::NoValue
        if "Effect" in node and "Action" in node:
            return [(node, under)]
        for value in node.values():
            found += _statements(value, under)
    elif isinstance(node, list):
        for item in node:
            found += _statements(item, under)
    return found


def _policies(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies: list[dict[str, Any]] = template["Resources"][role]["Properties"]["Policies"]
    return policies


def _by_sid(statements: list[tuple[dict[str, Any], tuple[str, ...]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for statement, conditions in statements:
        assert statement["Sid"] not in out, f"Sid {statement['Sid']} used twice"
        out[statement["Sid"]] = (statement, conditions)
    return out


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _typical_config() -> Config:
    """A rule for every kind and every action it offers: all that the guard may ever do."""
    rules = [
        {"id": f"{kind}-{action}", "kind": kind, "action": action, "running_for": "1d"}
        for kind, spec in KINDS.items()
        for action in spec.actions
    ]
    return Config.model_validate({"rules": rules})


def _mutating(generated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in generated["Statement"] if "Condition" in s}


def test_cloudformation_templates_pass_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    templates = [LAMBDA_TEMPLATE, *sorted((ROOT / "deploy" / "iam").glob("*.yaml"))]
    assert MEMBER_TEMPLATE in templates
    done = subprocess.run(
        [str(cfn_lint), *map(str, templates)], capture_output=True, text=True, timeout=300
    )
    # cfn-lint exits non-zero on errors (2) and warnings (4); informational notes would be 8.
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout


def test_lambda_role_grants_what_the_generated_policy_grants() -> None:
    template = _template(LAMBDA_TEMPLATE)
    granted = _by_sid(_statements(_policies(template, "CostGuardRole")))
    generated = policy(_typical_config())

    read = next(s for s in generated["Statement"] if s["Sid"] == "ScanSageMaker")
    scan, scan_conditions = granted["ScanSageMaker"]
    assert _actions(scan) == set(read["Action"]) and scan["Resource"] == "*"
    assert scan_conditions == ()

    mutating = _mutating(generated)
    assert mutating, "the typical config should need mutating permissions"
    for sid, wanted in mutating.items():
        statement, conditions = granted[sid]
        assert conditions == ("Enforce",), f"{sid}: only granted in enforce mode"
        assert _actions(statement) == _actions(wanted), sid
        assert statement["Resource"] == wanted["Resource"], sid
        assert statement["Condition"] == wanted["Condition"], sid
    # Nothing else, besides assuming the member-account roles.
    assert set(granted) == {"ScanSageMaker", "AssumeMemberRoles", *mutating}
    assume, assume_conditions = granted["AssumeMemberRoles"]
    assert _actions(assume) == {"sts:AssumeRole"} and assume_conditions == ("HasMemberRole",)
    # Every Sid of the generated policy is granted: serve's "Stop now" and the Lambda use the
    # same actions as the rules, nothing more.
    assert {s["Sid"] for s in generated["Statement"]} <= set(granted)


def test_lambda_template_points_at_the_handler_and_the_zip() -> None:
    template = _template(LAMBDA_TEMPLATE)
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    function = template["Resources"]["CostGuardFunction"]
    props = function["Properties"]
    module, _, name = props["Handler"].rpartition(".")
    assert module == aws_lambda.__name__ and callable(getattr(aws_lambda, name))
    assert props["Runtime"] == "python3.11" and props["Architectures"] == ["x86_64"]
    assert 300 <= props["Timeout"] <= 900 and 512 <= props["MemorySize"] <= 1024
    zip_path = (LAMBDA_TEMPLATE.parent / props["CodeUri"]).resolve()
    assert zip_path == ROOT / "build" / "lambda" / "cost-guard-lambda.zip"
    assert "build/lambda/cost-guard-lambda" in (ROOT / "Makefile").read_text().replace(
        "$(LAMBDA_BUILD)", "build/lambda"
    )
    assert template["Parameters"]["Mode"]["Default"] == "dry-run"
    env = props["Environment"]["Variables"]
    assert env["COST_GUARD_MODE"] == {"Ref": "Mode"}
    # secrets as dynamic references, never as template text
    assert "{{resolve:secretsmanager:" in json.dumps(env["COST_GUARD_DATABASE_URL"])
    for secret in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert "{{resolve:secretsmanager:" in json.dumps(env[secret])
    assert props["Events"]["Schedule"]["Type"] == "Schedule"
    assert template["Parameters"]["ScanIntervalMinutes"]["Default"] == 5


def test_member_role_matches_the_generated_policy() -> None:
    template = _template(MEMBER_TEMPLATE)
    granted = _by_sid(_statements(_policies(template, "MemberRole")))

    read_only = policy(Config(), read_only=True)
    [read] = [s for s in read_only["Statement"] if s["Sid"] == "ScanSageMaker"]
    scan, scan_conditions = granted["ScanSageMaker"]
    assert sorted(_actions(scan)) == read["Action"]  # read-only by default: exactly these
    assert scan_conditions == ()
    assert not [s for s in read_only["Statement"] if "Condition" in s]

    full = policy(_typical_config())
    [full_read] = [s for s in full["Statement"] if s["Sid"] == "ScanSageMaker"]
    extra, extra_conditions = granted["ReadBeforeActing"]
    assert _actions(extra) == set(full_read["Action"]) - set(read["Action"])
    assert extra_conditions == ("AllowActions",)
    mutating = _mutating(full)
    for sid, wanted in mutating.items():
        statement, conditions = granted[sid]
        assert conditions == ("AllowActions",), sid
        assert (_actions(statement), statement["Resource"], statement["Condition"]) == (
            _actions(wanted), wanted["Resource"], wanted["Condition"]
        ), sid  # fmt: skip
    assert set(granted) == {"ScanSageMaker", "ReadBeforeActing", *mutating}
    assert template["Parameters"]["AllowActions"]["Default"] == "false"


def test_member_role_trusts_only_the_guard() -> None:
    template = _template(MEMBER_TEMPLATE)
    trust = template["Resources"]["MemberRole"]["Properties"]["AssumeRolePolicyDocument"]
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"AWS": {"Ref": "GuardPrincipalArn"}}
    assert statement["Action"] == "sts:AssumeRole"
    condition, with_id, without = statement["Condition"]["Fn::If"]
    assert condition == "HasExternalId"
    assert with_id == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert without == {"Ref": "AWS::NoValue"}


def test_the_exempt_tag_in_the_templates_is_the_default_one() -> None:
    key = f"aws:ResourceTag/{TagKeys().exempt}"
    for path in (LAMBDA_TEMPLATE, MEMBER_TEMPLATE):
        conditions = [
            s["Condition"] for s, _ in _statements(_template(path)["Resources"]) if "Condition" in s
        ]
        conditions = [c for c in conditions if "StringNotEqualsIgnoreCase" in c]
        assert conditions and all(
            c == {"StringNotEqualsIgnoreCase": {key: "true"}} for c in conditions
        ), path


# --- Kubernetes --------------------------------------------------------------------------


def _kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in _kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _one(kind: str) -> dict[str, Any]:
    [doc] = [d for d in _manifests() if d["kind"] == kind]
    return doc


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _kustomization()
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert kustomization["namespace"] == _one("Namespace")["metadata"]["name"]
    [image] = kustomization["images"]
    container = _one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].split(":")[0] == image["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    docs = [d for d in _manifests() if d["kind"] != "ServiceMonitor"]
    assert {d["kind"] for d in docs} == {
        "Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service"
    }  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_servicemonitor_validates_against_the_crd_schema() -> None:
    schema = json.loads(SERVICEMONITOR_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    monitor = _one("ServiceMonitor")
    jsonschema.validate(monitor, schema)
    for broken in (
        {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}},
        {
            **monitor,
            "spec": {**monitor["spec"], "endpoints": [{"port": "http", "intervall": "1m"}]},
        },
        {**monitor, "spec": {"endpoints": monitor["spec"]["endpoints"]}},  # no selector
        {**monitor, "apiVersion": "monitoring.coreos.com/v1alpha1"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_manifests_refer_to_each_other(tmp_path: Path) -> None:
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    [container] = spec["containers"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # the service account, with its IRSA role
    account = _one("ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )

    # the config file: mounted from a key that exists, at the path COST_GUARD_CONFIG names
    env = {e["name"]: e for e in container["env"]}
    config_map = _one("ConfigMap")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    config_volume = volumes[mounts["config"]["name"]]["configMap"]
    assert config_volume["name"] == config_map["metadata"]["name"]
    [item] = config_volume["items"]
    assert item["key"] in config_map["data"]
    assert env["COST_GUARD_CONFIG"]["value"] == f"{mounts['config']['mountPath']}/{item['path']}"

    # the config itself is valid and agrees with the container
    config_file = tmp_path / "cost-guard.yaml"
    config_file.write_text(config_map["data"][item["key"]])
    cfg = load_config(config_file)
    assert cfg.mode == "dry-run"
    [port] = container["ports"]
    assert port["name"] == "http" and port["containerPort"] == cfg.serve.port

    # secrets by reference only, and no Secret manifest with values in the repo
    for name in ("COST_GUARD_DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "cost-guard-secrets" and ref["key"] == name
    assert "optional" not in env["COST_GUARD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert not [d for d in _manifests() if d["kind"] == "Secret"]

    # liveness (and startup) on /healthz, readiness on /readyz, through the named port: an
    # AWS outage makes the pod unready, never restarts it
    for probe, path in (
        ("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")
    ):  # fmt: skip
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}

    # non-root, read-only root filesystem, /tmp writable
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert mounts["tmp"]["mountPath"] == "/tmp" and "emptyDir" in volumes["tmp"]
    assert container["args"] == ["run", "--serve"]
    assert deployment["spec"]["replicas"] == 1
    assert container["resources"]["limits"]["memory"] == "512Mi"

    # the Service selects the pods and exposes the named port; the ServiceMonitor scrapes it
    service = _one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"] and service_port["port"] == 8080
    monitor = _one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
