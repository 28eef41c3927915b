"""What every checker returns: a verdict plus findings a human and a machine can both read.

Checkers never print and never raise for a *violated* property: a violation is data (a finding
with ``ok: False``). They raise only when they cannot look at all (bad config, DB unreachable).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MAX_EXAMPLES = 20


def jsonable(value: Any) -> Any:
    """Decimal stays exact in JSON output: integral values become ints, others strings."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def finding(check: str, name: str, ok: bool, message: str, **data: Any) -> dict[str, Any]:
    """One finding. ``check`` is the family (invariant, history, snapshot, events, audit),
    ``name`` the invariant or defect class (lost, duplicate, version_gap, ...)."""
    return {"check": check, "name": name, "ok": ok, "message": message, **jsonable(data)}


@dataclass
class CheckResult:
    ok: bool = True
    findings: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def add(self, f: dict[str, Any]) -> dict[str, Any]:
        self.findings.append(f)
        if not f.get("ok", True):
            self.ok = False
        return f

    def extend(self, other: CheckResult) -> None:
        for f in other.findings:
            self.add(f)
        self.info.update(other.info)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [f for f in self.findings if not f.get("ok", True)]

    def defects(self) -> set[str]:
        """Names of the violated checks, for tests and exit codes."""
        return {f["name"] for f in self.failures}

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": len(self.failures),
            "findings": self.findings,
            "info": jsonable(self.info),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def summary(self) -> list[str]:
        """Readable lines, failures first."""
        lines = [f"ledger verification: {'PASS' if self.ok else 'FAIL'} "
                 f"({len(self.failures)} of {len(self.findings)} checks failed)"]
        for f in sorted(self.findings, key=lambda f: f.get("ok", True)):
            mark = "ok  " if f.get("ok", True) else "FAIL"
            line = f"  {mark} {f['check']}/{f['name']}: {f['message']}"
            ex = f.get("examples")
            if ex and not f.get("ok", True):
                shown = ", ".join(json.dumps(e, default=str) if not isinstance(e, str) else e
                                  for e in ex[:5])
                line += f" [e.g. {shown}]"
            lines.append(line)
        return lines
