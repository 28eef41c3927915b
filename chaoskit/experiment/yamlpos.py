"""YAML loading that remembers where every value came from, so errors name file and line."""

from __future__ import annotations

from typing import Any

import yaml

try:  # the C loader is several times faster; fall back where libyaml is missing
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]


class Positions:
    """key path -> line (1-based). Lookups fall back to the nearest ancestor."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line(self, path: Path) -> int | None:
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]


class YamlError(Exception):
    def __init__(self, line: int | None, message: str):
        self.line = line
        self.message = message
        super().__init__(message)


def load_with_positions(text: str) -> tuple[Any, Positions]:
    pos = Positions()
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlError(line, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlError(None, f"invalid YAML: {exc}") from None
    if node is None:
        return None, pos
    ctor = yaml.SafeLoader("")  # used only to construct scalars with the safe resolver rules
    try:
        return _build(node, (), pos, ctor), pos
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise YamlError(1, f"invalid YAML: {exc}") from None


def _build(node: yaml.Node, path: Path, pos: Positions, ctor: yaml.SafeLoader) -> Any:
    pos.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = ctor.construct_object(knode, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise YamlError(knode.start_mark.line + 1, f"mapping keys must be scalars, got {key!r}")
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise YamlError(knode.start_mark.line + 1, f"duplicate key {key!r}")
            child = (*path, key)
            out[key] = _build(vnode, child, pos, ctor)
            pos.lines[child] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(v, (*path, i), pos, ctor) for i, v in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)
