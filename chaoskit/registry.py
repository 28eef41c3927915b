"""Name -> implementation registries for faults, probes, expectations, triggers and checkers.

Built-ins register themselves on import; plugins register through Python entry points in the
groups ``chaoskit.faults``, ``chaoskit.probes``, ``chaoskit.expectations``, ``chaoskit.triggers``
and ``chaoskit.checkers``. Entry points are loaded lazily, on the first lookup, so start-up stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

# Modules whose import registers the built-ins of each kind.
_BUILTINS: dict[str, tuple[str, ...]] = {
    "faults": (
        "chaoskit.faults.container",
        "chaoskit.faults.db",
        "chaoskit.faults.network",
        "chaoskit.faults.kubernetes",
        "chaoskit.faults.proxy",
    ),
    "probes": (
        "chaoskit.probes.http",
        "chaoskit.probes.sql",
        "chaoskit.probes.container",
        "chaoskit.probes.command",
        "chaoskit.probes.db",
        "chaoskit.probes.kubernetes",
    ),
    "expectations": ("chaoskit.expect",),
    "triggers": ("chaoskit.triggers",),
    "checkers": ("chaoskit.checkers",),
}


class Registry(Generic[T]):
    """A dotted-name registry of one kind of plugin."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self._items[name] = obj

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in _BUILTINS.get(self.kind, ()):
            try:
                import_module(mod)
            except ModuleNotFoundError as exc:  # a built-in module not written yet
                if exc.name != mod:
                    raise
        for ep in entry_points(group=f"chaoskit.{self.kind}"):
            self._items.setdefault(ep.name, ep.load())

    def get(self, name: str) -> T | None:
        self._load()
        return self._items.get(name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        yield from sorted(self._items.items())


faults: Registry = Registry("faults")
probes: Registry = Registry("probes")
expectations: Registry = Registry("expectations")
triggers: Registry = Registry("triggers")
checkers: Registry = Registry("checkers")
