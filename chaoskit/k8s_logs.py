"""Follow pod logs the way log triggers follow container logs: an iterator of
``(timestamp, line)`` that can be stopped from another thread.

Pods come and go during chaos (that is the point), so the follower re-lists the selector every
``rescan`` seconds and follows new pods too; when a container restarts its stream ends and is
re-opened. Timestamps come from the kubelet (``timestamps=true``), not from our clock, so a line
is attributed to when it was written; re-opened streams overlap by a second and duplicates are
dropped by timestamp.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chaoskit.backends.kubernetes import KubernetesBackend


def parse_k8s_timestamp(text: str) -> tuple[float, int]:
    """RFC3339(Nano) -> (epoch seconds as float, total nanoseconds as int for exact ordering)."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1]
    base, _, frac = text.partition(".")
    whole = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    secs = int(whole.timestamp())
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return secs + nanos / 1e9, secs * 1_000_000_000 + nanos


class PodLogFollower:
    """Yields (epoch seconds, line) from every pod matching ``label_selector``; ``stop()`` ends it."""

    def __init__(
        self,
        backend: KubernetesBackend,
        label_selector: str,
        container: str | None = None,
        since: float | None = None,
        rescan: float = 2.0,
    ):
        self.backend = backend
        self.label_selector = label_selector
        self.container = container
        self.since = time.time() if since is None else since
        self.rescan = rescan
        self._q: queue.Queue[tuple[float, str, str]] = queue.Queue()
        self._stop = threading.Event()
        self._readers: dict[str, threading.Thread] = {}
        self._responses: list[Any] = []
        self._lock = threading.Lock()
        self._manager: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self) -> PodLogFollower:
        if self._manager is None:
            self._manager = threading.Thread(target=self._manage, name="k8s-log-follower", daemon=True)
            self._manager.start()
        return self

    def __enter__(self) -> PodLogFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for resp in self._responses:
                _shutdown(resp)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[tuple[float, str]]:
        for ts, _pod, line in self.iter_with_pod():
            yield ts, line

    def pump_into(self, out: Any) -> None:
        """Feed (pod, line, monotonic read time) into queue ``out``, like the compose follower."""

        def pump() -> None:
            for _ts, pod, line in self.iter_with_pod():
                out.put((pod, line, time.monotonic()))

        threading.Thread(target=pump, name="k8s-log-pump", daemon=True).start()

    def iter_with_pod(self) -> Iterator[tuple[float, str, str]]:
        """Like iterating, with the pod name: (timestamp, pod, line)."""
        self.start()
        while not self._stop.is_set():
            try:
                yield self._q.get(timeout=0.2)
            except queue.Empty:
                continue

    # --- threads ----------------------------------------------------------------------------

    def _manage(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.backend.list_pods(self.label_selector)
            except Exception as exc:  # noqa: BLE001 - the API may blip during chaos; keep trying
                self.errors.append(str(exc))
                pods = []
            for pod in pods:
                uid = pod.metadata.uid
                if uid in self._readers or pod.metadata.deletion_timestamp is not None:
                    continue
                names = [c.name for c in pod.spec.containers]
                container = self.container if self.container in names else names[0]
                t = threading.Thread(
                    target=self._read, args=(pod.metadata.name, uid, container), daemon=True
                )
                self._readers[uid] = t
                t.start()
            self._stop.wait(self.rescan)

    def _read(self, pod: str, uid: str, container: str) -> None:
        from kubernetes.client.exceptions import ApiException

        state: dict[str, Any] = {"ns": int(self.since * 1e9) - 1, "seen": set()}
        first = True
        while not self._stop.is_set():
            since_s = None
            start_from = self.since if first else state["ns"] / 1e9
            if start_from > 0:
                since_s = max(1, math.ceil(time.time() - start_from) + 1)
            first = False
            try:
                resp = self.backend.core.read_namespaced_pod_log(
                    pod,
                    self.backend.namespace,
                    container=container,
                    follow=True,
                    timestamps=True,
                    since_seconds=since_s,
                    _preload_content=False,
                    _request_timeout=(5, 30),
                )
            except ApiException as exc:
                if exc.status == 404:
                    return  # pod gone; a replacement is picked up by the manager
                self._stop.wait(1.0)  # e.g. 400 "container is waiting to start"
                continue
            except Exception:  # noqa: BLE001 - connection trouble: retry
                self._stop.wait(1.0)
                continue
            with self._lock:
                self._responses.append(resp)
            buf = b""
            try:
                for chunk in resp.stream(4096):
                    if self._stop.is_set():
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        self._emit(pod, raw, state)
            except Exception:  # noqa: BLE001 - read timeout / reset: re-open below
                pass
            finally:
                with self._lock:
                    if resp in self._responses:
                        self._responses.remove(resp)
                try:
                    resp.release_conn()
                except Exception:  # noqa: BLE001
                    pass
            if buf:
                self._emit(pod, buf, state)
            if self._stop.is_set():
                return
            current = self.backend.read_pod(pod)
            if current is None or current.metadata.uid != uid:
                return
            self._stop.wait(0.5)

    def _emit(self, pod: str, raw: bytes, state: dict[str, Any]) -> None:
        """Queue one line unless a re-opened stream already delivered it (same stamp and text)."""
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        stamp, _, line = text.partition(" ")
        try:
            ts, ns = parse_k8s_timestamp(stamp)
        except ValueError:
            ts, ns, line = time.time(), state["ns"], text
        if ns < state["ns"] or (ns == state["ns"] and line in state["seen"]):
            return
        if ns > state["ns"]:
            state["ns"], state["seen"] = ns, set()
        state["seen"].add(line)
        self._q.put((ts, pod, line))


def _shutdown(resp: Any) -> None:
    """Wake a reader blocked in recv. ``close()`` from another thread would wait for the
    buffered reader's lock (i.e. until the read times out); ``shutdown`` ends the recv now."""
    import socket

    candidates = [
        getattr(getattr(resp, "_connection", None), "sock", None),
        getattr(getattr(getattr(getattr(resp, "_fp", None), "fp", None), "raw", None), "_sock", None),
    ]
    for sock in candidates:
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                return
            except OSError:
                continue
