"""Port-forward helper: reach a pod's port from the runner when it is only reachable inside the
cluster (the ledger's PostgreSQL for ``db.*`` faults and ``sql`` probes, the API for ``http``).

``PortForward`` listens on 127.0.0.1 and opens one API-server port-forward stream per accepted
connection (what ``kubectl port-forward`` does), so a pod restart only breaks the connections
that were open, and the next connection lands on whatever pod the spec resolves to then.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chaoskit.backends.base import Selection
from chaoskit.backends.kubernetes import KubernetesBackend, api_error_message
from chaoskit.errors import TargetError


class PortForwardSpec(BaseModel):
    """``port_forward: {service: postgres, port: 5432}`` on an http/sql probe or db fault."""

    model_config = ConfigDict(extra="forbid")

    pod: str | None = Field(None, description="a pod by name")
    service: str | None = Field(None, description="pods with app=<service>")
    selector: dict[str, str] | None = None
    owner: str | None = Field(None, description="deployment/statefulset name")
    port: int = Field(..., ge=1, le=65535, description="the container port")
    local_port: int = Field(0, ge=0, le=65535, description="0: any free port")

    @model_validator(mode="after")
    def _some_pod(self) -> PortForwardSpec:
        if not (self.pod or self.service or self.selector or self.owner):
            raise ValueError("port_forward needs pod, service, selector or owner")
        return self


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class PortForward:
    def __init__(self, backend: KubernetesBackend, spec: PortForwardSpec):
        self.backend = backend
        self.spec = spec
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.errors: list[str] = []
        self.pod_used: list[str] = []

    # --- which pod -------------------------------------------------------------------------

    def pick_pod(self) -> str:
        """A running, ready pod of the spec (by name order, so the choice is stable)."""
        s = self.spec
        if s.pod:
            pod = self.backend.read_pod(s.pod)
            if pod is None:
                raise TargetError(f"port_forward: no pod {s.pod!r} in {self.backend.describe()}")
            return s.pod
        found = self.backend.find(Selection(service=s.service, selector=s.selector, owner=s.owner))
        ready = sorted((i for i in found if _ready(i.meta["pod"])), key=lambda i: i.name)
        if not ready:
            raise TargetError(f"port_forward: no ready pod for {s.model_dump(exclude_none=True)}")
        return ready[0].name

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> PortForward:
        self.pick_pod()  # fail now, with a clear message, rather than on the first connection
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.spec.local_port))
        ls.listen(16)
        self._listener = ls
        threading.Thread(target=self._accept, name="k8s-port-forward", daemon=True).start()
        return self

    @property
    def local_port(self) -> int:
        assert self._listener is not None, "start() first"
        return int(self._listener.getsockname()[1])

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            for c in list(self._conns):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> PortForward:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import portforward

        with self._lock:
            self._conns.add(conn)
        pf = None
        try:
            pod = self.pick_pod()
            self.pod_used.append(pod)
            pf = portforward(
                self.backend.core.connect_get_namespaced_pod_portforward,
                pod,
                self.backend.namespace,
                ports=str(self.spec.port),
            )
            remote = pf.socket(self.spec.port)
            remote.setblocking(True)
            _pump(conn, remote, self._stop)
            err = pf.error(self.spec.port)
            if err:
                self.errors.append(f"{pod}:{self.spec.port}: {err}")
        except ApiException as exc:
            self.errors.append(f"port-forward failed: {api_error_message(exc)}")
        except (TargetError, OSError) as exc:
            self.errors.append(str(exc))
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()
            if pf is not None:
                with contextlib.suppress(Exception):
                    pf.close()


def _pump(a: socket.socket, b: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    while not stop.is_set():
        r, _, _ = select.select([a, b], [], [], 0.5)
        for src in r:
            dst = b if src is a else a
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                return


@contextlib.contextmanager
def port_forward(backend: KubernetesBackend, spec: PortForwardSpec | dict[str, Any]) -> Iterator[PortForward]:
    """``with port_forward(backend, {"service": "postgres", "port": 5432}) as pf: ...pf.local_port``"""
    s = spec if isinstance(spec, PortForwardSpec) else PortForwardSpec.model_validate(spec)
    pf = PortForward(backend, s).start()
    try:
        yield pf
    finally:
        pf.stop()


def rewrite_url(url: str, local_port: int) -> str:
    """The same URL, aimed at the local end of a port-forward (user, path and query kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{local_port}"
    return urlunsplit(parts._replace(netloc=netloc))


def rewrite_dsn(dsn: str, local_port: int) -> str:
    """A PostgreSQL DSN (URL or ``key=value`` form) aimed at the local end of a port-forward."""
    if "://" in dsn:
        return rewrite_url(dsn, local_port)
    out = re.sub(r"\bhost\s*=\s*\S+", "host=127.0.0.1", dsn)
    out = re.sub(r"\bport\s*=\s*\S+", f"port={local_port}", out)
    if "host=" not in out:
        out += " host=127.0.0.1"
    if "port=" not in out:
        out += f" port={local_port}"
    return out.strip()


@contextlib.contextmanager
def forwarded(backend_or_ctx: Any, spec: PortForwardSpec | dict[str, Any], address: str) -> Iterator[str]:
    """What an http/sql probe or a db fault with ``port_forward:`` needs: ``address`` (a URL or a
    DSN) rewritten to a live port-forward, for as long as the ``with`` block lasts."""
    backend = getattr(backend_or_ctx, "backend", backend_or_ctx)
    if not isinstance(backend, KubernetesBackend):
        raise TargetError("port_forward needs a kubernetes target (target: {kubernetes: {...}})")
    with port_forward(backend, spec) as pf:
        if address.startswith(("http://", "https://")):
            yield rewrite_url(address, pf.local_port)
        else:
            yield rewrite_dsn(address, pf.local_port)
