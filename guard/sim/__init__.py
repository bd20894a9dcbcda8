"""The simulated SageMaker account (moto, extended in this package). Not used in production."""

from guard.sim.base import ACCOUNT_ID, NOTEBOOK_LOG_GROUP
from guard.sim.simulator import Simulator

__all__ = ["ACCOUNT_ID", "NOTEBOOK_LOG_GROUP", "Simulator"]
