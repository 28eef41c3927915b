"""chaoskit: container-level chaos experiments that prove the ledger lost nothing.

The public API is deliberately small; everything else is internal.
"""

from chaoskit.errors import ChaoskitError, ExperimentError, FaultError, ProbeError

__version__ = "0.1.0"

__all__ = [
    "ChaoskitError",
    "ExperimentError",
    "FaultError",
    "ProbeError",
    "__version__",
]
