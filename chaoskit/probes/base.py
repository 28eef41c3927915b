"""The probe contract: ``read()`` returns one JSON-able value or raises ProbeError.

A probe never judges; the expectation attached to it does. That keeps probes reusable in
hypotheses, guards, triggers (``when: {sql: ...}``) and the soak monitor alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Probe(ABC):
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[ProbeParams]] = ProbeParams

    def __init__(self, params: ProbeParams, ctx: RunContext):
        self.params = params
        self.ctx = ctx

    @abstractmethod
    def read(self) -> Any:
        """Read the value. Raise ProbeError when it cannot be read at all."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections held between reads."""
