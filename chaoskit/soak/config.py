"""The soak file: probes grouped by concern (health, positions, integrity...), each group on its
own interval, and alert rules over those probes. Loaded like an experiment — same YAML positions,
same ``${var}`` substitution, same ``file:line: key: message`` errors — so the SRE learns one
format, not two.

```yaml
chaoskit: 1
kind: soak
title: Ledger 72-hour soak
target: {compose: {file: ../../compose/ledger/docker-compose.yml, project: ledger}}
vars: {dsn: "postgresql://ledger@127.0.0.1:5432/ledger"}
duration: 72h                      # --duration on the command line wins
groups:
  health:
    interval: 5s
    probes:
      - {name: db reachable, probe: sql, dsn: "${dsn}", query: "select 1"}
alerts:
  - {name: database connection issues, severity: high, probe: db reachable, when: error, for: 10s}
fail_on: [critical]
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chaoskit.errors import ExperimentError
from chaoskit.experiment.model import Target
from chaoskit.units import Duration

Severity = Literal["critical", "high", "medium"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GroupSpec(_Strict):
    interval: Duration = Field(10.0, description="time between two reads of every probe in the group")
    probes: list[dict[str, Any]] = Field(min_length=1, description="probes, as in an experiment's hypothesis")


class AlertRule(_Strict):
    name: str = Field(min_length=1)
    severity: Severity
    probe: str = Field(description="name of a probe in groups")
    when: dict[str, Any] | Literal["error", "failing"] = Field(
        description="expectation that means BAD (e.g. {gt: 100}); 'error': the probe cannot be read; "
        "'failing': the probe's own expect does not hold or it cannot be read"
    )
    for_: Duration = Field(0.0, alias="for", description="the bad condition must hold this long before alerting")
    message: str | None = Field(None, description="text for the alert (default: the rule name)")


class WebhookSpec(_Strict):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 5.0
    severities: list[Severity] = Field(default_factory=lambda: list(SEVERITIES), description="which alerts to send")
    resolved: bool = Field(True, description="also send when an alert resolves")


class Outputs(_Strict):
    alerts_file: str = Field("alerts.jsonl", description="JSON lines, relative to the output directory")
    samples_file: str | None = Field("samples.jsonl", description="every probe reading; null: none")
    webhook: WebhookSpec | None = None
    html: bool = Field(True, description="write soak-report.html next to the JSON report")


class SoakSpec(_Strict):
    chaoskit: Literal[1] = Field(description="format version")
    kind: Literal["soak"] = "soak"
    title: str
    description: str | None = None
    target: Target | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    duration: Duration | None = Field(None, description="how long to watch; --duration overrides")
    groups: dict[str, GroupSpec] = Field(min_length=1)
    alerts: list[AlertRule] = Field(default_factory=list)
    fail_on: list[Severity] = Field(default_factory=lambda: ["critical"], description="severities that fail the gate")
    outputs: Outputs = Field(default_factory=Outputs)
    workload: dict[str, Any] | None = Field(
        None, description="optional load during the soak, as in an experiment; watch it with probe: workload.stats"
    )


@dataclass
class SoakProbe:
    """One probe of a group, ready to read (``plan`` is an experiment ProbePlan)."""

    name: str
    group: str
    plan: Any


@dataclass
class SoakConfig:
    spec: SoakSpec
    source: Path
    base_dir: Path
    vars: dict[str, Any]
    secrets: list[str]
    probes: dict[str, SoakProbe] = field(default_factory=dict)
    workload: tuple[str, Any] | None = None  # (kind, validated params), as Experiment.workload

    @property
    def title(self) -> str:
        return self.spec.title

    def group_probes(self, group: str) -> list[SoakProbe]:
        return [p for p in self.probes.values() if p.group == group]


def load_soak_config(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    var_files: list[Path] | tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
) -> SoakConfig:
    """Parse and validate; raises ExperimentError listing every problem with file:line."""
    import chaoskit.soak.resources  # noqa: F401 - registers container.stats
    import chaoskit.soak.workload_stats  # noqa: F401 - registers workload.stats
    from chaoskit.expect import validate_spec
    from chaoskit.experiment.document import load_var_files, read_mapping, resolve_document
    from chaoskit.experiment.load import _probe, _workload

    source = Path(path)
    raw, col = read_mapping(path, "a soak file must be a mapping with keys chaoskit, kind: soak, title, groups, alerts")

    file_overrides = load_var_files(var_files) if var_files else {}
    data, variables, secrets = resolve_document(raw, col, {**file_overrides, **(overrides or {})}, env)

    spec: SoakSpec | None
    try:
        spec = SoakSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, (), data, SoakSpec)
        spec = None

    probes: dict[str, SoakProbe] = {}
    declared: set[str] = set()  # names, valid or not: a rule is checked against what was written
    groups = data.get("groups")
    if isinstance(groups, dict):
        for gname, g in groups.items():
            if not isinstance(g, dict) or not isinstance(g.get("probes"), list):
                continue  # the model already reported it
            for i, pdata in enumerate(g["probes"]):
                ppath = ("groups", gname, "probes", i)
                if isinstance(pdata, dict) and isinstance(pdata.get("name"), str):
                    declared.add(pdata["name"])
                if isinstance(pdata, dict) and not pdata.get("name"):
                    col.add(ppath, "every soak probe needs a name: alert rules refer to it")
                    continue
                plan = _probe(col, pdata, ppath)
                if plan is None:
                    continue
                if plan.name in probes:
                    col.add((*ppath, "name"), f"duplicate probe name {plan.name!r} (also in group {probes[plan.name].group})")
                    continue
                probes[plan.name] = SoakProbe(name=plan.name, group=str(gname), plan=plan)
    alerts = data.get("alerts")
    if isinstance(alerts, list):
        seen: set[str] = set()
        for i, rule in enumerate(alerts):
            if not isinstance(rule, dict):
                continue
            rpath = ("alerts", i)
            pname = rule.get("probe")
            if isinstance(pname, str) and pname not in declared:
                known = ", ".join(sorted(declared)) or "none"
                col.add((*rpath, "probe"), f"no probe named {pname!r} in groups (known: {known})")
            when = rule.get("when")
            if isinstance(when, dict):
                for sub, msg in validate_spec(when, (*rpath, "when")):
                    col.add(sub, msg)
            name = rule.get("name")
            if isinstance(name, str):
                if name in seen:
                    col.add((*rpath, "name"), f"duplicate alert rule name {name!r}")
                seen.add(name)
    if spec is not None and spec.target and spec.target.compose and spec.target.compose.file:
        f = Path(spec.target.compose.file)
        spec.target.compose.file = str(f if f.is_absolute() else (source.resolve().parent / f).resolve())
    workload = None
    if data.get("workload") is not None:
        workload = _workload(col, data["workload"], source.resolve().parent)
    if workload is None and any(p.plan.spec.probe == "workload.stats" for p in probes.values()):
        col.add(("groups",), "a workload.stats probe needs a workload: in the soak file")
    if col.problems or spec is None:
        raise ExperimentError(col.problems)
    return SoakConfig(spec=spec, source=source, base_dir=source.resolve().parent, vars=variables,
                      secrets=secrets, probes=probes, workload=workload)
