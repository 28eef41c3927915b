"""Fire when a polled condition becomes true: any probe plus an expectation.
``{sql: {dsn, query, expect: {gte: 10}}}`` or ``{http: {url, expect: {status: 503}}}``."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.triggers.base import Firing, Trigger, TriggerParams
from chaoskit.units import Duration


class _PollParams(TriggerParams):
    model_config = ConfigDict(extra="allow")
    expect: dict[str, Any] = Field(description="expectation that, once it holds, fires the fault")
    interval: Duration = 0.05
    _probe_name: str = ""

    @model_validator(mode="after")
    def _check(self) -> _PollParams:
        from chaoskit.expect import validate_spec

        problems = validate_spec(self.expect)
        if problems:
            raise ValueError("; ".join(f"expect{''.join('.' + str(p) for p in sub)}: {msg}" for sub, msg in problems))
        cls = registry.probes.get(self._probe_name)
        if cls is not None:
            cls.Params.model_validate(self.model_extra or {})
        return self


def _make(probe_name: str) -> type[Trigger]:
    class Params(_PollParams):
        _probe_name: str = probe_name

    class Poll(Trigger):
        name = probe_name
        summary = f"fire when a polled {probe_name} probe meets its expectation"

        def __init__(self, params: Any, ctx: Any, step_id: str):
            super().__init__(params, ctx, step_id)
            cls = registry.probes.get(probe_name)
            self._probe = cls(cls.Params.model_validate(params.model_extra or {}), ctx)
            self._polls = 0

        def wait(self, deadline: float | None) -> Firing | None:
            from chaoskit.expect import evaluate

            while not self.ctx.stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    return None
                self._polls += 1
                try:
                    value = self._probe.read()
                except ProbeError as exc:
                    value, ok, detail = None, False, str(exc)
                else:
                    ok, detail = evaluate(value, self.params.expect)
                if ok:
                    return Firing(time.monotonic(), {"value": value, "detail": detail, "polls": self._polls})
                self.ctx.sleep(self.params.interval)
            return None

        def close(self) -> None:
            self._probe.close()

    Poll.Params = Params  # type: ignore[assignment]
    Poll.__name__ = f"Poll_{probe_name}"
    return Poll


for _name in ("sql", "http", "command", "container"):
    registry.triggers.add(_name, _make(_name))
