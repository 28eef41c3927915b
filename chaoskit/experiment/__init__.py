"""The experiment format: YAML with positions, substitution, validation, JSON Schema.

``load_experiment`` is imported on first use: the fast validator lives in this package and must
not pay for pydantic."""

from typing import Any

__all__ = ["Experiment", "load_experiment"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from chaoskit.experiment import load

        return getattr(load, name)
    raise AttributeError(name)
