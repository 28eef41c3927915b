"""The compose backend: containers of one compose project, found by the labels both compose
v1 and v2 set. Everything goes through the Docker Engine API; nothing outside the project is
ever returned, so faults cannot hit a bystander."""

from __future__ import annotations

import os
from typing import Any

from chaoskit.backends.base import Backend, Instance, Selection
from chaoskit.errors import TargetError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def docker_client() -> Any:
    import docker
    import docker.errors

    try:
        client = docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise TargetError(f"cannot reach the Docker engine: {exc}") from exc


def is_local_root() -> bool:
    """True when we can signal container processes directly: root on the Docker host itself."""
    host = os.environ.get("DOCKER_HOST", "")
    local = host == "" or host.startswith("unix://")
    return local and os.geteuid() == 0


class ComposeBackend(Backend):
    kind = "compose"

    def __init__(
        self,
        project: str,
        compose_file: str | None = None,
        client: Any = None,
    ):
        self.project = project
        self.compose_file = compose_file
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    def describe(self) -> str:
        return f"compose project {self.project!r}"

    def services(self) -> list[str]:
        return sorted({c.labels.get(SERVICE_LABEL, "") for c in self._containers(None, True)} - {""})

    def _containers(self, service: str | None, all_: bool) -> list[Any]:
        import docker.errors

        labels = [f"{PROJECT_LABEL}={self.project}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        try:
            return self.client.containers.list(all=all_, filters={"label": labels})
        except docker.errors.DockerException as exc:
            raise TargetError(f"cannot list containers of {self.describe()}: {exc}") from exc

    def find(self, sel: Selection, running: bool | None = True) -> list[Instance]:
        if sel.service is None:
            raise TargetError("the compose backend selects by service: give target.service")
        out = []
        for c in self._containers(sel.service, all_=running is not True):
            is_running = c.status == "running"
            if running is True and not is_running or running is False and is_running:
                continue
            out.append(self._instance(c))
        return out

    def _instance(self, c: Any) -> Instance:
        pid = c.attrs.get("State", {}).get("Pid") or None
        return Instance(
            id=c.id,
            name=c.name,
            service=c.labels.get(SERVICE_LABEL, ""),
            backend=self,
            pid=pid,
            meta={"container": c, "project": c.labels.get(PROJECT_LABEL)},
        )

    def owns(self, inst: Instance) -> bool:
        import docker.errors

        try:
            c = self.client.containers.get(inst.id)
        except docker.errors.NotFound:
            return False
        return c.labels.get(PROJECT_LABEL) == self.project

    def container(self, inst: Instance) -> Any:
        """A fresh container object (state reloaded)."""
        return self.client.containers.get(inst.id)

    def follow_logs(self, sel: Selection, out: Any) -> LogFollower:
        """Follow the logs of every running container of ``sel`` into queue ``out``."""
        containers = [i.meta["container"] for i in self.find(sel, running=True)]
        if not containers:
            raise TargetError(f"no running container of service {sel.service!r} in {self.describe()} to follow")
        return LogFollower(containers, out)

    def by_id(self, container_id: str) -> Instance | None:
        """Look up a container by id, for crash rollback; None unless it is ours."""
        import docker.errors

        try:
            c = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        if c.labels.get(PROJECT_LABEL) != self.project:
            return None
        return self._instance(c)


class LogFollower:
    """Follows the log streams of several containers into one queue of (name, line, t_read)."""

    def __init__(self, containers: list[Any], out: Any):
        import threading

        self._out = out
        self._streams: list[Any] = []
        self._stopped = threading.Event()
        self._threads = []
        for c in containers:
            stream = c.logs(stream=True, follow=True, tail=0, stdout=True, stderr=True)
            self._streams.append(stream)
            t = threading.Thread(target=self._pump, args=(c.name, stream), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, name: str, stream: Any) -> None:
        import time

        buf = b""
        try:
            for chunk in stream:
                t = time.monotonic()
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._out.put((name, line.decode(errors="replace"), t))
        except Exception:  # noqa: BLE001 - the stream ends when the container dies or we stop
            pass
        if buf and not self._stopped.is_set():
            self._out.put((name, buf.decode(errors="replace"), time.monotonic()))

    def stop(self) -> None:
        self._stopped.set()
        for s in self._streams:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass

