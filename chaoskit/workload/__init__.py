"""Workloads drive traffic during a run and record a history (see history.py).

The runner calls ``make_workload(kind, params, ctx, history_path)`` after the snapshot, then
``start()``; after the method ``stop()`` and ``join()``; ``summary()`` goes to the journal.
``WORKLOADS[kind].Params`` is the pydantic model the experiment loader validates with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from chaoskit.errors import ExperimentError, Problem
from chaoskit.workload.command import CommandWorkload
from chaoskit.workload.http import HttpWorkload, WorkloadError

WORKLOADS: dict[str, type] = {"http": HttpWorkload, "command": CommandWorkload}


def make_workload(kind: str, params: Any, ctx: Any, history_path: str | Path) -> Any:
    """A ready (not started) workload. Bad input raises ExperimentError with every problem."""
    cls = WORKLOADS.get(kind)
    if cls is None:
        raise ExperimentError([Problem("workload", None, "workload",
                                       f"unknown workload {kind!r} (known: {', '.join(sorted(WORKLOADS))})")])
    if kind == "command" and isinstance(params, list):
        params = {"argv": params}
    if not isinstance(params, BaseModel):
        try:
            params = cls.Params.model_validate(params)
        except ValidationError as exc:
            raise ExperimentError([
                Problem("workload", None, ".".join(["workload", kind, *map(str, e["loc"])]), e["msg"])
                for e in exc.errors()
            ]) from exc
    try:
        return cls(params, ctx, history_path)
    except WorkloadError as exc:
        raise ExperimentError([Problem("workload", None, f"workload.{kind}", str(exc))]) from exc


__all__ = ["WORKLOADS", "make_workload", "HttpWorkload", "CommandWorkload"]
