"""Turn one run journal into what a timeline shows: phases, fault bands, probe points, workload
throughput and error rate per second, findings. Pure data, no markup, so it is easy to test and
the same extraction serves HTML, a summary table or a future JSON export.

All times are seconds since the journal started (the journal's own ``t`` axis). Fault
``applied_t`` is measured from the run context's clock, started a few milliseconds earlier than
the journal's; the difference is far below one pixel of the plot and is not corrected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

# one-shot faults have no revert step: a thin mark, not a band that "never ended"
MAX_BUCKETS = 1500
_ONE_SHOT_FALLBACK = {"container.kill", "pod.kill", "pod.delete", "db.terminate"}


@dataclass
class FaultBand:
    lane: str  # step id: one lane per fault step
    name: str  # step name (human)
    fault: str  # registry name, e.g. container.pause
    start: float
    end: float | None  # None: one-shot mark
    reverted: bool
    instances: list[str]
    status: str = "ok"  # ok | unreverted | failed | revert-failed
    detail: str = ""


@dataclass
class ProbePoint:
    t: float
    name: str
    phase: str
    ok: bool
    value: float | None
    detail: str
    unit: str = "value"


@dataclass
class Bucket:
    t: int  # second since the journal started (start of the bucket)
    ok: int = 0
    fail: int = 0
    info: int = 0
    invoke: int = 0
    width: int = 1  # seconds: long runs are merged into wider buckets to keep the SVG small

    @property
    def completed(self) -> int:
        return self.ok + self.fail + self.info

    @property
    def error_rate(self) -> float:
        return (self.fail + self.info) / self.completed if self.completed else 0.0


@dataclass
class RunView:
    title: str
    run_id: str
    status: str
    verdict: str
    exit_code: int | None
    seed: Any
    started: str | None
    ended: str | None
    duration: float
    reasons: list[str]
    phases: list[tuple[str, float, float]]
    faults: list[FaultBand]
    probes: list[ProbePoint]
    events: list[dict[str, Any]]
    buckets: list[Bucket]
    history_note: str
    workload: dict[str, Any] | None
    findings: list[dict[str, Any]]
    verify: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fault_count(self) -> int:
        return len(self.faults)

    @property
    def failed_findings(self) -> list[dict[str, Any]]:
        return [f for f in self.findings if not f.get("ok", True)]

    @property
    def ops(self) -> dict[str, int]:
        totals = {"ok": 0, "fail": 0, "info": 0}
        for b in self.buckets:
            totals["ok"] += b.ok
            totals["fail"] += b.fail
            totals["info"] += b.info
        return totals


def _f(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, str):
        try:
            return float(Decimal(v.strip()))
        except (InvalidOperation, ValueError):
            return None
    return None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _one_shot(fault: str) -> bool:
    """Ask the fault class itself (``reversible = False``); fall back to known names."""
    try:
        from chaoskit import registry

        cls = registry.faults.get(fault)
    except Exception:  # noqa: BLE001 - a broken plugin must not break the report
        cls = None
    if cls is not None and hasattr(cls, "reversible"):
        return not bool(cls.reversible)
    return fault in _ONE_SHOT_FALLBACK


def _numeric(value: Any, expect: Any) -> tuple[float | None, str]:
    """The number a person would plot: the value, the part the expectation looks at, or an
    HTTP probe's latency."""
    if isinstance(value, list) and len(value) == 1:
        inner = value[0]
        value = inner[0] if isinstance(inner, list) and len(inner) == 1 else inner
    n = _f(value)
    if n is not None:
        return n, "value"
    if isinstance(expect, dict):
        path = expect.get("path") or (expect.get("jsonpath") or {}).get("path")
        if isinstance(path, str):
            try:
                from chaoskit.expect import get_path

                n = _f(get_path(value, path))
            except (KeyError, ValueError):
                n = None
            if n is not None:
                return n, path
    if isinstance(value, dict):
        return _f(value.get("latency_ms")), "latency ms"
    return None, ""


def _expectations(journal: dict[str, Any]) -> dict[str, Any]:
    """probe name -> its expect spec, from the resolved experiment in the journal."""
    exp = journal.get("experiment") or {}
    out: dict[str, Any] = {}
    for key in ("hypothesis", "guards", "method"):
        for p in exp.get(key) or []:
            if isinstance(p, dict) and p.get("probe") and p.get("name"):
                out[str(p["name"])] = p.get("expect")
    return out


def _phases(steps: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    spans: dict[str, list[float]] = {}
    order: list[str] = []
    for s in steps:
        ph = str(s.get("phase", "?"))
        if ph == "revert":  # reverts happen inside the method: not a phase of their own
            continue
        t0, t1 = _f(s.get("t_start")), _f(s.get("t_end"))
        if t0 is None:
            continue
        t1 = t1 if t1 is not None else t0
        if ph not in spans:
            spans[ph] = [t0, t1]
            order.append(ph)
        else:
            spans[ph][0] = min(spans[ph][0], t0)
            spans[ph][1] = max(spans[ph][1], t1)
    return [(ph, spans[ph][0], spans[ph][1]) for ph in order]


def _faults(journal: dict[str, Any], end_t: float) -> list[FaultBand]:
    steps = journal.get("steps") or []
    reverts: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        if s.get("phase") == "revert" and s.get("id") is not None:
            reverts.setdefault(str(s["id"]), []).append(s)
    names = {str(s.get("id")): str(s.get("name")) for s in steps if s.get("kind") == "fault"}
    records = journal.get("faults")
    if not records:  # a journal of a runner that died: the firings are only in the steps
        records = [
            {"step": s.get("id"), "fault": s.get("fault"), **f}
            for s in steps
            if s.get("kind") == "fault"
            for f in s.get("firings") or []
        ]
    bands: list[FaultBand] = []
    used: dict[str, int] = {}
    for r in records:
        lane = str(r.get("step"))
        fault = str(r.get("fault") or "?")
        start = _f(r.get("applied_t"))
        if start is None:
            continue
        inst = [str(i.get("name") if isinstance(i, dict) else i) for i in r.get("instances") or []]
        # the first revert of this step not yet matched that ends after this firing (repeats)
        pool = reverts.get(lane, [])
        k = next((i for i in range(used.get(lane, 0), len(pool)) if (_f(pool[i].get("t_end")) or 0) >= start), None)
        band = FaultBand(lane=lane, name=names.get(lane, fault), fault=fault, start=start, end=None,
                         reverted=False, instances=inst)
        if k is not None:
            rv = pool[k]
            used[lane] = k + 1
            band.end = _f(rv.get("t_end")) or start
            band.reverted = rv.get("status") == "ok"
            if not band.reverted:
                band.status = "revert-failed"
                band.detail = str(rv.get("error") or "revert failed")
        elif _one_shot(fault):
            band.reverted = True  # nothing to revert
        else:
            band.end = end_t
            band.status = "unreverted"
            band.detail = "no revert recorded: check `chaoskit rollback`"
        bands.append(band)
    # fault steps that never fired (trigger timeout, apply error): a failed mark
    fired = {b.lane for b in bands}
    for s in steps:
        if s.get("kind") == "fault" and str(s.get("id")) not in fired and s.get("status") not in ("ok", "running"):
            t = _f(s.get("t_end")) or _f(s.get("t_start")) or 0.0
            bands.append(FaultBand(lane=str(s.get("id")), name=str(s.get("name")), fault=str(s.get("fault") or "?"),
                                   start=t, end=None, reverted=True, instances=[], status="failed",
                                   detail=str(s.get("error") or s.get("status"))))
    return bands


def _probes(journal: dict[str, Any]) -> list[ProbePoint]:
    expects = _expectations(journal)
    out = []
    for s in journal.get("steps") or []:
        if s.get("kind") != "probe":
            continue
        t = _f(s.get("t_end")) or _f(s.get("t_start"))
        if t is None:
            continue
        name = str(s.get("name"))
        value, unit = _numeric(s.get("value"), expects.get(name))
        out.append(ProbePoint(t=t, name=name, phase=str(s.get("phase")), ok=s.get("status") == "ok",
                              value=value, detail=str(s.get("detail") or ""), unit=unit))
    return out


def _history_path(journal: dict[str, Any], source: Path | None) -> Path | None:
    raw = journal.get("history") or (journal.get("workload") or {}).get("history")
    if not raw:
        return None
    p = Path(str(raw))
    cands = [p] if p.is_absolute() else [Path.cwd() / p]
    if source is not None:
        cands += [source.parent / p.name, source.with_suffix(".history.jsonl")]
    for c in cands:
        if c.is_file():
            return c
    return None


def _buckets(journal: dict[str, Any], source: Path | None) -> tuple[list[Bucket], str]:
    path = _history_path(journal, source)
    if path is None:
        if journal.get("history") or journal.get("workload"):
            return [], "workload history file not found: no throughput plot"
        return [], "no workload in this run"
    t0 = _epoch(journal.get("started"))
    wl_start = None
    for s in journal.get("steps") or []:
        if s.get("kind") == "workload":
            wl_start = _f(s.get("t_start"))
            break
    counts: dict[int, Bucket] = {}
    bad = 0
    with open(path, errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if not isinstance(rec, dict):
                bad += 1
                continue
            typ = rec.get("type")
            wall, mono = _f(rec.get("wall")), _f(rec.get("time"))
            if wall is not None and t0 is not None:
                x = wall - t0
            elif mono is not None:
                x = (wl_start or 0.0) + mono / 1e9
            else:
                bad += 1
                continue
            b = counts.setdefault(int(max(0.0, x)), Bucket(int(max(0.0, x))))
            if typ in ("ok", "fail", "info", "invoke"):
                setattr(b, typ, getattr(b, typ) + 1)
    if not counts:
        return [], "workload history is empty"
    lo, hi = min(counts), max(counts)
    out = [counts.get(t, Bucket(t)) for t in range(lo, hi + 1)]
    if len(out) > MAX_BUCKETS:
        k = -(-len(out) // MAX_BUCKETS)
        merged = []
        for i in range(0, len(out), k):
            chunk = out[i : i + k]
            m = Bucket(chunk[0].t, width=k)
            for b in chunk:
                m.ok, m.fail, m.info, m.invoke = m.ok + b.ok, m.fail + b.fail, m.info + b.info, m.invoke + b.invoke
            merged.append(m)
        out = merged
    note = f"{bad} unreadable history line(s) skipped" if bad else ""
    return out, note


def build_view(journal: dict[str, Any], source: Path | None = None) -> RunView:
    steps = [s for s in journal.get("steps") or [] if isinstance(s, dict)]
    journal = {**journal, "steps": steps}
    t_ends = [_f(s.get("t_end")) or _f(s.get("t_start")) or 0.0 for s in steps]
    duration = _f(journal.get("duration")) or max(t_ends, default=0.0)
    status = str(journal.get("status") or "unknown")
    verdict = journal.get("verdict") or ("incomplete" if status == "running" else status)
    buckets, note = _buckets(journal, source)
    if buckets:
        duration = max(duration, buckets[-1].t + 1.0)
    faults = _faults(journal, duration)
    duration = max([duration, *[b.start for b in faults], *[b.end or 0 for b in faults]])
    findings: list[dict[str, Any]] = []
    verify = []
    for s in steps:
        if s.get("phase") == "verify":
            res = s.get("result") or {}
            verify.append({"name": s.get("name"), "ok": bool(res.get("ok", s.get("status") == "ok")),
                           "status": s.get("status"), "error": s.get("error")})
            for f in res.get("findings") or []:
                if isinstance(f, dict):
                    findings.append({"checker": s.get("name"), **f})
    findings.sort(key=lambda f: bool(f.get("ok", True)))
    notes = [note] if note and buckets else []
    if status == "running":
        notes.append("the journal was never closed: the runner died or is still running")
    return RunView(
        title=str(journal.get("title") or "untitled run"),
        run_id=str(journal.get("run_id") or "?"),
        status=status,
        verdict=str(verdict),
        exit_code=journal.get("exit_code"),
        seed=journal.get("seed"),
        started=journal.get("started"),
        ended=journal.get("ended"),
        duration=max(duration, 0.001),
        reasons=[str(r) for r in journal.get("reasons") or []],
        phases=_phases(steps),
        faults=faults,
        probes=_probes(journal),
        events=[e for e in journal.get("events") or [] if isinstance(e, dict)],
        buckets=buckets,
        history_note=note,
        workload=journal.get("workload") if isinstance(journal.get("workload"), dict) else None,
        findings=findings,
        verify=verify,
        steps=steps,
        source=str(source) if source else None,
        notes=notes,
    )
