"""Reading an experiment-like document: YAML with positions, ``--var``/``--var-file``, variables
and substitution, and the collector of located problems.

Pydantic-free, so the fast validator (``fast.py``) and the full loader (``load.py``), and the soak
and gauntlet loaders, share one implementation; pydantic is imported only to explain a
``ValidationError`` that already exists.
"""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any

import yaml

from chaoskit.errors import ExperimentError, Problem
from chaoskit.experiment.subst import SubstError, resolve_vars, substitute
from chaoskit.experiment.yamlpos import Positions, YamlError, load_with_positions

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import BaseModel, ValidationError


class Collector:
    def __init__(self, file: str, pos: Positions):
        self.file = file
        self.pos = pos
        self.problems: list[Problem] = []
        self.kubernetes = False  # the target is a kubernetes namespace: faults validate as such

    def add(self, path: tuple, message: str) -> None:
        self.problems.append(Problem(self.file, self.pos.line(path) or 1, dotted(path), message))

    def pydantic(self, exc: ValidationError, prefix: tuple, data: Any, model: type[BaseModel]) -> None:
        for err in exc.errors(include_url=False):
            loc = _data_path(data, tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(model, loc[:-1])
                msg = f"unknown key {loc[-1]!r}" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif "input" in err and err["type"] not in {"value_error", "assertion_error"}:
                msg = f"{msg} (got {_short(err['input'])})"
            self.add(prefix + loc, msg)


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."


def _data_path(data: Any, loc: tuple) -> tuple:
    """Keep only the loc parts that walk the user's data (pydantic adds union member names)."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and part not in cur and not _looks_internal(part):
            out.append(part)  # a missing key: name it
            cur = None
        elif not isinstance(cur, dict | list) and cur is not None:
            break
    return tuple(out)


def _looks_internal(part: str) -> bool:
    return "[" in part or part[:1].isupper() or part in {"float", "int", "str", "bool", "list", "dict"}


def _model_classes(tp: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [c for a in typing.get_args(tp) for c in _model_classes(a)]
    if origin in (list, dict):
        args = typing.get_args(tp)
        return _model_classes(args[-1]) if args else []
    from pydantic import BaseModel  # loaded already: there is a ValidationError to explain

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return []


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    cur: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for c in cur:
            f = c.model_fields.get(part)
            if f is not None:
                nxt.extend(_model_classes(f.annotation))
        if not nxt:
            return []
        cur = nxt
    keys = []
    for c in cur:
        for name, f in c.model_fields.items():
            keys.append(f.alias or name)
    return sorted(set(keys))


def read_text(path: str | Path) -> str:
    """``Path(path).read_text()`` without importing pathlib (3 ms of the fast path's start-up)."""
    with open(path) as f:
        return f.read()


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--var key=value``; the value is read as a YAML scalar so numbers stay numbers."""
    out: dict[str, Any] = {}
    problems = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            problems.append(Problem("--var", None, pair, "expected key=value"))
            continue
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key] = value
    if problems:
        raise ExperimentError(problems)
    return out


def load_var_files(paths: list[Path] | tuple[Path, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in paths:
        try:
            data, _ = load_with_positions(read_text(p))
        except OSError as exc:
            raise ExperimentError([Problem(str(p), None, "", f"cannot read var file: {exc.strerror}")]) from None
        except YamlError as exc:
            raise ExperimentError([Problem(str(p), exc.line, "", exc.message)]) from None
        if not isinstance(data, dict):
            raise ExperimentError([Problem(str(p), 1, "", "a var file must be a mapping of name: value")])
        out.update(data)
    return out


def read_mapping(path: str | Path, not_a_mapping: str) -> tuple[dict[str, Any], Collector]:
    """Read a YAML mapping with positions (experiments, soak and gauntlet files alike); problems
    reading or parsing it are raised at once, located."""
    file = str(path)
    try:
        text = read_text(path)
    except OSError as exc:
        raise ExperimentError([Problem(file, None, "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        raw, pos = load_with_positions(text)
    except YamlError as exc:
        raise ExperimentError([Problem(file, exc.line or 1, "", exc.message)]) from None
    col = Collector(file, pos)
    if not isinstance(raw, dict):
        col.add((), not_a_mapping)
        raise ExperimentError(col.problems)
    return raw, col


def resolve_document(
    raw: dict[str, Any], col: Collector, overrides: dict[str, Any], env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Variables (the file's, then ``overrides``), substitution of the rest of the document, and
    the values of ``{secret: X}`` variables; every problem goes to ``col``. Shared by every file
    kind (experiments, soak, gauntlet) so they all substitute the same way."""
    raw_vars = raw.get("vars", {})
    if not isinstance(raw_vars, dict):
        col.add(("vars",), "expected a mapping of name: value")
        raw_vars = {}
    secret_names: set[str] = set()
    plain: dict[str, Any] = {}
    for k, v in {**raw_vars, **overrides}.items():
        if isinstance(v, dict) and set(v) == {"secret"}:
            secret_names.add(k)
            v = v["secret"]
        plain[k] = v
    serrs: list[SubstError] = []
    variables = resolve_vars(plain, env, serrs)
    data = substitute({k: v for k, v in raw.items() if k != "vars"}, variables, env, (), serrs)
    for e in serrs:
        col.add(e.path, e.message)
    data["vars"] = variables
    secrets = [str(variables[k]) for k in secret_names if variables.get(k) not in (None, "")]
    return data, variables, secrets
