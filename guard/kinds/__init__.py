"""The resource-kind registry: every kind the guard watches is one `KindSpec` entry.

An entry lives in its family's module here (`notebook`, `endpoint`, `jobs`, `studio`) and
carries, or names by dotted path, everything that is the kind's own: what to list and
describe, its price components and how the AWS Price List names them, its evidence, its
console link, its actions (with their IAM permissions and, where one call is not enough, their
handler), its scanner, its restore command and its simulator extension. Generic code (the
scan, the actions, pricing, the IAM policy, the CLI, the simulator) asks this registry and
names no kind; tests/test_kind_registry.py keeps it so.

Adding a kind: see "Adding a resource kind" in README.md.
"""

from __future__ import annotations

from types import ModuleType

from guard.kinds import (
    endpoint,
    hyperpod,
    inference,
    jobs,
    mlflow,
    notebook,
    storage,
    studio,
    tuning,
)
from guard.kinds.spec import (
    CONSOLE,
    ActionSpec,
    KindSpec,
    RestoreSpec,
    code_modules,
    console_url,
    keeps,
    load,
    request_key,
)

__all__ = [
    "CONSOLE",
    "KINDS",
    "NOTIFY",
    "ActionSpec",
    "KindSpec",
    "RestoreSpec",
    "console_url",
    "entry_module",
    "keeps",
    "load",
    "operations",
    "price_list_components",
    "price_usage_operations",
    "request_key",
    "seeding_mixins",
]

# The families, in the order kinds are scanned and shown by default (`kinds:` in the config).
FAMILIES: tuple[ModuleType, ...] = (
    notebook,
    endpoint,
    jobs,
    studio,
    hyperpod,
    mlflow,
    inference,
    storage,
    tuning,
)

KINDS: dict[str, KindSpec] = {spec.name: spec for family in FAMILIES for spec in family.ENTRIES}
_ENTRY_MODULES = {spec.name: family.__name__ for family in FAMILIES for spec in family.ENTRIES}

# `notify` is valid for every kind: it only warns, never mutates.
NOTIFY = "notify"


def entry_module(kind: str) -> str:
    """The module holding `kind`'s entry ("guard.kinds.notebook")."""
    return _ENTRY_MODULES[kind]


def owned_modules(kind: str) -> set[str]:
    """The modules that are `kind`'s own: its entry and what the entry points to."""
    return {entry_module(kind), *code_modules(KINDS[kind])}


def price_list_components() -> dict[str, str]:
    """Price List `platoinstancetype`/`component` value (normalized) -> price-table component."""
    return {k: v for spec in KINDS.values() for k, v in spec.price_list_components.items()}


def price_usage_operations() -> dict[str, str]:
    """Price List usage-type operation (lower case) -> price-table component."""
    return {k: v for spec in KINDS.values() for k, v in spec.price_usage_operations.items()}


def operations(service: str) -> frozenset[str]:
    """Every operation of `service` ("sagemaker", as IAM names it) the kinds call: their
    scans, actions, the reads their actions need and their restores. The guard's copy of
    SageMaker's model keeps these only (`guard.botocore_data`), so a call must be named here
    (tests/test_botocore_data.py checks the guard's source against it)."""
    named: set[str] = set()
    for spec in KINDS.values():
        named.update(spec.read_permissions)
        for action in spec.actions.values():
            named.update((action.permission, *action.extra_permissions))
        if spec.restore is not None:
            named.update(spec.restore.permissions)
    return frozenset(p.split(":", 1)[1] for p in named if p.startswith(f"{service}:"))


def seeding_mixins() -> tuple[type, ...]:
    """The simulator mixins the kinds declare ("module:Mixin"), each once, in registry order."""
    found: list[type] = []
    for spec in KINDS.values():
        if ":" in spec.simulator and (mixin := load(spec.simulator)) not in found:
            found.append(mixin)
    return tuple(found)
