"""Probes of pod and deployment state: phase, readiness, restart counts, availability.

They read through the run's Kubernetes backend (same namespace, same guard); outside a
kubernetes run they build their own client from ``namespace`` / ``context`` / ``kubeconfig``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.backends.kubernetes import KubernetesBackend, api_error_message
from chaoskit.errors import ChaoskitError, ProbeError
from chaoskit.probes.base import Probe, ProbeParams


class _K8sProbeParams(ProbeParams):
    namespace: str | None = Field(None, description="only outside a kubernetes target; must match it inside")
    context: str | None = None
    kubeconfig: str | None = None


class _K8sProbe(Probe):
    _own: KubernetesBackend | None = None

    def backend(self) -> KubernetesBackend:
        p: _K8sProbeParams = self.params  # type: ignore[assignment]
        b = self.ctx.backend if self.ctx is not None else None
        if isinstance(b, KubernetesBackend):
            if p.namespace not in (None, b.namespace):
                raise ProbeError(
                    f"{self.name}: namespace {p.namespace!r} is outside the target ({b.describe()})"
                )
            return b
        if self._own is None:
            if p.namespace is None:
                raise ProbeError(f"{self.name} needs `namespace:` when the target is not kubernetes")
            try:
                self._own = KubernetesBackend(p.namespace, context=p.context, kubeconfig=p.kubeconfig)
            except ChaoskitError as exc:
                raise ProbeError(str(exc)) from None
        return self._own

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _restarts(pod: Any) -> int:
    return sum(int(cs.restart_count or 0) for cs in (pod.status.container_statuses or []))


class PodProbeParams(_K8sProbeParams):
    selector: dict[str, str] | None = None
    owner: str | None = None
    service: str | None = None
    pod: str | None = Field(None, description="one pod by name")
    value: Literal["summary", "phase", "ready", "ready_count", "count", "restarts"] = Field(
        "summary",
        description="summary (dict), phase (common phase or Mixed), ready (all ready, at least one), "
        "ready_count, count, restarts (sum over containers)",
    )

    @model_validator(mode="after")
    def _some_target(self) -> PodProbeParams:
        if not (self.selector or self.owner or self.service or self.pod):
            raise ValueError("give selector, owner, service or pod")
        return self


@registry.probes.register("kubernetes.pod")
class PodProbe(_K8sProbe):
    name = "kubernetes.pod"
    summary = "Pod phase, readiness and restart counts by selector, owner, service or name."
    Params = PodProbeParams

    def read(self) -> Any:
        p: PodProbeParams = self.params  # type: ignore[assignment]
        b = self.backend()
        from kubernetes.client.exceptions import ApiException

        try:
            if p.pod:
                one = b.read_pod(p.pod)
                pods = [one] if one is not None else []
            else:
                sel = Selection(selector=p.selector, owner=p.owner, service=p.service)
                pods = b.list_pods(b.selector_for(sel))
        except ApiException as exc:
            raise ProbeError(f"kubernetes.pod: {api_error_message(exc)}") from None
        except ChaoskitError as exc:
            raise ProbeError(f"kubernetes.pod: {exc}") from None
        pods = sorted(pods, key=lambda x: x.metadata.name)
        rows = [
            {
                "name": x.metadata.name,
                "phase": x.status.phase,
                "ready": _ready(x),
                "restarts": _restarts(x),
                "terminating": x.metadata.deletion_timestamp is not None,
            }
            for x in pods
        ]
        phases = sorted({r["phase"] for r in rows})
        summary = {
            "count": len(rows),
            "ready_count": sum(r["ready"] for r in rows),
            "ready": bool(rows) and all(r["ready"] for r in rows),
            "phase": phases[0] if len(phases) == 1 else ("Mixed" if phases else None),
            "restarts": sum(r["restarts"] for r in rows),
            "pods": rows,
        }
        return summary if p.value == "summary" else summary[p.value]


class DeploymentProbeParams(_K8sProbeParams):
    deployment: str = Field(..., description="deployment name")
    value: Literal["summary", "available", "replicas", "ready_replicas", "available_replicas"] = Field(
        "summary",
        description="available: the Available condition is True and ready replicas >= spec.replicas",
    )


@registry.probes.register("kubernetes.deployment")
class DeploymentProbe(_K8sProbe):
    name = "kubernetes.deployment"
    summary = "Deployment availability and replica counts."
    Params = DeploymentProbeParams

    def read(self) -> Any:
        p: DeploymentProbeParams = self.params  # type: ignore[assignment]
        b = self.backend()
        from kubernetes.client.exceptions import ApiException

        try:
            dep = b.apps.read_namespaced_deployment(p.deployment, b.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ProbeError(f"no deployment {p.deployment!r} in namespace {b.namespace}") from None
            raise ProbeError(f"kubernetes.deployment: {api_error_message(exc)}") from None
        except (OSError, ValueError) as exc:
            raise ProbeError(f"kubernetes.deployment: {exc}") from None
        st = dep.status
        want = int(dep.spec.replicas if dep.spec.replicas is not None else 1)
        ready = int(st.ready_replicas or 0)
        cond = any(c.type == "Available" and c.status == "True" for c in (st.conditions or []))
        summary = {
            "replicas": want,
            "current_replicas": int(st.replicas or 0),
            "ready_replicas": ready,
            "available_replicas": int(st.available_replicas or 0),
            "updated_replicas": int(st.updated_replicas or 0),
            "available": cond and ready >= want,
        }
        return summary if p.value == "summary" else summary[p.value]
