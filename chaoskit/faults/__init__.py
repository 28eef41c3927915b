"""Faults: inject something bad, and always be able to take it back."""

from chaoskit.faults.base import Fault, FaultParams

__all__ = ["Fault", "FaultParams"]
