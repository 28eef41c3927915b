"""A FAKE Kubernetes API server, for tests only.

No Kubernetes control plane can run on our build machines, so the Kubernetes backend is tested
against this: a real HTTP server (stdlib ``ThreadingHTTPServer`` on 127.0.0.1, random port) with
in-memory state, speaking the subset of the REST API that chaoskit's backend, faults, probes and
log follower call through the official ``kubernetes`` client:

- ``/api/v1/namespaces/{ns}/pods``: list (``labelSelector``), get, patch (strategic-merge of
  metadata), delete (``gracePeriodSeconds`` from the query or the DeleteOptions body, and
  ``preconditions.uid``), ``/log`` (``follow``, ``timestamps``, ``sinceTime``, chunked streaming),
  ``/ephemeralcontainers`` (get/patch; the container is reported running at once);
- ``/apis/apps/v1/namespaces/{ns}/deployments`` and ``statefulsets``: list/get/patch and
  ``/scale`` (get/patch/put). A toy controller keeps the pod count equal to ``replicas`` and, when a
  pod is deleted, creates a replacement (new name for deployments, same name and new uid for
  statefulsets), so restart and availability probes can be tested;
- ``/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies``: list (``labelSelector``),
  create, get, delete;
- ``/version``.

- ``/api/v1/namespaces/{ns}/pods/{name}/portforward``: the websocket channel protocol the
  official client speaks (``v4.channel.k8s.io``: a data and an error channel per port, each
  opened with a 2-byte port frame), bridged to a real TCP address the test maps the pod's port
  to with ``forward_port(ns, pod, port, (host, port))``.

- ``/api/v1/namespaces/{ns}/pods/{name}/exec``: the websocket exec protocol (stdout on channel
  1, stderr on 2, the v1 Status with the exit code on 3), run for real with ``docker exec`` in a
  container the test maps to the pod with ``exec_in(ns, pod, docker_container, container=None)``;
  unmapped pods answer 400.

Out of scope: attach, watches, admission, field selectors, real scheduling. Every request is recorded in ``requests`` so tests can assert
that nothing touched another namespace or a cluster-scoped path. This is NOT Kubernetes: where a
``KUBECONFIG`` pointing at a real cluster is present, the end-to-end tests run against it too.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_nano() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    content_type: str | None


# --- label selectors (string form, as sent on the wire) -------------------------------------


def _split_terms(s: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


_SET_TERM = re.compile(r"^(\S+)\s+(in|notin)\s+\((.*)\)$")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Evaluate a Kubernetes label selector string against a label map."""
    for term in _split_terms(selector or ""):
        m = _SET_TERM.match(term)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in" and labels.get(key) not in vals:
                return False
            if op == "notin" and key in labels and labels[key] in vals:
                return False
        elif "!=" in term:
            k, v = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (x.strip() for x in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def label_selector_object_matches(sel: dict[str, Any], labels: dict[str, str]) -> bool:
    """Evaluate a LabelSelector object (matchLabels / matchExpressions)."""
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, vals = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch semantics (null deletes); good enough for the metadata/spec patches we get."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge_patch(target[k], v)
        else:
            target[k] = copy.deepcopy(v)
    return target


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        self.code, self.reason, self.message = code, reason, message
        super().__init__(message)

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found')


@dataclass
class _Log:
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (ts, container, line)
    closed: bool = False


class FakeKubeAPI:
    """In-memory state plus the HTTP server. Use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.statefulsets: dict[tuple[str, str], dict[str, Any]] = {}
        self.netpols: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], _Log] = {}
        self.requests: list[Request] = []
        self.recreate = True  # the toy controller replaces deleted pods
        self.port_targets: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.exec_targets: dict[tuple[str, str, str | None], Any] = {}
        self._rv = 1
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(_Handler):
            fake = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig pointing at this fake, so the backend's normal config path is exercised."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
            ],
            "current-context": "fake",
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    # --- seeding state ----------------------------------------------------------------------

    def _meta(self, ns: str, name: str, labels: dict[str, str] | None) -> dict[str, Any]:
        self._rv += 1
        return {
            "name": name,
            "namespace": ns,
            "uid": str(uuid.uuid4()),
            "labels": dict(labels or {}),
            "resourceVersion": str(self._rv),
            "creationTimestamp": _now(),
        }

    def add_pod(
        self,
        ns: str,
        name: str,
        labels: dict[str, str] | None = None,
        containers: list[str] | None = None,
        owner: tuple[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        share_process_namespace: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            meta = self._meta(ns, name, labels)
            if owner is not None:
                meta["ownerReferences"] = [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner[0],
                        "name": owner[1],
                        "uid": str(uuid.uuid4()),
                        "controller": True,
                    }
                ]
            names = containers or ["main"]
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {
                    "containers": [{"name": c, "image": f"example/{c}:latest"} for c in names],
                    "shareProcessNamespace": share_process_namespace,
                },
                "status": {
                    "phase": phase,
                    "podIP": f"10.244.0.{len(self.pods) + 10}",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [
                        {
                            "name": c,
                            "image": f"example/{c}:latest",
                            "imageID": "",
                            "ready": ready,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": _now()}},
                        }
                        for c in names
                    ],
                },
            }
            self.pods[(ns, name)] = pod
            self.logs.setdefault((ns, name), _Log())
            return pod

    def add_deployment(
        self,
        ns: str,
        name: str,
        replicas: int,
        labels: dict[str, str],
        containers: list[str] | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            dep = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": self._meta(ns, name, labels),
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {
                            "containers": [
                                {"name": c, "image": f"example/{c}:latest"}
                                for c in (containers or ["main"])
                            ]
                        },
                    },
                },
                "status": {},
                "_hash": secrets.token_hex(5)[:10],
            }
            self.deployments[(ns, name)] = dep
            self._reconcile_deployment(ns, name)
            return dep

    def add_statefulset(
        self, ns: str, name: str, replicas: int, labels: dict[str, str]
    ) -> dict[str, Any]:
        with self.lock:
            sts = {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": self._meta(ns, name, labels),
                "spec": {
                    "replicas": replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {
                        "metadata": {"labels": dict(labels)},
                        "spec": {"containers": [{"name": "main", "image": "example/main:latest"}]},
                    },
                },
                "status": {"replicas": replicas},
            }
            self.statefulsets[(ns, name)] = sts
            for i in range(replicas):
                self.add_pod(ns, f"{name}-{i}", labels, owner=("StatefulSet", name))
            return sts

    def append_log(self, ns: str, pod: str, line: str, container: str | None = None) -> None:
        with self.cond:
            log = self.logs.setdefault((ns, pod), _Log())
            log.lines.append((_now_nano(), container or "", line))
            self.cond.notify_all()

    def close_log(self, ns: str, pod: str) -> None:
        """End the pod's log stream, as a container restart does."""
        with self.cond:
            self.logs.setdefault((ns, pod), _Log()).closed = True
            self.cond.notify_all()

    def forward_port(self, ns: str, pod: str, port: int, target: tuple[str, int]) -> None:
        """Where a port-forward to ``pod:port`` really connects (a loopback server, a test container)."""
        with self.lock:
            self.port_targets[(ns, pod, port)] = target

    def exec_in(self, ns: str, pod: str, docker_container: Any, container: str | None = None) -> None:
        """Run exec requests for ``pod`` (one of its containers, or all) in a real Docker container."""
        with self.lock:
            self.exec_targets[(ns, pod, container)] = docker_container

    def restart_container(self, ns: str, pod: str, container: str | None = None) -> None:
        with self.lock:
            for cs in self.pods[(ns, pod)]["status"]["containerStatuses"]:
                if container is None or cs["name"] == container:
                    cs["restartCount"] += 1

    def set_ready(self, ns: str, pod: str, ready: bool) -> None:
        with self.lock:
            p = self.pods[(ns, pod)]
            p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
            for cs in p["status"]["containerStatuses"]:
                cs["ready"] = ready
            self._refresh_statuses(ns)

    # --- the toy controller -----------------------------------------------------------------

    def _owned(self, ns: str, kind: str, name: str) -> list[dict[str, Any]]:
        out = []
        for (pns, _), pod in self.pods.items():
            if pns != ns:
                continue
            for ref in pod["metadata"].get("ownerReferences", []):
                if ref["kind"] == kind and ref["name"] == name:
                    out.append(pod)
        return sorted(out, key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])

    def _reconcile_deployment(self, ns: str, name: str) -> None:
        dep = self.deployments[(ns, name)]
        rs = f"{name}-{dep['_hash']}"
        pods = self._owned(ns, "ReplicaSet", rs)
        want = dep["spec"]["replicas"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        containers = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
        while len(pods) < want:
            pods.append(
                self.add_pod(
                    ns, f"{rs}-{secrets.token_hex(3)[:5]}", labels, containers, owner=("ReplicaSet", rs)
                )
            )
        for extra in pods[want:]:
            self.pods.pop((ns, extra["metadata"]["name"]), None)
        self._refresh_statuses(ns)

    def _refresh_statuses(self, ns: str) -> None:
        for (dns, name), dep in self.deployments.items():
            if dns != ns:
                continue
            pods = self._owned(ns, "ReplicaSet", f"{name}-{dep['_hash']}")
            ready = sum(
                1
                for p in pods
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
            )
            want = dep["spec"]["replicas"]
            dep["status"] = {
                "replicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": len(pods),
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True" if ready >= want else "False",
                        "reason": "MinimumReplicasAvailable" if ready >= want else "MinimumReplicasUnavailable",
                    }
                ],
            }

    def _delete_pod(self, ns: str, name: str) -> dict[str, Any]:
        pod = self.pods.pop((ns, name))
        log = self.logs.get((ns, name))
        if log is not None:
            log.closed = True
        self.cond.notify_all()
        if self.recreate:
            for ref in pod["metadata"].get("ownerReferences", []):
                if ref["kind"] == "ReplicaSet":
                    for (dns, dname), dep in self.deployments.items():
                        if dns == ns and ref["name"] == f"{dname}-{dep['_hash']}":
                            self._reconcile_deployment(ns, dname)
                if ref["kind"] == "StatefulSet":
                    self.logs[(ns, name)] = _Log()
                    self.add_pod(
                        ns, name, pod["metadata"]["labels"], owner=("StatefulSet", ref["name"])
                    )
        self._refresh_statuses(ns)
        return pod

    # --- request dispatch -------------------------------------------------------------------

    ROUTES: list[tuple[str, re.Pattern[str]]] = [
        ("version", re.compile(r"^/version/?$")),
        ("pods", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")),
        ("pod", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$")),
        ("pod_log", re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")),
        (
            "pod_ephemeral",
            re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/ephemeralcontainers$"),
        ),
        (
            "pod_ws",
            re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/(exec|portforward|attach)$"),
        ),
        (
            "apps_list",
            re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>deployments|statefulsets)$"),
        ),
        (
            "apps_one",
            re.compile(
                r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>deployments|statefulsets)/(?P<name>[^/]+)$"
            ),
        ),
        (
            "apps_scale",
            re.compile(
                r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/(?P<res>deployments|statefulsets)/(?P<name>[^/]+)/scale$"
            ),
        ),
        (
            "netpols",
            re.compile(r"^/apis/networking.k8s.io/v1/namespaces/(?P<ns>[^/]+)/networkpolicies$"),
        ),
        (
            "netpol",
            re.compile(
                r"^/apis/networking.k8s.io/v1/namespaces/(?P<ns>[^/]+)/networkpolicies/(?P<name>[^/]+)$"
            ),
        ),
    ]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        for route, rx in self.ROUTES:
            m = rx.match(path)
            if m:
                fn = getattr(self, f"_r_{route}")
                with self.lock:
                    return fn(method, query, body, **m.groupdict())
        raise ApiError(404, "NotFound", f"the fake API server does not serve {path}")

    @staticmethod
    def _q(query: dict[str, list[str]], key: str) -> str | None:
        v = query.get(key)
        return v[0] if v else None

    def _list(self, kind: str, store: dict, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        sel = self._q(query, "labelSelector") or ""
        items = [
            self._public(o)
            for (ons, _), o in sorted(store.items())
            if ons == ns and selector_matches(sel, o["metadata"].get("labels") or {})
        ]
        return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    @staticmethod
    def _public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _r_version(self, method: str, query: Any, body: Any) -> Any:
        return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake", "platform": "linux/amd64"}

    def _r_pods(self, method: str, query: Any, body: Any, ns: str) -> Any:
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the fake does not create pods over the API")
        return self._list("PodList", self.pods, ns, query)

    def _r_pod(self, method: str, query: Any, body: Any, ns: str, name: str) -> Any:
        pod = self.pods.get((ns, name))
        if pod is None:
            raise _not_found("pods", name)
        if method == "GET":
            return self._public(pod)
        if method == "PATCH":
            if not isinstance(body, dict) or set(body) - {"metadata"}:
                raise ApiError(422, "Invalid", "the fake only patches pod metadata")
            merge_patch(pod["metadata"], body.get("metadata") or {})
            self._rv += 1
            pod["metadata"]["resourceVersion"] = str(self._rv)
            return self._public(pod)
        if method == "DELETE":
            pre = (body or {}).get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != pod["metadata"]["uid"]:
                raise ApiError(409, "Conflict", "Precondition failed: UID in precondition does not match")
            return self._public(self._delete_pod(ns, name))
        raise ApiError(405, "MethodNotAllowed", method)

    def _r_pod_ephemeral(self, method: str, query: Any, body: Any, ns: str, name: str) -> Any:
        pod = self.pods.get((ns, name))
        if pod is None:
            raise _not_found("pods", name)
        if method == "PATCH":
            wanted = ((body or {}).get("spec") or {}).get("ephemeralContainers") or []
            have = pod["spec"].setdefault("ephemeralContainers", [])
            statuses = pod["status"].setdefault("ephemeralContainerStatuses", [])
            for ec in wanted:
                if any(h["name"] == ec["name"] for h in have):
                    continue
                if not ec.get("image"):
                    raise ApiError(422, "Invalid", "spec.ephemeralContainers[].image: Required value")
                have.append(copy.deepcopy(ec))
                statuses.append(
                    {
                        "name": ec["name"],
                        "image": ec["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": _now()}},
                    }
                )
        return self._public(pod)

    def _r_pod_ws(self, method: str, query: Any, body: Any, ns: str, name: str) -> Any:
        raise ApiError(400, "BadRequest", "exec/port-forward is out of scope for the fake API server")

    def _r_pod_log(self, method: str, query: Any, body: Any, ns: str, name: str) -> Any:
        if (ns, name) not in self.pods:
            raise _not_found("pods", name)
        return _LogStream(ns, name, query)

    def _apps_store(self, res: str) -> dict:
        return self.deployments if res == "deployments" else self.statefulsets

    def _r_apps_list(self, method: str, query: Any, body: Any, ns: str, res: str) -> Any:
        kind = "DeploymentList" if res == "deployments" else "StatefulSetList"
        return self._list(kind, self._apps_store(res), ns, query)

    def _r_apps_one(self, method: str, query: Any, body: Any, ns: str, res: str, name: str) -> Any:
        obj = self._apps_store(res).get((ns, name))
        if obj is None:
            raise _not_found(f"{res}.apps", name)
        if method == "PATCH":
            if not isinstance(body, dict) or set(body) - {"metadata"}:
                raise ApiError(422, "Invalid", "the fake only patches metadata here; use /scale")
            merge_patch(obj["metadata"], body.get("metadata") or {})
        elif method != "GET":
            raise ApiError(405, "MethodNotAllowed", method)
        return self._public(obj)

    def _r_apps_scale(self, method: str, query: Any, body: Any, ns: str, res: str, name: str) -> Any:
        obj = self._apps_store(res).get((ns, name))
        if obj is None:
            raise _not_found(f"{res}.apps", name)
        if method in ("PATCH", "PUT"):
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", "spec.replicas must be a non-negative integer")
            obj["spec"]["replicas"] = replicas
            if res == "deployments":
                self._reconcile_deployment(ns, name)
        elif method != "GET":
            raise ApiError(405, "MethodNotAllowed", method)
        sel = ",".join(f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items())
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": ns, "uid": obj["metadata"]["uid"]},
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": sel},
        }

    def _r_netpols(self, method: str, query: Any, body: Any, ns: str) -> Any:
        if method == "GET":
            return self._list("NetworkPolicyList", self.netpols, ns, query)
        if method == "POST":
            meta = (body or {}).get("metadata") or {}
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            if meta.get("namespace") not in (None, ns):
                raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace on the request")
            if "podSelector" not in ((body or {}).get("spec") or {}):
                raise ApiError(422, "Invalid", "spec.podSelector: Required value")
            if (ns, name) in self.netpols:
                raise ApiError(409, "AlreadyExists", f'networkpolicies.networking.k8s.io "{name}" already exists')
            obj = copy.deepcopy(body)
            obj["metadata"] = self._meta(ns, name, meta.get("labels")) | {
                "annotations": meta.get("annotations") or {}
            }
            obj.setdefault("apiVersion", "networking.k8s.io/v1")
            obj.setdefault("kind", "NetworkPolicy")
            self.netpols[(ns, name)] = obj
            return self._public(obj)
        raise ApiError(405, "MethodNotAllowed", method)

    def _r_netpol(self, method: str, query: Any, body: Any, ns: str, name: str) -> Any:
        obj = self.netpols.get((ns, name))
        if obj is None:
            raise _not_found("networkpolicies.networking.k8s.io", name)
        if method == "GET":
            return self._public(obj)
        if method == "DELETE":
            del self.netpols[(ns, name)]
            return {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
        raise ApiError(405, "MethodNotAllowed", method)

    # --- what tests assert on ---------------------------------------------------------------

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def foreign_requests(self, namespace: str) -> list[Request]:
        """Requests that touched another namespace or a cluster-scoped path."""
        prefixes = (
            f"/api/v1/namespaces/{namespace}/",
            f"/apis/apps/v1/namespaces/{namespace}/",
            f"/apis/networking.k8s.io/v1/namespaces/{namespace}/",
        )
        return [r for r in self.requests if not any(r.path.startswith(p) for p in prefixes)]

    def deletes(self, kind_path: str = "/pods/") -> list[Request]:
        return [r for r in self.requests if r.method == "DELETE" and kind_path in r.path]


def _docker_exec(target: Any, command: list[str], timeout: float = 30.0) -> tuple[int, bytes, bytes]:
    """``docker exec`` that cannot hang: Docker 20.10 sometimes never ends the stream of an exec
    whose container's main process it just killed (shared PID namespace). Then, as a kubelet
    would, the exec counts as finished with what it printed once the container is gone."""
    import time as _time

    out: list[bytes] = []
    err: list[bytes] = []
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            api = target.client.api
            exec_id = api.exec_create(target.id, command, stdout=True, stderr=True)["Id"]
            for o, e in api.exec_start(exec_id, stream=True, demux=True):
                if o:
                    out.append(o)
                if e:
                    err.append(e)
            result["rc"] = api.exec_inspect(exec_id).get("ExitCode")
        except Exception as exc:  # noqa: BLE001 - e.g. the container is gone
            err.append(str(exc).encode())
            result["rc"] = 126

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = _time.monotonic() + timeout
    while t.is_alive() and _time.monotonic() < deadline:
        t.join(0.2)
        if t.is_alive():
            try:
                target.reload()
                gone = target.status != "running"
            except Exception:  # noqa: BLE001
                gone = True
            if gone:
                t.join(1.0)
                break
    rc = result.get("rc")
    return (0 if rc is None else int(rc)), b"".join(out), b"".join(err)


@dataclass
class _LogStream:
    ns: str
    name: str
    query: dict[str, list[str]]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubeAPI
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body are separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _body(self) -> tuple[Any, str | None]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type")
        if not raw:
            return None, ctype
        try:
            return json.loads(raw), ctype
        except json.JSONDecodeError:
            return raw.decode(errors="replace"), ctype

    def _send_json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        body, ctype = self._body()
        if self.command == "DELETE" and isinstance(body, dict) and "gracePeriodSeconds" in body:
            query.setdefault("gracePeriodSeconds", [str(body["gracePeriodSeconds"])])
        with self.fake.lock:
            self.fake.requests.append(Request(self.command, parts.path, query, body, ctype))
        ex = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec$", parts.path)
        if ex and self.headers.get("Upgrade", "").lower() == "websocket":
            with self.fake.lock:
                c = query.get("container", [None])[0]
                target = self.fake.exec_targets.get((ex.group(1), ex.group(2), c)) or self.fake.exec_targets.get(
                    (ex.group(1), ex.group(2), None)
                )
            if target is not None:
                self._exec(target, query.get("command", []))
                return
        pf = re.match(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/portforward$", parts.path)
        if pf and self.headers.get("Upgrade", "").lower() == "websocket":
            self._portforward(pf.group(1), pf.group(2), query)
            return
        try:
            result = self.fake.handle(self.command, parts.path, query, body)
        except ApiError as err:
            self._send_json(err.code, err.status())
            return
        if isinstance(result, _LogStream):
            self._stream_log(result)
            return
        self._send_json(200, result)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream_log(self, s: _LogStream) -> None:
        fake = self.fake
        follow = (FakeKubeAPI._q(s.query, "follow") or "").lower() == "true"
        stamps = (FakeKubeAPI._q(s.query, "timestamps") or "").lower() == "true"
        since = FakeKubeAPI._q(s.query, "sinceTime")
        since_s = FakeKubeAPI._q(s.query, "sinceSeconds")
        if since_s is not None:
            t = datetime.fromtimestamp(datetime.now(UTC).timestamp() - int(since_s), UTC)
            since = t.strftime("%Y-%m-%dT%H:%M:%S")
        container = FakeKubeAPI._q(s.query, "container")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        with fake.cond:
            log = fake.logs.setdefault((s.ns, s.name), _Log())
        try:
            while True:
                with fake.cond:
                    while (
                        sent >= len(log.lines) and follow and not log.closed and not fake._stopping
                    ):
                        fake.cond.wait(0.5)
                    batch = log.lines[sent:]
                    sent = len(log.lines)
                    done = not follow or log.closed or fake._stopping
                out = b""
                for ts, c, line in batch:
                    if container and c and c != container:
                        continue
                    if since and ts[:19] < since[:19]:
                        continue
                    out += ((ts + " ") if stamps else "").encode() + line.encode() + b"\n"
                if out:
                    self._chunk(out)
                if done:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    # --- port-forward over websocket (server side of RFC 6455, just what the client uses) ------

    def _ws_send(self, payload: bytes, opcode: int = 2) -> None:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        with self._ws_lock:
            self.wfile.write(head + payload)
            self.wfile.flush()

    def _ws_recv(self) -> tuple[int, bytes] | None:
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, masked, n = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
        if n == 126:
            n = int.from_bytes(self.rfile.read(2), "big")
        elif n == 127:
            n = int.from_bytes(self.rfile.read(8), "big")
        mask = self.rfile.read(4) if masked else b""
        data = self.rfile.read(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return opcode, data

    def _exec(self, target: Any, command: list[str]) -> None:
        """One exec: run it to completion in the mapped container, then report like a kubelet."""
        self._handshake()
        rc, out, err = _docker_exec(target, command)
        if out:
            self._ws_send(b"\x01" + out)
        if err:
            self._ws_send(b"\x02" + err)
        if rc == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: {rc}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]},
            }
        self._ws_send(b"\x03" + json.dumps(status).encode())
        self._ws_send(b"", opcode=8)

    def _handshake(self) -> None:
        import base64
        import hashlib

        self._ws_lock = threading.Lock()
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.close_connection = True

    def _portforward(self, ns: str, pod: str, query: dict[str, list[str]]) -> None:
        import socket

        self._handshake()
        port = int((query.get("ports") or ["0"])[0].split(",")[0])
        prefix = bytes([port & 0xFF, port >> 8])
        self._ws_send(b"\x00" + prefix)
        self._ws_send(b"\x01" + prefix)
        with self.fake.lock:
            exists = (ns, pod) in self.fake.pods
            target = self.fake.port_targets.get((ns, pod, port))
        if not exists or target is None:
            self._ws_send(b"\x01" + f"fake: nothing listens on {pod}:{port}".encode())
            self._ws_send(b"", opcode=8)
            return
        try:
            conn = socket.create_connection(target, timeout=5)
        except OSError as exc:
            self._ws_send(b"\x01" + f"fake: cannot reach {target}: {exc}".encode())
            self._ws_send(b"", opcode=8)
            return
        conn.settimeout(None)

        def upstream() -> None:  # target -> client
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self._ws_send(b"\x00" + data)
            except OSError:
                pass
            try:
                self._ws_send(b"", opcode=8)
            except OSError:
                pass

        t = threading.Thread(target=upstream, daemon=True)
        t.start()
        try:
            while True:
                frame = self._ws_recv()
                if frame is None or frame[0] == 8:
                    break
                opcode, data = frame
                if opcode == 2 and data[:1] == b"\x00" and len(data) > 1:
                    conn.sendall(data[1:])
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
            t.join(timeout=2)
