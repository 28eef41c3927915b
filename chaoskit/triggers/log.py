"""Fire on the Nth log line matching a regex, from the target's own log stream.

Following starts when the step begins, so earlier lines never count; the observed time is taken
the moment the line is read, and the fault's instances are resolved before, so the strike that
follows is a cached-PID signal, not a lookup."""

from __future__ import annotations

import queue
import re
import time
from typing import Any

from pydantic import Field, field_validator

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.errors import TargetError
from chaoskit.triggers.base import Firing, Trigger, TriggerParams


@registry.triggers.register("log")
class LogTrigger(Trigger):
    summary = "fire on the Nth log line matching a regex: {log: {service: api, match: 'trade.open.begin', nth: 1}}"

    class Params(TriggerParams):
        service: str | None = Field(None, description="compose service (or pod app label)")
        selector: dict[str, str] | None = Field(None, description="kubernetes label selector")
        match: str = Field(description="regular expression, searched in each line")
        nth: int = Field(1, ge=1, description="fire on the Nth matching line")

        @field_validator("match")
        @classmethod
        def _compiles(cls, v: str) -> str:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
            return v

    def __init__(self, params: Any, ctx: Any, step_id: str):
        super().__init__(params, ctx, step_id)
        self._re = re.compile(params.match)
        self._lines: queue.Queue = queue.Queue()
        self._follower: Any = None
        self._count = 0
        self._seen = 0

    def arm(self) -> None:
        super().arm()
        backend = self.ctx.backend
        if backend is None or not hasattr(backend, "follow_logs"):
            raise TargetError("log triggers need a target backend that can follow logs")
        sel = Selection(service=self.params.service, selector=self.params.selector, mode="all")
        self._follower = backend.follow_logs(sel, self._lines)

    def rearm(self) -> None:
        self._count = 0

    def wait(self, deadline: float | None) -> Firing | None:
        while not self.ctx.stop.is_set():
            timeout = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if timeout <= 0:
                return None
            try:
                inst, line, t_read = self._lines.get(timeout=timeout)
            except queue.Empty:
                continue
            self._seen += 1
            if self._re.search(line):
                self._count += 1
                if self._count >= self.params.nth:
                    return Firing(
                        t_read,
                        {"line": line[:500], "instance": inst, "nth": self._count, "lines_seen": self._seen},
                    )
        return None

    def close(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def replay_hint(self) -> dict[str, Any]:
        return {"nth": self.params.nth}
