"""``workload.stats``: throughput, error rate and latency of the running workload over the last
``window``, read by tailing its JSON-lines history — so a soak can alert on "trade latency p99 >
100 ms" or "error rate > 1 %" without the workload knowing about alerts.

The history path comes from the run context (``ctx.workload_history``, set by the soak when it
starts its workload; a runner may set it too). Only new bytes are read on each call; completions
are paired with their invoke by (process, id, op) to get latencies.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from pydantic import Field

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.probes.base import Probe, ProbeParams
from chaoskit.units import Duration

MAX_PENDING = 200_000  # invokes without completion kept for pairing (bounded: a stuck op must not leak)


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3)


@registry.probes.register("workload.stats")
class WorkloadStatsProbe(Probe):
    summary = "the workload over the last window: {ops_per_s, ok, fail, info, error_rate, latency_ms: {p50, p99, max}, by_op}"

    class Params(ProbeParams):
        window: Duration = Field(10.0, gt=0, description="look back this far")
        op: str | None = Field(None, description="only this operation template (e.g. open)")

    def __init__(self, params: Any, ctx: Any):
        super().__init__(params, ctx)
        self._pos = 0
        self._partial = b""
        self._pending: dict[tuple[Any, Any, Any], float] = {}
        self._done: deque[tuple[float, str, str, float | None]] = deque()  # (wall, type, op, latency_ms)
        self._first: float | None = None  # wall time of the first record: rates early on use less than a window

    def _path(self) -> Path:
        p = getattr(self.ctx, "workload_history", None)
        if not p:
            raise ProbeError("workload.stats: this run has no workload (add workload: to the soak file)")
        return Path(p)

    def _consume(self, path: Path) -> None:
        try:
            with open(path, "rb") as fh:
                fh.seek(self._pos)
                chunk = fh.read()
        except FileNotFoundError:
            return  # the workload has not written yet
        self._pos += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        for raw in lines:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            typ, wall = rec.get("type"), rec.get("wall")
            if not isinstance(wall, int | float):
                continue
            if self._first is None:
                self._first = float(wall)
            key = (rec.get("process"), rec.get("id"), rec.get("op"))
            if typ == "invoke":
                if len(self._pending) < MAX_PENDING:
                    self._pending[key] = float(wall)
            elif typ in ("ok", "fail", "info"):
                t0 = self._pending.pop(key, None)
                lat = round((float(wall) - t0) * 1000, 3) if t0 is not None else None
                self._done.append((float(wall), str(typ), str(rec.get("op")), lat))

    def read(self) -> dict[str, Any]:
        self._consume(self._path())
        now = time.time()
        w = self.params.window
        while self._done and self._done[0][0] < now - w:
            self._done.popleft()
        # completions arrive roughly in time order only (a slow op lands late): filter, too
        recs = [r for r in self._done if r[0] >= now - w and (self.params.op is None or r[2] == self.params.op)]
        counts = {"ok": 0, "fail": 0, "info": 0}
        by_op: dict[str, dict[str, int]] = {}
        lats: list[float] = []
        for _, typ, op, lat in recs:
            counts[typ] += 1
            by_op.setdefault(op, {"ok": 0, "fail": 0, "info": 0})[typ] += 1
            if typ == "ok" and lat is not None:
                lats.append(lat)
        n = sum(counts.values())
        span = min(w, max(1e-3, now - self._first)) if self._first is not None else w
        return {
            "window_s": round(span, 3),
            "completed": n,
            "ops_per_s": round(n / span, 3),
            **counts,
            "error_rate": round((counts["fail"] + counts["info"]) / n, 4) if n else 0.0,
            "latency_ms": {"p50": _pct(lats, 0.5), "p99": _pct(lats, 0.99), "max": max(lats) if lats else None},
            "by_op": by_op,
        }
