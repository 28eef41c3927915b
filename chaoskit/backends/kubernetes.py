"""The Kubernetes backend: instances are pods of one namespace, found by label selector, owner
(deployment / statefulset) or ``service`` (read as ``app=<service>``, so a compose experiment
ports by changing only ``target:``).

Blast radius: every call goes through a *namespaced* API of ``self.namespace``; nothing here
calls a cluster-scoped or other-namespace path, and ``owns`` refuses pods of other namespaces.
The client config is loaded into a fresh ``ApiClient`` so the process-wide default
configuration of the ``kubernetes`` package is never mutated (two targets can coexist).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chaoskit.backends.base import Backend, Instance, Selection
from chaoskit.errors import TargetError

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "chaoskit"
RUN_LABEL = "chaoskit.io/run-id"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class KubernetesTarget(BaseModel):
    """``target: {kubernetes: {...}}`` in an experiment."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None, description="namespace of the stack; default: the kubeconfig context's or the pod's own"
    )
    context: str | None = Field(None, description="kubeconfig context (default: current-context)")
    kubeconfig: str | None = Field(None, description="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")


def valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def valid_label_value(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def label_value(text: str) -> str:
    """A run id made safe as a label value (<= 63 chars, alphanumeric ends)."""
    if valid_label_value(text):
        return text
    import hashlib

    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:50].strip("-_.")
    return f"{cleaned}-{hashlib.sha256(text.encode()).hexdigest()[:8]}".strip("-")


def selector_string(labels: dict[str, str]) -> str:
    """``{"app": "x"}`` -> ``app=x``, refusing keys/values that would change the selector's meaning."""
    parts = []
    for k, v in sorted(labels.items()):
        if not isinstance(v, str):
            raise TargetError(f"selector value for {k!r} must be a string, got {v!r}")
        if not valid_label_key(k):
            raise TargetError(f"invalid label key in selector: {k!r}")
        if not valid_label_value(v):
            raise TargetError(f"invalid label value in selector: {k}={v!r}")
        parts.append(f"{k}={v}")
    return ",".join(parts)


def label_selector_to_string(sel: Any) -> str:
    """A V1LabelSelector (matchLabels + matchExpressions) in its wire string form."""
    parts = [selector_string(dict(sel.match_labels or {}))] if sel.match_labels else []
    for expr in sel.match_expressions or []:
        op = expr.operator
        vals = ",".join(sorted(expr.values or []))
        if op == "In":
            parts.append(f"{expr.key} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{expr.key} notin ({vals})")
        elif op == "Exists":
            parts.append(expr.key)
        elif op == "DoesNotExist":
            parts.append(f"!{expr.key}")
    return ",".join(p for p in parts if p)


def labels_match(sel: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Does a LabelSelector (dict form, as in a NetworkPolicy) select a pod with ``labels``?"""
    sel = sel or {}
    match_labels = sel.get("matchLabels", sel.get("match_labels")) or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in sel.get("matchExpressions", sel.get("match_expressions")) or []:
        key, op, vals = expr["key"], expr["operator"], set(expr.get("values") or [])
        if (
            (op == "In" and labels.get(key) not in vals)
            or (op == "NotIn" and key in labels and labels[key] in vals)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A new ApiClient from a kubeconfig, or in-cluster config when running in a pod."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = os.path.expanduser(kubeconfig) if kubeconfig else None
    explicit = bool(path or context or os.environ.get("KUBECONFIG"))
    default_file = Path(os.path.expanduser("~/.kube/config"))
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    if path and not Path(path).is_file():
        raise TargetError(f"kubeconfig not found: {path}")
    try:
        if explicit or default_file.is_file() or not in_cluster:
            return config.new_client_from_config(
                config_file=path, context=context, persist_config=False
            )
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        return client.ApiClient(configuration=cfg)
    except ConfigException as exc:
        raise TargetError(f"cannot load Kubernetes config: {exc}") from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise TargetError(f"cannot load Kubernetes config ({path or 'default'}): {exc}") from None


def _context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    try:
        from kubernetes import config

        contexts, active = config.list_kube_config_contexts(
            config_file=os.path.expanduser(kubeconfig) if kubeconfig else None
        )
    except Exception:  # noqa: BLE001 - no kubeconfig: fall through to in-cluster
        return None
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    return (chosen or {}).get("context", {}).get("namespace")


def api_error_message(exc: Any) -> str:
    """The API server's own message from an ApiException, short."""
    import json

    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except Exception:  # noqa: BLE001
        return f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', exc)}"


class KubernetesBackend(Backend):
    kind = "kubernetes"

    def __init__(
        self,
        namespace: str | None = None,
        context: str | None = None,
        kubeconfig: str | None = None,
        api_client: Any = None,
    ):
        from kubernetes import client

        if kubeconfig:
            kubeconfig = str(Path(os.path.expanduser(kubeconfig)).absolute())
        if namespace is None:
            if api_client is None:
                namespace = _context_namespace(kubeconfig, context)
            if namespace is None and SA_NAMESPACE_FILE.is_file():
                namespace = SA_NAMESPACE_FILE.read_text().strip()
            if namespace is None:
                raise TargetError("kubernetes target needs a namespace (target: {kubernetes: {namespace: ...}})")
        if not _DNS_LABEL.match(namespace):
            raise TargetError(f"invalid Kubernetes namespace {namespace!r} (lowercase DNS label expected)")
        self.namespace = namespace
        self.context = context
        self.kubeconfig = kubeconfig
        self.api_client = api_client if api_client is not None else load_api_client(kubeconfig, context)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.net = client.NetworkingV1Api(self.api_client)

    @classmethod
    def from_target(cls, spec: KubernetesTarget | dict[str, Any], base_dir: Path | None = None) -> KubernetesBackend:
        """Build from ``target.kubernetes``; a relative kubeconfig is relative to the experiment."""
        t = spec if isinstance(spec, KubernetesTarget) else KubernetesTarget.model_validate(spec)
        kc = t.kubeconfig
        if kc and base_dir is not None and not os.path.isabs(os.path.expanduser(kc)):
            kc = str(Path(base_dir) / kc)
        return cls(namespace=t.namespace, context=t.context, kubeconfig=kc)

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> KubernetesBackend:
        """Rebuild from what ``target_record()`` wrote into the fault ledger."""
        return cls(namespace=rec["namespace"], context=rec.get("context"), kubeconfig=rec.get("kubeconfig"))

    def target_record(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "context": self.context, "kubeconfig": self.kubeconfig}

    # --- finding pods -----------------------------------------------------------------------

    def selector_for(self, sel: Selection) -> str:
        """The label selector a Selection means; several keys narrow (AND) each other."""
        from kubernetes.client.exceptions import ApiException

        parts: list[str] = []
        if sel.selector:
            parts.append(selector_string(sel.selector))
        if sel.service:
            parts.append(selector_string({"app": sel.service}))
        if sel.owner:
            if not _DNS_LABEL.match(sel.owner) and not re.match(r"^[a-z0-9][-a-z0-9.]*$", sel.owner):
                raise TargetError(f"invalid owner name {sel.owner!r}")
            owner_sel = None
            for reader in (self.apps.read_namespaced_deployment, self.apps.read_namespaced_stateful_set):
                try:
                    owner_sel = reader(sel.owner, self.namespace).spec.selector
                    break
                except ApiException as exc:
                    if exc.status != 404:
                        raise TargetError(f"cannot read owner {sel.owner}: {api_error_message(exc)}") from None
            if owner_sel is None:
                raise TargetError(
                    f"no deployment or statefulset named {sel.owner!r} in namespace {self.namespace}"
                )
            owner_str = label_selector_to_string(owner_sel)
            if not owner_str:
                raise TargetError(f"{sel.owner} has an empty selector; refusing to match every pod")
            parts.append(owner_str)
        if not parts:
            raise TargetError("a kubernetes target needs selector, owner or service")
        return ",".join(parts)

    def list_pods(self, label_selector: str) -> list[Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return list(self.core.list_namespaced_pod(self.namespace, label_selector=label_selector).items)
        except ApiException as exc:
            raise TargetError(f"cannot list pods in {self.namespace}: {api_error_message(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise TargetError(f"cannot reach the Kubernetes API ({self.describe()}): {exc}") from None

    def find(self, sel: Selection, running: bool | None = True) -> list[Instance]:
        """Pods of ``sel``. running=True: Running and not terminating; False: the others; None: all."""
        pods = self.list_pods(self.selector_for(sel))
        out = []
        for pod in pods:
            is_running = (
                pod.metadata.deletion_timestamp is None
                and pod.status is not None
                and pod.status.phase == "Running"
            )
            if running is None or running == is_running:
                out.append(self.instance(pod, sel.container))
        return out

    def instance(self, pod: Any, container: str | None = None) -> Instance:
        names = [c.name for c in pod.spec.containers]
        if container is not None and container not in names:
            raise TargetError(f"pod {pod.metadata.name} has no container {container!r} (has {names})")
        labels = pod.metadata.labels or {}
        return Instance(
            id=pod.metadata.uid,
            name=pod.metadata.name,
            service=labels.get("app") or labels.get("app.kubernetes.io/name") or "",
            backend=self,
            pid=None,
            meta={
                "pod": pod,
                "namespace": pod.metadata.namespace,
                "container": container or names[0],
            },
        )

    def owns(self, inst: Instance) -> bool:
        pod = inst.meta.get("pod")
        ns = getattr(getattr(pod, "metadata", None), "namespace", None)
        return (
            getattr(inst.backend, "kind", None) == "kubernetes"
            and ns == self.namespace
            and inst.meta.get("namespace") == self.namespace
        )

    def describe(self) -> str:
        ctx = f" (context {self.context})" if self.context else ""
        return f"kubernetes namespace {self.namespace}{ctx}"

    # --- helpers faults and probes share ----------------------------------------------------

    def read_pod(self, name: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def exec(self, pod: str, container: str, command: list[str], timeout: float = 30.0) -> tuple[int, str]:
        """Run ``command`` in a container through the exec subresource; (exit code, output)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        try:
            resp = stream(
                self.core.connect_get_namespaced_pod_exec,
                pod,
                self.namespace,
                container=container,
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
        except ApiException as exc:
            raise TargetError(f"exec in {pod}/{container} failed: {api_error_message(exc)}") from None
        out: list[str] = []
        try:
            resp.run_forever(timeout=timeout)
            out.append(resp.read_stdout() or "")
            out.append(resp.read_stderr() or "")
            rc = resp.returncode
        finally:
            resp.close()
        return (rc if rc is not None else -1), "".join(out)

    def follow_logs(
        self,
        sel: Selection,
        out: Any = None,
        since: float | None = None,
        container: str | None = None,
    ) -> Any:
        """Follow the logs of every pod ``sel`` matches, replacements included.

        Same shape as the compose backend: with a queue ``out`` it puts (pod name, line,
        monotonic read time) into it; without, iterate the follower for (timestamp, line).
        ``stop()`` ends it either way (see chaoskit.k8s_logs)."""
        from chaoskit.k8s_logs import PodLogFollower

        selector = self.selector_for(sel)
        if not self.list_pods(selector):
            raise TargetError(f"no pod matches {selector} in {self.describe()} to follow")
        follower = PodLogFollower(self, selector, container=container or sel.container, since=since)
        if out is not None:
            follower.pump_into(out)
        return follower

    def close(self) -> None:
        try:
            self.api_client.close()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
