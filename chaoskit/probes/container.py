"""Container probe: state of a service's containers through the target backend."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.errors import ProbeError, TargetError
from chaoskit.probes.base import Probe, ProbeParams


def container_state(c: Any) -> dict[str, Any]:
    c.reload()
    st = c.attrs.get("State", {})
    health = (st.get("Health") or {}).get("Status")
    return {
        "name": c.name,
        "status": st.get("Status"),
        "running": bool(st.get("Running")) and not st.get("Paused"),
        "paused": bool(st.get("Paused")),
        "healthy": health == "healthy" if health else bool(st.get("Running")),
        "health": health,
        "restart_count": c.attrs.get("RestartCount", 0),
        "exit_code": st.get("ExitCode"),
        "pid": st.get("Pid") or None,
        "started_at": st.get("StartedAt"),
        "finished_at": st.get("FinishedAt"),
    }


@registry.probes.register("container")
class ContainerProbe(Probe):
    summary = "state of a service's containers: value {running, healthy, restart_count, exit_code, ...} (all: true -> list)"

    class Params(ProbeParams):
        service: str
        all: bool = Field(False, description="value is a list over all containers of the service")

    def read(self) -> Any:
        backend = self.ctx.backend
        if backend is None or backend.kind != "compose":
            raise ProbeError("the container probe needs a compose target (use kubernetes.pod on kubernetes)")
        try:
            found = backend.find(Selection(service=self.params.service, mode="all"), running=None)
        except TargetError as exc:
            raise ProbeError(str(exc)) from None
        if not found:
            raise ProbeError(f"no container of service {self.params.service!r} in {backend.describe()}")
        states = [container_state(i.meta["container"]) for i in sorted(found, key=lambda i: i.name)]
        if self.params.all:
            return states
        return states[0]
