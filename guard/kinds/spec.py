"""What a resource kind's registry entry holds (`KindSpec`, `ActionSpec`) and helpers on it.

An entry is data plus dotted paths ("package.module:attribute") to the code that is the kind's
own: its scanner, its multi-call action handlers, its restore function and its simulator
extension. The paths are imported on first use, so the registry imports nothing of the scanners,
the actions or the simulator (which all import the registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from guard.model import Resource


@dataclass(frozen=True)
class ActionSpec:
    """A mutating call the guard may make, and the only states it may make it from."""

    name: str  # the rule's `action:` value
    operation: str  # boto3 method name
    permission: str  # IAM action
    valid_states: tuple[str, ...]  # live status (from Describe) required before acting
    done_states: tuple[str, ...]  # states meaning "already done": a repeat is a no-op
    verb_past: str  # for people: "stopped"
    verb_would: str  # for dry-run: "would stop"
    # what the owner keeps, said in every message about this action ({name} substituted)
    keeps: str = ""
    # a describe that answers "not found" means the action already happened (deletes)
    gone_is_done: bool = False
    # further IAM actions the action needs (e.g. reading the config it saves first)
    extra_permissions: tuple[str, ...] = ()
    # An action needing more than `operation(**request_key)`: "module:function" called after
    # the live checks as handler(client, store, res, described, action_id, now) -> Outcome
    # (see `guard.actions.Handler`), e.g. saving a restore record before a delete.
    handler: str = ""
    # Rule settings (fields of `guard.config.Rule`) the handler reads, e.g. "instance_groups":
    # a rule may set them only for an action naming them (validated in guard/config.py).
    rule_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class RestoreSpec:
    """`cost-guard restore <command> NAME`: brings back what an action of this kind removed.

    `function` ("module:function") is called as
    function(store, sagemaker, name, *, clock, sleep, wait, timeout) -> an object with
    `account`, `region`, `created`, `in_service_at`, `message`, `recreated` (a line for
    people) and `ready_hint`; it raises `error` ("module:Exception") when it cannot restore.
    """

    command: str  # the noun after `cost-guard restore`
    function: str
    error: str
    help: str
    # IAM actions it calls besides the kind's own (the person running it needs them; the
    # guard's SageMaker model keeps only the operations the kinds name, see
    # `guard.kinds.operations`)
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class KindSpec:
    name: str
    title: str  # for people: "notebook instance"
    price_component: str  # component column of the price table
    list_operation: str  # boto3 paginator name
    describe_operation: str  # live re-check before acting
    # every IAM action a scan of this kind needs (listing, tags, activity evidence)
    read_permissions: tuple[str, ...]
    arn_pattern: str  # IAM resource ARN pattern for the kind's actions
    name_param: str  # request parameter naming one resource
    list_key: str  # where the list call returns its items
    arn_field: str
    name_field: str
    status_field: str
    type_field: str
    tagging_type: str  # Resource Groups Tagging API resource type filter
    running_states: tuple[str, ...]
    # console URL path: {region}, {name} and any text field of the resource's details
    console_path: str
    # "module:function" scanning the kind in one (account, region):
    # scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None (see `guard.inventory`)
    scanner: str
    # The simulator's support for the kind: "module:Mixin" (a `SimBase` mixin that
    # `guard.sim.simulator.Simulator` lists among its bases: tests/test_kind_registry.py checks)
    # or "module" when the base simulator has it.
    simulator: str
    # What tells the guard the resource is in use, for people (README, `kinds` docs).
    evidence: str
    actions: dict[str, ActionSpec] = field(default_factory=dict)
    list_params: dict[str, Any] = field(default_factory=dict)  # e.g. StatusEquals=InProgress
    # CloudWatch namespace of per-host utilization metrics (Host=<job>/algo-N), if any
    utilization_namespace: str = ""
    # Is time without activity evidence idleness? Not for a job: it works until it ends,
    # and whether it works well is its utilization. (The digest's "top idle spenders".)
    idles: bool = True
    # Does the scanner read the heartbeat tag (written by the shipped lifecycle scripts)?
    heartbeat: bool = False
    # AWS Price List API: the values of a product's `platoinstancetype`/`component`
    # attribute (lower-case, letters and digits only) that are this kind's components, and
    # the usage-type operations (`USE1-Host:ml.m5.xlarge` -> "host") that are, each mapped to
    # the component name used in the price table (guard/data/prices.csv).
    price_list_components: Mapping[str, str] = field(default_factory=dict)
    price_usage_operations: Mapping[str, str] = field(default_factory=dict)
    # Scanner-specific declarative settings (a job kind's `JobShape`), read by its scanner.
    scanner_config: Any = None
    # `cost-guard restore ...` for what the kind's actions remove, if it can be brought back
    restore: RestoreSpec | None = None


CONSOLE = "https://console.aws.amazon.com/"


def console_url(spec: KindSpec, res: Resource) -> str:
    fields = {k: v for k, v in res.details.items() if isinstance(v, str)}
    return CONSOLE + spec.console_path.format(**fields, region=res.region, name=res.name)


def keeps(spec: ActionSpec, res: Resource) -> str:
    """What the owner keeps after `spec` runs on `res`, for messages and the audit trail."""
    return spec.keeps.format(name=res.name)


def request_key(spec: KindSpec, res: Resource) -> dict[str, Any]:
    """The request parameters naming `res` in Describe/Stop/Delete calls.

    Most kinds are named by one parameter; a Studio app needs its domain, its space or user
    profile, its type and its name, which its scanner stores as `details["key"]`.
    """
    key = res.details.get("key")
    return dict(key) if key else {spec.name_param: res.name}


@cache
def load(path: str) -> Any:
    """The object a registry path names: "package.module:attribute", or "package.module"."""
    module, _, attribute = path.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


def module_of(path: str) -> str:
    """The module part of a registry path."""
    return path.partition(":")[0]


def code_modules(spec: KindSpec) -> set[str]:
    """Every module the entry points to: scanner, handlers, restore, simulator."""
    paths = [spec.scanner, spec.simulator, *(a.handler for a in spec.actions.values())]
    if spec.restore is not None:
        paths += [spec.restore.function, spec.restore.error]
    return {module_of(p) for p in paths if p}
