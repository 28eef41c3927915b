"""``container.stats``: CPU and memory of the target's containers, computed exactly as
``docker stats`` does, so the numbers an SRE sees in an alert match what they see by hand.

The Docker API's one-shot stats call takes about a second (the daemon samples twice to get a
CPU delta), so all containers are read in parallel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.errors import ProbeError, TargetError
from chaoskit.probes.base import Probe, ProbeParams


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """docker CLI's formula: container CPU delta over system CPU delta, times online CPUs."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        sys_delta = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    ncpu = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    if sys_delta <= 0 or cpu_delta < 0:
        return 0.0
    return round(cpu_delta / sys_delta * ncpu * 100.0, 2)


def memory(stats: dict[str, Any]) -> tuple[int | None, int | None, float | None]:
    """(used bytes, limit bytes, percent): usage minus inactive page cache, like docker stats
    (cgroup v1: total_inactive_file, v2: inactive_file)."""
    mem = stats.get("memory_stats") or {}
    usage, limit = mem.get("usage"), mem.get("limit")
    if usage is None or not limit:
        return None, None, None
    st = mem.get("stats") or {}
    cache = st.get("total_inactive_file", st.get("inactive_file", 0)) or 0
    used = max(0, int(usage) - int(cache))
    return used, int(limit), round(used / int(limit) * 100.0, 2)


@registry.probes.register("container.stats")
class ContainerStatsProbe(Probe):
    summary = "CPU % and memory % (as docker stats) of the target's containers: value {cpu_percent, mem_percent, containers}"

    class Params(ProbeParams):
        services: list[str] | None = Field(None, description="default: every container of the target")

    def read(self) -> dict[str, Any]:
        backend = self.ctx.backend
        if backend is None or backend.kind != "compose":
            raise ProbeError("container.stats needs a compose target (target: {compose: {...}})")
        try:
            services = self.params.services or sorted(backend.services())  # type: ignore[attr-defined]
            found = [i for s in services for i in backend.find(Selection(service=s, mode="all"))]
        except TargetError as exc:
            raise ProbeError(str(exc)) from None
        if not found:
            raise ProbeError(f"no running containers in {backend.describe()}")

        def one(inst: Any) -> tuple[str, dict[str, Any]]:
            try:
                s = inst.meta["container"].stats(stream=False)
            except Exception as exc:  # noqa: BLE001 - a container that just died is a value, not a crash
                return inst.name, {"service": inst.service, "error": f"{type(exc).__name__}: {exc}"}
            used, limit, pct = memory(s)
            return inst.name, {
                "service": inst.service,
                "cpu_percent": cpu_percent(s),
                "mem_percent": pct,
                "mem_bytes": used,
                "mem_limit": limit,
            }

        with ThreadPoolExecutor(max_workers=min(8, len(found))) as pool:
            per = dict(pool.map(one, found))
        cpus = [c["cpu_percent"] for c in per.values() if c.get("cpu_percent") is not None]
        mems = [c["mem_percent"] for c in per.values() if c.get("mem_percent") is not None]
        if not cpus and not mems:
            raise ProbeError("no container stats could be read: " + "; ".join(str(c.get("error")) for c in per.values()))
        return {
            "cpu_percent": max(cpus, default=None),
            "mem_percent": max(mems, default=None),
            "containers": dict(sorted(per.items())),
        }
