"""Fast accept, slow reject: is an experiment file certainly valid, without importing pydantic?

``fast_valid`` walks the document the way ``load.load_experiment`` does, checking each part
against the IR compiled from the pydantic core schemas (``fastir.py``, shipped as
``chaoskit/schema/validate.json``). It answers True only when the full loader would accept the
file, and False ("not sure") otherwise: then the full loader runs and explains. It is stricter
than pydantic's lax mode (exact YAML types only, no string-to-number coercion) and gives up at
any opaque node, unknown plugin name, kubernetes target, soak or gauntlet file.
"""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

from chaoskit import __version__
from chaoskit.errors import ExperimentError
from chaoskit.experiment.document import load_var_files, read_mapping, read_text, resolve_document
from chaoskit.experiment.fastchecks import CHECKS, Obj, Reject
from chaoskit.quantities import parse_duration

if TYPE_CHECKING:
    from pathlib import Path

IR_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema", "validate.json")
STEP_KINDS = ("fault", "action", "probe", "wait", "pause", "parallel")

_ir: dict[str, Any] | None = None


def _load_ir() -> dict[str, Any] | None:
    """The shipped IR, or None when it is missing or from another chaoskit version."""
    global _ir
    if _ir is None:
        try:
            ir = json.loads(read_text(IR_PATH))
        except (OSError, ValueError):
            return None
        _ir = ir if isinstance(ir, dict) and ir.get("version") == __version__ else {}
    return _ir or None


def file_kind(path: str | Path) -> str:
    """``soak`` (``kind: soak``), ``gauntlet`` (``chaoskit_gauntlet:``) or ``experiment``."""
    import re

    try:
        head = read_text(path)[:4096]
    except OSError:
        head = ""
    if re.search(r"^kind:\s*soak\s*$", head, re.M):
        return "soak"
    if re.search(r"^chaoskit_gauntlet:", head, re.M):
        return "gauntlet"
    return "experiment"


def certainly_valid(path: str | Path, overrides: dict[str, Any] | None = None,
                    var_files: list[Path] | tuple[Path, ...] = ()) -> bool:
    """What ``chaoskit validate`` asks first: only experiment files have a fast path."""
    return file_kind(path) == "experiment" and fast_valid(path, overrides, var_files)


def fast_valid(path: str | Path, overrides: dict[str, Any] | None = None,
               var_files: list[Path] | tuple[Path, ...] = (), env: dict[str, str] | None = None) -> bool:
    """True only if ``load_experiment(path, overrides, var_files, env)`` certainly succeeds."""
    ir = _load_ir()
    if ir is None:
        return False
    try:
        raw, col = read_mapping(path, "")
        file_overrides = load_var_files(var_files) if var_files else {}
        if isinstance(raw.get("target"), dict) and "kubernetes" in raw["target"]:
            return False  # kubernetes fault variants: the full loader
        data, _, _ = resolve_document(raw, col, {**file_overrides, **(overrides or {})}, env)
        if col.problems:
            return False
        _Walker(ir).experiment(data)
    except (ExperimentError, Reject):
        return False
    return True


def _require(cond: bool) -> None:
    if not cond:
        raise Reject()


class _Walker:
    def __init__(self, ir: dict[str, Any]):
        self.ir = ir
        self.defs = ir["defs"]

    # ------------------------------------------------------------ the IR

    def check(self, node: dict[str, Any], v: Any) -> Any:
        """The validated value (as pydantic would produce it), or Reject."""
        t = node["t"]
        if t == "ref":
            return self.check(self.defs[node["r"]], v)
        if t == "nullable":
            return None if v is None else self.check(node["s"], v)
        if t == "str":
            _require(isinstance(v, str) and node.get("min_length", 0) <= len(v) <= node.get("max_length", len(v)))
            if "pattern" in node:  # pydantic's Rust regex and re agree on printable ASCII
                import re

                _require(v.isascii() and v.isprintable() and re.search(node["pattern"], v) is not None)
            return v
        if t == "int":
            _require(type(v) is int)
            return self._bounds(node, v)
        if t == "float":
            _require(type(v) in (int, float) and math.isfinite(v))
            return self._bounds(node, float(v))
        if t == "bool":
            _require(type(v) is bool)
            return v
        if t == "literal":
            _require(any(type(v) is type(e) and v == e for e in node["v"]))
            return v
        if t == "any":
            return v
        if t == "none":
            _require(v is None)
            return v
        if t == "list":
            _require(type(v) is list and node.get("min_length", 0) <= len(v) <= node.get("max_length", len(v)))
            return [self.check(node["i"], x) for x in v]
        if t == "tuple":
            _require(type(v) is list and len(v) == len(node["i"]))
            return [self.check(n, x) for n, x in zip(node["i"], v, strict=True)]
        if t == "dict":
            _require(type(v) is dict)
            return {self.check(node["k"], k): self.check(node["v"], x) for k, x in v.items()}
        if t == "union":
            results = []
            for c in node["c"]:
                try:
                    results.append(self.check(c, v))
                except Reject:
                    pass
            _require(bool(results) and all(r == results[0] for r in results))  # no ambiguity
            return results[0]
        if t == "fn":
            twin = CHECKS[node["f"]][0]
            args = (node["a"],) if "a" in node else ()
            try:
                if node["m"] == "before":
                    return self.check(node["s"], twin(v, *args))
                return twin(self.check(node["s"], v), *args)
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                raise Reject() from exc
        if t == "model":
            return self._model(node, v)
        raise Reject(t)  # opaque, or a node this version does not know

    def _bounds(self, node: dict[str, Any], v: float) -> float:
        _require(all(k not in node or op(v, node[k]) for k, op in _BOUNDS))
        return v

    def _model(self, node: dict[str, Any], v: Any) -> Obj:
        _require(type(v) is dict)
        fields: dict[str, Any] = {}
        used: set[str] = set()
        for name, f in node["f"].items():
            present = [k for k in f["k"] if k in v]
            _require(len(present) <= 1)
            if present:
                used.add(present[0])
                fields[name] = self.check(f["s"], v[present[0]])
            elif "d" in f:
                fields[name] = f["d"]
            elif "du" in f:
                fields[name] = Obj.UNKNOWN
            else:
                raise Reject(name)  # required
        extra = {k: x for k, x in v.items() if k not in used}
        _require(not extra or node["x"] != "forbid")
        _require(all(isinstance(k, str) for k in extra))
        return Obj(fields, extra if node["x"] == "allow" else {})

    # ------------------------------------------------------------ load.py, on plain data

    def experiment(self, data: dict[str, Any]) -> None:
        self.check(self.ir["roots"]["experiment"], data)
        for section in ("hypothesis", "guards"):
            for h in data.get(section) or []:
                self.probe(h)
        method = data.get("method") or []
        _require(bool(method))
        for st in method:
            self.step(st)
        for st in data.get("rollbacks") or []:
            _require(type(st) is dict)
            self.fault(st)
        if data.get("workload") is not None:
            self.workload(data["workload"])
        if data.get("verify") is not None:
            self.verify(data["verify"])

    def params(self, node: dict[str, Any] | None, extras: Any) -> None:
        _require(node is not None)  # no Params: nothing to trust
        self.check(node, extras)  # type: ignore[arg-type]

    def probe(self, data: Any) -> None:
        _require(type(data) is dict)
        spec = self.check(self.ir["roots"]["probe"], data)
        _require(spec["probe"] in self.ir["probes"])
        self.params(self.ir["probes"][spec["probe"]], dict(spec.extra))
        if spec["expect"] is not None:
            from chaoskit.expect import validate_spec

            _require(not validate_spec(spec["expect"]))

    def trigger(self, when: dict[str, Any]) -> None:
        for key in ("within", "delay"):
            if key in when:
                try:
                    parse_duration(when[key])
                except ValueError:
                    raise Reject() from None
        rest = {k: v for k, v in when.items() if k not in ("within", "delay")}
        _require(len(rest) == 1)
        (kind, value), = rest.items()
        _require(kind in self.ir["triggers"])
        self.params(self.ir["triggers"][kind], value if isinstance(value, dict) else {"value": value})

    def fault(self, data: dict[str, Any]) -> None:
        spec = self.check(self.ir["roots"]["fault_step"], data)
        entry = self.ir["faults"].get(spec["fault"] or spec["action"] or "")
        _require(entry is not None)
        extras = dict(spec.extra)
        for key in entry["owns"]:  # a fault that repeats by itself (db.terminate) owns these keys
            if key in data:
                extras[key] = data[key]
        self.params(entry["p"], extras)
        _require(not entry["needs_target"] or spec["target"] is not None)
        if spec["when"] is not None:
            when = dict(spec["when"])
            if "at" in when and "window" in when:  # {at: random, window: [a, b]}
                when = {"at": {"at": when.pop("at"), "window": when.pop("window")}, **when}
            self.trigger(when)

    def step(self, data: Any) -> None:
        _require(type(data) is dict)
        kinds = [k for k in STEP_KINDS if k in data]
        if "fault" in kinds and "action" in kinds:
            kinds.remove("action")
        _require(len(kinds) == 1)
        kind = kinds[0]
        if kind in ("fault", "action"):
            self.fault(data)
        elif kind == "probe":
            self.probe(data)
        elif kind in ("wait", "pause"):
            self.check(self.ir["roots"][kind], data)
        else:
            par = self.check(self.ir["roots"]["parallel"], data)
            for br in par["parallel"]:
                for st in br if isinstance(br, list) else [br]:
                    self.step(st)

    def workload(self, data: Any) -> None:
        _require(type(data) is dict and len(data) == 1)
        (kind, params), = data.items()
        _require(kind in self.ir["workloads"])
        if kind == "command" and isinstance(params, list):
            params = {"argv": params}
        self.params(self.ir["workloads"][kind], params)

    def verify(self, data: Any) -> None:
        _require(type(data) is dict)
        for name, cfg in data.items():
            _require(name in self.ir["checkers"])
            self.check(self.ir["checkers"][name], cfg)


_BOUNDS = (
    ("ge", lambda v, b: v >= b),
    ("gt", lambda v, b: v > b),
    ("le", lambda v, b: v <= b),
    ("lt", lambda v, b: v < b),
)
