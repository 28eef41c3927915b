"""``${var}`` and ``${env:NAME:-default}`` substitution over the raw YAML tree.

A string that is exactly one ``${...}`` takes the variable's type (a number stays a number);
``$${`` escapes a literal ``${``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
# The workload's own per-operation placeholders pass through untouched (unless a variable of
# that name exists), so inline ops can write ${id} instead of $${id}.
_WORKLOAD = re.compile(r"^\s*(?:id|seq|uuid|(?:choice|int|pick|take):.*)\s*$")


class _Keep(Exception):
    pass


class SubstError(Exception):
    def __init__(self, path: tuple, message: str):
        self.path = path
        self.message = message
        super().__init__(message)


def _lookup(expr: str, variables: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    expr = expr.strip()
    if expr.startswith("env:"):
        body = expr[4:]
        name, sep, default = body.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise KeyError(f"bad environment variable name in ${{{expr}}}")
        val = env.get(name)
        if val is None or (val == "" and sep):
            if sep:
                return default
            raise KeyError(f"environment variable {name} is not set (write ${{env:{name}:-default}})")
        return val
    name, sep, default = expr.partition(":-")
    if name in variables:
        return variables[name]
    if sep:
        return default
    if _WORKLOAD.match(expr):
        raise _Keep()
    raise KeyError(f"unknown variable ${{{name}}} (define it under vars: or pass --var {name}=...)")


def substitute_str(s: str, variables: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Any:
    env = os.environ if env is None else env
    m = _REF.fullmatch(s)
    if m and m.group(0) != "$${":
        try:
            return _lookup(m.group(1), variables, env)
        except _Keep:
            return s

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        try:
            return str(_lookup(m.group(1), variables, env))
        except _Keep:
            return m.group(0)

    return _REF.sub(repl, s)


def substitute(
    obj: Any,
    variables: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    path: tuple = (),
    errors: list[SubstError] | None = None,
) -> Any:
    """Substitute throughout ``obj``; collect every failure in ``errors`` (all reported at once)."""
    errors = [] if errors is None else errors
    if isinstance(obj, str):
        try:
            return substitute_str(obj, variables, env)
        except KeyError as exc:
            errors.append(SubstError(path, exc.args[0]))
            return obj
    if isinstance(obj, dict):
        return {k: substitute(v, variables, env, (*path, k), errors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute(v, variables, env, (*path, i), errors) for i, v in enumerate(obj)]
    return obj


def resolve_vars(
    raw: Mapping[str, Any], env: Mapping[str, str] | None = None, errors: list[SubstError] | None = None
) -> dict[str, Any]:
    """Vars may refer to earlier vars and to the environment."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        out[k] = substitute(v, out, env, ("vars", k), errors)
    return out
