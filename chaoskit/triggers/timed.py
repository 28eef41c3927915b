"""Time-based triggers: a fixed delay, or a random offset drawn from the run's seed."""

from __future__ import annotations

import random
import time
from typing import Any, Literal

from pydantic import field_validator

from chaoskit import registry
from chaoskit.triggers.base import Firing, Trigger, TriggerParams
from chaoskit.units import Duration, parse_duration


def _sleep_until(ctx: Any, t: float, deadline: float | None) -> bool:
    if deadline is not None and t > deadline:
        ctx.sleep(deadline - time.monotonic())
        return False
    # coarse sleep, then a short spin for precision
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return True
        if left > 0.002:
            if ctx.stop.wait(left - 0.001):
                return False
        else:
            time.sleep(0)


@registry.triggers.register("after")
class After(Trigger):
    summary = "fire a fixed delay after the step starts: {after: 5s}"

    class Params(TriggerParams):
        value: Duration

    def wait(self, deadline: float | None) -> Firing | None:
        due = self.armed_at + self.params.value
        if not _sleep_until(self.ctx, due, deadline):
            return None
        return Firing(time.monotonic(), {"due_offset": self.params.value})

    def replay_hint(self) -> dict[str, Any]:
        return {"offset": self.params.value}


@registry.triggers.register("at")
class At(Trigger):
    summary = "fire at a seeded random time: {at: random, window: [2s, 20s]}"

    class Params(TriggerParams):
        at: Literal["random"] | Duration = "random"
        window: tuple[Duration, Duration] | None = None
        offset: Duration | None = None  # set by replay

        @field_validator("window")
        @classmethod
        def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
            if v is not None and v[0] > v[1]:
                raise ValueError("window must be [earliest, latest]")
            return v

    def __init__(self, params: Any, ctx: Any, step_id: str):
        super().__init__(params, ctx, step_id)
        self._n = 0

    def _offset(self) -> float:
        p = self.params
        if p.offset is not None:
            return p.offset
        if p.at != "random":
            return parse_duration(p.at)
        lo, hi = p.window or (0.0, 10.0)
        rng = random.Random(f"{self.ctx.seed}:{self.step_id}:{self._n}")
        return rng.uniform(lo, hi)

    def wait(self, deadline: float | None) -> Firing | None:
        off = self._offset()
        self._last = off
        if not _sleep_until(self.ctx, self.armed_at + off, deadline):
            return None
        return Firing(time.monotonic(), {"offset": round(off, 6)})

    def rearm(self) -> None:
        self._n += 1
        self.armed_at = time.monotonic()

    def replay_hint(self) -> dict[str, Any]:
        return {"offset": getattr(self, "_last", None)}
