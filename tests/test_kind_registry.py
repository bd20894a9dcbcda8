"""The kind registry (guard/kinds/) is the one place a kind is declared.

Each registered kind's name, as a quoted string literal ("notebook") and as its constant
(NOTEBOOK), may appear in guard/ only in the modules that are the kind's own: its entry module
and the modules the entry points to (scanner, action handlers, restore, simulator). Tests,
docs and bench/ name kinds freely. And every path an entry holds resolves to what it says.
"""

from __future__ import annotations

import inspect
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from guard import inventory, pricing
from guard.cli import restore
from guard.config import Config
from guard.kinds import (
    KINDS,
    entry_module,
    load,
    owned_modules,
    price_list_components,
    price_usage_operations,
    seeding_mixins,
)
from guard.pricing import parse_price_item
from guard.sim.base import SimBase
from guard.sim.simulator import Simulator
from tests.factories import notebook

ROOT = Path(__file__).resolve().parent.parent

# Files outside a kind's own modules that may still name it, and why:
EXCEPTIONS = {
    # The demo is a scripted story (docs that run): its config's rules name kinds the way a
    # user's cost-guard.yaml does, and its narrative looks one notebook up by name.
    "guard/demo.py": set(KINDS),
    # `cost-guard lifecycle-config notebook` installs the heartbeat (the notebook's evidence):
    # "notebook" there is the lifecycle target's name, shipped as deploy/lifecycle/*.sh.
    "guard/lifecycle.py": {"notebook"},
    # A hyperparameter tuning job's children are training jobs: the tuning simulator seeds
    # them through the job simulator's helper, which takes the kind's name.
    "guard/sim/tuning.py": {"training_job"},
}


def _path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def mentions(kind: str) -> list[tuple[str, str]]:
    """(file, line) of every mention of `kind` in guard/, tracked or not yet committed."""
    constant = kind.upper()
    pattern = rf"[\"']{re.escape(kind)}[\"']|\b{re.escape(constant)}\b"
    done = subprocess.run(
        ["git", "grep", "--untracked", "-n", "-E", pattern, "--", "guard"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: nothing found
    found = []
    for line in done.stdout.splitlines():
        path, _, rest = line.partition(":")
        found.append((path, rest))
    return found


def stray(kind: str, allowed: set[str]) -> list[str]:
    return [
        f"{path}:{text}"
        for path, text in mentions(kind)
        if path not in allowed and kind not in EXCEPTIONS.get(path, set())
    ]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_only_its_own_modules_name_a_kind(kind: str) -> None:
    allowed = {_path(m) for m in owned_modules(kind)}
    assert stray(kind, allowed) == [], (
        f"{kind} is named outside its entry ({entry_module(kind)}) and the modules it points "
        f"to ({', '.join(sorted(allowed))}): ask the registry (guard.kinds) instead"
    )


def test_the_grep_finds_what_it_should() -> None:
    """Without its allowances the check finds the kind's entry: the grep itself works."""
    found = stray("notebook", allowed=set())
    assert any(line.startswith("guard/kinds/notebook.py:") for line in found), found
    assert any("NOTEBOOK = KindSpec(" in line for line in found), found
    assert stray("no_such_kind_anywhere", allowed=set()) == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_path_in_an_entry_resolves(kind: str) -> None:
    spec = KINDS[kind]
    assert spec.name == kind
    assert entry_module(kind).startswith("guard.kinds.")
    scan = load(spec.scanner)
    assert list(inspect.signature(scan).parameters) == ["ctx", "target", "spec"]
    assert inventory.scanner(spec) is scan
    for action in spec.actions.values():
        assert action.permission.startswith("sagemaker:"), action
        if action.handler:
            params = list(inspect.signature(load(action.handler)).parameters)
            assert params == ["client", "store", "res", "described", "action_id", "now"]
        else:  # one call on the boto3 client, named by the request key
            assert re.fullmatch(r"[a-z_]+", action.operation), action
    if spec.restore is not None:
        assert callable(load(spec.restore.function))
        assert issubclass(load(spec.restore.error), Exception)
        assert spec.restore.command in restore.commands  # `cost-guard restore <command>`
    # The simulator extension: a SimBase mixin the simulator inherits, or a module.
    extension = load(spec.simulator)
    if ":" in spec.simulator:
        assert issubclass(extension, SimBase) and extension in Simulator.__mro__
    else:
        assert inspect.ismodule(extension)


def test_every_declared_simulator_mixin_is_a_base_of_the_simulator() -> None:
    assert seeding_mixins(), "no kind declares a simulator mixin"
    assert set(seeding_mixins()) <= set(Simulator.__mro__)


def _item(**attributes: str) -> dict[str, Any]:
    """A minimal GetProducts PriceList item: one hourly on-demand price."""
    base = {"regionCode": "us-east-1", "instanceName": "ml.m5.xlarge"}
    dimension = {"unit": "Hrs", "pricePerUnit": {"USD": "1.5"}}
    terms = {"OnDemand": {"t": {"priceDimensions": {"d": dimension}}}}
    return {"product": {"attributes": {**base, **attributes}}, "terms": terms}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_price_list_parser_prices_what_an_entry_declares(kind: str) -> None:
    spec = KINDS[kind]
    assert spec.price_list_components, f"{kind} declares no Price List component"
    for value, component in spec.price_list_components.items():
        item = _item(platoinstancetype=value, usagetype="USE1-Whatever:ml.m5.xlarge")
        assert parse_price_item(item) == (
            ("ml.m5.xlarge", "us-east-1", component), Decimal("1.5"), "USE1-Whatever:ml.m5.xlarge"
        )  # fmt: skip
    for operation, component in spec.price_usage_operations.items():
        parsed = parse_price_item(_item(usagetype=f"USE1-{operation}:ml.m5.xlarge"))
        assert not isinstance(parsed, str) and parsed[0][2] == component, parsed
    if "{" not in spec.price_component:  # Studio-{app_type}: one component per app type
        assert spec.price_component in spec.price_list_components.values()
    # a value no entry declares is not priced
    assert parse_price_item(_item(platoinstancetype="NoSuchThing")) == "component not used"


def test_the_price_list_parser_reads_the_registry() -> None:
    assert price_list_components() == pricing._COMPONENTS
    assert price_usage_operations() == pricing._USAGE_OPERATIONS
    # two kinds claiming one Price List value would price one of them wrongly
    claimed = [k for spec in KINDS.values() for k in spec.price_list_components]
    assert len(claimed) == len(set(claimed))


def test_the_heartbeat_flag_decides_whose_heartbeat_tag_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`heartbeat=True` is what makes a malformed heartbeat tag a finding for a kind."""
    cfg = Config()
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    bad = {cfg.tags.heartbeat: "not a time"}
    nb = notebook(now, tags=bad)
    ep = replace(nb, kind="endpoint", name="ep", arn="arn:aws:sagemaker:us-east-1:1:endpoint/ep")
    assert KINDS["notebook"].heartbeat and not KINDS["endpoint"].heartbeat
    assert [f.subject for f in inventory.ignored_time_tags(cfg, [nb, ep])] == ["notebook nb"]
    monkeypatch.setitem(KINDS, "endpoint", replace(KINDS["endpoint"], heartbeat=True))
    subjects = [f.subject for f in inventory.ignored_time_tags(cfg, [nb, ep])]
    assert subjects == ["notebook nb", "endpoint ep"]
