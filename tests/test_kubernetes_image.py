"""chaoskit's own image (Dockerfile.chaoskit, scripts/build-chaoskit-image.sh): it builds here
without pip inside docker build, runs ``chaoskit --version``, and works as the NET_ADMIN debug
container of network.loss / network.latency: the exact script the ephemeral container runs is
run here in a real container with real iptables, applied, held, and reverted the two ways
chaoskit reverts it (exec'd undo + stop file, and its own max_hold deadline)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from chaoskit.faults import kubernetes as kf
from chaoskit.runner.context import RunContext

ROOT = Path(__file__).resolve().parent.parent
TAG = "chaoskit/chaoskit:dev"

pytestmark = pytest.mark.slow
pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures


@pytest.fixture(scope="module")
def chaoskit_image(docker_client) -> str:
    # the base image is built by the shared fixture machinery when missing
    from chaoskit.images import ensure_base_image

    ensure_base_image(docker_client)
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-chaoskit-image.sh"), "--offline", TAG],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "chaoskit, version" in proc.stdout
    return TAG


def test_image_runs_chaoskit_as_non_root(docker_client, chaoskit_image: str) -> None:
    from chaoskit import __version__

    out = docker_client.containers.run(chaoskit_image, ["--version"], remove=True, labels={"chaoskit.test": "1"})
    assert out.decode().strip() == f"chaoskit, version {__version__}"
    out = docker_client.containers.run(
        chaoskit_image,
        ["-c", "id -u; command -v tc; command -v iptables; python -c 'import chaoskit.faults.kubernetes, kubernetes; print(42)'"],
        entrypoint="sh",
        remove=True,
        labels={"chaoskit.test": "1"},
    ).decode().split()
    assert out[0] == "10001" and out[-1] == "42"
    assert any(p.endswith("/tc") for p in out) and any(p.endswith("/iptables") for p in out)


def _fault(cls, **params):
    f = cls(cls.Params.model_validate(params), None, RunContext(run_id="img-test", seed=1))
    f.token = uuid.uuid4().hex[:10]
    f.ec_name = f"chaoskit-{f.token}"
    return f


def _debug_container(docker_client, image: str, network, spec: dict):
    """Run the ephemeral container spec the way the kubelet would: its command, NET_ADMIN, uid 0."""
    assert spec["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert spec["securityContext"]["runAsUser"] == 0
    return docker_client.containers.run(
        image,
        spec["command"][1:],
        entrypoint=spec["command"][0],
        user="0",
        cap_add=["NET_ADMIN"],
        network=network.name,
        detach=True,
        labels={"chaoskit.test": "1"},
        name=f"chaoskit-test-{spec['name']}",
    )


def _wait(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _rules(c) -> str:
    return c.exec_run(["iptables", "-w", "-S"]).output.decode()


def test_loss_container_applies_holds_and_reverts(docker_client, chaoskit_image, test_network) -> None:
    f = _fault(kf.NetworkLoss, percent=30, direction="both", image=chaoskit_image)
    c = _debug_container(docker_client, chaoskit_image, test_network, f.container_spec())
    try:
        assert _wait(lambda: c.exec_run(["test", "-e", "/tmp/chaoskit-applied"]).exit_code == 0), c.logs()
        rules = _rules(c)
        assert rules.count(f"chaoskit-{f.token}") == 2, rules
        assert re.search(r"--probability 0\.(3|2999)", rules) and "-A OUTPUT -o eth0" in rules and "-A INPUT -i eth0" in rules
        # what revert_record execs in the ephemeral container
        rc, _ = c.exec_run(["sh", "-c", f"{f.revert_cmds()}; touch /tmp/chaoskit-stop"])
        assert rc == 0
        assert f"chaoskit-{f.token}" not in _rules(c)
        assert c.wait(timeout=30)["StatusCode"] == 0  # it ends itself once told to
    finally:
        c.remove(force=True)


def test_debug_container_reverts_itself_at_max_hold(docker_client, chaoskit_image, test_network) -> None:
    f = _fault(kf.NetworkLoss, percent=50, max_hold="2s", image=chaoskit_image)
    c = _debug_container(docker_client, chaoskit_image, test_network, f.container_spec())
    try:
        assert _wait(lambda: c.exec_run(["test", "-e", "/tmp/chaoskit-applied"]).exit_code == 0), c.logs()
        t0 = time.monotonic()
        assert c.wait(timeout=30)["StatusCode"] == 0
        assert time.monotonic() - t0 < 10
    finally:
        c.remove(force=True)


def test_latency_without_netem_fails_loudly(docker_client, chaoskit_image, test_network) -> None:
    """This kernel has no sch_netem: the container must exit non-zero (so the fault's apply
    raises with the message), never sit there pretending to delay packets."""
    f = _fault(kf.NetworkLatency, delay="100ms", image=chaoskit_image)
    c = _debug_container(docker_client, chaoskit_image, test_network, f.container_spec())
    try:
        code = c.wait(timeout=30)["StatusCode"]
        logs = c.logs().decode()
        if code == 0:  # a kernel with netem: then the qdisc must really be there
            pytest.fail(f"expected no netem on this machine, container said: {logs}")
        assert "qdisc" in logs.lower() or "netem" in logs.lower(), logs
    finally:
        c.remove(force=True)


def test_loss_fault_end_to_end_through_the_fake_api(docker_client, chaoskit_image, test_network, fake, ctx) -> None:
    """network.loss as the backend drives it: the ephemeral container is added through the API
    (the FAKE API server), started here from exactly the spec the API received, and the revert
    goes through the exec API into it."""
    from chaoskit.backends.base import Selection

    f = kf.NetworkLoss(kf.NetworkLoss.Params.model_validate({"percent": 20, "image": chaoskit_image}),
                       Selection(service="broker"), ctx)
    f.prepare()
    pod = f.instances[0].name
    f.apply()
    (spec,) = fake.pods[("ledger", pod)]["spec"]["ephemeralContainers"]
    c = _debug_container(docker_client, chaoskit_image, test_network, spec)
    try:
        fake.exec_in("ledger", pod, c, container=f.ec_name)
        assert _wait(lambda: c.exec_run(["test", "-e", "/tmp/chaoskit-applied"]).exit_code == 0), c.logs()
        assert f"chaoskit-{f.token}" in _rules(c)
        out = f.revert()
        assert out["reverted"][0]["reverted"] is True
        assert c.wait(timeout=30)["StatusCode"] == 0  # the undo ran, then it exited by itself
        meta = fake.pods[("ledger", pod)]["metadata"]
        assert not any(k.startswith(kf.EC_ANNOTATION_PREFIX) for k in meta.get("annotations", {}))
        assert kf.RUN_LABEL not in meta["labels"]
    finally:
        c.remove(force=True)
