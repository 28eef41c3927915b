"""Faults on Kubernetes.

``pod.delete`` and ``deployment.scale`` are Kubernetes-only and registered here. The faults
whose names also exist on compose (``container.kill``, ``container.pause``, ``network.partition``,
``network.latency``, ``network.loss``) have their Kubernetes behaviour here too, *unregistered*:
the runner asks ``kubernetes_impl(name)`` when ``ctx.backend.kind == "kubernetes"``, so one
experiment runs on both backends by changing only ``target:``.

Crash safety: every object chaoskit creates carries ``app.kubernetes.io/managed-by: chaoskit``
and ``chaoskit.io/run-id: <run>``; objects chaoskit only *modifies* (pods it labels for a
partition or gives an ephemeral container, deployments it scales) carry ``chaoskit.io/run-id``
plus ``chaoskit.io/*`` labels/annotations saying how to undo it. ``cleanup_run`` finds and undoes
all of that from the cluster alone, so ``chaoskit rollback`` works even if the fault ledger is gone.
"""

from __future__ import annotations

import json
import shlex
import signal as _signal
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.backends.kubernetes import (
    MANAGED_BY,
    MANAGED_BY_VALUE,
    RUN_LABEL,
    KubernetesBackend,
    api_error_message,
    label_value,
    labels_match,
)
from chaoskit.errors import FaultError, TargetError
from chaoskit.faults.base import Fault, FaultParams
from chaoskit.units import Duration

if TYPE_CHECKING:
    from chaoskit.runner.context import RunContext

FAULT_LABEL_PREFIX = "chaoskit.io/fault-"  # + token, on pods a partition selects
EC_ANNOTATION_PREFIX = "chaoskit.io/ec-"  # + token, on pods given an ephemeral container
REPLICAS_ANNOTATION = "chaoskit.io/original-replicas"
DEFAULT_TOOLS_IMAGE = "chaoskit/chaoskit:dev"  # what scripts/build-chaoskit-image.sh tags


def _api_exc() -> type[Exception]:
    from kubernetes.client.exceptions import ApiException

    return ApiException


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def backend_for(ctx: RunContext | None, record: dict[str, Any] | None = None) -> KubernetesBackend:
    """The run's backend, or one rebuilt from a ledger record (``chaoskit rollback``)."""
    if ctx is not None and isinstance(ctx.backend, KubernetesBackend):
        return ctx.backend
    if record and record.get("k8s"):
        return KubernetesBackend.from_record(record["k8s"])
    raise FaultError("this fault needs a kubernetes target (target: {kubernetes: {namespace: ...}})")


def _signal_name(value: str | int) -> str:
    """``SIGKILL`` / ``KILL`` / ``9`` -> ``KILL`` (what ``kill -s`` takes), or a clear error."""
    try:
        if isinstance(value, int) or str(value).isdigit():
            name = _signal.Signals(int(value)).name
        else:
            v = str(value).upper()
            name = _signal.Signals[v if v.startswith("SIG") else "SIG" + v].name
    except (KeyError, ValueError):
        raise ValueError(f"unknown signal {value!r} (expected e.g. SIGKILL, SIGTERM, 9)") from None
    return name[3:]


def _after_crash(record: dict[str, Any], ctx: RunContext | None, out: dict[str, Any]) -> dict[str, Any]:
    """Without a live run (``chaoskit rollback`` after the runner died), also sweep everything
    else the run left in the namespace, so one ledger entry is enough to clean up fully."""
    if ctx is None and record.get("k8s") and (record.get("run_label") or record.get("run_id")):
        b = backend_for(None, record)
        out["cleanup"] = cleanup_run(b.api_client, b.namespace, record.get("run_label") or record.get("run_id"))
    return out


def _pods_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    return list(record.get("pods") or [])


class _K8sFault(Fault):
    """Shared record/backend plumbing."""

    backend_kind: ClassVar[str] = "kubernetes"

    def __init__(self, params: FaultParams, target: Any, ctx: RunContext):
        # the runner may hand over the compose class's params (validated before the backend
        # was known): re-read the keys the user set with the Kubernetes model
        if not isinstance(params, self.Params):
            try:
                params = self.Params.model_validate(params.model_dump(by_alias=True, exclude_unset=True))
            except ValidationError as exc:
                msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())
                raise FaultError(f"{self.name} on kubernetes: {msgs}") from None
        super().__init__(params, target, ctx)

    @property
    def backend(self) -> KubernetesBackend:
        return backend_for(self.ctx)

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec["backend"] = "kubernetes"
        rec["k8s"] = self.backend.target_record()
        rec["run_label"] = label_value(self.ctx.run_id)
        rec["pods"] = [
            {"name": i.name, "uid": i.id, "container": i.meta.get("container")} for i in self.instances
        ]
        return rec


# --- pod.delete -----------------------------------------------------------------------------


class PodDeleteParams(FaultParams):
    grace_period: int = Field(0, ge=0, description="gracePeriodSeconds; 0 = kill now")


@registry.faults.register("pod.delete")
class PodDelete(_K8sFault):
    name = "pod.delete"
    summary = "Delete pods (grace 0 by default); their controller replaces them."
    Params = PodDeleteParams
    reversible = False

    def apply(self) -> dict[str, Any]:
        return delete_pods(self.backend, self.instances, self.params.grace_period)  # type: ignore[attr-defined]


def delete_pods(backend: KubernetesBackend, instances: list[Any], grace: int) -> dict[str, Any]:
    from kubernetes import client

    deleted = []
    for inst in instances:
        backend.check_owned(inst)
        body = client.V1DeleteOptions(
            grace_period_seconds=grace, preconditions=client.V1Preconditions(uid=inst.id)
        )
        try:
            backend.core.delete_namespaced_pod(
                inst.name, backend.namespace, grace_period_seconds=grace, body=body
            )
            deleted.append({"pod": inst.name, "uid": inst.id, "grace_period": grace})
        except _api_exc() as exc:
            if _status(exc) in (404, 409):  # gone already, or replaced by a pod with a new uid
                deleted.append({"pod": inst.name, "uid": inst.id, "already_gone": True})
            else:
                raise FaultError(f"cannot delete pod {inst.name}: {api_error_message(exc)}") from None
    return {"deleted": deleted, "at": time.time()}


# --- deployment.scale -----------------------------------------------------------------------


class DeploymentScaleParams(FaultParams):
    replicas: int = Field(..., ge=0, description="replica count while the fault holds")
    deployment: str | None = Field(None, description="deployment name (default: target owner/service)")
    duration: Duration | None = None


@registry.faults.register("deployment.scale")
class DeploymentScale(_K8sFault):
    name = "deployment.scale"
    summary = "Scale a deployment; revert restores the recorded replica count."
    Params = DeploymentScaleParams
    needs_target = False

    def __init__(self, params: FaultParams, target: Any, ctx: RunContext):
        super().__init__(params, target, ctx)
        self.deployment: str | None = None
        self.original: int | None = None

    def prepare(self) -> None:
        p: DeploymentScaleParams = self.params  # type: ignore[assignment]
        t = self.target
        self.deployment = p.deployment or (t.owner if t else None) or (t.service if t else None)
        if not self.deployment:
            raise FaultError("deployment.scale needs `deployment:` or a target with owner/service")
        b = self.backend
        try:
            dep = b.apps.read_namespaced_deployment(self.deployment, b.namespace)
        except _api_exc() as exc:
            if _status(exc) == 404:
                raise TargetError(f"no deployment {self.deployment!r} in namespace {b.namespace}") from None
            raise FaultError(f"cannot read deployment {self.deployment}: {api_error_message(exc)}") from None
        noted = (dep.metadata.annotations or {}).get(REPLICAS_ANNOTATION)
        # an earlier unreverted scale left the true original behind: keep that one
        self.original = int(noted) if noted and noted.isdigit() else int(dep.spec.replicas or 0)

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec.update(deployment=self.deployment, original_replicas=self.original)
        return rec

    def apply(self) -> dict[str, Any]:
        b = self.backend
        p: DeploymentScaleParams = self.params  # type: ignore[assignment]
        meta = {
            "metadata": {
                "labels": {RUN_LABEL: label_value(self.ctx.run_id)},
                "annotations": {REPLICAS_ANNOTATION: str(self.original)},
            }
        }
        try:
            b.apps.patch_namespaced_deployment(self.deployment, b.namespace, meta)
            b.apps.patch_namespaced_deployment_scale(
                self.deployment, b.namespace, {"spec": {"replicas": p.replicas}}
            )
        except _api_exc() as exc:
            raise FaultError(f"cannot scale {self.deployment}: {api_error_message(exc)}") from None
        return {"deployment": self.deployment, "from": self.original, "to": p.replicas}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        if record.get("deployment") is None or record.get("original_replicas") is None:
            return None
        b = backend_for(ctx, record)
        return _after_crash(record, ctx, _restore_scale(b, record["deployment"], int(record["original_replicas"])))


def _restore_scale(b: KubernetesBackend, name: str, replicas: int) -> dict[str, Any]:
    try:
        b.apps.patch_namespaced_deployment_scale(name, b.namespace, {"spec": {"replicas": replicas}})
        b.apps.patch_namespaced_deployment(
            name,
            b.namespace,
            {"metadata": {"labels": {RUN_LABEL: None}, "annotations": {REPLICAS_ANNOTATION: None}}},
        )
    except _api_exc() as exc:
        if _status(exc) == 404:
            return {"deployment": name, "gone": True}
        raise FaultError(f"cannot restore {name} to {replicas} replicas: {api_error_message(exc)}") from None
    return {"deployment": name, "replicas": replicas}


# --- container.kill -------------------------------------------------------------------------


class ContainerKillParams(FaultParams):
    signal: str | int = Field("SIGKILL", description="signal sent to the container's main process")
    method: Literal["exec", "delete"] = Field(
        "exec", description="exec: `kill` inside the container; delete: delete the pod (grace_period)"
    )
    grace_period: int = Field(0, ge=0, description="for method delete")
    await_exit: Duration = Field(10.0, description="wait this long for the restart to show (0: don't)")
    via: Literal["auto"] = Field("auto", description="compose-only choice; only auto on kubernetes")

    @field_validator("signal")
    @classmethod
    def _sig(cls, v: str | int) -> str:
        return "SIG" + _signal_name(v)


class ContainerKill(_K8sFault):
    """Signal a container's main process through exec (or delete the pod).

    PID 1 of a PID namespace only receives signals it installed a handler for when they come
    from inside the namespace: an exec'd ``kill -KILL 1`` is ignored by the kernel. So after the
    exec we watch restartCount and raise a clear FaultError instead of reporting a kill that did
    not happen. Pods with ``shareProcessNamespace: true`` don't have that problem (the main
    process is not PID 1 there); otherwise ``method: delete`` is the reliable hard kill.
    """

    name = "container.kill"
    summary = "Signal a pod's container through exec, or delete the pod with grace 0."
    Params = ContainerKillParams
    reversible = False

    def apply(self) -> dict[str, Any]:
        p: ContainerKillParams = self.params  # type: ignore[assignment]
        b = self.backend
        if p.method == "delete":
            return delete_pods(b, self.instances, p.grace_period)
        out = []
        for inst in self.instances:
            b.check_owned(inst)
            container = inst.meta["container"]
            before = _restarts(inst.meta.get("pod"), container)
            sig = str(p.signal)[3:]
            rc, text = b.exec(inst.name, container, ["sh", "-c", _KILL_MAIN.replace("-s SIG", f"-s {sig}")])
            if rc != 0 or "pid:" not in text:
                raise FaultError(f"signalling {inst.name}/{container} failed (rc {rc}): {text.strip()}")
            pid = text.split("pid:", 1)[1].split()[0]
            ev: dict[str, Any] = {"pod": inst.name, "container": container, "signal": p.signal,
                                  "pid": int(pid) if pid.isdigit() else pid, "restarts_before": before}
            if p.await_exit > 0:
                after = _wait_restart(b, inst.name, inst.id, container, before, p.await_exit)
                if after is None:
                    raise FaultError(
                        f"{p.signal} sent to PID 1 of {inst.name}/{container} but it did not restart "
                        f"within {p.await_exit:g}s: PID 1 ignores signals it has no handler for when they "
                        "come from inside its PID namespace; use method: delete for a hard kill"
                    )
                ev["restarts_after"] = after
            out.append(ev)
        return {"killed": out, "at": time.time()}


# The container's main process: PID 1 when the container has its own PID namespace; with
# shareProcessNamespace PID 1 is the pod's pause process (never signal that), so take the
# oldest (lowest) PID of this container's mount namespace instead.
_KILL_MAIN = r"""
me=$$; mine=$(readlink /proc/self/ns/mnt); t=""
if [ "$(readlink /proc/1/ns/mnt 2>/dev/null)" = "$mine" ]; then t=1; else
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$mine" ] || continue
    ppid=$(awk '/^PPid:/{print $2}' "$d/status" 2>/dev/null)
    [ "$ppid" = "$me" ] && continue
    if [ -z "$t" ] || [ "$p" -lt "$t" ]; then t=$p; fi
  done
fi
[ -n "$t" ] || { echo "no process of this container found" >&2; exit 3; }
echo "pid:$t"
kill -s SIG "$t"
"""


def _restarts(pod: Any, container: str) -> int | None:
    for cs in (getattr(getattr(pod, "status", None), "container_statuses", None) or []):
        if cs.name == container:
            return int(cs.restart_count or 0)
    return None


def _wait_restart(
    b: KubernetesBackend, name: str, uid: str, container: str, before: int | None, timeout: float
) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = b.read_pod(name)
        if pod is None or pod.metadata.uid != uid:
            return (before or 0) + 1  # the pod itself went away: it certainly died
        now = _restarts(pod, container)
        for cs in pod.status.container_statuses or []:
            if cs.name == container and cs.state is not None and cs.state.running is None:
                return now or 0  # terminated / waiting: the kill landed
        if now is not None and before is not None and now > before:
            return now
        time.sleep(0.25)
    return None


# --- container.pause ------------------------------------------------------------------------

# Signals every process of *this container* except the exec'd shell itself. In a pod with
# shareProcessNamespace the pause process is PID 1, so the app's processes are ordinary ones
# that SIGSTOP reaches; "same container" = same mount namespace as the exec'd shell.
_SIGNAL_CONTAINER = r"""
me=$$; mine=$(readlink /proc/self/ns/mnt); hit=""
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = 1 ] && continue; [ "$p" = "$me" ] && continue
  [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$mine" ] || continue
  ppid=$(awk '/^PPid:/{print $2}' "$d/status" 2>/dev/null)
  [ "$ppid" = "$me" ] && continue
  kill -s SIG "$p" 2>/dev/null && hit="$hit $p"
done
echo "pids:$hit"
"""


def _signal_script(sig: str) -> list[str]:
    return ["sh", "-c", _SIGNAL_CONTAINER.replace("-s SIG", f"-s {sig}")]


class ContainerPauseParams(FaultParams):
    duration: Duration | None = None


class ContainerPause(_K8sFault):
    """SIGSTOP the container's processes through exec; SIGCONT on revert.

    Only where the runtime allows it: the pod must set ``shareProcessNamespace: true``, because
    a container's own PID 1 cannot be stopped from inside its PID namespace.
    """

    name = "container.pause"
    summary = "Freeze a pod container's processes (needs shareProcessNamespace: true)."
    Params = ContainerPauseParams

    def prepare(self) -> None:
        super().prepare()
        for inst in self.instances:
            pod = inst.meta.get("pod")
            if not getattr(pod.spec, "share_process_namespace", False):
                raise FaultError(
                    f"container.pause on Kubernetes needs shareProcessNamespace: true in pod "
                    f"{inst.name} (PID 1 of a container cannot be stopped from inside it); "
                    "use container.kill or network.partition instead"
                )

    def apply(self) -> dict[str, Any]:
        out = []
        for inst in self.instances:
            self.backend.check_owned(inst)
            rc, text = self.backend.exec(inst.name, inst.meta["container"], _signal_script("STOP"))
            if rc != 0 or "pids: " not in text:
                raise FaultError(f"pausing {inst.name} failed (rc {rc}): {text.strip()}")
            out.append({"pod": inst.name, "container": inst.meta["container"], "stopped": text.split(":", 1)[1].split()})
        return {"paused": out}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        b = backend_for(ctx, record)
        out = []
        for pod in _pods_of(record):
            current = b.read_pod(pod["name"])
            if current is None or current.metadata.uid != pod["uid"]:
                out.append({"pod": pod["name"], "gone": True})
                continue
            rc, text = b.exec(pod["name"], pod["container"], _signal_script("CONT"))
            if rc != 0:
                raise FaultError(f"resuming {pod['name']} failed (rc {rc}): {text.strip()}")
            out.append({"pod": pod["name"], "resumed": text.split(":", 1)[-1].split()})
        return _after_crash(record, ctx, {"resumed": out})


# --- network.partition ----------------------------------------------------------------------


class NetworkPartitionParams(FaultParams):
    """The compose keys (between / from+to / ports / protocol / mode), plus: with none of
    between/from/to, the step's target pods are isolated from everything."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    between: list[list[str]] | None = Field(None, description="groups of services; cut both ways")
    from_: list[str] | None = Field(None, alias="from", description="one-way: from these services")
    to: list[str] | None = Field(None, description="one-way: to these services")
    direction: Literal["both", "ingress", "egress"] = Field("both", description="target mode only")
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(None, max_length=15)
    protocol: Literal["tcp", "udp", "all"] | None = None
    mode: Literal["drop", "reject"] = Field("drop", description="on kubernetes the CNI decides; recorded only")
    allow_dns: bool = Field(True, description="keep DNS egress (port 53) open so failures stay network-shaped")
    duration: Duration | None = None
    via: Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _shape(self) -> NetworkPartitionParams:
        one_way = self.from_ is not None or self.to is not None
        if self.between is not None and one_way:
            raise ValueError("give either between: or from:/to:, not both")
        if one_way and not (self.from_ and self.to):
            raise ValueError("a one-way partition needs both from: and to: (non-empty)")
        if self.between is not None and (len(self.between) < 2 or any(not g for g in self.between)):
            raise ValueError("between: needs at least two non-empty groups of services")
        groups = self.groups()
        flat = [x for g in groups for x in g]
        if len(flat) != len(set(flat)):
            raise ValueError("a service may appear in only one group")
        if self.ports and self.protocol == "all":
            raise ValueError("ports need protocol tcp or udp")
        if self.ports and self.protocol is None:
            self.protocol = "tcp"
        return self

    def groups(self) -> list[list[str]]:
        if self.between is not None:
            return self.between
        if self.from_ is not None or self.to is not None:
            return [self.from_ or [], self.to or []]
        return []


def _workload_exists(b: KubernetesBackend, name: str) -> bool:
    for reader in (b.apps.read_namespaced_deployment, b.apps.read_namespaced_stateful_set):
        try:
            reader(name, b.namespace)
            return True
        except _api_exc() as exc:
            if _status(exc) != 404:
                raise FaultError(f"cannot read {name}: {api_error_message(exc)}") from None
    return False


def _still_allowed_ports(protocol: str | None, ports: list[int] | None) -> list[dict[str, Any]] | None:
    """Ports a cut peer may still use (None: none). NetworkPolicies can only allow, so cutting
    port 5432 means allowing 1-5431 and 5433-65535 (``endPort``, Kubernetes >= 1.25)."""
    if protocol in (None, "all") and not ports:
        return None
    cut = {"tcp": ["TCP"], "udp": ["UDP"]}.get(protocol or "", ["TCP", "UDP"])
    out: list[dict[str, Any]] = [
        {"protocol": pr, "port": 1, "endPort": 65535} for pr in ("TCP", "UDP") if pr not in cut
    ]
    for pr in cut if ports else []:
        lo = 1
        for port in sorted(set(ports or [])):
            if port > lo:
                out.append({"protocol": pr, "port": lo, "endPort": port - 1} if port - 1 > lo else {"protocol": pr, "port": lo})
            lo = port + 1
        if lo <= 65535:
            out.append({"protocol": pr, "port": lo, "endPort": 65535} if lo < 65535 else {"protocol": pr, "port": lo})
    return out


def _everyone_but(namespace: str, services: list[str]) -> list[dict[str, Any]]:
    return [
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": sorted(services)}]}},
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [namespace]}
                ]
            }
        },
    ]


_DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def partition_policy(
    namespace: str,
    name: str,
    run_label: str,
    pod_selector: dict[str, Any],
    types: list[str],
    cut: list[str] | None,
    p: NetworkPartitionParams,
) -> dict[str, Any]:
    """One NetworkPolicy. Selecting a pod with an empty rule list denies that direction;
    ``cut`` (services) turns it into "allow everyone except these (on these ports)"."""
    spec: dict[str, Any] = {"podSelector": pod_selector, "policyTypes": types}
    rules: list[dict[str, Any]] = []
    if cut:
        rules.append({"peers": _everyone_but(namespace, cut)})
        still = _still_allowed_ports(p.protocol, p.ports)
        if still:
            rules.append(
                {"peers": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": sorted(cut)}]}}],
                 "ports": still}
            )
    if "Ingress" in types:
        spec["ingress"] = [{"from": r["peers"], **({"ports": r["ports"]} if "ports" in r else {})} for r in rules]
    if "Egress" in types:
        egress = [{"to": r["peers"], **({"ports": r["ports"]} if "ports" in r else {})} for r in rules]
        if p.allow_dns:
            egress.append(_DNS)
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGED_BY_VALUE, RUN_LABEL: run_label, "chaoskit.io/fault": "network.partition"},
        },
        "spec": spec,
    }


def _app_in(services: list[str]) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": sorted(services)}]}


class NetworkPartition(_K8sFault):
    """Partition with chaoskit-labelled NetworkPolicies (needs a CNI that enforces them).

    ``between`` / ``from``+``to`` name services (``app`` labels) like on compose; the policies
    select by label, so replacement pods stay partitioned. Without them, the step's target pods
    are labelled ``chaoskit.io/fault-<token>`` and isolated, so ``mode: one`` cuts one pod.
    Policies add up: another policy allowing traffic to these pods punches a hole, which the
    evidence reports in ``other_policies``.
    """

    name = "network.partition"
    summary = "Cut traffic between services, or isolate pods, with NetworkPolicies."
    Params = NetworkPartitionParams
    needs_target = False

    def prepare(self) -> None:
        p: NetworkPartitionParams = self.params  # type: ignore[assignment]
        self.token = uuid.uuid4().hex[:10]
        b = self.backend
        self.groups = p.groups()
        if self.groups:
            self.instances = []
            for svc in sorted({x for g in self.groups for x in g}):
                found = b.find(Selection(service=svc), running=None)
                if not found and not _workload_exists(b, svc):
                    # policies select by label, so a service scaled to zero is fine; a typo is not
                    raise TargetError(f"service {svc!r} has no pods and no deployment/statefulset in {b.describe()}")
                self.instances += found
            n = 1 if p.between is None else len(self.groups)
            self.policy_names = [f"chaoskit-partition-{self.token}-{i}" for i in range(2 if p.between is None else n)]
        else:
            if self.target is None:
                raise FaultError("network.partition needs between:, from:/to: or a target to isolate")
            self.instances = b.resolve(self.target, self.ctx.rng)
            self.policy_names = [f"chaoskit-partition-{self.token}"]

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec.update(policies=self.policy_names, label=FAULT_LABEL_PREFIX + self.token)
        if self.groups:
            rec["pods"] = []  # nothing is labelled in service mode
        return rec

    def policies(self, run_label: str) -> list[dict[str, Any]]:
        p: NetworkPartitionParams = self.params  # type: ignore[assignment]
        ns = self.backend.namespace
        if not self.groups:
            types = {"both": ["Ingress", "Egress"], "ingress": ["Ingress"], "egress": ["Egress"]}[p.direction]
            sel = {"matchLabels": {FAULT_LABEL_PREFIX + self.token: "true"}}
            cut_all = None
            return [partition_policy(ns, self.policy_names[0], run_label, sel, types, cut_all, p)]
        if p.between is not None:
            out = []
            for i, g in enumerate(self.groups):
                others = [x for j, o in enumerate(self.groups) if j != i for x in o]
                out.append(partition_policy(ns, self.policy_names[i], run_label, _app_in(g), ["Ingress", "Egress"], others, p))
            return out
        src, dst = self.groups
        return [
            partition_policy(ns, self.policy_names[0], run_label, _app_in(src), ["Egress"], dst, p),
            partition_policy(ns, self.policy_names[1], run_label, _app_in(dst), ["Ingress"], src, p),
        ]

    def apply(self) -> dict[str, Any]:
        b = self.backend
        run_label = label_value(self.ctx.run_id)
        key = FAULT_LABEL_PREFIX + self.token
        labelled = []
        bodies = self.policies(run_label)
        try:
            if not self.groups:
                for inst in self.instances:
                    b.check_owned(inst)
                    b.core.patch_namespaced_pod(
                        inst.name, b.namespace, {"metadata": {"labels": {key: "true", RUN_LABEL: run_label}}}
                    )
                    labelled.append(inst.name)
            for body in bodies:
                b.net.create_namespaced_network_policy(b.namespace, body)
        except _api_exc() as exc:
            raise FaultError(f"network.partition failed: {api_error_message(exc)}") from None
        ev: dict[str, Any] = {
            "policies": [x["metadata"]["name"] for x in bodies],
            "pods": labelled,
            "specs": [x["spec"] for x in bodies],
            "other_policies": _other_policies(b, self.instances),
        }
        if self.params.mode == "reject":  # type: ignore[attr-defined]
            ev["note"] = "on kubernetes the CNI decides whether cut packets are dropped or rejected"
        return ev

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        b = backend_for(ctx, record)
        names = record.get("policies") or ([record["policy"]] if record.get("policy") else [])
        removed = [n for n in names if _delete_policy(b, n)]
        unlabelled = [
            pod["name"] for pod in _pods_of(record) if _strip_pod_marks(b, pod["name"], [record.get("label")])
        ]
        return _after_crash(record, ctx, {"policies": names, "removed": removed, "unlabelled": unlabelled})


def _other_policies(b: KubernetesBackend, instances: list[Any]) -> list[str]:
    """Non-chaoskit policies selecting these pods: their allow rules would leak through."""
    try:
        pols = b.net.list_namespaced_network_policy(b.namespace).items
    except _api_exc():
        return []
    out = []
    for pol in pols:
        if (pol.metadata.labels or {}).get(MANAGED_BY) == MANAGED_BY_VALUE:
            continue
        sel = b.api_client.sanitize_for_serialization(pol.spec.pod_selector) or {}
        if any(labels_match(sel, (i.meta["pod"].metadata.labels or {})) for i in instances):
            out.append(pol.metadata.name)
    return out


def _delete_policy(b: KubernetesBackend, name: str | None) -> bool:
    if not name:
        return False
    try:
        b.net.delete_namespaced_network_policy(name, b.namespace)
        return True
    except _api_exc() as exc:
        if _status(exc) == 404:
            return False
        raise FaultError(f"cannot delete NetworkPolicy {name}: {api_error_message(exc)}") from None


def _strip_pod_marks(b: KubernetesBackend, pod: str, label_keys: list[str | None]) -> bool:
    """Remove chaoskit's labels/annotations from a pod; False when the pod is gone."""
    current = b.read_pod(pod)
    if current is None:
        return False
    labels = current.metadata.labels or {}
    annotations = current.metadata.annotations or {}
    drop_l: dict[str, None] = {k: None for k in labels if k.startswith(FAULT_LABEL_PREFIX) and (k in label_keys or None in label_keys)}
    others = [k for k in labels if k.startswith(FAULT_LABEL_PREFIX) and k not in drop_l]
    others += [k for k in annotations if k.startswith(EC_ANNOTATION_PREFIX)]
    if not others:
        drop_l[RUN_LABEL] = None  # nothing of ours left on the pod
    if not drop_l:
        return True
    try:
        b.core.patch_namespaced_pod(pod, b.namespace, {"metadata": {"labels": drop_l}})
    except _api_exc() as exc:
        if _status(exc) != 404:
            raise FaultError(f"cannot unlabel pod {pod}: {api_error_message(exc)}") from None
        return False
    return True


# --- network.latency / network.loss: an ephemeral debug container with NET_ADMIN -------------

_HOLD = r"""
set -e
revert() { %(revert)s }
trap 'revert; exit 0' TERM INT
%(apply)s
touch /tmp/chaoskit-applied
i=0
while [ "$i" -lt %(max)d ] && [ ! -e /tmp/chaoskit-stop ]; do sleep 1; i=$((i+1)); done
revert
"""


class _EphemeralNetFault(_K8sFault):
    """Adds an ephemeral container sharing the pod's network namespace that applies the fault,
    holds it, and reverts it itself after ``max_hold`` even if chaoskit dies. Ephemeral
    containers cannot be removed, only ended: revert execs the undo commands in it and tells it
    to exit. The pod is annotated so ``cleanup_run`` finds it without the ledger."""

    def apply_cmds(self) -> str:
        raise NotImplementedError

    def revert_cmds(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        super().prepare()
        self.token = uuid.uuid4().hex[:10]
        self.ec_name = f"chaoskit-{self.token}"

    def record(self) -> dict[str, Any]:
        rec = super().record()
        rec.update(ephemeral_container=self.ec_name, token=self.token, revert_cmd=self.revert_cmds())
        return rec

    def container_spec(self) -> dict[str, Any]:
        p = self.params
        script = _HOLD % {
            "revert": self.revert_cmds() + ";",
            "apply": self.apply_cmds(),
            "max": int(p.max_hold),  # type: ignore[attr-defined]
        }
        return {
            "name": self.ec_name,
            "image": p.image,  # type: ignore[attr-defined]
            "imagePullPolicy": p.image_pull_policy,  # type: ignore[attr-defined]
            "command": ["sh", "-c", script],
            # NET_ADMIN only takes effect for uid 0 (the chaoskit image defaults to 10001)
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "runAsUser": 0, "runAsNonRoot": False},
        }

    def apply(self) -> dict[str, Any]:
        b = self.backend
        run_label = label_value(self.ctx.run_id)
        out = []
        for inst in self.instances:
            b.check_owned(inst)
            note = json.dumps({"container": self.ec_name, "revert": self.revert_cmds(), "fault": self.name})
            try:
                b.core.patch_namespaced_pod(
                    inst.name,
                    b.namespace,
                    {"metadata": {"labels": {RUN_LABEL: run_label},
                                  "annotations": {EC_ANNOTATION_PREFIX + self.token: note}}},
                )
                b.core.patch_namespaced_pod_ephemeralcontainers(
                    inst.name, b.namespace, {"spec": {"ephemeralContainers": [self.container_spec()]}}
                )
            except _api_exc() as exc:
                raise FaultError(
                    f"{self.name}: cannot add an ephemeral container to {inst.name}: {api_error_message(exc)}"
                ) from None
            _wait_ephemeral_running(b, inst.name, self.ec_name, timeout=60.0)
            out.append({"pod": inst.name, "ephemeral_container": self.ec_name})
        return {"pods": out, "applied": self.apply_cmds()}

    @classmethod
    def revert_record(cls, record: dict[str, Any], ctx: RunContext | None) -> dict[str, Any] | None:
        b = backend_for(ctx, record)
        token = record.get("token")
        out = []
        for pod in _pods_of(record):
            out.append(
                _end_ephemeral(b, pod["name"], record.get("ephemeral_container"), record.get("revert_cmd"), token)
            )
        return _after_crash(record, ctx, {"reverted": out})


def _wait_ephemeral_running(b: KubernetesBackend, pod: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = b.read_pod(pod)
        if cur is None:
            raise FaultError(f"pod {pod} disappeared while its ephemeral container started")
        for st in cur.status.ephemeral_container_statuses or []:
            if st.name != name or st.state is None:
                continue
            if st.state.running is not None:
                return
            if st.state.terminated is not None:
                t = st.state.terminated
                raise FaultError(f"ephemeral container {name} in {pod} exited ({t.exit_code}): {t.message or t.reason}")
            if st.state.waiting is not None and st.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                raise FaultError(
                    f"ephemeral container image for {pod} cannot be pulled ({st.state.waiting.reason}); "
                    "set `image:` or `kind load docker-image` it"
                )
        time.sleep(0.5)
    raise FaultError(f"ephemeral container {name} in {pod} did not start within {timeout:g}s")


def _end_ephemeral(b: KubernetesBackend, pod: str, ec: str | None, revert_cmd: str | None, token: str | None) -> dict[str, Any]:
    cur = b.read_pod(pod)
    if cur is None or not ec:
        return {"pod": pod, "gone": True}
    running = any(
        st.name == ec and st.state is not None and st.state.running is not None
        for st in (cur.status.ephemeral_container_statuses or [])
    )
    result: dict[str, Any] = {"pod": pod, "ephemeral_container": ec}
    if running:
        rc, text = b.exec(pod, ec, ["sh", "-c", f"{revert_cmd or 'true'}; touch /tmp/chaoskit-stop"])
        if rc != 0:
            raise FaultError(f"revert in {pod}/{ec} failed (rc {rc}): {text.strip()}")
        result["reverted"] = True
    else:
        result["already_ended"] = True  # its own max_hold timer reverted it
    if token:
        try:
            b.core.patch_namespaced_pod(pod, b.namespace, {"metadata": {"annotations": {EC_ANNOTATION_PREFIX + token: None}}})
        except _api_exc() as exc:
            if _status(exc) != 404:
                raise
        _strip_pod_marks(b, pod, [])
    return result


class _NetParams(FaultParams):
    interface: str | None = Field(None, pattern=r"^[A-Za-z0-9_.@-]{1,15}$", description="default eth0")
    image: str = Field(DEFAULT_TOOLS_IMAGE, description="image with tc and iptables for the debug container")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    max_hold: Duration = Field(3600.0, gt=0, description="the container reverts by itself after this")
    duration: Duration | None = None
    to: list[str] | None = Field(None, description="compose-only for now: refused on kubernetes")
    via: Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _no_to(self) -> _NetParams:
        if self.to:
            raise ValueError("`to:` is not supported on kubernetes yet (the fault applies to all pod traffic)")
        return self

    @property
    def dev(self) -> str:
        return shlex.quote(self.interface or "eth0")


class NetworkLatencyParams(_NetParams):
    delay: Duration = Field(..., description="added delay, e.g. 200ms")
    jitter: Duration | None = None
    correlation: float | None = Field(None, ge=0, le=100)


class NetworkLatency(_EphemeralNetFault):
    name = "network.latency"
    summary = "Delay a pod's egress with tc netem from an ephemeral NET_ADMIN container."
    Params = NetworkLatencyParams

    def apply_cmds(self) -> str:
        p: NetworkLatencyParams = self.params  # type: ignore[assignment]
        args = f"delay {p.delay * 1000:.3f}ms"
        if p.jitter:
            args += f" {p.jitter * 1000:.3f}ms"
            if p.correlation is not None:
                args += f" {p.correlation}%"
        return f"tc qdisc add dev {p.dev} root netem {args}"

    def revert_cmds(self) -> str:
        p: NetworkLatencyParams = self.params  # type: ignore[assignment]
        return f"tc qdisc del dev {p.dev} root 2>/dev/null || true"


class NetworkLossParams(_NetParams):
    percent: float = Field(..., gt=0, le=100, description="share of packets dropped")
    direction: Literal["egress", "ingress", "both"] = "egress"
    ports: list[Annotated[int, Field(ge=1, le=65535)]] | None = Field(None, max_length=15)
    protocol: Literal["tcp", "udp", "all"] | None = None

    @model_validator(mode="after")
    def _proto(self) -> NetworkLossParams:
        if self.ports and self.protocol == "all":
            raise ValueError("ports need protocol tcp or udp")
        if self.ports and self.protocol is None:
            self.protocol = "tcp"
        return self


class NetworkLoss(_EphemeralNetFault):
    name = "network.loss"
    summary = "Drop a share of a pod's packets (iptables statistic) from an ephemeral container."
    Params = NetworkLossParams

    def _rules(self) -> list[str]:
        p: NetworkLossParams = self.params  # type: ignore[assignment]
        match = ""
        if p.protocol and p.protocol != "all":
            match += f" -p {p.protocol}"
        if p.ports:
            match += " -m multiport --ports " + ",".join(str(x) for x in p.ports)
        tail = (
            f"{match} -m statistic --mode random --probability {p.percent / 100:.6f}"
            f" -m comment --comment chaoskit-{self.token} -j DROP"
        )
        rules = []
        if p.direction in ("egress", "both"):
            rules.append(f"OUTPUT -o {p.dev}{tail}")
        if p.direction in ("ingress", "both"):
            rules.append(f"INPUT -i {p.dev}{tail}")
        return rules

    def apply_cmds(self) -> str:
        return "; ".join(f"iptables -w -A {r}" for r in self._rules())

    def revert_cmds(self) -> str:
        return "; ".join(f"iptables -w -D {r} 2>/dev/null || true" for r in self._rules())


# --- dispatch and crash cleanup -------------------------------------------------------------

_IMPLS: dict[str, type[Fault]] = {
    "container.kill": ContainerKill,
    "container.pause": ContainerPause,
    "network.partition": NetworkPartition,
    "network.latency": NetworkLatency,
    "network.loss": NetworkLoss,
    "pod.delete": PodDelete,
    "deployment.scale": DeploymentScale,
}


def kubernetes_impl(fault_name: str) -> type[Fault] | None:
    """The Kubernetes class for a fault name, or None when the fault has no Kubernetes form."""
    return _IMPLS.get(fault_name)


def is_kubernetes_record(record: dict[str, Any]) -> bool:
    return bool(record.get("k8s"))


def rollback_record(record: dict[str, Any], ctx: RunContext | None = None) -> dict[str, Any]:
    """What ``chaoskit rollback`` calls for a fault-ledger record with a ``k8s`` key: revert the
    fault from the record, then sweep everything else the run left in the namespace."""
    out: dict[str, Any] = {"fault": record.get("fault")}
    impl = kubernetes_impl(str(record.get("fault")))
    if impl is not None:
        out["revert"] = impl.revert_record(record, ctx)
    if "cleanup" not in (out.get("revert") or {}):
        b = backend_for(ctx, record)
        out["cleanup"] = cleanup_run(b.api_client, b.namespace, record.get("run_label") or record.get("run_id"))
    return out


def cleanup_run(api_client: Any, namespace: str, run_id: str | None) -> dict[str, Any]:
    """Find and undo everything chaoskit left in ``namespace`` for ``run_id`` (every run: None).

    Works from the cluster alone: NetworkPolicies it created are deleted, pods it labelled or
    gave an ephemeral container are reverted and unlabelled, deployments it scaled go back to
    the replica count noted on them. Only namespaced calls in ``namespace``.
    """
    b = KubernetesBackend(namespace=namespace, api_client=api_client)
    run_sel = f"{RUN_LABEL}={label_value(run_id)}" if run_id else RUN_LABEL
    done: dict[str, list[Any]] = {"networkpolicies": [], "pods": [], "deployments": []}
    errors: list[str] = []
    for pol in b.net.list_namespaced_network_policy(
        namespace, label_selector=f"{MANAGED_BY}={MANAGED_BY_VALUE},{run_sel}"
    ).items:
        if _delete_policy(b, pol.metadata.name):
            done["networkpolicies"].append(pol.metadata.name)
    for pod in b.list_pods(run_sel):
        name = pod.metadata.name
        try:
            for key, note in (pod.metadata.annotations or {}).items():
                if key.startswith(EC_ANNOTATION_PREFIX):
                    info = json.loads(note)
                    _end_ephemeral(b, name, info.get("container"), info.get("revert"), key[len(EC_ANNOTATION_PREFIX):])
            _strip_pod_marks(b, name, [None])
            done["pods"].append(name)
        except (FaultError, TargetError, ValueError) as exc:
            errors.append(f"pod {name}: {exc}")
    for dep in b.apps.list_namespaced_deployment(namespace, label_selector=run_sel).items:
        noted = (dep.metadata.annotations or {}).get(REPLICAS_ANNOTATION)
        if noted and noted.isdigit():
            _restore_scale(b, dep.metadata.name, int(noted))
            done["deployments"].append(dep.metadata.name)
    if errors:
        done["errors"] = errors  # type: ignore[assignment]
    return done
