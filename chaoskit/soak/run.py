"""Run a soak: every group reads its probes on its own interval (one thread per group, so a slow
Docker stats call never delays the ledger checks), every reading feeds the alert rules, and at
the end — also after Ctrl-C or SIGTERM — the report is written: JSON (machine), HTML (person),
and a summary table on the terminal.

Gate verdict: ``failed`` (exit 1) when any alert of a ``fail_on`` severity fired during the
soak, ``passed`` (exit 0) otherwise; an interrupted soak exits 128 + signal (130 on Ctrl-C) and
still says what it saw.
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoskit.runner.context import RunContext
from chaoskit.runner.journal import slug, utc_iso
from chaoskit.runner.probing import ProbeRunner
from chaoskit.secrets import Redactor
from chaoskit.soak.alerts import AlertBook, RuleState, WebhookSender, compact
from chaoskit.soak.config import SoakConfig
from chaoskit.soak.series import Series, soak_numeric, spec_paths

MAX_ERROR_MARKS = 500


@dataclass
class SoakResult:
    ok: bool
    exit_code: int
    verdict: str  # passed | failed | interrupted
    alerts: list[dict[str, Any]]
    report: dict[str, Any]
    out_dir: Path
    json_path: Path
    alerts_path: Path
    report_path: Path | None  # the HTML report (None when disabled or rendering failed)
    interrupted: bool = False
    reasons: list[str] = field(default_factory=list)


@dataclass
class _ProbeStats:
    group: str
    kind: str
    plotted: str = "value"
    error_t: list[float] = field(default_factory=list)  # first MAX_ERROR_MARKS unreadable moments
    reads: int = 0
    errors: int = 0
    failed: int = 0  # the probe's own expect did not hold
    last_value: Any = None
    last_detail: str = ""
    last_t: float | None = None
    series: Series = field(default_factory=Series)


class _Soak:
    def __init__(self, cfg: SoakConfig, duration: float, out_dir: Path, ui: Any, stop: threading.Event | None):
        self.cfg = cfg
        self.duration = duration
        self.out_dir = out_dir
        self.ui = ui
        self.stop = stop or threading.Event()
        self.soak_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)
        self.redactor = Redactor(cfg.secrets)
        self.ctx = RunContext(run_id=self.soak_id, seed=0, base_dir=cfg.base_dir, redactor=self.redactor,
                              stop=self.stop)
        self.ctx.vars = cfg.vars
        self.signo: int | None = None
        self.reasons: list[str] = []
        self.stats: dict[str, _ProbeStats] = {
            name: _ProbeStats(group=p.group, kind=p.plan.spec.probe) for name, p in cfg.probes.items()
        }
        self.paths: dict[str, list[str]] = {}
        for r in cfg.spec.alerts:
            for p in spec_paths(r.when):
                if p not in self.paths.setdefault(r.probe, []):
                    self.paths[r.probe].append(p)
        self._samples_lock = threading.Lock()
        self._samples: Any = None
        self.thread_errors: list[str] = []

    # ------------------------------------------------------------ lifecycle

    def run(self) -> SoakResult:
        spec = self.cfg.spec
        self.out_dir.mkdir(parents=True, exist_ok=True)
        outs = spec.outputs
        alerts_path = self.out_dir / outs.alerts_file
        webhook = WebhookSender(outs.webhook, self.redactor) if outs.webhook else None
        rules = {r.name: RuleState(rule=r, group=self.cfg.probes[r.probe].group) for r in spec.alerts}
        self.book = AlertBook(rules=rules, alerts_path=alerts_path, redactor=self.redactor, ui=self.ui,
                              title=spec.title, soak_id=self.soak_id, webhook=webhook)
        if outs.samples_file:
            # line-buffered: people tail it during a long soak
            self._samples = open(self.out_dir / outs.samples_file, "a", buffering=1)  # noqa: SIM115
        self.started = utc_iso()
        self.t0 = time.monotonic()
        old = self._signals()
        self.workload: Any = None
        self.workload_summary: dict[str, Any] | None = None
        try:
            self._target()
            self.started = utc_iso()
            self.t0 = time.monotonic()  # the time axis starts with the first reading, not target lookup
            self._start_workload()
            self._loop()
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.ended = utc_iso()
            self.elapsed = time.monotonic() - self.t0
            self._stop_workload()
            self.book.close()
            if self._samples is not None:
                self._samples.close()
        return self._finish(alerts_path)

    def _start_workload(self) -> None:
        if self.cfg.workload is None:
            return
        from chaoskit.workload import make_workload

        kind, params = self.cfg.workload
        path = self.out_dir / "workload.history.jsonl"
        self.ctx.workload_history = path  # type: ignore[attr-defined]  # read by workload.stats
        self.workload = make_workload(kind, params, self.ctx, path)
        self.ui.info(f"workload: {kind}, history {path}")
        self.workload.start()

    def _stop_workload(self) -> None:
        wl, self.workload = self.workload, None
        if wl is None:
            return
        try:
            wl.stop()
            wl.join()
            self.workload_summary = wl.summary()
        except Exception as exc:  # noqa: BLE001 - the soak's own verdict must still be written
            self.thread_errors.append(f"stopping the workload failed: {type(exc).__name__}: {exc}")

    def _signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signo: int, frame: Any) -> None:
            if self.signo is not None and signo == signal.SIGINT:
                # second Ctrl-C: leave now; alerts.jsonl and samples.jsonl are already on disk
                os.write(2, b"second interrupt: leaving without the final report\n")
                os._exit(130)
            if self.signo is None:
                self.signo = signo
                self.reasons.append(f"interrupted by {signal.Signals(signo).name}: the report covers what was seen")
            self.stop.set()

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    def _target(self) -> None:
        from chaoskit.backends.factory import check_target, make_backend

        target = self.cfg.spec.target
        if target is None:
            return
        self.ui.phase("target")
        backend = make_backend(target, log=self.ui.info)
        if backend is not None:
            check_target(backend, set())
            self.ui.info(backend.describe())
        self.ctx.backend = backend

    def _loop(self) -> None:
        spec = self.cfg.spec
        self.ui.phase(f"soak for {_fmt(self.duration)}: {len(self.cfg.probes)} probes in {len(spec.groups)} groups, "
                      f"{len(spec.alerts)} alert rules (fail on: {', '.join(spec.fail_on) or 'nothing'})")
        slow = [f"{r.name} ({_fmt(r.for_)})" for r in spec.alerts if r.for_ >= self.duration]
        if slow:
            self.ui.info(f"warning: {len(slow)} rule(s) need bad readings for longer than the soak lasts "
                         f"({_fmt(self.duration)}) and cannot fire: {', '.join(slow)}")
        self.deadline = self.t0 + self.duration
        self.done = threading.Event()
        threads = [
            threading.Thread(target=self._group, args=(g,), name=f"soak-{g}", daemon=True) for g in spec.groups
        ]
        for t in threads:
            t.start()
        beat = max(30.0, min(900.0, self.duration / 12))
        next_beat = self.t0 + beat
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= self.deadline:
                break
            if now >= next_beat:
                next_beat += beat
                c = self.book.counts()
                self.ui.info(f"{_fmt(now - self.t0)} of {_fmt(self.duration)}: alerts critical {c['critical']}, "
                             f"high {c['high']}, medium {c['medium']}")
            self.stop.wait(min(0.2, max(0.0, self.deadline - now)))
        self.done.set()
        for t in threads:
            t.join(30)

    def _group(self, name: str) -> None:
        g = self.cfg.spec.groups[name]
        probes = self.cfg.group_probes(name)
        runner = ProbeRunner(self.ctx)
        nxt = time.monotonic()
        try:
            while not (self.done.is_set() or self.stop.is_set()):
                for p in probes:
                    if self.done.is_set() or self.stop.is_set():
                        break
                    res = runner.once(p.plan)
                    self._record(p.name, time.monotonic() - self.t0, res)
                nxt += g.interval
                now = time.monotonic()
                if nxt < now:  # a read took longer than the interval: skip, never pile up
                    nxt = now
                wait = min(nxt, self.deadline) - now
                if wait > 0 and (self.done.wait(wait) or self.stop.is_set()):
                    break
                if time.monotonic() >= self.deadline:
                    break
        except Exception as exc:  # noqa: BLE001 - one broken group must not hide the others' alerts
            self.thread_errors.append(f"group {name}: {type(exc).__name__}: {exc}")
        finally:
            runner.close()

    def _record(self, probe: str, t: float, res: Any) -> None:
        read_ok = res.error is None
        st = self.stats[probe]
        st.reads += 1
        st.last_t = round(t, 3)
        if not read_ok:
            st.errors += 1
            if len(st.error_t) < MAX_ERROR_MARKS:
                st.error_t.append(round(t, 3))
        elif not res.ok:
            st.failed += 1
        value = compact(res.value, 2000) if read_ok else None
        st.last_value = self.redactor(value)
        st.last_detail = self.redactor.text(res.detail)
        if read_ok:
            n, what = soak_numeric(res.value, self.paths.get(probe, []), st.plotted if st.series.count else None)
            if n is not None:
                st.series.add(t, n)
                st.plotted = what
        if self._samples is not None:
            line = {"t": round(t, 3), "probe": probe, "group": st.group, "ok": res.ok, "value": value,
                    "detail": res.detail}
            if res.error:
                line["error"] = res.error
            with self._samples_lock:
                self._samples.write(json.dumps(self.redactor(line), default=str) + "\n")
        self.book.observe(probe, t, read_ok, res.value, res.ok, res.detail)

    # ------------------------------------------------------------ the report

    def _finish(self, alerts_path: Path) -> SoakResult:
        spec = self.cfg.spec
        fired_gate = [a for a in self.book.alerts if a["severity"] in spec.fail_on]
        reasons = list(self.reasons) + list(self.thread_errors)
        if fired_gate:
            names = sorted({a["rule"] for a in fired_gate})
            reasons.append(f"{len(fired_gate)} alert(s) of severity {'/'.join(spec.fail_on)} fired: {', '.join(names)}")
        gate = "failed" if fired_gate or self.thread_errors else "passed"
        stopped = self.signo is None and self.stop.is_set() and self.elapsed < self.duration - 0.5
        if stopped:
            reasons.insert(0, f"stopped early by the caller after {self.elapsed:.1f}s of {self.duration:.0f}s")
        if self.signo is not None:
            verdict, code = "interrupted", 128 + self.signo
        else:
            verdict, code = gate, (1 if gate == "failed" else 0)
        report: dict[str, Any] = {
            "kind": "soak",
            "chaoskit_soak": 1,
            "soak_id": self.soak_id,
            "title": spec.title,
            "source": str(self.cfg.source),
            "target": self.ctx.backend.describe() if self.ctx.backend is not None else None,
            "started": self.started,
            "ended": self.ended,
            "planned_duration": self.duration,
            "duration": round(self.elapsed, 3),
            "status": "interrupted" if self.signo is not None else ("stopped" if stopped else "completed"),
            "verdict": verdict,
            "gate": gate,
            "exit_code": code,
            "fail_on": list(spec.fail_on),
            "reasons": reasons,
            "counts": self.book.counts(),
            "groups": {n: {"interval": g.interval, "probes": [p.name for p in self.cfg.group_probes(n)]}
                       for n, g in spec.groups.items()},
            "probes": {
                n: {"group": s.group, "probe": s.kind, "plotted": s.plotted, "error_t": s.error_t, "reads": s.reads, "errors": s.errors, "failed": s.failed,
                    "last_value": s.last_value, "last_detail": s.last_detail, "last_t": s.last_t,
                    "series": s.series.to_json()}
                for n, s in self.stats.items()
            },
            "rules": {
                n: {"severity": r.rule.severity, "probe": r.rule.probe, "group": r.group,
                    "when": r.rule.when, "for": r.rule.for_, "evaluations": r.evaluations, "bad": r.bad,
                    "unknown": r.unknown, "fired": r.fired, "firing_at_end": r.firing is not None,
                    "last_detail": self.redactor.text(r.last_detail)}
                for n, r in self.book.rules.items()
            },
            "alerts": self.book.alerts,
            "files": {"alerts": str(alerts_path)},
        }
        if spec.outputs.samples_file:
            report["files"]["samples"] = str(self.out_dir / spec.outputs.samples_file)
        if self.workload_summary is not None:
            report["workload"] = self.workload_summary
            report["history"] = str(self.out_dir / "workload.history.jsonl")
            report["files"]["history"] = report["history"]
        if self.book.webhook is not None:
            report["webhook"] = self.book.webhook.stats()
        report = self.redactor(report)
        json_path = self.out_dir / "soak-report.json"
        html_path: Path | None = None
        if spec.outputs.html:
            html_path = self.out_dir / "soak-report.html"
            report["files"]["html"] = str(html_path)
            try:
                from chaoskit.report import render_report

                render_report([report], html_path)
            except Exception as exc:  # noqa: BLE001 - the JSON report and the verdict matter more
                reasons.append(f"HTML report failed: {type(exc).__name__}: {exc}")
                report["reasons"].append(reasons[-1])
                html_path = None
        report["files"]["json"] = str(json_path)
        tmp = json_path.with_name(f".{json_path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str))
        os.replace(tmp, json_path)
        summary = getattr(self.ui, "summary", None)
        if summary is not None:
            summary(report)
        return SoakResult(
            ok=code == 0,
            exit_code=code,
            verdict=verdict,
            alerts=self.book.alerts,
            report=report,
            out_dir=self.out_dir,
            json_path=json_path,
            alerts_path=alerts_path,
            report_path=html_path,
            interrupted=self.signo is not None,
            reasons=reasons,
        )


def _fmt(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def default_out_dir(title: str, reports_dir: Path | str = "reports") -> Path:
    return Path(reports_dir) / f"soak-{slug(title)}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def run_soak(
    config: SoakConfig,
    duration: float | None = None,
    out_dir: Path | None = None,
    ui: Any = None,
    stop: threading.Event | None = None,
) -> SoakResult:
    """Watch for ``duration`` seconds (default: the file's ``duration``). ``stop`` lets a caller
    (the gauntlet) end the soak early; Ctrl-C/SIGTERM do the same when called from the main
    thread. Raises ExperimentError when no duration is known, TargetError when the target
    matches nothing."""
    from chaoskit.errors import ExperimentError, Problem
    from chaoskit.ui import QuietUI

    d = duration if duration is not None else config.spec.duration
    if d is None or d <= 0:
        raise ExperimentError([Problem(str(config.source), None, "duration",
                                       "no duration: give --duration (e.g. 5m, 72h) or duration: in the file")])
    out = out_dir or default_out_dir(config.title)
    return _Soak(config, float(d), Path(out), ui or QuietUI(), stop).run()
