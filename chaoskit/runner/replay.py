"""Replay: the same seed, instances and fault schedule as a recorded run, and a side-by-side."""

from __future__ import annotations

from typing import Any


def replay_plan(journal: dict[str, Any]) -> dict[str, Any]:
    """step id -> {"instances": [...], "trigger": {...}} from a journal's fault steps."""
    plan: dict[str, Any] = {"__run_id__": journal.get("run_id")}
    for step in journal.get("steps", []):
        if step.get("kind") != "fault" or not step.get("id"):
            continue
        entry: dict[str, Any] = {}
        if step.get("instances"):
            entry["instances"] = step["instances"]
        firings = step.get("firings") or []
        if firings and firings[0].get("replay"):
            entry["trigger"] = dict(firings[0]["replay"])
        plan[step["id"]] = entry
    return plan


def _summary(j: dict[str, Any]) -> dict[str, Any]:
    faults = {}
    for step in j.get("steps", []):
        if step.get("kind") == "fault":
            f = step.get("firings") or [{}]
            faults[step.get("id")] = {
                "instances": step.get("instances"),
                "applied_t": f[0].get("applied_t") if f else None,
                "nth": (f[0].get("trigger_evidence") or {}).get("nth") if f else None,
                "status": step.get("status"),
            }
    return {"verdict": j.get("verdict") or j.get("status"), "duration": j.get("duration"), "faults": faults}


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = _summary(old), _summary(new)
    rows = [("", f"original {old.get('run_id')}", f"replay {new.get('run_id')}")]
    rows.append(("verdict", str(a["verdict"]), str(b["verdict"])))
    rows.append(("seed", str(old.get("seed")), str(new.get("seed"))))
    rows.append(("duration s", f"{a['duration'] or 0:.2f}", f"{b['duration'] or 0:.2f}"))
    for sid in sorted(set(a["faults"]) | set(b["faults"])):
        fa, fb = a["faults"].get(sid, {}), b["faults"].get(sid, {})
        rows.append((f"{sid} instances", str(fa.get("instances")), str(fb.get("instances"))))
        rows.append((f"{sid} nth match", str(fa.get("nth")), str(fb.get("nth"))))
        ta, tb = fa.get("applied_t"), fb.get("applied_t")
        rows.append((f"{sid} applied at s", f"{ta:.3f}" if ta is not None else "-", f"{tb:.3f}" if tb is not None else "-"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}" for r in rows)
