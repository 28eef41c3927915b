"""Operation templates: ``${id}``, ``${seq}``, ``${choice:a,b}``, ``${int:1:20}``, ``${uuid}``,
``${pick:OP}`` and ``${take:OP}``.

``pick``/``take`` refer to an earlier operation of template OP that was acknowledged (``ok``):
``pick`` leaves it available, ``take`` consumes it (so a position is closed once). A template
whose pool is empty is not eligible until an acknowledgement fills it. Randomness comes from an
RNG seeded per (seed, op, seq), so the same seed reproduces the same ids and parameters.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_SIMPLE = {"id", "seq", "uuid"}


def check_placeholder(expr: str) -> str | None:
    """None if fine, else what is wrong (for a clear validation error)."""
    if expr in _SIMPLE:
        return None
    kind, _, arg = expr.partition(":")
    if kind == "choice":
        return None if arg and all(arg.split(",")) else "choice needs values: ${choice:a,b,c}"
    if kind == "int":
        m = re.fullmatch(r"(-?\d+):(-?\d+)", arg)
        if not m or int(m.group(1)) > int(m.group(2)):
            return "int needs a range: ${int:LOW:HIGH}"
        return None
    if kind in ("pick", "take"):
        return None if re.fullmatch(r"[\w.-]+", arg) else f"{kind} needs a template name: ${{{kind}:open}}"
    return (
        f"unknown placeholder ${{{expr}}} (known: id, seq, uuid, choice:a,b, int:LOW:HIGH, "
        "pick:OP, take:OP)"
    )


def placeholders(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return PLACEHOLDER.findall(obj)
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in placeholders(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in placeholders(v)]
    return []


def refs(obj: Any) -> dict[str, str]:
    """Pools this template draws from: {op name: 'pick' | 'take'} (take wins)."""
    out: dict[str, str] = {}
    for p in placeholders(obj):
        kind, _, arg = p.partition(":")
        if kind in ("pick", "take") and out.get(arg) != "take":
            out[arg] = kind
    return out


def op_id(seed: int, op: str, seq: int) -> str:
    """Unique per (seed, op, seq) and the same on every replay of that seed."""
    tag = hashlib.sha1(f"chaoskit:{seed}".encode()).hexdigest()[:8]
    return f"{op}-{tag}-{seq}"


class Pools:
    """Ids of acknowledged operations, per template name. Thread-safe."""

    def __init__(self) -> None:
        self._ids: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, op: str, id_: str) -> None:
        with self._lock:
            self._ids.setdefault(op, []).append(id_)

    def ready(self, needs: dict[str, str]) -> bool:
        with self._lock:
            return all(self._ids.get(op) for op in needs)

    def draw(self, op: str, rng: random.Random, take: bool) -> str | None:
        with self._lock:
            ids = self._ids.get(op)
            if not ids:
                return None
            i = rng.randrange(len(ids))
            if take:
                ids[i], ids[-1] = ids[-1], ids[i]
                return ids.pop()
            return ids[i]

    def size(self, op: str) -> int:
        with self._lock:
            return len(self._ids.get(op, ()))


class Unavailable(Exception):
    """A pick/take pool went empty between the eligibility check and rendering."""


def render(obj: Any, ctx: dict[str, Any], rng: random.Random, draw: Callable[[str, bool], str | None],
           cache: dict[str, str]) -> Any:
    """Fill placeholders. A string that is exactly one placeholder keeps the value's type (int).
    Within one operation, every ``${pick:X}``/``${take:X}`` names the same earlier operation."""
    if isinstance(obj, dict):
        return {k: render(v, ctx, rng, draw, cache) for k, v in obj.items()}
    if isinstance(obj, list):
        return [render(v, ctx, rng, draw, cache) for v in obj]
    if not isinstance(obj, str) or "${" not in obj:
        return obj

    def value(expr: str) -> Any:
        if expr == "id":
            return ctx["id"]
        if expr == "seq":
            return ctx["seq"]
        if expr == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind, _, arg = expr.partition(":")
        if kind == "choice":
            return rng.choice(arg.split(","))
        if kind == "int":
            lo, hi = arg.split(":")
            return rng.randint(int(lo), int(hi))
        if arg not in cache:
            got = draw(arg, kind == "take")
            if got is None:
                raise Unavailable(arg)
            cache[arg] = got
        return cache[arg]

    m = PLACEHOLDER.fullmatch(obj)
    if m:
        return value(m.group(1))
    return PLACEHOLDER.sub(lambda m: str(value(m.group(1))), obj)
