"""Kubernetes faults, probes, crash cleanup and the pod log follower against the FAKE API server
(tests/k8s_fake_apiserver.py). Exec-based paths (container.kill via exec, container.pause,
the ephemeral container's revert) need a real cluster: see tests/test_kubernetes_e2e.py."""

from __future__ import annotations

import json
import queue
import threading
import time

import pytest
from pydantic import ValidationError

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.errors import FaultError, TargetError
from chaoskit.faults import kubernetes as kf
from chaoskit.runner.context import RunContext

pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures
NS = "ledger"  # the namespace the fake is seeded in (kubernetes_helpers.NS)


def make(cls, ctx, target: dict | None = None, **params):
    f = cls(cls.Params.model_validate(params), Selection(**target) if target else None, ctx)
    f.prepare()
    return f


def pods_of(fake, prefix: str) -> list[str]:
    return sorted(n for (ns, n) in fake.pods if ns == NS and n.startswith(prefix))


def test_registry_and_dispatch() -> None:
    assert registry.faults.get("pod.delete") is kf.PodDelete
    assert registry.faults.get("deployment.scale") is kf.DeploymentScale
    for name in ("container.kill", "container.pause", "network.partition", "network.latency", "network.loss"):
        impl = kf.kubernetes_impl(name)
        assert impl is not None and impl.name == name
        assert registry.faults.get(name) is not impl  # the compose class stays registered
    assert kf.kubernetes_impl("db.lock") is None
    assert registry.probes.get("kubernetes.pod") is not None
    assert registry.probes.get("kubernetes.deployment") is not None


def test_pod_delete_grace_zero_and_replacement(fake, ctx) -> None:
    before = pods_of(fake, "ledger-api-")
    f = make(kf.PodDelete, ctx, {"service": "ledger-api"})
    rec = f.record()
    assert rec["k8s"]["namespace"] == NS and len(rec["pods"]) == 1
    ev = f.apply()
    victim = ev["deleted"][0]["pod"]
    dels = fake.deletes("/pods/")
    assert [r.path.rsplit("/", 1)[1] for r in dels] == [victim]
    assert dels[0].query["gracePeriodSeconds"] == ["0"]
    assert dels[0].body["preconditions"]["uid"] == f.instances[0].id
    after = pods_of(fake, "ledger-api-")
    assert victim not in after and len(after) == len(before) == 3  # the toy controller replaced it
    # a second delete of the same (now gone) pod is reported, not raised
    assert f.apply()["deleted"][0]["already_gone"] is True


def test_statefulset_pod_replaced_under_same_name_is_not_deleted_twice(fake, ctx) -> None:
    f = make(kf.PodDelete, ctx, {"owner": "postgres"})
    f.apply()
    assert pods_of(fake, "postgres-") == ["postgres-0"]  # same name, new uid
    ev = f.apply()  # the uid precondition protects the replacement
    assert ev["deleted"][0]["already_gone"] is True
    assert pods_of(fake, "postgres-") == ["postgres-0"]


def test_deployment_scale_apply_revert(fake, ctx) -> None:
    f = make(kf.DeploymentScale, ctx, {"owner": "ledger-api"}, replicas=1, duration="5s")
    assert f.duration == 5.0
    rec = f.record()
    assert rec["deployment"] == "ledger-api" and rec["original_replicas"] == 3
    assert f.apply() == {"deployment": "ledger-api", "from": 3, "to": 1}
    assert len(pods_of(fake, "ledger-api-")) == 1
    dep = fake.deployments[(NS, "ledger-api")]
    assert dep["metadata"]["annotations"][kf.REPLICAS_ANNOTATION] == "3"
    assert dep["metadata"]["labels"][kf.RUN_LABEL] == "run-k8s-test"
    f.revert()
    assert dep["spec"]["replicas"] == 3 and len(pods_of(fake, "ledger-api-")) == 3
    assert kf.REPLICAS_ANNOTATION not in dep["metadata"].get("annotations", {})
    assert kf.RUN_LABEL not in dep["metadata"]["labels"]
    f.revert()  # idempotent
    assert dep["spec"]["replicas"] == 3


def test_deployment_scale_needs_a_name_and_an_existing_deployment(ctx) -> None:
    with pytest.raises(FaultError, match="needs `deployment:`"):
        make(kf.DeploymentScale, ctx, replicas=0)
    with pytest.raises(TargetError, match="no deployment 'ghost'"):
        make(kf.DeploymentScale, ctx, replicas=0, deployment="ghost")
    with pytest.raises(ValidationError):
        kf.DeploymentScale.Params.model_validate({"replicas": -1})


def test_revert_from_ledger_record_alone_after_a_crash(fake, ctx) -> None:
    f = make(kf.DeploymentScale, ctx, replicas=0, deployment="broker")
    rec = json.loads(json.dumps(f.record()))  # what the on-disk ledger keeps
    f.apply()
    del f  # the runner died
    assert pods_of(fake, "broker-") == []
    out = kf.rollback_record(rec)  # no ctx: backend rebuilt from the record's kubeconfig
    assert out["revert"]["deployment"] == "broker" and out["revert"]["replicas"] == 1
    assert len(pods_of(fake, "broker-")) == 1


def test_chaoskit_rollback_reverts_and_sweeps_from_the_ledger(fake, ctx, tmp_path) -> None:
    """The real `chaoskit rollback` code path (chaoskit.runner.rollback) over an on-disk ledger."""
    from chaoskit.runner.ledger import FaultLedger
    from chaoskit.runner.rollback import rollback

    ledger = FaultLedger(tmp_path, ctx.run_id)
    part = make(kf.NetworkPartition, ctx, {"service": "ledger-api"})
    ledger.add(part.record())
    part.apply()
    scale = make(kf.DeploymentScale, ctx, replicas=0, deployment="broker")
    scale.apply()  # its ledger entry is "lost": the sweep of the partition's entry must undo it
    del part, scale
    assert fake.netpols and pods_of(fake, "broker-") == []
    report = rollback(tmp_path, log=lambda s: None)
    assert report["failed"] == 0 and report["reverted"] == 1, report
    assert fake.netpols == {}
    assert len(pods_of(fake, "broker-")) == 1
    assert not any(kf.RUN_LABEL in p["metadata"]["labels"] for (ns, _), p in fake.pods.items() if ns == NS)
    assert ledger.entries() == []


def test_partition_isolates_one_pod_and_rollback_removes_it(fake, ctx) -> None:
    f = make(kf.NetworkPartition, ctx, {"service": "ledger-api", "mode": "one"})
    victim = f.instances[0].name
    ev = f.apply()
    (pol,) = fake.netpols.values()
    meta, spec = pol["metadata"], pol["spec"]
    assert meta["labels"][kf.MANAGED_BY] == "chaoskit" and meta["labels"][kf.RUN_LABEL] == "run-k8s-test"
    key = kf.FAULT_LABEL_PREFIX + f.token
    assert spec["podSelector"] == {"matchLabels": {key: "true"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []  # selected with no allow rule: all ingress denied
    assert spec["egress"] == [kf._DNS]  # only DNS out
    labelled = [n for (ns, n), p in fake.pods.items() if key in p["metadata"]["labels"]]
    assert labelled == [victim] and ev["pods"] == [victim]
    f.revert()
    assert fake.netpols == {}
    assert not any(key in p["metadata"]["labels"] or kf.RUN_LABEL in p["metadata"]["labels"] for p in fake.pods.values())


def test_partition_between_services_with_ports(fake, ctx) -> None:
    f = make(kf.NetworkPartition, ctx, between=[["ledger-api"], ["postgres"]], ports=[5432])
    ev = f.apply()
    assert len(ev["policies"]) == 2
    by_name = {p["metadata"]["name"]: p["spec"] for p in fake.netpols.values()}
    api = by_name[f.policy_names[0]]
    assert api["podSelector"] == {"matchExpressions": [{"key": "app", "operator": "In", "values": ["ledger-api"]}]}
    # everyone but postgres; postgres itself only on ports other than 5432
    assert api["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0] == {
        "key": "app", "operator": "NotIn", "values": ["postgres"]
    }
    still = api["egress"][1]["ports"]
    assert {"protocol": "UDP", "port": 1, "endPort": 65535} in still
    assert {"protocol": "TCP", "port": 1, "endPort": 5431} in still
    assert {"protocol": "TCP", "port": 5433, "endPort": 65535} in still
    assert not any(p.get("port") == 5432 or (p.get("port", 0) <= 5432 <= p.get("endPort", 0) and p["protocol"] == "TCP") for p in still)
    assert by_name[f.policy_names[1]]["podSelector"]["matchExpressions"][0]["values"] == ["postgres"]
    kf.NetworkPartition.revert_record(f.record(), ctx)
    assert fake.netpols == {}


def test_partition_one_way_and_bad_params(fake, ctx) -> None:
    f = make(kf.NetworkPartition, ctx, **{"from": ["broker"], "to": ["ledger-api"]})
    f.apply()
    specs = {p["metadata"]["name"]: p["spec"] for p in fake.netpols.values()}
    assert specs[f.policy_names[0]]["policyTypes"] == ["Egress"]
    assert specs[f.policy_names[1]]["policyTypes"] == ["Ingress"]
    f.revert()
    with pytest.raises(ValidationError, match="one-way partition needs both"):
        kf.NetworkPartition.Params.model_validate({"from": ["a"]})
    with pytest.raises(ValidationError, match="only one group"):
        kf.NetworkPartition.Params.model_validate({"between": [["a"], ["a"]]})
    with pytest.raises(TargetError, match="'ghost' has no pods and no deployment"):
        make(kf.NetworkPartition, ctx, between=[["ghost"], ["broker"]])


def test_partition_reports_other_policies_that_punch_holes(fake, ctx, backend) -> None:
    backend.net.create_namespaced_network_policy(
        NS, {"metadata": {"name": "allow-api"}, "spec": {"podSelector": {"matchLabels": {"app": "ledger-api"}},
                                                         "ingress": [{}]}}
    )
    f = make(kf.NetworkPartition, ctx, {"service": "ledger-api"})
    assert f.apply()["other_policies"] == ["allow-api"]
    f.revert()
    assert list(fake.netpols) == [(NS, "allow-api")]  # never touches a policy it did not create


def test_latency_adds_an_ephemeral_net_admin_container(fake, ctx) -> None:
    f = make(kf.NetworkLatency, ctx, {"service": "broker"}, delay="200ms", jitter="20ms", image="tools:1")
    pod = fake.pods[(NS, f.instances[0].name)]
    ev = f.apply()
    (ec,) = pod["spec"]["ephemeralContainers"]
    assert ec["name"] == f.ec_name and ec["image"] == "tools:1"
    assert ec["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    script = ec["command"][-1]
    assert "tc qdisc add dev eth0 root netem delay 200.000ms 20.000ms" in script
    assert "tc qdisc del dev eth0 root" in script and "-lt 3600" in script  # self-revert deadline
    assert pod["metadata"]["labels"][kf.RUN_LABEL] == "run-k8s-test"
    note = json.loads(pod["metadata"]["annotations"][kf.EC_ANNOTATION_PREFIX + f.token])
    assert note["container"] == f.ec_name and "tc qdisc del" in note["revert"]
    assert ev["pods"][0]["ephemeral_container"] == f.ec_name


def test_loss_rules_and_param_errors(ctx) -> None:
    f = make(kf.NetworkLoss, ctx, {"service": "broker"}, percent=25, direction="both", ports=[8080])
    cmds = f.apply_cmds()
    assert "iptables -w -A OUTPUT -o eth0 -p tcp -m multiport --ports 8080 -m statistic" in cmds
    assert "--probability 0.250000" in cmds and "INPUT -i eth0" in cmds
    assert f.revert_cmds().count("iptables -w -D") == 2
    with pytest.raises(ValidationError, match="not supported on kubernetes"):
        kf.NetworkLoss.Params.model_validate({"percent": 5, "to": ["x"]})
    with pytest.raises(ValidationError):
        kf.NetworkLoss.Params.model_validate({"percent": 0})


def test_container_kill_params_and_delete_method(fake, ctx) -> None:
    assert kf.ContainerKill.Params.model_validate({"signal": 15}).signal == "SIGTERM"
    assert kf.ContainerKill.Params.model_validate({"signal": "kill"}).signal == "SIGKILL"
    with pytest.raises(ValidationError, match="unknown signal"):
        kf.ContainerKill.Params.model_validate({"signal": "SIGNOPE"})
    f = make(kf.ContainerKill, ctx, {"service": "broker"}, method="delete")
    f.apply()
    assert fake.deletes("/pods/")[0].query["gracePeriodSeconds"] == ["0"]


def test_exec_paths_fail_cleanly_on_the_fake(ctx) -> None:
    """The fake does not speak exec: the error is a clear TargetError, never a traceback."""
    f = make(kf.ContainerKill, ctx, {"service": "broker"})
    with pytest.raises(TargetError, match="exec in broker-"):
        f.apply()


def test_container_pause_needs_shared_process_namespace(fake, ctx) -> None:
    with pytest.raises(FaultError, match="shareProcessNamespace: true"):
        make(kf.ContainerPause, ctx, {"service": "broker"})
    fake.add_pod(NS, "shared", {"app": "shared"}, share_process_namespace=True)
    f = make(kf.ContainerPause, ctx, {"service": "shared"}, duration="1s")
    assert f.instances[0].name == "shared"


def test_faults_refuse_a_pod_of_another_namespace(fake, kubeconfig, ctx) -> None:
    from chaoskit.backends.kubernetes import KubernetesBackend

    fake.allowed_namespaces = {NS, "other"}
    decoy = KubernetesBackend("other", kubeconfig=str(kubeconfig)).find(Selection(service="ledger-api"))
    f = make(kf.PodDelete, ctx, {"service": "broker"})
    f.instances = decoy  # as if a bug handed over a foreign pod
    with pytest.raises(TargetError, match="refusing to touch ledger-api-decoy"):
        f.apply()
    assert ("other", "ledger-api-decoy") in fake.pods
    assert not [r for r in fake.requests if r.method != "GET" and "/namespaces/other/" in r.path]


def test_cleanup_run_removes_orphans_after_a_crash(fake, ctx, backend) -> None:
    part = make(kf.NetworkPartition, ctx, {"service": "ledger-api"})
    part.apply()
    scale = make(kf.DeploymentScale, ctx, replicas=0, deployment="broker")
    scale.apply()
    lat = make(kf.NetworkLatency, ctx, {"owner": "postgres"}, delay="50ms")
    lat.apply()
    # another run's partition must survive this run's cleanup
    other_ctx = RunContext(run_id="someone-else", seed=1, backend=backend)
    other = make(kf.NetworkPartition, other_ctx, {"service": "ledger-api"})
    other.apply()
    del part, scale  # the runner crashed: only the cluster remembers
    # the ephemeral container still runs; reverting it needs exec, which the fake lacks
    first = kf.cleanup_run(backend.api_client, NS, "run-k8s-test")
    assert len(first["networkpolicies"]) == 1 and first["networkpolicies"][0].startswith("chaoskit-partition-")
    assert first["deployments"] == ["broker"] and len(pods_of(fake, "broker-")) == 1
    assert any("postgres-0" in e for e in first["errors"])
    # its own max_hold timer ended it (as it would in a cluster): now cleanup completes
    pg = fake.pods[(NS, "postgres-0")]
    pg["status"]["ephemeralContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 0}}
    second = kf.cleanup_run(backend.api_client, NS, "run-k8s-test")
    assert "errors" not in second and second["pods"] == ["postgres-0"]
    assert not any(k.startswith(kf.EC_ANNOTATION_PREFIX) for k in pg["metadata"].get("annotations", {}))
    assert kf.RUN_LABEL not in pg["metadata"]["labels"]
    left = [p["metadata"]["labels"][kf.RUN_LABEL] for p in fake.netpols.values()]
    assert left == ["someone-else"]
    kf.cleanup_run(backend.api_client, NS, None)  # every run
    assert fake.netpols == {}
    assert not any(kf.RUN_LABEL in p["metadata"]["labels"] for (ns, _), p in fake.pods.items() if ns == NS)


# --- probes ---------------------------------------------------------------------------------


def probe(name: str, ctx, **params):
    cls = registry.probes.get(name)
    return cls(cls.Params.model_validate(params), ctx)


def test_pod_probe_phase_ready_restarts(fake, ctx) -> None:
    p = probe("kubernetes.pod", ctx, owner="ledger-api")
    s = p.read()
    assert s["count"] == 3 and s["ready"] is True and s["phase"] == "Running" and s["restarts"] == 0
    victim = s["pods"][0]["name"]
    fake.restart_container(NS, victim)
    fake.set_ready(NS, victim, False)
    assert probe("kubernetes.pod", ctx, owner="ledger-api", value="restarts").read() == 1
    assert probe("kubernetes.pod", ctx, owner="ledger-api", value="ready").read() is False
    assert probe("kubernetes.pod", ctx, service="ledger-api", value="ready_count").read() == 2
    assert probe("kubernetes.pod", ctx, pod=victim, value="count").read() == 1
    assert probe("kubernetes.pod", ctx, selector={"app": "ghost"}, value="ready").read() is False
    with pytest.raises(ValidationError, match="give selector"):
        registry.probes.get("kubernetes.pod").Params.model_validate({})


def test_deployment_probe_follows_a_delete(fake, ctx) -> None:
    d = probe("kubernetes.deployment", ctx, deployment="ledger-api")
    assert d.read()["available"] is True and d.read()["ready_replicas"] == 3
    pod = pods_of(fake, "ledger-api-")[0]
    fake.set_ready(NS, pod, False)
    assert probe("kubernetes.deployment", ctx, deployment="ledger-api", value="available").read() is False
    make(kf.PodDelete, ctx, {"service": "ledger-api", "instances": [pod]}).apply()
    assert probe("kubernetes.deployment", ctx, deployment="ledger-api", value="available").read() is True
    from chaoskit.errors import ProbeError

    with pytest.raises(ProbeError, match="no deployment 'ghost'"):
        probe("kubernetes.deployment", ctx, deployment="ghost").read()
    with pytest.raises(ProbeError, match="outside the target"):
        probe("kubernetes.deployment", ctx, deployment="ledger-api", namespace="other").read()


def test_probe_outside_a_kubernetes_run_uses_its_own_client(fake, kubeconfig) -> None:
    plain = RunContext(run_id="r", seed=1)
    p = probe("kubernetes.deployment", plain, deployment="broker", namespace=NS, kubeconfig=str(kubeconfig))
    assert p.read()["replicas"] == 1
    p.close()


# --- log follower ---------------------------------------------------------------------------


def test_log_follower_follows_pods_and_replacements(fake, backend) -> None:
    out: queue.Queue = queue.Queue()
    pod = pods_of(fake, "broker-")[0]
    fake.append_log(NS, pod, "old line, before following")
    follower = backend.follow_logs(Selection(service="broker"), out)
    follower.rescan = 0.2
    try:
        time.sleep(0.5)
        fake.append_log(NS, pod, "trade.open.begin id=1")
        name, line, t = out.get(timeout=5)
        assert (name, line) == (pod, "trade.open.begin id=1") and t <= time.monotonic()
        # the pod dies; its replacement's lines arrive too
        with fake.lock:
            fake._delete_pod(NS, pod)
        new = pods_of(fake, "broker-")[0]
        assert new != pod
        time.sleep(0.6)
        fake.append_log(NS, new, "after restart")
        name, line, _ = out.get(timeout=5)
        assert (name, line) == (new, "after restart")
        assert out.empty()  # nothing duplicated, the old line never came
    finally:
        follower.stop()
    with pytest.raises(TargetError, match="no pod matches"):
        backend.follow_logs(Selection(service="ghost"), out)


def test_log_follower_iterator_stops(fake, backend) -> None:
    pod = pods_of(fake, "broker-")[0]
    follower = backend.follow_logs(Selection(service="broker"), since=0)
    fake.append_log(NS, pod, "one")
    got: list[str] = []

    def consume() -> None:
        for _ts, line in follower:
            got.append(line)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    fake.close_log(NS, pod)  # a container restart ends the stream; the follower re-opens it
    time.sleep(0.7)
    fake.logs[(NS, pod)].closed = False
    fake.append_log(NS, pod, "two")
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    follower.stop()
    t.join(timeout=3)
    assert not t.is_alive()
    assert got == ["one", "two"]
