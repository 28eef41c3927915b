"""`chaoskit run` and `chaoskit rollback` (the real CLI, in a subprocess) against the FAKE API
server (tests/k8s_fake_apiserver.py): the runner dispatches to the Kubernetes faults, holds and
reverts them, and after the runner is SIGKILLed mid-fault the fault ledger alone lets
`chaoskit rollback` remove everything it left in the cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures
NS = "ledger"
CLI = [sys.executable, "-c", "from chaoskit.cli import main; main()"]


def experiment(path: Path, kubeconfig: Path, method: str) -> Path:
    path.write_text(
        f"""chaoskit: 1
title: kubernetes through the fake
target:
  kubernetes: {{namespace: {NS}, kubeconfig: {kubeconfig}}}
hypothesis:
  - {{name: ledger-api available, probe: kubernetes.deployment, deployment: ledger-api,
     value: available, expect: {{equals: true}}, within: 10s}}
method:
{method}
"""
    )
    return path


def chaoskit(args: list[str], state: Path, **kw):
    env = dict(os.environ, CHAOSKIT_STATE_DIR=str(state))
    return subprocess.run([*CLI, *args], env=env, capture_output=True,
                          text=True, **kw)


def test_run_applies_and_reverts_kubernetes_faults(fake, kubeconfig, tmp_path) -> None:
    exp = experiment(tmp_path / "exp.yaml", kubeconfig, """\
  - fault: pod.delete
    target: {service: ledger-api, mode: one}
  - fault: deployment.scale
    deployment: broker
    replicas: 0
    duration: 1s
  - fault: network.partition
    between: [[ledger-api], [postgres]]
    ports: [5432]
    duration: 1s
  - wait: {until: hypothesis, timeout: 10s}""")
    p = chaoskit(["run", str(exp), "--seed", "5", "--reports-dir", str(tmp_path / "r"), "--output", "json"],
                 tmp_path / "state", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed"
    dels = fake.deletes("/pods/")
    assert len(dels) == 1 and dels[0].query["gracePeriodSeconds"] == ["0"]
    created = [r.body["metadata"]["name"] for r in fake.requests if r.method == "POST"]
    removed = [r.path.rsplit("/", 1)[1] for r in fake.deletes("/networkpolicies/")]
    assert len(created) == 2 and sorted(created) == sorted(removed)
    scales = [r.body["spec"]["replicas"] for r in fake.requests if r.path.endswith("/broker/scale") and r.method == "PATCH"]
    assert scales == [0, 1]
    assert fake.netpols == {} and fake.deployments[(NS, "broker")]["spec"]["replicas"] == 1
    journal = json.loads(Path(out["journal"]).read_text())
    assert "chaoskit-partition-" in json.dumps(journal)  # the policy names are in the evidence


def test_rollback_after_the_runner_is_killed(fake, kubeconfig, tmp_path) -> None:
    exp = experiment(tmp_path / "exp.yaml", kubeconfig, """\
  - fault: deployment.scale
    deployment: broker
    replicas: 0
  - fault: network.partition
    between: [[ledger-api], [broker]]
    duration: 60s""")
    state = tmp_path / "state"
    env = dict(os.environ, CHAOSKIT_STATE_DIR=str(state))
    proc = subprocess.Popen(
        [*CLI, "run", str(exp), "--reports-dir", str(tmp_path / "r"), "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(fake.netpols) < 2:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        assert len(fake.netpols) == 2  # both faults are in force
    finally:
        proc.send_signal(signal.SIGKILL)  # no rollback of its own: only the ledger remembers
        proc.wait(timeout=10)
    assert fake.deployments[(NS, "broker")]["spec"]["replicas"] == 0 and len(fake.netpols) == 2
    listed = chaoskit(["rollback", "--list"], state, timeout=60)
    assert "deployment.scale" in listed.stdout, listed.stdout + listed.stderr
    p = chaoskit(["rollback", "--all"], state, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert fake.deployments[(NS, "broker")]["spec"]["replicas"] == 1
    assert fake.netpols == {}
    assert not any("chaoskit.io/run-id" in d["metadata"]["labels"] for d in fake.deployments.values())
    assert chaoskit(["rollback", "--list"], state, timeout=60).stdout.strip() == ""


def test_log_trigger_follows_pod_logs(fake, kubeconfig, tmp_path) -> None:
    """`when: {log: ...}` on a kubernetes target: the fault fires on a pod's log line."""
    import threading

    exp = experiment(tmp_path / "exp.yaml", kubeconfig, """\
  - fault: pod.delete
    target: {service: ledger-api, mode: one}
    when: {log: {service: ledger-api, match: 'trade\\.open\\.begin id=7$'}, within: 30s}""")
    stop = threading.Event()
    first_match: list[float] = []

    def talk() -> None:
        # speak only once the runner follows the logs, like a real trade arriving mid-run
        while not stop.is_set() and not any(r.path.endswith("/log") for r in fake.requests):
            stop.wait(0.05)
        stop.wait(1.0)
        pods = [name for (ns, name) in list(fake.pods) if ns == NS and name.startswith("ledger-api-")]
        for name in pods:
            fake.append_log(NS, name, "trade.open.begin id=6")  # no match
        stop.wait(0.5)
        first_match.append(time.time())
        for name in pods:
            fake.append_log(NS, name, "trade.open.begin id=7")

    t = threading.Thread(target=talk, daemon=True)
    t.start()
    try:
        p = chaoskit(["run", str(exp), "--reports-dir", str(tmp_path / "r"), "--output", "json"],
                     tmp_path / "state", timeout=120)
    finally:
        stop.set()
        t.join(timeout=5)
    assert p.returncode == 0, p.stdout + p.stderr
    dels = fake.deletes("/pods/")
    assert len(dels) == 1
    assert first_match, "the matching line was never written"
    journal = json.loads(Path(json.loads(p.stdout.strip().splitlines()[-1])["journal"]).read_text())
    assert "id=7" in json.dumps(journal) and "id=6" not in json.dumps(journal)  # fired on the right line
    logs = [r for r in fake.requests if r.path.endswith("/log")]
    assert logs and all(r.query.get("follow") == ["true"] for r in logs)
