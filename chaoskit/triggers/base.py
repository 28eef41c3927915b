"""The trigger contract. ``arm()`` starts watching (called when the step begins, so nothing
before it counts); ``wait(deadline)`` blocks until the condition holds and returns a Firing, or
None when the deadline passes or the run is stopped."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext


class TriggerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


@dataclass
class Firing:
    observed: float  # time.monotonic() when the condition was observed
    evidence: dict[str, Any] = field(default_factory=dict)
    observed_wall: float = field(default_factory=time.time)


class Trigger(ABC):
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type[TriggerParams]] = TriggerParams

    def __init__(self, params: TriggerParams, ctx: RunContext, step_id: str):
        self.params = params
        self.ctx = ctx
        self.step_id = step_id
        self.armed_at = time.monotonic()

    def arm(self) -> None:
        self.armed_at = time.monotonic()

    @abstractmethod
    def wait(self, deadline: float | None) -> Firing | None:
        """Block until the trigger fires; None on deadline or stop."""

    def rearm(self) -> None:  # noqa: B027 - optional hook
        """Prepare for the next repetition of a repeating fault."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def replay_hint(self) -> dict[str, Any]:
        """What replay needs to fire at the same point again (recorded in the journal)."""
        return {}
