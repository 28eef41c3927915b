"""Name -> implementation registries for faults, probes, expectations, triggers and checkers.

Built-ins register themselves on import; plugins register through Python entry points in the
groups ``chaoskit.faults``, ``chaoskit.probes``, ``chaoskit.expectations``, ``chaoskit.triggers``
and ``chaoskit.checkers``. Entry points are loaded lazily, on the first lookup, so start-up stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
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
        "chaoskit.soak.resources",
        "chaoskit.soak.workload_stats",
    ),
    "expectations": ("chaoskit.expect",),
    "triggers": ("chaoskit.triggers.timed", "chaoskit.triggers.log", "chaoskit.triggers.poll"),
    "checkers": ("chaoskit.checkers",),
}

# Where a built-in name lives, by prefix, so looking up one name imports one module: the
# validate path must stay fast (bench/startup.py).
_HINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "faults": (
        ("container.", "chaoskit.faults.container"),
        ("db.", "chaoskit.faults.db"),
        ("network.", "chaoskit.faults.network"),
        ("proxy.", "chaoskit.faults.proxy"),
        ("toxiproxy.", "chaoskit.faults.proxy"),
        ("pod.", "chaoskit.faults.kubernetes"),
        ("deployment.", "chaoskit.faults.kubernetes"),
    ),
    "probes": (
        ("http", "chaoskit.probes.http"),
        ("sql", "chaoskit.probes.sql"),
        ("container", "chaoskit.probes.container"),
        ("command", "chaoskit.probes.command"),
        ("db.", "chaoskit.probes.db"),
        ("kubernetes.", "chaoskit.probes.kubernetes"),
        ("container.stats", "chaoskit.soak.resources"),
        ("workload.", "chaoskit.soak.workload_stats"),
    ),
    "triggers": (
        ("after", "chaoskit.triggers.timed"),
        ("at", "chaoskit.triggers.timed"),
        ("log", "chaoskit.triggers.log"),
        ("sql", "chaoskit.triggers.poll"),
        ("http", "chaoskit.triggers.poll"),
        ("command", "chaoskit.triggers.poll"),
        ("container", "chaoskit.triggers.poll"),
    ),
}


class Registry(Generic[T]):
    """A dotted-name registry of one kind of plugin."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if isinstance(obj, type) and not getattr(obj, "name", ""):
            obj.name = name  # type: ignore[attr-defined]  # classes know their registered name
        self._items[name] = obj

    def _import(self, mod: str) -> None:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:  # a built-in module not written yet
            if exc.name != mod:
                raise

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for mod in _BUILTINS.get(self.kind, ()):
            self._import(mod)
        from importlib.metadata import entry_points  # ~50 ms: only when really needed

        for ep in entry_points(group=f"chaoskit.{self.kind}"):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def get(self, name: str) -> T | None:
        if name in self._items:
            return self._items[name]
        for prefix, mod in _HINTS.get(self.kind, ()):
            if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
                self._import(mod)
                if name in self._items:
                    return self._items[name]
        if self.kind == "expectations" and not self._items:
            for mod in _BUILTINS[self.kind]:
                self._import(mod)
            if name in self._items:
                return self._items[name]
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
