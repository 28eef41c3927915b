"""The exec path end to end: KubernetesBackend.exec over the official client's websocket exec
protocol, through the FAKE API server (tests/k8s_fake_apiserver.py), which runs the command for
real with ``docker exec`` in containers standing in for the pod's containers. So container.kill
and container.pause are exercised with real processes and real signals; only the kubelet is
simulated (a watcher thread bumps restartCount when the container dies)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from chaoskit.backends.base import Selection
from chaoskit.errors import FaultError
from chaoskit.faults import kubernetes as kf

pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures
NS = "ledger"


@pytest.fixture()
def shared_pod(docker_client, base_image, fake):
    """A pod with shareProcessNamespace: a "pause" container and the app joined to its PID namespace."""
    tag = uuid.uuid4().hex[:8]
    pause = docker_client.containers.run(
        base_image, ["sleep", "infinity"], detach=True, name=f"chaoskit-test-k8spause-{tag}",
        labels={"chaoskit.test": "1"}, network_mode="none",
    )
    app = docker_client.containers.run(
        base_image, ["sh", "-c", "sleep 1000 & wait"], detach=True, name=f"chaoskit-test-k8sapp-{tag}",
        labels={"chaoskit.test": "1"}, pid_mode=f"container:{pause.id}", network_mode="none",
    )
    fake.add_pod(NS, "shared-0", {"app": "shared"}, containers=["app"], share_process_namespace=True)
    fake.exec_in(NS, "shared-0", app)
    time.sleep(0.3)
    yield pause, app
    for c in (app, pause):
        c.remove(force=True)


@pytest.fixture()
def plain_pod(docker_client, base_image, fake):
    """A pod whose app is PID 1 of its own PID namespace."""
    c = docker_client.containers.run(
        base_image, ["sleep", "1000"], detach=True, name=f"chaoskit-test-k8spid1-{uuid.uuid4().hex[:8]}",
        labels={"chaoskit.test": "1"}, network_mode="none",
    )
    fake.add_pod(NS, "plain-0", {"app": "plain"}, containers=["app"])
    fake.exec_in(NS, "plain-0", c)
    yield c
    c.remove(force=True)


def kubelet(fake, pod: str, container) -> threading.Thread:
    """What the kubelet would report: the container died, restartCount goes up."""

    def watch() -> None:
        try:
            container.wait(timeout=30)
        except Exception:  # noqa: BLE001 - the test ends first
            return
        fake.restart_container(NS, pod)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def make(cls, ctx, target: dict, **params):
    f = cls(cls.Params.model_validate(params), Selection(**target), ctx)
    f.prepare()
    return f


def test_backend_exec_reports_output_and_exit_code(backend, plain_pod) -> None:
    rc, out = backend.exec("plain-0", "app", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert rc == 3 and "out" in out and "err" in out
    assert backend.exec("plain-0", "app", ["true"]) == (0, "")


def test_container_kill_through_exec_kills_the_app_not_pause(fake, ctx, shared_pod) -> None:
    pause, app = shared_pod
    kubelet(fake, "shared-0", app)
    f = make(kf.ContainerKill, ctx, {"service": "shared"}, signal="SIGKILL", await_exit="20s")
    ev = f.apply()
    (k,) = ev["killed"]
    assert k["pid"] != 1 and k["restarts_before"] == 0 and k["restarts_after"] == 1
    assert app.wait(timeout=10)["StatusCode"] == 137
    pause.reload()
    assert pause.status == "running"
    execs = [r for r in fake.requests if r.path.endswith("/exec")]
    assert execs and execs[0].query["container"] == ["app"] and execs[0].query["command"][:2] == ["sh", "-c"]


def test_container_kill_of_pid1_reports_the_ignored_signal(ctx, plain_pod) -> None:
    f = make(kf.ContainerKill, ctx, {"service": "plain"}, signal="SIGKILL", await_exit="2s")
    with pytest.raises(FaultError, match="did not restart within 2s: PID 1 ignores signals"):
        f.apply()
    plain_pod.reload()
    assert plain_pod.status == "running"  # the kernel really dropped it


def test_container_pause_and_revert_through_exec(fake, ctx, shared_pod) -> None:
    pause, app = shared_pod

    def states() -> set[str]:
        out = pause.exec_run(["sh", "-c", "for p in /proc/[0-9]*; do awk '/^State:/{print $2}' $p/status; done"])
        return set(out.output.decode().split())

    f = make(kf.ContainerPause, ctx, {"service": "shared"}, duration="5s")
    ev = f.apply()
    stopped = ev["paused"][0]["stopped"]
    assert len(stopped) == 2  # the app's sh and its sleep
    assert "T" in states()
    rev = f.revert()
    assert sorted(rev["resumed"][0]["resumed"]) == sorted(stopped)
    assert "T" not in states()
