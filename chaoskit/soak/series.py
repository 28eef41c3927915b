"""Bounded-memory time series for a soak that may run for days: points are kept raw until there
are too many, then neighbours merge pairwise into [t, min, max, last, n] buckets. The report plots
the min/max envelope and the last value, so a short spike survives any amount of merging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_POINTS = 600


@dataclass
class Series:
    points: list[list[float]] = field(default_factory=list)  # [t, min, max, last, n]
    count: int = 0
    lo: float | None = None
    hi: float | None = None
    last: float | None = None

    def add(self, t: float, v: int | float) -> None:
        self.count += 1
        self.last = v
        self.lo = v if self.lo is None else min(self.lo, v)
        self.hi = v if self.hi is None else max(self.hi, v)
        self.points.append([round(t, 3), v, v, v, 1])
        if len(self.points) > 2 * MAX_POINTS:
            self._halve()

    def _halve(self) -> None:
        merged = []
        pts = self.points
        for i in range(0, len(pts) - 1, 2):
            a, b = pts[i], pts[i + 1]
            merged.append([a[0], min(a[1], b[1]), max(a[2], b[2]), b[3], a[4] + b[4]])
        if len(pts) % 2:
            merged.append(pts[-1])
        self.points = merged

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "min": self.lo, "max": self.hi, "last": self.last, "points": self.points}


def spec_paths(spec: Any) -> list[str]:
    """Every ``path`` an expectation looks at, nested ones (any/all/not/jsonpath) included."""
    out: list[str] = []
    if isinstance(spec, dict):
        if isinstance(spec.get("path"), str):
            out.append(spec["path"])
        for v in spec.values():
            if isinstance(v, dict | list):
                out += spec_paths(v)
    elif isinstance(spec, list):
        for v in spec:
            out += spec_paths(v)
    return out


def _exact(v: Any) -> int | float | None:
    """Integers (cents!) stay integers in the report; anything else becomes a float to plot."""
    from chaoskit.report.timeline import _f

    if isinstance(v, int) and not isinstance(v, bool):
        return v
    n = _f(v)
    if n is not None and n.is_integer() and abs(n) < 2**53:
        return int(n)
    return n


def _measure(value: Any, how: str) -> int | float | None:
    from chaoskit.expect import get_path

    if how == "rows":
        return len(value) if isinstance(value, list) else None
    if how == "value":
        return None if isinstance(value, list | dict) else _exact(value)
    if how == "latency ms":
        return _exact(value.get("latency_ms")) if isinstance(value, dict) else None
    try:
        v = get_path(value, how)
    except (KeyError, ValueError):
        return None
    return int(v) if isinstance(v, bool) else _exact(v)


def soak_numeric(value: Any, paths: list[str], fixed: str | None = None) -> tuple[int | float | None, str]:
    """(number to plot, what it is): a rule's ``path`` first (booleans as 1/0, so "running"
    dips show), then the plain value, the row count of a row set, an HTTP latency. Once a
    series has chosen what it plots, pass it as ``fixed``: one series never mixes two measures."""
    if fixed:
        return _measure(value, fixed), fixed
    for how in [*paths, "rows", "value", "latency ms"]:
        n = _measure(value, how)
        if n is not None:
            return n, how
    return None, ""
