"""Crash rollback: revert whatever the fault ledger says a dead runner left behind, then sweep
for chaoskit-marked leftovers the ledger may not know about (a runner killed between applying a
fault and writing its evidence still wrote the ledger entry first, so this is belt and braces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from chaoskit import registry
from chaoskit.runner.ledger import pending_runs


def _impl(record: dict[str, Any]) -> type | None:
    name = record.get("fault", "")
    if record.get("backend") == "kubernetes":
        try:
            from chaoskit.faults.kubernetes import kubernetes_impl

            cls = kubernetes_impl(name)
            if cls is not None:
                return cls
        except ImportError:
            pass
    return registry.faults.get(name)


def rollback(state_dir: Path, run_id: str | None = None, log=print) -> dict[str, Any]:
    """Revert the ledger entries of one run (or all). Entries that revert cleanly are removed."""
    runs = pending_runs(state_dir)
    if run_id is not None:
        runs = {k: v for k, v in runs.items() if k == run_id}
    report: dict[str, Any] = {"runs": {}, "failed": 0, "reverted": 0}
    for rid, entries in runs.items():
        results = []
        for rec in entries:
            cls = _impl(rec)
            item: dict[str, Any] = {"entry": rec.get("entry"), "fault": rec.get("fault")}
            if cls is None:
                item["result"] = "unknown fault type; left in the ledger"
                report["failed"] += 1
                results.append(item)
                continue
            try:
                item["evidence"] = cls.revert_record(rec, None)
                item["result"] = "reverted"
                report["reverted"] += 1
                (Path(state_dir) / "runs" / rid / "faults" / f"{rec['entry']}.json").unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001 - report, keep the entry, go on with the rest
                item["result"] = f"failed: {type(exc).__name__}: {exc}"
                report["failed"] += 1
            log(f"{rid} {rec.get('fault')}: {item['result']}")
            results.append(item)
        report["runs"][rid] = results
        fdir = Path(state_dir) / "runs" / rid / "faults"
        if fdir.is_dir() and not any(fdir.glob("*.json")):
            shutil.rmtree(Path(state_dir) / "runs" / rid, ignore_errors=True)
    return report


def sweep(log=print) -> dict[str, Any]:
    """Remove chaoskit-marked leftovers that no ledger lists (``rollback --all --sweep``)."""
    out: dict[str, Any] = {}
    for name in registry.faults.names():
        cls = registry.faults.get(name)
        fn = getattr(cls, "sweep", None)
        if fn is not None and name not in out:
            try:
                out[name] = fn()
            except Exception as exc:  # noqa: BLE001
                out[name] = f"failed: {exc}"
    log(json.dumps(out, default=str))
    return out
