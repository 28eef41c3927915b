"""chaoskit: container-level chaos experiments that prove the ledger lost nothing.

The public API is deliberately small; everything else is internal.
"""

import os as _os

# pydantic scans entry points for its own plugins on first model build (~40 ms of start-up);
# chaoskit uses none.
_os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from chaoskit.errors import ChaoskitError, ExperimentError, FaultError, ProbeError

__version__ = "0.1.0"

__all__ = [
    "ChaoskitError",
    "ExperimentError",
    "FaultError",
    "ProbeError",
    "__version__",
]
