"""End-to-end against a REAL cluster, when one is configured.

Runs only when ``KUBECONFIG`` points at a reachable cluster that has the reference stack of
manifests/ applied (``kubectl apply -k manifests/``; namespace ``chaoskit-ledger``, or set
``CHAOSKIT_E2E_NAMESPACE``), and the images loaded (``kind load docker-image ...``, see
docs/kubernetes.md). Otherwise the whole module is skipped: no control plane can run on our
build machines, and this is the one skip the project allows. Everything else about the
Kubernetes backend is tested against the fake API server on every run.

These tests exercise what the fake cannot: exec (container.kill, container.pause), ephemeral
debug containers (network.loss), real NetworkPolicy objects, real controllers.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from chaoskit.backends.base import Selection
from chaoskit.runner.context import RunContext

NAMESPACE = os.environ.get("CHAOSKIT_E2E_NAMESPACE", "chaoskit-ledger")


def _cluster():
    if not os.environ.get("KUBECONFIG"):
        return None, "KUBECONFIG is not set (real-cluster end-to-end tests only)"
    try:
        from chaoskit.backends.kubernetes import KubernetesBackend

        b = KubernetesBackend(NAMESPACE, kubeconfig=os.environ["KUBECONFIG"].split(os.pathsep)[0])
        b.core.list_namespaced_pod(NAMESPACE, limit=1, _request_timeout=5)
        b.apps.read_namespaced_deployment("ledger-api", NAMESPACE, _request_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable cluster here
        return None, f"no reachable cluster with the reference stack in {NAMESPACE}: {exc}"
    return b, ""


_BACKEND, _WHY = _cluster()
pytestmark = pytest.mark.skipif(_BACKEND is None, reason=_WHY)


@pytest.fixture()
def ctx():
    return RunContext(run_id=f"e2e-{int(time.time())}", seed=11, backend=_BACKEND)


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def _available(name: str) -> bool:
    from chaoskit.probes.kubernetes import DeploymentProbe

    p = DeploymentProbe(DeploymentProbe.Params(deployment=name, value="available"), RunContext("p", 1, backend=_BACKEND))
    return bool(p.read())


def _make(cls, ctx, target=None, **params):
    f = cls(cls.Params.model_validate(params), Selection(**target) if target else None, ctx)
    f.prepare()
    return f


@pytest.fixture(autouse=True)
def _no_leftovers(ctx):
    yield
    from chaoskit.faults.kubernetes import cleanup_run

    cleanup_run(_BACKEND.api_client, NAMESPACE, ctx.run_id)
    left = _BACKEND.net.list_namespaced_network_policy(NAMESPACE, label_selector="app.kubernetes.io/managed-by=chaoskit")
    assert not left.items
    _wait(lambda: _available("ledger-api") and _available("broker"), 180, "the stack to recover")


def test_resolution_stays_in_namespace() -> None:
    pods = _BACKEND.find(Selection(owner="ledger-api"))
    assert pods and all(p.meta["pod"].metadata.namespace == NAMESPACE for p in pods)
    assert _BACKEND.find(Selection(service="postgres"))[0].name == "postgres-0"


def test_pod_delete_is_replaced(ctx) -> None:
    from chaoskit.faults.kubernetes import PodDelete

    f = _make(PodDelete, ctx, {"service": "ledger-api"})
    victim = f.instances[0]
    f.apply()
    _wait(lambda: (_BACKEND.read_pod(victim.name) is None or _BACKEND.read_pod(victim.name).metadata.uid != victim.id),
          60, "the pod to go")
    _wait(lambda: _available("ledger-api"), 180, "a replacement")


def test_container_kill_restarts_the_container(ctx) -> None:
    from chaoskit.faults.kubernetes import ContainerKill

    f = _make(ContainerKill, ctx, {"service": "ledger-api"}, signal="SIGKILL", await_exit="30s")
    ev = f.apply()
    assert ev["killed"][0]["restarts_after"] is not None


def test_pause_and_resume(ctx) -> None:
    from chaoskit.faults.kubernetes import ContainerPause

    f = _make(ContainerPause, ctx, {"service": "ledger-api"})
    ev = f.apply()
    assert ev["paused"][0]["stopped"]
    f.revert()


def test_partition_policy_lifecycle(ctx) -> None:
    from chaoskit.faults.kubernetes import NetworkPartition

    f = _make(NetworkPartition, ctx, between=[["ledger-api"], ["broker"]])
    ev = f.apply()
    names = {p.metadata.name for p in _BACKEND.net.list_namespaced_network_policy(
        NAMESPACE, label_selector=f"chaoskit.io/run-id={ctx.run_id}").items}
    assert names == set(ev["policies"])
    f.revert()


def test_scale_to_zero_and_back(ctx) -> None:
    from chaoskit.faults.kubernetes import DeploymentScale

    f = _make(DeploymentScale, ctx, deployment="broker", replicas=0)
    f.apply()
    _wait(lambda: not _BACKEND.find(Selection(service="broker"), running=None), 120, "broker pods to go")
    f.revert()
    _wait(lambda: _available("broker"), 180, "the broker to come back")


def test_loss_through_an_ephemeral_container(ctx) -> None:
    from chaoskit.faults.kubernetes import NetworkLoss

    f = _make(NetworkLoss, ctx, {"service": "broker"}, percent=10, max_hold="120s")
    ev = f.apply()
    assert ev["pods"][0]["ephemeral_container"] == f.ec_name
    out = f.revert()
    assert out["reverted"][0].get("reverted") is True


def test_http_through_a_port_forward() -> None:
    from chaoskit.k8s_portforward import port_forward, rewrite_url

    with port_forward(_BACKEND, {"service": "ledger-api", "port": 8080}) as pf:
        r = httpx.get(rewrite_url("http://ledger-api:8080/health", pf.local_port), timeout=10)
    assert r.status_code == 200
