"""Duration and Rate field types for the pydantic models; the parsing itself is pydantic-free in
``chaoskit.quantities``, shared with the fast validator."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from chaoskit.quantities import format_duration, parse_duration, parse_rate

__all__ = ["Duration", "Rate", "format_duration", "parse_duration", "parse_rate"]

_DUR_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(us|ms|s|m|h|d)?\s*$"},
    ],
    "description": "a duration: seconds, or 500ms / 30s / 5m / 72h",
}
_RATE_SCHEMA = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(/\s*(s|m|h))?\s*$"}],
    "description": "a rate: ops per second, or 50/s / 600/m",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DUR_SCHEMA)]
Rate = Annotated[float, BeforeValidator(parse_rate), WithJsonSchema(_RATE_SCHEMA)]
