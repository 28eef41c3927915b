"""The fault contract.

Lifecycle, driven by the runner:

1. ``prepare()``  resolve instances and cache what a precise strike needs (PIDs), before the
   trigger fires, so the time from "due" to "applied" is as short as possible;
2. ``record()``   a JSON-able description written to the on-disk fault ledger *before* apply;
3. ``apply()``    inject; returns evidence that the fault took effect (raise FaultError if not);
4. ``revert()``   take it back (idempotent); returns evidence of the revert;
5. ``revert_record(record)``  class-level revert from the ledger alone, used by
   ``chaoskit rollback`` after the runner itself died.

A fault with a ``duration`` param is held for that long and then reverted by the runner; one
without stays until the method ends. One-shot faults (``kill``) set ``reversible = False``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from chaoskit.backends.base import Instance, Selection

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext


class FaultParams(BaseModel):
    """Base for a fault's own keys. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Fault(ABC):
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[FaultParams]] = FaultParams
    needs_target: ClassVar[bool] = True
    reversible: ClassVar[bool] = True

    def __init__(self, params: FaultParams, target: Selection | None, ctx: RunContext):
        self.params = params
        self.target = target
        self.ctx = ctx
        self.instances: list[Instance] = []

    @property
    def duration(self) -> float | None:
        return getattr(self.params, "duration", None)

    def prepare(self) -> None:
        """Resolve the target. Override to cache more (call super first)."""
        if self.needs_target:
            if self.target is None:
                from chaoskit.errors import FaultError

                raise FaultError(f"{self.name} needs a target")
            if self.ctx.backend is None:
                from chaoskit.errors import FaultError

                raise FaultError(f"{self.name} needs a target backend (target: in the experiment)")
            self.instances = self.ctx.backend.resolve(self.target, self.ctx.rng)

    def record(self) -> dict[str, Any]:
        """What ``revert_record`` needs after a crash. Override to add more."""
        return {
            "fault": self.name,
            "instances": [i.describe() | {"id": i.id} for i in self.instances],
            "params": self.params.model_dump(mode="json"),
        }

    @abstractmethod
    def apply(self) -> dict[str, Any]:
        """Inject the fault; return evidence it took effect."""

    def revert(self) -> dict[str, Any] | None:
        """Take the fault back. Must be idempotent."""
        return self.revert_record(self.record(), self.ctx)

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        """Revert from a fault-ledger record alone. Must be idempotent."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"fault": self.name, "instances": [i.describe() for i in self.instances]}
