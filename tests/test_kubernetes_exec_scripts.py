"""The shell that container.kill / container.pause exec into a pod's container, run for real with
``docker exec`` (the same namespaces a Kubernetes exec lands in: the container's mount and PID
namespaces). Two layouts: a container with its own PID namespace (the app is PID 1), and a
pod-like pair sharing one PID namespace (``shareProcessNamespace: true``: a "pause" process is
PID 1 and the app is an ordinary process)."""

from __future__ import annotations

import time
import uuid

import pytest

from chaoskit.faults import kubernetes as kf


def _script(template: str, sig: str) -> list[str]:
    return ["sh", "-c", template.replace("-s SIG", f"-s {sig}")]


def _state(c, pid: int) -> str:
    out = c.exec_run(["sh", "-c", f"awk '/^State:/{{print $2}}' /proc/{pid}/status"]).output.decode().strip()
    return out


@pytest.fixture()
def pod(docker_client, base_image):
    """A "pause" container and an "app" container joined to its PID namespace."""
    tag = uuid.uuid4().hex[:8]
    pause = docker_client.containers.run(
        base_image, ["sleep", "infinity"], detach=True, name=f"chaoskit-test-pause-{tag}",
        labels={"chaoskit.test": "1"}, network_mode="none",
    )
    app = docker_client.containers.run(
        base_image, ["sh", "-c", "sleep 1000 & sleep 1000 & wait"], detach=True,
        name=f"chaoskit-test-app-{tag}", labels={"chaoskit.test": "1"},
        pid_mode=f"container:{pause.id}", network_mode="none",
    )
    time.sleep(0.5)
    yield pause, app
    for c in (app, pause):
        c.remove(force=True)


def test_kill_script_targets_pid1_in_its_own_namespace_and_the_kernel_ignores_it(docker_client, base_image) -> None:
    c = docker_client.containers.run(
        base_image, ["sleep", "1000"], detach=True, labels={"chaoskit.test": "1"}, network_mode="none",
        name=f"chaoskit-test-pid1-{uuid.uuid4().hex[:8]}",
    )
    try:
        rc, out = c.exec_run(_script(kf._KILL_MAIN, "KILL"))
        assert rc == 0 and "pid:1" in out.decode()
        time.sleep(1.0)
        c.reload()
        # PID 1 has no SIGKILL handler, so a kill from inside its namespace is dropped: exactly
        # why ContainerKill checks for the restart and says "use method: delete"
        assert c.status == "running"
    finally:
        c.remove(force=True)


def test_kill_script_with_shared_pid_namespace_kills_the_app_not_pause(pod) -> None:
    pause, app = pod
    # signal 0 first: the same selection, nothing sent, so we learn which pid it picks
    rc, out = app.exec_run(_script(kf._KILL_MAIN, "0"))
    text = out.decode()
    assert rc == 0 and "pid:" in text, text
    pid = int(text.split("pid:")[1].split()[0])
    assert pid != 1
    main = pause.exec_run(["sh", "-c", f"cat /proc/{pid}/cmdline | tr '\\0' ' '"]).output.decode()
    assert main.startswith("sh -c sleep 1000"), main  # the app's main process
    # the real kill, detached: Docker 20.10 may never end the stream of an exec whose
    # container it just killed (shared PID namespace)
    app.client.api.exec_start(app.client.api.exec_create(app.id, _script(kf._KILL_MAIN, "KILL"))["Id"], detach=True)
    assert app.wait(timeout=20)["StatusCode"] == 137  # the app's main process died of SIGKILL
    pause.reload()
    assert pause.status == "running"  # the pod sandbox survived


def test_pause_script_stops_and_resumes_only_this_container(pod) -> None:
    pause, app = pod
    rc, out = app.exec_run(_script(kf._SIGNAL_CONTAINER, "STOP"))
    text = out.decode()
    assert rc == 0 and text.startswith("pids:"), text
    pids = [int(p) for p in text.split(":", 1)[1].split()]
    assert len(pids) == 3 and 1 not in pids  # sh + two sleeps; never the pause process
    assert all(_state(pause, p) == "T" for p in pids)
    assert _state(pause, 1) == "S"
    rc, out = app.exec_run(_script(kf._SIGNAL_CONTAINER, "CONT"))
    assert rc == 0
    assert all(_state(pause, p) == "S" for p in pids)
