"""The gauntlet: soak -> chaos suite -> audit, stopping at the first failing gate — the Phase 7
failure protocol (stop, investigate, fix, test, restart from gate 1) as one command.

Durations live in the file or on the command line (``--soak-duration 5m``), never in code."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaoskit.errors import ExperimentError, Problem
from chaoskit.runner.journal import slug, utc_iso
from chaoskit.units import Duration

PROTOCOL = (
    "Failure protocol: STOP (no later gate runs), INVESTIGATE the report, FIX the cause, "
    "add a TEST that catches it, then RESTART the gauntlet from gate 1."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StackSpec(_Strict):
    compose: str = Field(description="compose file or directory, relative to this file")
    project: str | None = None
    up: bool = Field(False, description="bring the stack up before gate 1")


class SoakGate(_Strict):
    config: str = Field(description="soak YAML, relative to this file")
    duration: Duration | None = Field(None, description="overrides the soak file's duration")


class ChaosGate(_Strict):
    paths: list[str] = Field(default_factory=lambda: ["."])
    fail_fast: bool = False
    tags: list[str] = Field(default_factory=list)


class GauntletSpec(_Strict):
    chaoskit_gauntlet: int = Field(1, description="format version")
    title: str
    vars: dict[str, Any] = Field(default_factory=dict)
    stack: StackSpec | None = None
    soak: SoakGate | None = None
    chaos: ChaosGate | None = None
    audit: dict[str, Any] | None = Field(None, description="the `chaoskit audit` block: dsn, preset, ...")


@dataclass
class Gate:
    name: str
    verdict: str  # passed | failed | skipped | interrupted
    seconds: float = 0.0
    reports: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


@dataclass
class GauntletResult:
    title: str
    gates: list[Gate]
    out_dir: Path
    json_path: Path
    html_path: Path | None

    @property
    def ok(self) -> bool:
        return all(g.verdict == "passed" for g in self.gates if g.verdict != "skipped") and any(
            g.verdict == "passed" for g in self.gates
        )

    @property
    def exit_code(self) -> int:
        if any(g.verdict == "interrupted" for g in self.gates):
            return 130
        return 0 if self.ok else 1


def load_gauntlet(path: Path, overrides: dict[str, Any] | None = None) -> tuple[GauntletSpec, dict[str, Any]]:
    from chaoskit.experiment.document import read_mapping, resolve_document

    raw, col = read_mapping(path, "a gauntlet file must be a mapping (chaoskit_gauntlet, title, soak, chaos, audit)")
    data, variables, _ = resolve_document(raw, col, dict(overrides or {}))
    try:
        spec = GauntletSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, (), data, GauntletSpec)
        raise ExperimentError(col.problems) from None
    if col.problems:
        raise ExperimentError(col.problems)
    return spec, variables


def run_gauntlet(
    path: Path,
    *,
    overrides: dict[str, Any] | None = None,
    soak_duration: float | None = None,
    reports_dir: Path = Path("reports"),
    up: bool = False,
    ui: Any = None,
) -> GauntletResult:
    from chaoskit.ui import QuietUI

    ui = ui or QuietUI()
    path = Path(path)
    base = path.resolve().parent
    spec, _ = load_gauntlet(path, overrides)
    out = Path(reports_dir) / f"gauntlet-{slug(spec.title)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    out.mkdir(parents=True, exist_ok=True)
    gates: list[Gate] = []
    journals: list[dict[str, Any]] = []
    started = utc_iso()

    def rel(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else base / q

    # validate what every gate will read before anything runs: a typo must not surface after 72 h
    soak_cfg = None
    if spec.soak:
        from chaoskit.soak.config import load_soak_config

        soak_cfg = load_soak_config(rel(spec.soak.config), overrides or {})
    if spec.chaos:
        from chaoskit.experiment.load import load_experiment
        from chaoskit.suite.run import collect

        problems: list[Problem] = []
        for f in collect([rel(p) for p in spec.chaos.paths]):
            try:
                load_experiment(f, overrides or {})
            except ExperimentError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ExperimentError(problems)
    audit_params = None
    if spec.audit is not None:
        from chaoskit.checkers.audit import AuditParams

        try:
            audit_params = AuditParams.model_validate(spec.audit)
        except ValidationError as exc:
            raise ExperimentError([Problem(str(path), None, "audit", str(exc).splitlines()[0])]) from None

    if spec.stack and (spec.stack.up or up):
        from chaoskit import stack

        ui.phase("stack up")
        stack.up(rel(spec.stack.compose), project=spec.stack.project, log=ui.info)

    failed = False
    # gate 1: soak
    if soak_cfg is not None:
        from chaoskit.soak.run import run_soak

        ui.phase("gate 1/3: soak")
        t0 = time.monotonic()
        d = soak_duration if soak_duration is not None else (spec.soak.duration if spec.soak else None)
        soak_ui = ui
        if type(ui).__name__ == "ConsoleUI":
            from chaoskit.soak.ui import SoakConsole

            soak_ui = SoakConsole()
        res = run_soak(soak_cfg, d, out / "1-soak", soak_ui)
        g = Gate("soak", "interrupted" if res.interrupted else ("passed" if res.ok else "failed"),
                 round(time.monotonic() - t0, 3), {"json": str(res.json_path), "alerts": str(res.alerts_path)},
                 list(res.reasons) or [f"{a.get('severity')}: {a.get('rule') or a.get('name')}" for a in res.alerts[:5]])
        if res.report_path:
            g.reports["html"] = str(res.report_path)
        gates.append(g)
        journals.append(res.report)
        failed = g.verdict != "passed"
    else:
        gates.append(Gate("soak", "skipped"))

    # gate 2: chaos suite
    if spec.chaos and not failed:
        from chaoskit.suite import run_suite, write_junit

        ui.phase("gate 2/3: chaos suite")
        t0 = time.monotonic()
        sres = run_suite([rel(p) for p in spec.chaos.paths], name="chaos", reports_dir=out / "2-chaos",
                         overrides=overrides, fail_fast=spec.chaos.fail_fast, tags=spec.chaos.tags or None, ui=ui)
        junit = write_junit(sres, out / "2-chaos" / "junit.xml")
        verdict = "interrupted" if sres.interrupted else ("passed" if sres.ok else "failed")
        reasons = [f"{c.title}: {'; '.join(c.reasons)}" for c in sres.cases if not c.passed]
        gates.append(Gate("chaos", verdict, round(time.monotonic() - t0, 3),
                          {"suite": str(sres.journal), "junit": str(junit)}, reasons))
        for c in sres.cases:
            if c.journal and Path(c.journal).exists():
                journals.append(json.loads(Path(c.journal).read_text()))
        failed = verdict != "passed"
    elif spec.chaos:
        gates.append(Gate("chaos", "skipped", reasons=["an earlier gate failed"]))

    # gate 3: audit
    if audit_params is not None and not failed:
        from chaoskit.checkers.audit import run_audit, summary_lines, write_report

        ui.phase("gate 3/3: audit")
        t0 = time.monotonic()
        ares, report = run_audit(audit_params, out / "3-audit" / "export", base)
        write_report(report, out / "3-audit" / "audit.json")
        for line in summary_lines(ares, report):
            ui.info(line)
        gates.append(Gate("audit", "passed" if ares.ok else "failed", round(time.monotonic() - t0, 3),
                          {"json": str(out / "3-audit" / "audit.json")},
                          [f"{f.get('check')}/{f.get('name')}: {f.get('message')}" for f in ares.failures][:10]))
    elif audit_params is not None:
        gates.append(Gate("audit", "skipped", reasons=["an earlier gate failed"]))

    result = GauntletResult(spec.title, gates, out, out / "gauntlet.json", None)
    verdict = "PASSED" if result.ok else "FAILED"
    if journals:
        try:
            from chaoskit.report import render_report

            result.html_path = render_report(journals, out / "gauntlet.html", title=f"{spec.title}: {verdict}")
        except Exception as exc:  # noqa: BLE001 - the JSON verdict matters more than the page
            ui.info(f"HTML report not written: {exc}")
    data = {
        "chaoskit_gauntlet": 1,
        "title": spec.title,
        "started": started,
        "ended": utc_iso(),
        "verdict": verdict.lower(),
        "exit_code": result.exit_code,
        "gates": [asdict(g) for g in gates],
        "protocol": None if result.ok else PROTOCOL,
        "html": str(result.html_path) if result.html_path else None,
    }
    result.json_path.write_text(json.dumps(data, indent=2))
    return result
