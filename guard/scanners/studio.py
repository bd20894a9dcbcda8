"""PLACEHOLDER: being written."""

from __future__ import annotations

from guard.kinds import KindSpec
from guard.scanning import ScanContext, Target


def scan(ctx: ScanContext, target: Target, spec: KindSpec) -> None:
    target.scanned.add((target.account_id, target.region, spec.name))
