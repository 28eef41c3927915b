"""Run experiments one after the other; validate all of them first so a typo in the tenth
file does not surface after nine real runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoskit.errors import ExperimentError, Problem
from chaoskit.runner.journal import slug, utc_iso


@dataclass
class CaseResult:
    file: str
    title: str
    status: str
    exit_code: int
    duration: float
    journal: str | None
    reasons: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


@dataclass
class SuiteResult:
    name: str
    cases: list[CaseResult]
    journal: Path
    started: str
    duration: float
    interrupted: int | None = None

    @property
    def ok(self) -> bool:
        return self.interrupted is None and all(c.passed for c in self.cases)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        return 0 if self.ok else 1


def collect(paths: list[str | Path]) -> list[Path]:
    """Experiment files: given files as they are, directories' *.yaml / *.yml sorted by name
    (files starting with ``_`` are fragments, not experiments)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            out.extend(f for f in found if not f.name.startswith("_"))
        else:
            out.append(p)
    if not out:
        raise ExperimentError([Problem(" ".join(map(str, paths)), None, "", "no experiment files found")])
    return out


def run_suite(
    paths: list[str | Path],
    *,
    name: str = "suite",
    reports_dir: Path = Path("reports"),
    overrides: dict[str, Any] | None = None,
    var_files: list[Path] | None = None,
    seed: int | None = None,
    fail_fast: bool = False,
    tags: list[str] | None = None,
    ui: Any = None,
    on_case: Any = None,
) -> SuiteResult:
    from chaoskit.experiment.load import load_experiment
    from chaoskit.runner.run import Runner, RunOptions
    from chaoskit.ui import QuietUI

    ui = ui or QuietUI()
    files = collect(paths)
    loaded = []
    problems: list[Problem] = []
    for f in files:
        try:
            exp = load_experiment(f, overrides or {}, var_files or [])
        except ExperimentError as exc:
            problems.extend(exc.problems)
            continue
        if tags and not set(tags) & set(exp.spec.tags):
            continue
        loaded.append(exp)
    if problems:
        raise ExperimentError(problems)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = Path(reports_dir) / f"{slug(name)}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    suite_journal = out_dir / "suite.json"
    started = utc_iso()
    t0 = time.monotonic()
    cases: list[CaseResult] = []
    interrupted: int | None = None

    def write() -> None:
        data = {
            "chaoskit_suite": 1,
            "name": name,
            "started": started,
            "duration": round(time.monotonic() - t0, 3),
            "status": "running" if len(cases) < len(loaded) and interrupted is None else "done",
            "passed": sum(c.passed for c in cases),
            "failed": sum(not c.passed for c in cases),
            "planned": [str(e.source) for e in loaded],
            "cases": [c.__dict__ for c in cases],
        }
        tmp = suite_journal.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(suite_journal)

    write()
    for i, exp in enumerate(loaded, 1):
        ui.phase(f"[{i}/{len(loaded)}] {exp.title}")
        jpath = out_dir / f"{i:02d}-{slug(exp.title)}.json"
        c0 = time.monotonic()
        outcome = Runner(exp, RunOptions(seed=seed, journal_path=jpath), ui).run()
        case = CaseResult(
            file=str(exp.source),
            title=exp.title,
            status=outcome.status,
            exit_code=outcome.exit_code,
            duration=round(time.monotonic() - c0, 3),
            journal=str(jpath),
            reasons=outcome.reasons,
            tags=list(exp.spec.tags),
        )
        cases.append(case)
        if on_case:
            on_case(case)
        if outcome.status == "interrupted":
            interrupted = outcome.exit_code - 128
            break
        write()
        if fail_fast and not case.passed:
            break
    write()
    return SuiteResult(name, cases, suite_journal, started, round(time.monotonic() - t0, 3), interrupted)
