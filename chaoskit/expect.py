"""Expectations: judge one probe value. A spec is a mapping of operators that must all hold,
e.g. ``{status: 200}``, ``{equals: 0}``, ``{path: $.positions, range: [1, 100]}``,
``{any: [{equals: 0}, {zero_rows: true}]}``.

``path`` is special: it selects a part of the value (``$.a.b[0]``) for every other operator in
the same mapping. Numbers are compared exactly, as Decimal: money is never a float here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from chaoskit import registry

Check = Callable[[Any, Any], tuple[bool, str]]

_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


class ExpectError(ValueError):
    pass


def get_path(value: Any, path: str) -> Any:
    """A small JSONPath subset: ``$.a.b[0]['c d']``. Missing parts raise KeyError."""
    p = path.strip()
    if p.startswith("$"):
        p = p[1:]
    pos = 0
    cur = value
    while pos < len(p):
        m = _PATH_TOKEN.match(p, pos)
        if not m or m.end() == pos:
            raise ExpectError(f"bad path {path!r} at {p[pos:]!r}")
        pos = m.end()
        key = m.group(1) or m.group(3)
        if key is not None:
            if not isinstance(cur, dict) or key not in cur:
                raise KeyError(f"{path}: no key {key!r}")
            cur = cur[key]
        else:
            idx = int(m.group(2))
            if not isinstance(cur, list) or idx >= len(cur):
                raise KeyError(f"{path}: no index {idx}")
            cur = cur[idx]
    return cur


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | Decimal):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, str):
        try:
            return Decimal(v.strip())
        except InvalidOperation:
            return None
    return None


def same(a: Any, b: Any) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None and not (isinstance(a, str) and isinstance(b, str)):
        return na == nb
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _scalar(value: Any) -> Any:
    """SQL probes return rows; a single-cell result compares as its cell."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
        if isinstance(value, list | tuple) and len(value) == 1:
            value = value[0]
    return value


def _equals(value: Any, arg: Any) -> tuple[bool, str]:
    v = _scalar(value) if not isinstance(arg, list) else value
    return same(v, arg), f"{_short(v)} == {_short(arg)}"


def _not_equals(value: Any, arg: Any) -> tuple[bool, str]:
    ok, _ = _equals(value, arg)
    return not ok, f"{_short(_scalar(value))} != {_short(arg)}"


def _cmp(op: str) -> Check:
    def check(value: Any, arg: Any) -> tuple[bool, str]:
        v, a = _num(_scalar(value)), _num(arg)
        if v is None or a is None:
            return False, f"{_short(_scalar(value))} is not a number"
        ok = {"gt": v > a, "gte": v >= a, "lt": v < a, "lte": v <= a}[op]
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return ok, f"{v} {sym} {a}"

    return check


def _range(value: Any, arg: Any) -> tuple[bool, str]:
    lo, hi = _num(arg[0]), _num(arg[1])
    v = _num(_scalar(value))
    if v is None:
        return False, f"{_short(_scalar(value))} is not a number"
    return (lo is None or v >= lo) and (hi is None or v <= hi), f"{v} in [{arg[0]}, {arg[1]}]"


def _text(value: Any) -> str:
    if isinstance(value, dict) and "body" in value:
        return str(value["body"])
    return str(_scalar(value))


def _regex(value: Any, arg: Any) -> tuple[bool, str]:
    ok = re.search(arg, _text(value)) is not None
    return ok, f"/{arg}/ {'matches' if ok else 'does not match'}"


def _status(value: Any, arg: Any) -> tuple[bool, str]:
    status = value.get("status") if isinstance(value, dict) else value
    wanted = arg if isinstance(arg, list) else [arg]
    return status in wanted, f"status {status} in {wanted}"


def _latency(value: Any, arg: Any) -> tuple[bool, str]:
    lat = value.get("latency_ms") if isinstance(value, dict) else None
    if lat is None:
        return False, "no latency_ms in value"
    if isinstance(arg, dict):
        return evaluate(lat, arg)
    return lat <= float(arg), f"latency {lat:.1f}ms <= {arg}ms"


def _zero_rows(value: Any, arg: Any) -> tuple[bool, str]:
    n = len(value) if isinstance(value, list) else None
    if n is None:
        return False, "value is not a row set"
    return (n == 0) == bool(arg), f"{n} rows"


def _rows(value: Any, arg: Any) -> tuple[bool, str]:
    n = len(value) if isinstance(value, list) else None
    if n is None:
        return False, "value is not a row set"
    if isinstance(arg, dict):
        return evaluate(n, arg)
    return n == int(arg), f"{n} rows == {arg}"


def _contains(value: Any, arg: Any) -> tuple[bool, str]:
    v = _scalar(value)
    ok = arg in v if isinstance(v, list | dict | str) else False
    return ok, f"{_short(arg)} in {_short(v)}"


def _jsonpath(value: Any, arg: Any) -> tuple[bool, str]:
    spec = dict(arg)
    path = spec.pop("path")
    try:
        sub = get_path(value, path)
    except KeyError as exc:
        return False, str(exc)
    ok, detail = evaluate(sub, spec)
    return ok, f"{path}: {detail}"


def _all(value: Any, arg: Any) -> tuple[bool, str]:
    results = [evaluate(value, s) for s in arg]
    return all(ok for ok, _ in results), "all(" + "; ".join(d for _, d in results) + ")"


def _any(value: Any, arg: Any) -> tuple[bool, str]:
    results = [evaluate(value, s) for s in arg]
    return any(ok for ok, _ in results), "any(" + "; ".join(d for _, d in results) + ")"


def _not(value: Any, arg: Any) -> tuple[bool, str]:
    ok, detail = evaluate(value, arg)
    return not ok, f"not({detail})"


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


BUILTIN: dict[str, tuple[Check, str]] = {
    "equals": (_equals, "value equals (numbers exactly, as Decimal)"),
    "not_equals": (_not_equals, "value differs"),
    "gt": (_cmp("gt"), "number greater than"),
    "gte": (_cmp("gte"), "number at least"),
    "lt": (_cmp("lt"), "number less than"),
    "lte": (_cmp("lte"), "number at most"),
    "range": (_range, "number within [lo, hi] (inclusive; null for open)"),
    "regex": (_regex, "text (HTTP body or value) matches a regular expression"),
    "status": (_status, "HTTP status is one of"),
    "latency_ms": (_latency, "HTTP latency at most N ms (or a nested spec)"),
    "zero_rows": (_zero_rows, "SQL returned no rows"),
    "rows": (_rows, "SQL returned N rows (or a nested spec)"),
    "contains": (_contains, "value (list/text/mapping) contains"),
    "jsonpath": (_jsonpath, "{path: $.a.b, <spec>}: judge a part of the value"),
    "all": (_all, "every nested spec holds"),
    "any": (_any, "at least one nested spec holds"),
    "not": (_not, "the nested spec does not hold"),
}
for _name, (_fn, _help) in BUILTIN.items():
    _fn.__doc__ = _help
    registry.expectations.add(_name, _fn)

_NESTED_LIST = {"all", "any"}
_NESTED_ONE = {"not"}


def validate_spec(spec: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Problems in an expectation spec as (sub-path, message); empty when valid."""
    if not isinstance(spec, dict) or not spec:
        return [(path, "expected a mapping of expectations, e.g. {equals: 0} or {status: 200}")]
    out: list[tuple[tuple, str]] = []
    for key, arg in spec.items():
        if key == "path":
            if not isinstance(arg, str):
                out.append(((*path, key), "path must be a string like $.a.b"))
            continue
        if registry.expectations.get(key) is None:
            known = ", ".join(registry.expectations.names())
            out.append(((*path, key), f"unknown expectation {key!r} (expected one of: {known}, path)"))
        elif key in _NESTED_LIST:
            if not isinstance(arg, list) or not arg:
                out.append(((*path, key), "expected a non-empty list of expectation mappings"))
            else:
                for i, s in enumerate(arg):
                    out.extend(validate_spec(s, (*path, key, i)))
        elif key in _NESTED_ONE:
            out.extend(validate_spec(arg, (*path, key)))
        elif key == "range":
            if not (isinstance(arg, list) and len(arg) == 2):
                out.append(((*path, key), "expected [low, high]"))
        elif key == "jsonpath":
            if not isinstance(arg, dict) or "path" not in arg:
                out.append(((*path, key), "expected {path: $.a.b, <expectation>}"))
            else:
                rest = {k: v for k, v in arg.items() if k != "path"}
                out.extend(validate_spec(rest, (*path, key)))
        elif key == "regex":
            try:
                re.compile(str(arg))
            except re.error as exc:
                out.append(((*path, key), f"invalid regular expression: {exc}"))
    return out


def evaluate(value: Any, spec: dict[str, Any]) -> tuple[bool, str]:
    """(holds, human-readable detail). Every operator in the mapping must hold."""
    spec = dict(spec)
    path = spec.pop("path", None)
    if path is not None:
        try:
            value = get_path(value, path)
        except KeyError as exc:
            return False, str(exc)
    details = []
    ok_all = True
    for key, arg in spec.items():
        fn = registry.expectations.get(key)
        if fn is None:
            return False, f"unknown expectation {key!r}"
        ok, detail = fn(value, arg)
        ok_all = ok_all and ok
        details.append(("" if ok else "NOT ") + detail)
    prefix = f"{path}: " if path else ""
    return ok_all, prefix + "; ".join(details)
