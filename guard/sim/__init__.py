"""The simulated SageMaker account (moto, extended in `moto_ext`). Not used in production."""

from guard.sim.simulator import ACCOUNT_ID, NOTEBOOK_LOG_GROUP, Simulator

__all__ = ["ACCOUNT_ID", "NOTEBOOK_LOG_GROUP", "Simulator"]
