"""Run one probe plan: read, judge, retry until ``within`` passes ("eventually" probes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chaoskit.errors import ProbeError
from chaoskit.expect import evaluate


@dataclass
class ProbeResult:
    ok: bool
    value: Any
    detail: str
    attempts: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {"ok": self.ok, "value": self.value, "detail": self.detail, "attempts": self.attempts}
        if self.error:
            d["error"] = self.error
        return d


class ProbeRunner:
    """Keeps one probe instance (and its connection) per plan for the whole run."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self._probes: dict[int, Any] = {}

    def _probe(self, plan: Any) -> Any:
        key = id(plan)
        if key not in self._probes:
            self._probes[key] = plan.cls(plan.params, self.ctx)
        return self._probes[key]

    def once(self, plan: Any) -> ProbeResult:
        probe = self._probe(plan)
        try:
            value = probe.read()
        except ProbeError as exc:
            return ProbeResult(False, None, str(exc), 1, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a probe bug must not kill the run's rollback path
            return ProbeResult(False, None, f"{type(exc).__name__}: {exc}", 1, error=f"{type(exc).__name__}: {exc}")
        if plan.spec.expect is None:
            return ProbeResult(True, value, "read", 1)
        ok, detail = evaluate(value, plan.spec.expect)
        return ProbeResult(ok, value, detail, 1)

    def check(self, plan: Any, within: float | None = None) -> ProbeResult:
        within = plan.spec.within if within is None else within
        deadline = time.monotonic() + (within or 0)
        attempts = 0
        while True:
            attempts += 1
            res = self.once(plan)
            res.attempts = attempts
            if res.ok or within is None or time.monotonic() >= deadline or self.ctx.stop.is_set():
                return res
            self.ctx.sleep(min(plan.spec.interval, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        for p in self._probes.values():
            try:
                p.close()
            except Exception:  # noqa: BLE001
                pass
        self._probes.clear()
