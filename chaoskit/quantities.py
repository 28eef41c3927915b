"""Parsing durations and rates as users write them (``250ms``, ``30s``, ``5m``, ``72h``, ``50/s``).

Pydantic-free on purpose: the pydantic models (``chaoskit.units``) and the fast validator
(``chaoskit.experiment.fast``) call these very functions, so both paths accept the same text.
"""

from __future__ import annotations

import re
from typing import Any

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")
_SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|m|h))?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds as float. Plain numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 30s, 5m or 72h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DUR.match(value)
        if m:
            return float(m.group(1)) * _SCALE[m.group(2)]
    raise ValueError(f"expected a duration like 500ms, 30s, 5m or 72h, got {value!r}")


def parse_rate(value: Any) -> float:
    """Operations per second."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _RATE.match(value)
        if m:
            per = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
            return float(m.group(1)) / per
    raise ValueError(f"expected a rate like 50/s or 600/m, got {value!r}")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}m"
