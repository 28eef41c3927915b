"""Compile pydantic core schemas into the JSON IR the fast validator walks (``fast.py``).

Run at schema-generation time, where pydantic is loaded anyway; the IR ships as
``chaoskit/schema/validate.json`` (``chaoskit schema --validator -o ...``). Every node this module
does not translate exactly becomes ``{"t": "opaque"}``, at which the fast validator gives up, so
the IR may under-accept but never over-accept.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
import textwrap
from importlib import import_module
from typing import Any

from chaoskit import __version__, registry
from chaoskit.experiment import model as m
from chaoskit.experiment.fastchecks import CHECKS

_IGNORED = {"type", "metadata", "ref", "serialization"}
_LEAF_KEYS: dict[str, set[str]] = {
    "str": {"min_length", "max_length", "pattern"},
    "int": {"ge", "gt", "le", "lt"},
    "float": {"ge", "gt", "le", "lt"},
    "bool": set(),
    "any": set(),
    "none": set(),
}
# model config keys that change nothing about which plain JSON/YAML data validates
_SAFE_CONFIG = {"title", "extra_fields_behavior", "hide_input_in_errors", "validate_by_alias", "validate_by_name"}


def _reference_preset() -> dict[str, Any]:
    from chaoskit.checkers import presets

    return {k: v for k, v in presets.reference(None).items() if k not in ("invariants", "invariants_file")}


# validators whose twin also needs data, computed here and carried in the IR
_ARGS = {"chaoskit.checkers.ledger:LedgerParams._preset": _reference_preset}


def _opaque(why: str) -> dict[str, Any]:
    return {"t": "opaque", "why": why}


def _resolve(spec: str) -> Any:
    mod, _, qual = spec.partition(":")
    obj: Any = import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _source(obj: Any) -> str:
    if callable(obj) and not isinstance(obj, type):
        return textwrap.dedent(inspect.getsource(obj))
    return repr(getattr(obj, "pattern", obj))


def pin(fn: Any, helpers: tuple[str, ...]) -> str:
    """What a twin in fastchecks.py is pinned to: the validator's source and its helpers'."""
    text = _source(fn) + "".join(_source(_resolve(h)) for h in helpers)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fn_key(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"


class _Compiler:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self._names: dict[int, str] = {}
        self._refs: dict[str, str] = {}

    def _ref(self, ref: str) -> str:
        """A stable name for a pydantic definition ref (those end in an id(): ``Model:1234``)."""
        if ref not in self._refs:
            base = "ref:" + re.sub(r":\d+$", "", ref)
            name, n = base, 1
            while name in self._refs.values():
                n += 1
                name = f"{base}#{n}"
            self._refs[ref] = name
        return self._refs[ref]

    def node(self, s: dict[str, Any]) -> dict[str, Any]:
        t = s["type"]
        extra = set(s) - _IGNORED
        if t in _LEAF_KEYS:
            if extra - _LEAF_KEYS[t]:
                return _opaque(f"{t} with {sorted(extra - _LEAF_KEYS[t])}")
            return {"t": t, **{k: s[k] for k in sorted(extra)}}
        if t == "literal" and extra == {"expected"}:
            if all(type(v) in (str, int, bool, type(None)) for v in s["expected"]):
                return {"t": "literal", "v": list(s["expected"])}
        elif t == "list" and extra <= {"items_schema", "min_length", "max_length"}:
            out = {"t": "list", "i": self.node(s["items_schema"]) if "items_schema" in s else {"t": "any"}}
            return out | {k: s[k] for k in ("min_length", "max_length") if k in s}
        elif t == "tuple" and extra == {"items_schema"}:
            return {"t": "tuple", "i": [self.node(x) for x in s["items_schema"]]}
        elif t == "dict" and extra <= {"keys_schema", "values_schema"}:
            any_ = {"t": "any"}
            return {"t": "dict", "k": self.node(s["keys_schema"]) if "keys_schema" in s else any_,
                    "v": self.node(s["values_schema"]) if "values_schema" in s else any_}
        elif t == "nullable" and extra == {"schema"}:
            return {"t": "nullable", "s": self.node(s["schema"])}
        elif t == "union" and extra <= {"choices", "mode"}:
            return {"t": "union", "c": [self.node(c[0] if isinstance(c, tuple) else c) for c in s["choices"]]}
        elif t == "default" and extra <= {"schema", "default", "default_factory", "default_factory_takes_data"}:
            return self.node(s["schema"])  # a default matters only for a missing model field
        elif t in ("function-before", "function-after") and extra == {"function", "schema"}:
            return self._function(t.removeprefix("function-"), s)
        elif t == "model":
            return self._model(s)
        elif t == "model-body":  # internal: a model's fields under its before-validator
            return self._model_body(s["model"])
        elif t == "definitions":
            for d in s["definitions"]:
                self.defs[self._ref(d["ref"])] = self.node(d)
            return self.node(s["schema"])
        elif t == "definition-ref" and extra == {"schema_ref"}:
            return {"t": "ref", "r": self._ref(s["schema_ref"])}
        return _opaque(t)

    def _function(self, mode: str, s: dict[str, Any]) -> dict[str, Any]:
        fn = s["function"]["function"]
        key = _fn_key(fn)
        entry = CHECKS.get(key)
        if entry is None:
            return _opaque(f"validator {key}")
        twin, pinned, helpers = entry
        if (twin is not fn) if pinned is None else (pin(fn, helpers) != pinned):
            return _opaque(f"validator {key} changed since its twin was written")
        out = {"t": "fn", "m": mode, "f": key, "s": self.node(s["schema"])}
        if key in _ARGS:
            out["a"] = _ARGS[key]()
        return out

    def _model(self, s: dict[str, Any]) -> dict[str, Any]:
        cls = s["cls"]
        name = self._names.get(id(cls))
        if name is None:
            name = base = f"{cls.__module__}.{cls.__qualname__}"
            n = 1
            while name in self.defs:
                n += 1
                name = f"{base}#{n}"
            self._names[id(cls)] = name
            self.defs[name] = _opaque("recursive model")  # placeholder while compiling
            self.defs[name] = self._model_body(s)
        return {"t": "ref", "r": name}

    def _model_body(self, s: dict[str, Any]) -> dict[str, Any]:
        config = s.get("config", {})
        if set(config) - _SAFE_CONFIG or s.get("custom_init") or s.get("root_model") or s.get("post_init"):
            return _opaque(f"model {s['cls'].__qualname__}: config or init")
        fields_s = s["schema"]
        if fields_s["type"] == "function-before" and set(fields_s) - _IGNORED == {"function", "schema"}:
            # a model_validator(mode="before"): the whole model behind one function
            inner = dict(s, schema=fields_s["schema"])
            return self._function("before", dict(fields_s, schema={"type": "model-body", "model": inner}))
        if fields_s["type"] != "model-fields" or set(fields_s) - {"type", "fields", "computed_fields",
                                                                   "model_name", "extra_behavior"}:
            return _opaque("model without plain fields")
        extra = fields_s.get("extra_behavior") or config.get("extra_fields_behavior") or "ignore"
        by_alias, by_name = config.get("validate_by_alias", True), config.get("validate_by_name", False)
        fields = {}
        for fname, f in fields_s["fields"].items():
            if set(f) - {"type", "schema", "metadata", "validation_alias", "serialization_alias"}:
                return _opaque(f"field {fname}")
            alias = f.get("validation_alias")
            if alias is not None and not isinstance(alias, str):
                return _opaque(f"field {fname}: alias path")
            keys = [fname] if alias is None else [alias] * by_alias + [fname] * by_name
            fs = f["schema"]
            out: dict[str, Any] = {"k": keys, "s": self.node(fs)}
            if fs["type"] == "default":
                if set(fs) - {"type", "schema", "default", "default_factory", "default_factory_takes_data"} \
                        or fs.get("default_factory_takes_data"):
                    return _opaque(f"field {fname}: default")
                value = fs["default_factory"]() if "default_factory" in fs else fs["default"]
                try:
                    json.dumps(value)
                    out["d"] = value
                except TypeError:
                    out["du"] = 1  # a default the IR cannot hold: checks reading it give up
            fields[fname] = out
        return {"t": "model", "x": extra, "f": fields}


def _params(comp: _Compiler, cls: Any) -> dict[str, Any] | None:
    model = getattr(cls, "Params", None)
    if model is None:
        return None
    model.model_rebuild()
    return comp.node(model.__pydantic_core_schema__)


def _builtins(reg: registry.Registry) -> list[tuple[str, Any]]:
    """Built-ins only: an entry-point plugin installed here may be missing where the IR is used."""
    return [(name, cls) for name, cls in reg.items() if cls.__module__.startswith("chaoskit.")]


def validator_ir() -> dict[str, Any]:
    from chaoskit.backends.base import Selection
    from chaoskit.workload import WORKLOADS

    comp = _Compiler()
    roots = {}
    for key, model in (("experiment", m.ExperimentSpec), ("probe", m.ProbeSpec), ("fault_step", m.FaultStep),
                       ("wait", m.WaitStep), ("pause", m.PauseStep), ("parallel", m.ParallelStep),
                       ("selection", Selection)):
        model.model_rebuild()
        roots[key] = comp.node(model.__pydantic_core_schema__)
    faults = {}
    for name, cls in _builtins(registry.faults):
        params = getattr(cls, "Params", None)
        faults[name] = {"p": _params(comp, cls), "needs_target": bool(getattr(cls, "needs_target", False)),
                        "owns": [k for k in ("repeat", "every") if k in getattr(params, "model_fields", {})]}
    return {
        "version": __version__,
        "roots": roots,
        "probes": {name: _params(comp, cls) for name, cls in _builtins(registry.probes)},
        "faults": faults,
        "triggers": {name: _params(comp, cls) for name, cls in _builtins(registry.triggers)},
        "checkers": {name: _params(comp, cls) or {"t": "any"} for name, cls in _builtins(registry.checkers)},
        "workloads": {kind: _params(comp, cls) for kind, cls in sorted(WORKLOADS.items())},
        "defs": comp.defs,
    }


def dumps(ir: dict[str, Any]) -> str:
    return json.dumps(ir, sort_keys=True, separators=(",", ":")) + "\n"


def _print_pins() -> None:
    """The pins the twins would need today (review each twin first)."""
    for key, (_, pinned, helpers) in CHECKS.items():
        if pinned is not None:
            print(f"{key} {pin(_resolve(key), helpers)}")


if __name__ == "__main__" and sys.argv[1:] == ["--pins"]:
    _print_pins()
