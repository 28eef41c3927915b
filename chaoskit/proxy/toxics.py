"""Toxic definitions: Toxiproxy's toxic set, its JSON shape, and per-toxic evidence counters.

The engine (server.py) applies toxics; this module only says what a toxic *is*, so the HTTP API,
the in-process faults and the tests all validate the same way and report the same errors.
Units follow Toxiproxy exactly (ms, KB/s with KB = 1000 bytes, slicer delay in µs), so a user's
existing Toxiproxy configuration means the same thing here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# type -> attribute defaults (all numbers, Toxiproxy units)
TOXIC_TYPES: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},  # ms
    "bandwidth": {"rate": 0},  # KB/s, KB = 1000 bytes
    "slow_close": {"delay": 0},  # ms
    "timeout": {"timeout": 0},  # ms, 0 = never close, data dropped forever
    "reset_peer": {"timeout": 0},  # ms after the first chunk, then RST
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},  # bytes, bytes, µs
    "limit_data": {"bytes": 0},  # close after this many bytes
}

STREAMS = ("upstream", "downstream")


class ToxicError(ValueError):
    """A toxic definition is invalid; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ToxicStats:
    """What a toxic actually did: the evidence that it was not a silent no-op."""

    connections_hit: int = 0  # connections where the toxicity draw said "apply"
    connections_spared: int = 0  # connections where it said "don't"
    chunks: int = 0
    bytes: int = 0  # bytes that passed through the toxic (delayed, sliced, throttled)
    delay_s: float = 0.0  # total time the toxic held data back
    dropped_bytes: int = 0  # timeout / reset_peer swallow data
    closes: int = 0  # connections the toxic closed (timeout, limit_data)
    resets: int = 0  # connections reset (reset_peer)

    def to_json(self) -> dict[str, Any]:
        return {
            "connections_hit": self.connections_hit,
            "connections_spared": self.connections_spared,
            "chunks": self.chunks,
            "bytes": self.bytes,
            "delay_ms": round(self.delay_s * 1000, 3),
            "dropped_bytes": self.dropped_bytes,
            "closes": self.closes,
            "resets": self.resets,
        }


@dataclass(eq=False)
class Toxic:
    """One toxic on one proxy. Identity (not value) equality: connections hold references."""

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, float] = field(default_factory=dict)
    stats: ToxicStats = field(default_factory=ToxicStats)

    def attr(self, key: str) -> float:
        return float(self.attributes.get(key, TOXIC_TYPES[self.type][key]))

    def to_json(self) -> dict[str, Any]:
        """Toxiproxy's shape exactly (clients parse it)."""
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": {k: _num(v) for k, v in self.attributes.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> Toxic:
        """Validate a Toxiproxy toxic body; defaults as Toxiproxy's (downstream, toxicity 1)."""
        if not isinstance(data, dict):
            raise ToxicError("bad request body: expected a JSON object")
        unknown = set(data) - {"name", "type", "stream", "toxicity", "attributes"}
        if unknown:
            raise ToxicError(f"bad request body: unknown keys {sorted(unknown)}")
        ttype = data.get("type")
        if ttype not in TOXIC_TYPES:
            raise ToxicError(
                f"invalid toxic type {ttype!r}: expected one of {', '.join(sorted(TOXIC_TYPES))}"
            )
        stream = data.get("stream") or "downstream"
        if stream not in STREAMS:
            raise ToxicError("stream was invalid, can be either upstream or downstream")
        name = data.get("name") or f"{ttype}_{stream}"
        if not isinstance(name, str):
            raise ToxicError("toxic name must be a string")
        toxic = cls(name=name, type=ttype, stream=stream)
        toxic.toxicity = parse_toxicity(data.get("toxicity", 1.0))
        toxic.attributes = parse_attributes(ttype, data.get("attributes") or {})
        return toxic

    def update(self, data: Any) -> bool:
        """Apply a Toxiproxy update body in place; True when the toxicity changed."""
        if not isinstance(data, dict):
            raise ToxicError("bad request body: expected a JSON object")
        if data.get("type", self.type) != self.type:
            raise ToxicError("a toxic's type cannot be changed; delete and add it")
        if data.get("stream", self.stream) != self.stream:
            raise ToxicError("a toxic's stream cannot be changed; delete and add it")
        changed = False
        if "toxicity" in data:
            new = parse_toxicity(data["toxicity"])
            changed = new != self.toxicity
            self.toxicity = new
        if "attributes" in data:
            merged = dict(self.attributes)
            merged.update(parse_attributes(self.type, data["attributes"] or {}, defaults=False))
            self.attributes = merged
        return changed


def parse_toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToxicError(f"toxicity must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ToxicError(f"toxicity must be between 0 and 1, got {value}")
    return float(value)


def parse_attributes(ttype: str, attrs: Any, defaults: bool = True) -> dict[str, float]:
    """Validated attributes; ``defaults`` fills the missing ones (create, not update)."""
    if not isinstance(attrs, dict):
        raise ToxicError("attributes must be a JSON object")
    allowed = TOXIC_TYPES[ttype]
    out: dict[str, float] = {k: float(v) for k, v in allowed.items()} if defaults else {}
    for key, value in attrs.items():
        if key not in allowed:
            raise ToxicError(
                f"unknown attribute {key!r} for toxic {ttype}: expected {', '.join(allowed)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToxicError(f"attribute {key} of toxic {ttype} must be a number, got {value!r}")
        if value < 0:
            raise ToxicError(f"attribute {key} of toxic {ttype} cannot be negative")
        out[key] = float(value)
    return out


def _num(v: float) -> int | float:
    """Integers print as integers, like Toxiproxy's int64 attributes."""
    return int(v) if float(v).is_integer() else v
