"""Container faults on the compose backend: kill (any signal), stop, start, restart, pause.

``kill`` signals the container's init process directly by PID when chaoskit runs as root on the
Docker host (the PID is cached in ``prepare``, before the trigger fires: ~2 ms to land), else
through the Docker API (~20-100 ms). Evidence is read back from Docker afterwards — the exit
code, when the process died, whether the container came back — so a pass never rests on a
signal that did nothing."""

from __future__ import annotations

import os
import signal as _signal
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from chaoskit import registry
from chaoskit.backends.compose import ComposeBackend, is_local_root
from chaoskit.errors import FaultError
from chaoskit.faults.base import Fault, FaultParams
from chaoskit.units import Duration


def signal_number(sig: str | int) -> int:
    if isinstance(sig, int):
        return sig
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(_signal, name))
    except AttributeError:
        raise ValueError(f"unknown signal {sig!r} (e.g. SIGKILL, SIGTERM, SIGSTOP)") from None


def _container(fault: Fault, inst: Any) -> Any:
    backend = fault.ctx.backend
    if not isinstance(backend, ComposeBackend):
        raise FaultError(f"{fault.name}: this backend has no container implementation")
    return backend.container(inst)


def _state(c: Any) -> dict[str, Any]:
    st = c.attrs.get("State", {})
    return {
        "status": st.get("Status"),
        "pid": st.get("Pid") or None,
        "exit_code": st.get("ExitCode"),
        "started_at": st.get("StartedAt"),
        "finished_at": st.get("FinishedAt"),
        "restart_count": c.attrs.get("RestartCount", 0),
        "paused": bool(st.get("Paused")),
    }


def _await_change(c: Any, old_pid: int | None, old_started: str | None, timeout: float) -> dict[str, Any]:
    """Poll until the old process is gone (dead, or replaced by a restart)."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        c.reload()
        st = _state(c)
        if st["status"] != "running" or st["pid"] != old_pid or st["started_at"] != old_started:
            return st
        time.sleep(0.01)
    return st


class _ContainerFault(Fault):
    needs_target = True
    running_filter: bool | None = True

    def prepare(self) -> None:
        if self.target is None or self.ctx.backend is None:
            raise FaultError(f"{self.name} needs a target")
        self.instances = self.ctx.backend.resolve(self.target, self.ctx.rng, running=self.running_filter)


@registry.faults.register("container.kill")
class Kill(_ContainerFault):
    summary = "send a signal (default SIGKILL) to the containers' main process"
    reversible = False

    class Params(FaultParams):
        signal: str | int = Field("SIGKILL", description="signal name or number")
        via: Literal["auto", "pid", "api"] = Field("auto", description="pid: os.kill on the host; api: Docker API")
        await_exit: Duration = Field(5.0, description="how long to wait for evidence the process died")

        @field_validator("signal")
        @classmethod
        def _known(cls, v: str | int) -> str | int:
            signal_number(v)
            return v

    def prepare(self) -> None:
        super().prepare()
        self._sig = signal_number(self.params.signal)
        self._before = {}
        for inst in self.instances:
            c = inst.meta["container"]
            self._before[inst.id] = _state(c)
        via = self.params.via
        if via == "auto":
            via = "pid" if is_local_root() and all(i.pid for i in self.instances) else "api"
        if via == "pid" and not is_local_root():
            raise FaultError("container.kill via: pid needs root on the Docker host")
        self._via = via

    def apply(self) -> dict[str, Any]:
        import docker.errors

        sent: list[dict[str, Any]] = []
        for inst in self.instances:
            t = time.time()
            try:
                if self._via == "pid":
                    os.kill(inst.pid, self._sig)  # type: ignore[arg-type]
                else:
                    inst.meta["container"].kill(signal=self._sig)
            except ProcessLookupError:
                raise FaultError(f"{inst.name}: process {inst.pid} no longer exists") from None
            except docker.errors.APIError as exc:
                raise FaultError(f"{inst.name}: docker kill failed: {exc.explanation or exc}") from None
            sent.append({"instance": inst.name, "pid": inst.pid, "at": t})
        evidence: dict[str, Any] = {"signal": self._sig, "via": self._via, "sent": sent, "instances": []}
        took = True
        for inst in self.instances:
            c = inst.meta["container"]
            before = self._before[inst.id]
            if self._sig in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT):
                after = _await_change(c, before["pid"], before["started_at"], self.params.await_exit)
                died = after.get("pid") != before["pid"] or after.get("status") != "running" or after.get(
                    "started_at"
                ) != before["started_at"]
                took = took and died
            else:
                c.reload()
                after = _state(c)
            evidence["instances"].append({"instance": inst.name, "before": before, "after": after})
        evidence["took_effect"] = took
        return evidence


@registry.faults.register("container.stop")
class Stop(_ContainerFault):
    summary = "stop containers (SIGTERM, then SIGKILL after timeout); reverted by starting them"

    class Params(FaultParams):
        timeout: int = Field(10, ge=0, description="seconds before docker sends SIGKILL")
        duration: Duration | None = Field(None, description="start again after this long")

    def apply(self) -> dict[str, Any]:
        out = []
        for inst in self.instances:
            c = inst.meta["container"]
            c.stop(timeout=self.params.timeout)
            c.reload()
            out.append({"instance": inst.name, "after": _state(c)})
        return {"instances": out, "took_effect": all(o["after"]["status"] != "running" for o in out)}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
        return _start_ids([i["id"] for i in record.get("instances", [])])


def _client() -> Any:
    import docker

    return docker.from_env()


def _start_ids(ids: list[str]) -> dict[str, Any]:
    import docker.errors

    client = _client()
    out = []
    for cid in ids:
        try:
            c = client.containers.get(cid)
        except docker.errors.NotFound:
            out.append({"id": cid[:12], "result": "gone"})
            continue
        c.reload()
        if c.attrs["State"].get("Paused"):
            c.unpause()
        if c.status != "running":
            c.start()
            out.append({"id": cid[:12], "name": c.name, "result": "started"})
        else:
            out.append({"id": cid[:12], "name": c.name, "result": "already running"})
    return {"instances": out}


@registry.faults.register("container.start")
class Start(_ContainerFault):
    summary = "start stopped containers of a service (typical rollback)"
    reversible = False
    running_filter = None

    def prepare(self) -> None:
        if self.target is None or self.ctx.backend is None:
            raise FaultError("container.start needs a target")
        self.instances = self.ctx.backend.find(self.target, running=None)
        for inst in self.instances:
            self.ctx.backend.check_owned(inst)
        if not self.instances:
            raise FaultError(f"container.start: no container of {self.target.service!r}")

    def apply(self) -> dict[str, Any]:
        ev = _start_ids([i.id for i in self.instances])
        ev["took_effect"] = True
        return ev


@registry.faults.register("container.restart")
class Restart(_ContainerFault):
    summary = "restart containers (docker restart)"
    reversible = False

    class Params(FaultParams):
        timeout: int = Field(10, ge=0)

    def apply(self) -> dict[str, Any]:
        out = []
        for inst in self.instances:
            c = inst.meta["container"]
            before = _state(c)
            c.restart(timeout=self.params.timeout)
            c.reload()
            after = _state(c)
            out.append({"instance": inst.name, "before": before, "after": after})
        took = all(o["after"]["started_at"] != o["before"]["started_at"] for o in out)
        return {"instances": out, "took_effect": took}


@registry.faults.register("container.pause")
class Pause(_ContainerFault):
    summary = "freeze containers (cgroup freezer); unpaused after duration or on rollback"

    class Params(FaultParams):
        duration: Duration | None = Field(None, description="unpause after this long")

    def apply(self) -> dict[str, Any]:
        out = []
        for inst in self.instances:
            c = inst.meta["container"]
            c.pause()
            c.reload()
            out.append({"instance": inst.name, "status": c.status})
        return {"instances": out, "took_effect": all(o["status"] == "paused" for o in out)}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: Any) -> dict[str, Any] | None:
        import docker.errors

        client = _client()
        out = []
        for i in record.get("instances", []):
            try:
                c = client.containers.get(i["id"])
            except docker.errors.NotFound:
                out.append({"id": i["id"][:12], "result": "gone"})
                continue
            if c.attrs["State"].get("Paused"):
                c.unpause()
                out.append({"name": c.name, "result": "unpaused"})
            else:
                out.append({"name": c.name, "result": "not paused"})
        return {"instances": out}
