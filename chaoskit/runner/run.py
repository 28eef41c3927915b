"""Run one experiment through its phases (DESIGN.md "Phases of a run").

The guarantees live here: every injected fault is in the on-disk ledger before it is applied;
active faults are reverted and rollbacks run on success, failure, Ctrl-C and SIGTERM; the journal
is rewritten after every step. Verdicts are strict: a hypothesis that fails before the method is
exit 1, a fault that cannot be applied (or did nothing) is exit 3.
"""

from __future__ import annotations

import os
import platform
import secrets as _secrets
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoskit import __version__
from chaoskit.backends.factory import check_target, make_backend
from chaoskit.errors import ChaoskitError, FaultError, TargetError
from chaoskit.experiment.load import Experiment, FaultPlan, ParallelPlan, ProbeStepPlan, WaitPlan
from chaoskit.runner.context import RunContext, default_state_dir
from chaoskit.runner.journal import Journal, default_journal_path
from chaoskit.runner.ledger import FaultLedger
from chaoskit.runner.probing import ProbeRunner
from chaoskit.secrets import Redactor

EXIT = {"completed": 0, "deviated": 1, "invalid": 2, "failed": 3}


@dataclass
class RunOptions:
    seed: int | None = None
    journal_path: Path | None = None
    reports_dir: Path = Path("reports")
    dry_run: bool = False
    state_dir: Path = field(default_factory=default_state_dir)
    replay: dict[str, Any] | None = None  # step id -> {"instances": [...], "trigger": {...}}
    install_signals: bool = True


@dataclass
class Outcome:
    status: str
    exit_code: int
    run_id: str
    journal: Path
    reasons: list[str]
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "journal": str(self.journal),
            "reasons": self.reasons,
            "seed": self.seed,
        }


class _StopMethod(Exception):
    """Raised inside the method when a signal or a guard stops it."""


class _Deviation(Exception):
    pass


class Runner:
    def __init__(self, exp: Experiment, opts: RunOptions, ui: Any):
        self.exp = exp
        self.opts = opts
        seed = opts.seed if opts.seed is not None else exp.spec.seed
        self.seed = seed if seed is not None else _secrets.randbelow(2**31)
        self.run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + _secrets.token_hex(3)
        self.redactor = Redactor(exp.secrets)
        self.redactor.learn(exp.vars)
        self.ui = _RedactingUI(ui, self.redactor)
        self.ctx = RunContext(run_id=self.run_id, seed=self.seed, base_dir=exp.base_dir, redactor=self.redactor)
        self.ctx.vars = exp.vars
        self.ctx.dry_run = opts.dry_run
        self.ctx.replay = opts.replay
        self.ledger = FaultLedger(opts.state_dir, self.run_id)
        self.ctx.ledger = self.ledger
        self.active: list[tuple[Any, str | None, FaultPlan]] = []
        self._active_lock = threading.Lock()
        self.reasons: list[str] = []
        self.status = "completed"
        self.signo: int | None = None
        self.guard_failure: str | None = None
        self.deviations: list[dict[str, Any]] = []
        self.probes = ProbeRunner(self.ctx)
        self.workload: Any = None
        self.history_path: Path | None = None
        self.checkers: list[tuple[str, Any]] = []
        self.fault_records: list[dict[str, Any]] = []
        self._target_ok = False  # rollbacks are pointless when the target never resolved

    # ------------------------------------------------------------ entry point

    def run(self) -> Outcome:
        jpath = self.opts.journal_path or default_journal_path(self.exp.title, self.opts.reports_dir)
        self.journal = Journal(
            jpath,
            self.redactor,
            run_id=self.run_id,
            title=self.exp.title,
            tags=self.exp.spec.tags,
            experiment_file=str(self.exp.source),
            seed=self.seed,
            dry_run=self.opts.dry_run,
            chaoskit_version=__version__,
            host=platform.node(),
            experiment=self.exp.resolved,
            overrides=self.exp.overrides,
            replay_of=(self.opts.replay or {}).get("__run_id__"),
        )
        self.ctx.journal = self.journal
        old_handlers = self._install_signals() if self.opts.install_signals else {}
        try:
            self._phases()
        except _StopMethod:
            pass
        except ChaoskitError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug still gets a journal and a rollback
            self._fail(f"internal error: {type(exc).__name__}: {exc}")
            self.journal.set("traceback", traceback.format_exc())
        finally:
            self._finish()
            for sig, h in old_handlers.items():
                signal.signal(sig, h)
        if self.signo is not None:
            self.status = "interrupted"
            code = 128 + self.signo
        else:
            code = EXIT[self.status]
        self.journal.close(
            self.status,
            exit_code=code,
            reasons=self.reasons,
            deviations=self.deviations,
            faults=self.fault_records,
            verdict="passed" if code == 0 else self.status,
        )
        self.ui.final(self.status, code, self.reasons, self.journal.path)
        return Outcome(self.status, code, self.run_id, self.journal.path, self.reasons, self.seed)

    # ------------------------------------------------------------ signals

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signo: int, frame: Any) -> None:
            if self.signo is not None and signo == signal.SIGINT:
                # second Ctrl-C: leave now; the fault ledger stays for `chaoskit rollback`
                try:
                    self.journal.set("forced_exit", "second interrupt: run `chaoskit rollback` to revert")
                finally:
                    os._exit(130)
            self.signo = self.signo or signo
            self.reasons.append(f"interrupted by {signal.Signals(signo).name}")
            self.ctx.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    # ------------------------------------------------------------ phases

    def _fail(self, reason: str) -> None:
        self.status = "failed"
        self.reasons.append(reason)
        self.ctx.stop.set()

    def _deviate(self, reason: str) -> None:
        if self.status == "completed":
            self.status = "deviated"
        self.reasons.append(reason)

    def _check_stop(self) -> None:
        if self.ctx.stop.is_set():
            raise _StopMethod()

    def _phases(self) -> None:
        exp = self.exp
        with self.journal.step("setup", "target", "resolve target") as rec:
            self.ui.phase("target")
            backend = make_backend(exp.spec.target, log=self.ui.info)
            self.ctx.backend = backend
            if backend is not None:
                rec["target"] = backend.describe()
                services: set[str] = set()
                for s in [*exp.fault_steps(), *exp.rollbacks]:
                    if s.spec.target and s.spec.target.service:
                        services.add(s.spec.target.service)
                    services |= _param_services(s.params)
                check_target(backend, services)
            self.journal.set("target", backend.describe() if backend else None)
        self._target_ok = True

        if self.opts.dry_run:
            self._dry_run()
            return

        # 2. hypothesis before
        self.ui.phase("hypothesis (before)")
        if not self._hypothesis("hypothesis-before"):
            self._deviate("steady-state hypothesis did not hold before the method: the system was already broken")
            return
        self._check_stop()

        # 3. snapshot, workload
        for name, cls, params in exp.verify:
            with self.journal.step("before", "checker", f"{name}: before") as rec:
                checker = cls(params, self.ctx)
                rec["summary"] = checker.before()
                self.checkers.append((name, checker))
        if exp.workload is not None:
            self._start_workload()

        # 4. method, with continuous checks alongside
        self.ui.phase("method")
        monitor = _Monitor(self) if (exp.guards or any(p.spec.during for p in exp.hypothesis)) else None
        if monitor:
            monitor.start()
        try:
            self._steps(exp.method, "method")
        except _StopMethod:
            if not self.guard_failure:
                raise
        finally:
            if monitor:
                monitor.stop()
        if self.guard_failure:
            self.ctx.stop.clear()  # the guard stopped the method; rollbacks still run
            self._deviate(self.guard_failure)
            return
        self._check_stop()

        # 5. revert, stop workload, hypothesis after
        self._revert_active()
        self._stop_workload()
        self.ui.phase("hypothesis (after)")
        if not self._hypothesis("hypothesis-after"):
            self._deviate("steady-state hypothesis did not hold after the method")
        self._check_stop()

        # 6. verify
        for name, checker in self.checkers:
            self.ui.phase(f"verify: {name}")
            with self.journal.step("verify", "checker", name) as rec:
                result = checker.verify(self.history_path)
                data = result.to_json() if hasattr(result, "to_json") else result
                rec["result"] = data
                ok = bool(getattr(result, "ok", data.get("ok") if isinstance(data, dict) else False))
                rec["status"] = "ok" if ok else "failed"
                lines = result.summary() if hasattr(result, "summary") else []
                for line in lines if isinstance(lines, list) else [str(lines)]:
                    self.ui.info(line)
                if not ok:
                    self._deviate(f"verification {name} failed: " + _first_findings(data))

    def _dry_run(self) -> None:
        self.ui.phase("dry run: nothing is touched")
        plan = []
        for step in [*self.exp.fault_steps(), *self.exp.rollbacks]:
            cls = self._impl(step)
            fault = cls(step.params, step.spec.target, self.ctx)
            entry: dict[str, Any] = {"step": step.id, "fault": step.spec.kind_name}
            try:
                fault.prepare()
                entry["would_hit"] = [i.describe() for i in fault.instances]
            except ChaoskitError as exc:
                entry["error"] = str(exc)
            plan.append(entry)
            self.ui.info(f"{step.id}: {step.spec.kind_name} -> {entry.get('would_hit', entry.get('error'))}")
        self.journal.set("dry_run_plan", plan)

    def _hypothesis(self, phase: str) -> bool:
        ok_all = True
        for plan in self.exp.hypothesis:
            with self.journal.step(phase, "probe", plan.name, probe=plan.spec.probe) as rec:
                res = self.probes.check(plan)
                rec.update(res.as_dict())
                rec["status"] = "ok" if res.ok else "failed"
                self.ui.check(plan.name, res.ok, res.detail)
                ok_all = ok_all and res.ok
        return ok_all

    # ------------------------------------------------------------ method steps

    def _steps(self, steps: list[Any], phase: str) -> None:
        for step in steps:
            self._check_stop()
            self._step(step, phase)

    def _step(self, step: Any, phase: str) -> None:
        if isinstance(step, FaultPlan):
            self._fault_step(step, phase)
        elif isinstance(step, WaitPlan):
            self._wait(step, phase)
        elif isinstance(step, ProbeStepPlan):
            with self.journal.step(phase, "probe", step.probe.name, id=step.id) as rec:
                res = self.probes.check(step.probe)
                rec.update(res.as_dict())
                rec["status"] = "ok" if res.ok else "failed"
                self.ui.check(step.probe.name, res.ok, res.detail)
                if not res.ok:
                    self._deviate(f"probe {step.probe.name} failed during the method: {res.detail}")
        elif isinstance(step, ParallelPlan):
            self._parallel(step, phase)

    def _wait(self, step: WaitPlan, phase: str) -> None:
        with self.journal.step(phase, "wait", step.name, id=step.id) as rec:
            if step.seconds is not None:
                self.ui.info(f"{step.name}")
                if not self.ctx.sleep(step.seconds):
                    rec["status"] = "interrupted"
                    raise _StopMethod()
                return
            assert step.until is not None
            self.ui.info(f"waiting for the hypothesis to hold (up to {step.until.timeout:.0f}s)")
            deadline = time.monotonic() + step.until.timeout
            attempts = 0
            while True:
                attempts += 1
                results = [(p, self.probes.once(p)) for p in self.exp.hypothesis]
                if all(r.ok for _, r in results):
                    rec["recovered_after"] = round(time.monotonic() - (deadline - step.until.timeout), 3)
                    rec["attempts"] = attempts
                    self.ui.check("recovered", True, f"after {rec['recovered_after']}s")
                    return
                if time.monotonic() >= deadline:
                    failing = [f"{p.name}: {r.detail}" for p, r in results if not r.ok]
                    rec["status"] = "failed"
                    rec["failing"] = failing
                    rec["attempts"] = attempts
                    self.ui.check("recovered", False, "; ".join(failing))
                    self._deviate(f"no recovery within {step.until.timeout:.0f}s: " + "; ".join(failing))
                    return
                if not self.ctx.sleep(step.until.interval):
                    raise _StopMethod()

    def _parallel(self, step: ParallelPlan, phase: str) -> None:
        errors: list[BaseException] = []

        def branch(steps: list[Any]) -> None:
            try:
                self._steps(steps, phase)
            except _StopMethod:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)
                self.ctx.stop.set()

        with self.journal.step(phase, "parallel", step.name, id=step.id, branches=len(step.branches)):
            threads = [threading.Thread(target=branch, args=(b,), daemon=True) for b in step.branches]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.1)
        if errors:
            raise errors[0]

    def _impl(self, plan: FaultPlan) -> type:
        backend = self.ctx.backend
        if backend is not None and backend.kind == "kubernetes":
            try:
                from chaoskit.faults.kubernetes import kubernetes_impl
            except ImportError:
                return plan.cls
            return kubernetes_impl(plan.spec.kind_name) or plan.cls
        return plan.cls

    def _fault_step(self, plan: FaultPlan, phase: str) -> None:
        cls = self._impl(plan)
        name = plan.spec.kind_name
        target = plan.spec.target
        replay = (self.opts.replay or {}).get(plan.id) or {}
        params = plan.params
        if replay.get("instances") and target is not None:
            target = target.model_copy(update={"instances": replay["instances"]})
        repeats = plan.spec.repeat or 1
        with self.journal.step(phase, "fault", plan.name, id=plan.id, fault=name) as rec:
            rec["firings"] = []
            trigger = None
            t_start = time.monotonic()
            if plan.trigger is not None:
                tparams = plan.trigger.params
                hint = replay.get("trigger") or {}
                if hint:
                    tparams = tparams.model_copy(update={k: v for k, v in hint.items() if k in type(tparams).model_fields and v is not None})
                trigger = plan.trigger.cls(tparams, self.ctx, plan.id)
                rec["trigger"] = {"kind": plan.trigger.kind, **plan.trigger.raw}
            try:
                if trigger is not None:
                    trigger.arm()
                for n in range(repeats):
                    self._check_stop()
                    fault = cls(params, target, self.ctx)
                    fault.prepare()  # resolve + cache PIDs before the trigger fires
                    rec.setdefault("instances", [i.name for i in fault.instances])
                    firing = None
                    if trigger is not None:
                        within = plan.trigger.within if plan.trigger else None
                        deadline = t_start + within if within else None
                        firing = trigger.wait(deadline)
                        if firing is None:
                            self._check_stop()
                            raise FaultError(
                                f"{plan.name}: trigger {plan.trigger.kind} did not fire within {within}s"
                                if within
                                else f"{plan.name}: trigger {plan.trigger.kind} did not fire"
                            )
                        if plan.trigger.delay:
                            from chaoskit.triggers.timed import _sleep_until

                            if not _sleep_until(self.ctx, firing.observed + plan.trigger.delay, None):
                                raise _StopMethod()
                    elif n > 0 and plan.spec.every:
                        if not self.ctx.sleep(plan.spec.every):
                            raise _StopMethod()
                    self._apply(fault, plan, rec, firing, trigger)
                    if trigger is not None:
                        trigger.rearm()
            except FaultError as exc:
                rec["status"] = "failed"
                rec["error"] = str(exc)
                self.ui.check(plan.name, False, str(exc))
                raise
            finally:
                if trigger is not None:
                    trigger.close()

    def _apply(self, fault: Any, plan: FaultPlan, rec: dict[str, Any], firing: Any, trigger: Any) -> None:
        record = fault.record() | {
            "fault": plan.spec.kind_name,
            "backend": getattr(self.ctx.backend, "kind", None),
            "step": plan.id,
        }
        if self.ctx.backend is not None and self.ctx.backend.kind == "compose":
            record["project"] = self.ctx.backend.project  # type: ignore[attr-defined]
        entry = self.ledger.add(record) if fault.reversible else None
        t_apply = time.monotonic()
        try:
            evidence = fault.apply()
        except FaultError:
            if entry:  # may be half-applied: keep it active so it is reverted
                with self._active_lock:
                    self.active.append((fault, entry, plan))
            raise
        except Exception as exc:  # noqa: BLE001
            if entry:
                with self._active_lock:
                    self.active.append((fault, entry, plan))
            raise FaultError(f"{plan.name}: {type(exc).__name__}: {exc}") from exc
        t_done = time.monotonic()
        f: dict[str, Any] = {
            "applied_t": round(t_apply - self.ctx.t0, 6),
            "apply_ms": round((t_done - t_apply) * 1000, 3),
            "instances": [i.describe() for i in fault.instances],
            "evidence": evidence,
        }
        if firing is not None:
            f["observed_t"] = round(firing.observed - self.ctx.t0, 6)
            f["delay_ms"] = round((t_apply - firing.observed) * 1000, 3)  # includes a when.delay
            f["trigger_evidence"] = firing.evidence
            f["replay"] = trigger.replay_hint() if trigger is not None else {}
        rec["firings"].append(f)
        self.fault_records.append({"step": plan.id, "fault": plan.spec.kind_name, **f})
        self.journal.flush()
        self.ui.check(
            plan.name,
            True,
            ", ".join(i.name for i in fault.instances) + (f" (+{f['delay_ms']:.1f}ms after trigger)" if firing else ""),
        )
        if isinstance(evidence, dict) and evidence.get("took_effect") is False and self.exp.spec.settings.require_fault_evidence:
            if entry:
                with self._active_lock:
                    self.active.append((fault, entry, plan))
            raise FaultError(f"{plan.name}: the fault did not take effect (evidence: {_short(evidence)})")
        if entry is None:
            return
        if fault.duration:
            if not self.ctx.sleep(fault.duration):
                with self._active_lock:
                    self.active.append((fault, entry, plan))
                raise _StopMethod()
            self._revert(fault, entry, plan)
        else:
            with self._active_lock:
                self.active.append((fault, entry, plan))

    def _revert(self, fault: Any, entry: str | None, plan: FaultPlan) -> None:
        with self.journal.step("revert", "revert", f"revert {plan.name}", id=plan.id) as rec:
            try:
                rec["evidence"] = ev = fault.revert()
            except Exception as exc:  # noqa: BLE001 - keep the ledger entry for `chaoskit rollback`
                rec["status"] = "failed"
                rec["error"] = f"{type(exc).__name__}: {exc}"
                self.reasons.append(f"revert of {plan.name} failed: {exc}; run `chaoskit rollback {self.run_id}`")
                self.status = "failed"
                return
            # some faults can only tell at revert time whether they bit (packet counters, bytes delayed)
            if isinstance(ev, dict) and ev.get("took_effect") is False and self.exp.spec.settings.require_fault_evidence:
                rec["status"] = "failed"
                self.reasons.append(
                    f"{plan.name}: the fault did not take effect (no traffic hit it); the run proves nothing"
                )
                if self.status in ("completed", "deviated"):
                    self.status = "failed"
        if entry:
            self.ledger.remove(entry)

    def _revert_active(self) -> None:
        while True:
            with self._active_lock:
                if not self.active:
                    return
                fault, entry, plan = self.active.pop()
            self._revert(fault, entry, plan)

    # ------------------------------------------------------------ workload

    def _start_workload(self) -> None:
        from chaoskit.workload import make_workload

        kind, params = self.exp.workload  # type: ignore[misc]
        self.history_path = self.journal.path.with_suffix(".history.jsonl")
        self.history_path.unlink(missing_ok=True)  # a rerun with the same journal path starts afresh
        self.ctx.workload_history = self.history_path  # workload.stats probes (guards) read it
        with self.journal.step("workload", "workload", f"start {kind} workload") as rec:
            self.workload = make_workload(kind, params, self.ctx, self.history_path)
            self.workload.start()
            rec["history"] = str(self.history_path)
        self.journal.set("history", str(self.history_path))

    def _stop_workload(self) -> None:
        if self.workload is None:
            return
        wl, self.workload = self.workload, None
        with self.journal.step("workload", "workload", "stop workload") as rec:
            duration = getattr(getattr(wl, "params", None), "duration", None)
            running = getattr(wl, "running", None)
            if duration and running is not None and not self.ctx.stop.is_set():
                # a workload with a duration is the traffic window: let it finish its time
                rec["waited_for_duration"] = True
                while running() and self.ctx.sleep(0.1):
                    pass
            wl.stop()
            wl.join()
            summary = wl.summary()
            rec["summary"] = summary
            self.journal.set("workload", summary)

    # ------------------------------------------------------------ the finally

    def _finish(self) -> None:
        # revert whatever is still active, stop the workload, then rollbacks: always
        try:
            self._revert_active()
        except Exception as exc:  # noqa: BLE001
            self.reasons.append(f"revert failed: {exc}")
        try:
            self._stop_workload()
        except Exception as exc:  # noqa: BLE001
            self.reasons.append(f"stopping the workload failed: {exc}")
        if self.exp.rollbacks and not self.opts.dry_run and self._target_ok:
            self.ui.phase("rollbacks")
            was_stopped = self.ctx.stop.is_set()
            self.ctx.stop.clear()  # rollbacks must run even after a stop
            for plan in self.exp.rollbacks:
                with self.journal.step("rollback", "action", plan.name, id=plan.id) as rec:
                    try:
                        cls = self._impl(plan)
                        fault = cls(plan.params, plan.spec.target, self.ctx)
                        fault.prepare()
                        rec["evidence"] = fault.apply()
                        rec["instances"] = [i.name for i in fault.instances]
                        self.ui.check(plan.name, True, "")
                    except Exception as exc:  # noqa: BLE001 - one failing rollback must not skip the others
                        rec["status"] = "failed"
                        rec["error"] = f"{type(exc).__name__}: {exc}"
                        self.ui.check(plan.name, False, str(exc))
                        self.reasons.append(f"rollback {plan.name} failed: {exc}")
                        if self.status == "completed":
                            self.status = "failed"
            if was_stopped:
                self.ctx.stop.set()
        self.probes.close()
        target = self.exp.spec.target
        if target is not None and target.compose is not None and target.compose.down and self._target_ok:
            from chaoskit import stack

            backend = self.ctx.backend
            try:
                stack.down(backend.project, target.compose.file)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001
                self.reasons.append(f"compose down failed: {exc}")
        for _, checker in self.checkers:
            close = getattr(checker, "close", None)
            if close:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass


class _RedactingUI:
    """The terminal gets the same redaction as the journal: probe errors can quote a DSN."""

    def __init__(self, ui: Any, redactor: Redactor):
        self._ui = ui
        self._red = redactor

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._ui, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kw: Any) -> Any:
            return fn(*self._red(list(args)), **{k: self._red(v) for k, v in kw.items()})

        return call


class _Monitor:
    """Guards and ``during: true`` hypothesis probes, checked on an interval during the method."""

    def __init__(self, runner: Runner):
        self.r = runner
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.failed: set[str] = set()
        self.probes = ProbeRunner(runner.ctx)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.probes.close()

    def _loop(self) -> None:
        r = self.r
        interval = r.exp.spec.settings.continuous_interval
        during = [p for p in r.exp.hypothesis if p.spec.during]
        while not self.stop_event.wait(interval):
            for plan in r.exp.guards:
                res = self.probes.once(plan)
                if not res.ok:
                    r.guard_failure = f"guard {plan.name} failed: {res.detail}; method aborted"
                    r.journal.event("guard_failed", guard=plan.name, detail=res.detail, value=res.value)
                    r.ui.check(f"guard {plan.name}", False, res.detail)
                    r.ctx.stop.set()
                    return
            for plan in during:
                res = self.probes.once(plan)
                if not res.ok and plan.name not in self.failed:
                    self.failed.add(plan.name)
                    d = {"probe": plan.name, "t": r.journal.offset(), "detail": res.detail}
                    r.deviations.append(d)
                    r.journal.event("deviation", **d)
                    r._deviate(f"continuous hypothesis {plan.name} failed during the method: {res.detail}")


def _param_services(params: Any) -> set[str]:
    """Services a fault names in its own keys (partitions, proxies), for the pre-flight check."""
    out: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.add(v.split(":", 1)[0])
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for key in ("between", "from_", "to", "services", "clients"):
        walk(getattr(params, key, None))
    return {s for s in out if s}


def _short(obj: Any, n: int = 300) -> str:
    s = repr(obj)
    return s if len(s) <= n else s[:n] + "..."


def _first_findings(data: Any) -> str:
    if isinstance(data, dict):
        findings = data.get("findings") or []
        names = [str(f.get("name") or f.get("check") or f.get("kind") or f) for f in findings if isinstance(f, dict) and not f.get("ok", False)]
        if names:
            return ", ".join(names[:5])
    return "see journal"


def run_experiment(exp: Experiment, opts: RunOptions | None = None, ui: Any = None) -> Outcome:
    from chaoskit.ui import QuietUI

    return Runner(exp, opts or RunOptions(), ui or QuietUI()).run()


__all__ = ["Outcome", "RunOptions", "Runner", "TargetError", "run_experiment"]
