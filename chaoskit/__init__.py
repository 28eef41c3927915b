"""chaoskit: container-level chaos experiments that prove the ledger lost nothing.

The public API is deliberately small; everything else is internal.
"""

import os as _os

# pydantic scans entry points for its own plugins on first model build (~40 ms of start-up);
# chaoskit uses none.
_os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _no_pydantic_plugins() -> None:
    """With plugins disabled, pydantic's loader would still import importlib.metadata (~15 ms
    of every start-up) only to return nothing; give it the same answer without the import."""
    import sys
    import types

    if _os.environ.get("PYDANTIC_DISABLE_PLUGINS") != "__all__" or "pydantic.plugin._loader" in sys.modules:
        return
    stub = types.ModuleType("pydantic.plugin._loader")
    stub.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules["pydantic.plugin._loader"] = stub


_no_pydantic_plugins()

from chaoskit.errors import ChaoskitError, ExperimentError, FaultError, ProbeError  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ChaoskitError",
    "ExperimentError",
    "FaultError",
    "ProbeError",
    "__version__",
]
