"""PLACEHOLDER: Real-time endpoints in the simulator (moto patches and seeding)."""

from __future__ import annotations

from guard.sim.base import SimBase


def install() -> None:
    """Patch moto for what it lacks here (idempotent: called once per process)."""


class EndpointSeeding(SimBase):
    pass
