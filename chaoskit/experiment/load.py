"""Load an experiment: YAML with positions -> variables -> substitution -> validation.

Every problem is collected and reported at once, each with file, line, key path and what was
expected. Plugin keys are validated by the plugin's own ``Params`` model, so a typo in a fault's
parameter is caught before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from chaoskit import registry
from chaoskit.errors import ExperimentError
from chaoskit.experiment import model as m
from chaoskit.experiment.document import (
    Collector,
    dotted,
    load_var_files,
    parse_overrides,
    read_mapping,
    resolve_document,
)
from chaoskit.quantities import parse_duration

__all__ = ["Experiment", "load_experiment", "parse_overrides", "load_var_files", "read_mapping", "resolve_document"]

STEP_KINDS = ("fault", "action", "probe", "wait", "pause", "parallel")


# ---------------------------------------------------------------- plans (what the runner executes)


@dataclass
class ProbePlan:
    spec: m.ProbeSpec
    cls: type
    params: BaseModel
    label: str
    path: str

    @property
    def name(self) -> str:
        return self.spec.name or f"{self.spec.probe} ({self.path})"


@dataclass
class TriggerPlan:
    kind: str
    cls: type
    params: BaseModel
    within: float | None
    raw: dict[str, Any]
    delay: float = 0.0  # fire this long after the condition: aim deeper inside an operation


@dataclass
class FaultPlan:
    spec: m.FaultStep
    cls: type
    params: BaseModel
    trigger: TriggerPlan | None
    id: str

    @property
    def name(self) -> str:
        return self.spec.name or self.spec.kind_name


@dataclass
class WaitPlan:
    id: str
    seconds: float | None = None
    until: m.WaitUntil | None = None
    name: str = "wait"


@dataclass
class ProbeStepPlan:
    id: str
    probe: ProbePlan


@dataclass
class ParallelPlan:
    id: str
    branches: list[list[Any]]
    name: str = "parallel"


Step = FaultPlan | WaitPlan | ProbeStepPlan | ParallelPlan


@dataclass
class Experiment:
    spec: m.ExperimentSpec
    source: Path
    base_dir: Path
    resolved: dict[str, Any]
    vars: dict[str, Any]
    overrides: dict[str, Any]
    secrets: list[str]
    hypothesis: list[ProbePlan] = field(default_factory=list)
    guards: list[ProbePlan] = field(default_factory=list)
    method: list[Step] = field(default_factory=list)
    rollbacks: list[FaultPlan] = field(default_factory=list)
    workload: tuple[str, Any] | None = None
    verify: list[tuple[str, type, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.spec.title

    def fault_steps(self) -> list[FaultPlan]:
        out: list[FaultPlan] = []

        def walk(steps: list[Any]) -> None:
            for s in steps:
                if isinstance(s, FaultPlan):
                    out.append(s)
                elif isinstance(s, ParallelPlan):
                    for b in s.branches:
                        walk(b)

        walk(self.method)
        return out


# ---------------------------------------------------------------- loading


def load_experiment(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    var_files: list[Path] | tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
) -> Experiment:
    source = Path(path)
    raw, col = read_mapping(path, "an experiment must be a mapping with keys chaoskit, title, method, ...")

    overrides = dict(overrides or {})
    file_overrides = load_var_files(var_files) if var_files else {}
    col.kubernetes = isinstance(raw.get("target"), dict) and "kubernetes" in raw["target"]
    data, variables, secrets = resolve_document(raw, col, {**file_overrides, **overrides}, env)

    try:
        spec = m.ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, (), data, m.ExperimentSpec)
        spec = None

    exp = Experiment(
        spec=spec,  # type: ignore[arg-type]
        source=source,
        base_dir=source.resolve().parent,
        resolved=data,
        vars=variables,
        overrides={**file_overrides, **overrides},
        secrets=secrets,
    )
    # plugin-level validation runs even when the shared shape had errors: report everything at once
    hyp = data.get("hypothesis") or []
    if isinstance(hyp, list):
        exp.hypothesis = [p for i, h in enumerate(hyp) if (p := _probe(col, h, ("hypothesis", i)))]
    guards = data.get("guards") or []
    if isinstance(guards, list):
        exp.guards = [p for i, h in enumerate(guards) if (p := _probe(col, h, ("guards", i)))]
    method = data.get("method") or []
    if isinstance(method, list):
        exp.method = [s for i, st in enumerate(method) if (s := _step(col, st, ("method", i)))]
    if not method and spec is not None:
        col.add(("method",), "an experiment needs at least one method step")
    rb = data.get("rollbacks") or []
    if isinstance(rb, list):
        for i, st in enumerate(rb):
            plan = _fault(col, st, ("rollbacks", i)) if isinstance(st, dict) else None
            if isinstance(st, dict) and plan:
                exp.rollbacks.append(plan)
            elif not isinstance(st, dict):
                col.add(("rollbacks", i), "expected a mapping like {action: container.start, target: {...}}")
    if data.get("workload") is not None:
        exp.workload = _workload(col, data["workload"], exp.base_dir)
    if data.get("verify") is not None:
        exp.verify = _verify(col, data["verify"])
    if spec is not None and spec.target and spec.target.compose and spec.target.compose.file:
        f = Path(spec.target.compose.file)
        spec.target.compose.file = str(f if f.is_absolute() else (exp.base_dir / f).resolve())

    if col.problems:
        raise ExperimentError(col.problems)
    return exp


def _validate_params(col: Collector, cls: type, extras: dict[str, Any], path: tuple) -> BaseModel | None:
    params_model = getattr(cls, "Params", None)
    if params_model is None:
        return None
    try:
        return params_model.model_validate(extras)
    except ValidationError as exc:
        col.pydantic(exc, path, extras, params_model)
        return None


def _probe(col: Collector, data: Any, path: tuple) -> ProbePlan | None:
    if not isinstance(data, dict):
        col.add(path, "expected a probe mapping like {name: ..., probe: http, url: ..., expect: {...}}")
        return None
    try:
        spec = m.ProbeSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, path, data, m.ProbeSpec)
        return None
    cls = registry.probes.get(spec.probe)
    if cls is None:
        col.add((*path, "probe"), f"unknown probe {spec.probe!r} (known: {', '.join(registry.probes.names())})")
        return None
    params = _validate_params(col, cls, dict(spec.model_extra or {}), path)
    if spec.expect is not None:
        from chaoskit.expect import validate_spec

        for sub, msg in validate_spec(spec.expect, (*path, "expect")):
            col.add(sub, msg)
    if params is None:
        return None
    return ProbePlan(spec=spec, cls=cls, params=params, label=spec.name or spec.probe, path=dotted(path))


def _trigger(col: Collector, when: dict[str, Any], path: tuple) -> TriggerPlan | None:
    rest = {k: v for k, v in when.items() if k not in ("within", "delay")}
    within = None
    delay = 0.0
    if "within" in when:
        try:
            within = parse_duration(when["within"])
        except ValueError as exc:
            col.add((*path, "within"), str(exc))
    if "delay" in when:
        try:
            delay = parse_duration(when["delay"])
        except ValueError as exc:
            col.add((*path, "delay"), str(exc))
    if len(rest) != 1:
        names = registry.triggers.names()
        col.add(path, f"expected exactly one trigger ({', '.join(names)}) plus optional within, delay")
        return None
    (kind, value), = rest.items()
    cls = registry.triggers.get(kind)
    if cls is None:
        col.add((*path, kind), f"unknown trigger {kind!r} (known: {', '.join(registry.triggers.names())})")
        return None
    params = _validate_params(col, cls, value if isinstance(value, dict) else {"value": value}, (*path, kind))
    if params is None:
        return None
    return TriggerPlan(kind=kind, cls=cls, params=params, within=within, raw=when, delay=delay)


def _fault(col: Collector, data: dict[str, Any], path: tuple) -> FaultPlan | None:
    try:
        spec = m.FaultStep.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, path, data, m.FaultStep)
        return None
    key = "fault" if spec.fault else "action"
    cls = registry.faults.get(spec.kind_name)
    if cls is None:
        col.add((*path, key), f"unknown fault {spec.kind_name!r} (known: {', '.join(registry.faults.names())})")
        return None
    if col.kubernetes:  # the same fault name has its own keys on kubernetes (image:, max_hold: ...)
        try:
            from chaoskit.faults.kubernetes import kubernetes_impl
        except ImportError:
            pass
        else:
            cls = kubernetes_impl(spec.kind_name) or cls
    extras = dict(spec.model_extra or {})
    model_fields = getattr(getattr(cls, "Params", None), "model_fields", {})
    for key in ("repeat", "every"):  # a fault that repeats by itself (db.terminate) owns these keys
        if key in model_fields and key in data:
            extras[key] = data[key]
            setattr(spec, key, None)
    params = _validate_params(col, cls, extras, path)
    if getattr(cls, "needs_target", False) and spec.target is None:
        col.add(path, f"{spec.kind_name} needs a target, e.g. target: {{service: NAME}}")
    trig = None
    if spec.when is not None:
        when = dict(spec.when)
        if "at" in when and "window" in when:  # {at: random, window: [a, b]}
            when = {"at": {"at": when.pop("at"), "window": when.pop("window")}, **when}
        trig = _trigger(col, when, (*path, "when"))
        if trig is None:
            return None
    if params is None:
        return None
    step_id = spec.id or dotted(path)
    return FaultPlan(spec=spec, cls=cls, params=params, trigger=trig, id=step_id)


def _step(col: Collector, data: Any, path: tuple) -> Step | None:
    if isinstance(data, list):  # only inside parallel branches
        col.add(path, "expected a step mapping")
        return None
    if not isinstance(data, dict):
        col.add(path, f"expected a step mapping with one of: {', '.join(STEP_KINDS)}")
        return None
    kinds = [k for k in STEP_KINDS if k in data]
    if "fault" in kinds and "action" in kinds:
        kinds.remove("action")
    if len(kinds) != 1 and not (set(kinds) == {"probe"}):
        col.add(path, f"a step has exactly one of: {', '.join(STEP_KINDS)} (found {kinds or 'none'})")
        return None
    kind = kinds[0]
    sid = data.get("id") or dotted(path)
    if kind in ("fault", "action"):
        return _fault(col, data, path)
    if kind == "probe":
        plan = _probe(col, data, path)
        return ProbeStepPlan(id=sid, probe=plan) if plan else None
    if kind == "wait":
        try:
            w = m.WaitStep.model_validate(data)
        except ValidationError as exc:
            col.pydantic(exc, path, data, m.WaitStep)
            return None
        if isinstance(w.wait, m.WaitUntil):
            return WaitPlan(id=sid, until=w.wait, name=w.name or "wait until hypothesis")
        return WaitPlan(id=sid, seconds=w.wait, name=w.name or f"wait {w.wait}s")
    if kind == "pause":
        try:
            p = m.PauseStep.model_validate(data)
        except ValidationError as exc:
            col.pydantic(exc, path, data, m.PauseStep)
            return None
        return WaitPlan(id=sid, seconds=p.pause, name=p.name or f"pause {p.pause}s")
    try:
        par = m.ParallelStep.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, path, data, m.ParallelStep)
        return None
    branches: list[list[Any]] = []
    for i, br in enumerate(par.parallel):
        steps = br if isinstance(br, list) else [br]
        plans = []
        for j, st in enumerate(steps):
            sub = (*path, "parallel", i, j) if isinstance(br, list) else (*path, "parallel", i)
            if (s := _step(col, st, sub)) is not None:
                plans.append(s)
        branches.append(plans)
    return ParallelPlan(id=sid, branches=branches, name=par.name or "parallel")


def _workload(col: Collector, data: Any, base_dir: Path) -> tuple[str, Any] | None:
    try:
        from chaoskit import workload as wl
    except ImportError:
        wl = None  # type: ignore[assignment]
    kinds = sorted(getattr(wl, "WORKLOADS", {}) or {"http": None, "command": None})
    if not isinstance(data, dict) or len(data) != 1:
        col.add(("workload",), f"expected exactly one workload kind: {', '.join(kinds)}")
        return None
    (kind, params), = data.items()
    if kind not in kinds:
        col.add(("workload", kind), f"unknown workload {kind!r} (known: {', '.join(kinds)})")
        return None
    impl = (getattr(wl, "WORKLOADS", {}) or {}).get(kind)
    model = getattr(impl, "Params", None)
    if model is not None:
        if kind == "command" and isinstance(params, list):
            params = {"argv": params}
        try:
            return kind, model.model_validate(params)
        except ValidationError as exc:
            col.pydantic(exc, ("workload", kind), params, model)
            return None
    return kind, params


def _verify(col: Collector, data: Any) -> list[tuple[str, type, Any]]:
    out: list[tuple[str, type, Any]] = []
    if not isinstance(data, dict):
        col.add(("verify",), "expected a mapping of checker: config, e.g. {ledger: {...}}")
        return out
    for name, cfg in data.items():
        cls = registry.checkers.get(name)
        if cls is None:
            col.add(("verify", name), f"unknown checker {name!r} (known: {', '.join(registry.checkers.names()) or 'none'})")
            continue
        model = getattr(cls, "Params", None)
        if model is None:
            out.append((name, cls, cfg))
            continue
        try:
            out.append((name, cls, model.model_validate(cfg)))
        except ValidationError as exc:
            col.pydantic(exc, ("verify", name), cfg, model)
    return out
