"""Network faults against real containers: partitions cut exactly what they should, loss and
bandwidth measurably bite, latency says clearly why it cannot work here, rollback leaves nothing."""

from __future__ import annotations

import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import ValidationError

from chaoskit import netns
from chaoskit.backends.base import Selection
from chaoskit.backends.compose import ComposeBackend
from chaoskit.errors import FaultError
from chaoskit.faults import network as nf
from chaoskit.runner.context import RunContext
from tests.netfault_helpers import _label_helpers, host_can_connect, stack  # noqa: F401 - fixtures


def _ctx(stack_, docker_client) -> RunContext:  # noqa: F811
    return RunContext(
        run_id=f"t-{uuid.uuid4().hex[:6]}", seed=1, backend=ComposeBackend(stack_.project, client=docker_client)
    )


def _fault(cls: type, ctx: RunContext, target: str | None = None, **params: Any) -> Any:
    f = cls(cls.Params.model_validate(params), Selection(service=target) if target else None, ctx)
    f.prepare()
    return f


def _chaoskit_rules(stack_, svc: str) -> list[netns.Rule]:  # noqa: F811
    ex = netns.executor_for(stack_.containers[svc], prefer="nsenter")
    return netns.rules_with_marker(ex, "chaoskit:")


def test_partition_cuts_pair_keeps_third_and_foreign_rule(stack, docker_client) -> None:  # noqa: F811
    ctx = _ctx(stack, docker_client)
    ex_a = netns.executor_for(stack.containers["a"], prefer="nsenter")
    foreign = ["-A", "INPUT", "-s", "192.0.2.99", "-j", "DROP"]
    netns.iptables(ex_a, "filter", foreign)  # somebody else's rule, no chaoskit comment
    try:
        f = _fault(nf.Partition, ctx, between=[["a"], ["b"]])
        rec = f.record()
        assert {n["name"] for n in rec["namespaces"]} == {stack.containers[s].name for s in "ab"}
        ev = f.apply()
        assert ev["path"] == "path: nsenter (root on the docker host)"
        assert all(len(n["rules"]) == 2 for n in ev["namespaces"])  # INPUT + OUTPUT on each side
        assert stack.connect_error("a", "b", timeout=0.5) == "TimeoutError"  # drop: connects hang
        assert stack.connect_error("b", "a", timeout=0.5) == "TimeoutError"
        assert stack.can_connect("a", "c")
        assert stack.can_connect("c", "b")
        back = f.revert()
        assert back["took_effect"] is True and back["packets"] > 0
        assert stack.can_connect("a", "b") and stack.can_connect("b", "a")
        assert _chaoskit_rules(stack, "a") == [] and _chaoskit_rules(stack, "b") == []
        assert any(r.spec[:2] == ["-s", "192.0.2.99/32"] for r in netns.all_rules(ex_a))
        assert f.revert()["namespaces"][0]["rules"] == []  # idempotent
    finally:
        netns.iptables(ex_a, "filter", ["-D", *foreign[1:]])


def test_partition_nobody_talked_is_reported(stack, docker_client) -> None:  # noqa: F811
    f = _fault(nf.Partition, _ctx(stack, docker_client), between=[["a"], ["c"]], ports=[7999])
    f.apply()
    back = f.revert()
    assert back["took_effect"] is False and back["packets"] == 0


def test_one_way_reject_on_a_port_via_helper_and_crash_revert(stack, docker_client) -> None:  # noqa: F811
    ctx = _ctx(stack, docker_client)
    f = _fault(nf.Partition, ctx, via="helper", mode="reject", ports=[7000], **{"from": ["a"], "to": ["b"]})
    ev = f.apply()
    assert ev["path"] == "path: helper container (asked for)"
    assert stack.connect_error("a", "b", 7000, timeout=3.0) == "ConnectionRefusedError"  # a reset, not a hang
    assert stack.can_connect("a", "b", 7001)  # other ports untouched
    assert stack.can_connect("c", "b", 7000)
    # a brand-new process has only the ledger's JSON
    record = json.loads(json.dumps(f.record()))
    back = nf.Partition.revert_record(record, None)
    assert back["took_effect"] is True
    assert all(n["path"] == "path: helper container (asked for)" for n in back["namespaces"])
    assert stack.can_connect("a", "b", 7000)
    assert _chaoskit_rules(stack, "a") == [] and _chaoskit_rules(stack, "b") == []
    helpers = docker_client.containers.list(all=True, filters={"label": "chaoskit.helper=1"})
    assert not [h for h in helpers if h.labels.get("chaoskit.test") == "1"]


def test_loss_30_percent_drops_connects(stack, docker_client) -> None:  # noqa: F811
    ip = stack.ip("b")

    def fraction_failed(n: int) -> float:
        with ThreadPoolExecutor(8) as pool:
            ok = list(pool.map(lambda _: host_can_connect(ip, 7000, 0.3), range(n)))
        return 1 - sum(ok) / n

    assert fraction_failed(60) == 0.0
    f = _fault(nf.Loss, _ctx(stack, docker_client), target="b", percent=30)
    f.apply()
    try:
        # egress loss drops the SYN-ACK with p=0.3; its retransmit (1 s) is after our 0.3 s timeout
        failed = fraction_failed(200)
    finally:
        back = f.revert()
    print(f"loss 30%: {failed:.2f} of connects failed")
    assert 0.15 <= failed <= 0.5, failed
    assert back["took_effect"] is True and back["packets"] > 0
    assert fraction_failed(40) == 0.0
    assert _chaoskit_rules(stack, "b") == []


def _download(ip: str, n: int) -> float:
    """Bytes/s of an n-byte transfer from the container, timed from the first byte."""
    s = socket.create_connection((ip, 7001), timeout=10)
    s.sendall(f"{n}\n".encode())
    got = len(s.recv(65536))
    t0 = time.monotonic()
    while got < n:
        chunk = s.recv(262144)
        if not chunk:
            break
        got += len(chunk)
    dt = time.monotonic() - t0
    s.close()
    assert got == n
    return got / dt


def test_bandwidth_limits_transfer(stack, docker_client) -> None:  # noqa: F811
    ip = stack.ip("c")
    f = _fault(nf.Bandwidth, _ctx(stack, docker_client), target="c", rate="8mbit")
    ev = f.apply()
    assert ev["namespaces"][0]["qdiscs"][0]["handle"] == netns.QDISC_HANDLE
    try:
        rate_bits = _download(ip, 3_000_000) * 8
    finally:
        back = f.revert()
    print(f"bandwidth 8mbit: measured {rate_bits / 1e6:.2f} mbit/s")
    assert 0.8 * 8e6 <= rate_bits <= 1.2 * 8e6, rate_bits
    assert back["took_effect"] is True
    ex = netns.executor_for(stack.containers["c"], prefer="nsenter")
    q = netns.root_qdisc(ex, "eth0")
    assert q is None or q["handle"] != netns.QDISC_HANDLE
    assert _download(ip, 3_000_000) * 8 > 2 * 8e6  # unshaped again


def _kernel_has_netem(stack_) -> bool:  # noqa: F811
    """Asked of the kernel itself, independently of the fault code."""
    ex = netns.executor_for(stack_.containers["a"], prefer="nsenter")
    res = ex.run(["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "fff1:", "netem", "delay", "1ms"],
                 check=False)
    if res.returncode == 0:
        ex.run(["tc", "qdisc", "del", "dev", "eth0", "root", "handle", "fff1:"])
        return True
    assert "qdisc kind is unknown" in res.output, res.output
    return False


@pytest.mark.parametrize(
    ("cls", "params", "expected"),
    [
        (nf.Latency, {"delay": "100ms"},
         "network.latency: this kernel has no sch_netem (tc netem unavailable); use the proxy path: "
         "fault `proxy.latency` (built-in TCP fault proxy) — see docs"),
        (nf.Jitter, {"jitter": "20ms"},
         "network.jitter: this kernel has no sch_netem (tc netem unavailable); use the proxy path: "
         "fault `proxy.jitter` (built-in TCP fault proxy) — see docs"),
    ],
)
def test_latency_without_netem_says_so(stack, docker_client, cls, params, expected) -> None:  # noqa: F811
    f = _fault(cls, _ctx(stack, docker_client), target="a", **params)
    if _kernel_has_netem(stack):  # users' kernels: the netem path must then really work
        ev = f.apply()
        assert ev["namespaces"][0]["qdiscs"][0]["kind"] == "netem"
        f.revert()
    else:  # this machine: one clear line pointing to the proxy path
        with pytest.raises(FaultError) as exc:
            f.apply()
        assert str(exc.value) == expected
    ex = netns.executor_for(stack.containers["a"], prefer="nsenter")
    q = netns.root_qdisc(ex, "eth0")
    assert q is None or q["handle"] != netns.QDISC_HANDLE


def test_disconnect_and_reconnect(stack, docker_client) -> None:  # noqa: F811
    f = _fault(nf.Disconnect, _ctx(stack, docker_client), target="c", network=stack.network.name)
    ev = f.apply()
    assert ev["took_effect"] is True and ev["containers"][0]["disconnected"] == [stack.network.name]
    c = stack.containers["c"]
    c.reload()
    assert stack.network.name not in c.attrs["NetworkSettings"]["Networks"]
    back = nf.Disconnect.revert_record(json.loads(json.dumps(f.record())), None)
    assert back["containers"][0]["result"].startswith("reattached")
    assert stack.can_connect("a", "c")
    assert nf.Disconnect.revert_record(f.record(), None)["containers"][0]["result"] == "already attached"


def test_bad_input_is_a_clear_error(stack, docker_client) -> None:  # noqa: F811
    ctx = _ctx(stack, docker_client)
    with pytest.raises(FaultError, match="service 'nope' has no running container in compose project"):
        _fault(nf.Partition, ctx, between=[["a"], ["nope"]])
    with pytest.raises(FaultError, match="not attached to network 'elsewhere'"):
        _fault(nf.Disconnect, ctx, target="a", network="elsewhere")
    for bad, msg in [
        ({"between": [["a"]]}, "at least two non-empty groups"),
        ({"from": ["a"]}, "needs both from: and to:"),
        ({"between": [["a"], ["b"]], "ports": [1], "protocol": "all"}, "ports need protocol tcp or udp"),
        ({"between": [["a"], ["a", "b"]]}, "only one group"),
        ({"between": [["a"], ["b"]], "mode": "explode"}, "'drop' or 'reject'"),
    ]:
        with pytest.raises(ValidationError, match=msg):
            nf.Partition.Params.model_validate(bad)
    with pytest.raises(ValidationError, match="expected a rate like 8mbit"):
        nf.Bandwidth.Params.model_validate({"rate": "fast"})
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        nf.Loss.Params.model_validate({"percent": 130})


def test_revert_after_target_restart_finds_nothing_to_remove(stack, docker_client) -> None:  # noqa: F811
    f = _fault(nf.Partition, _ctx(stack, docker_client), between=[["a"], ["b"]])
    f.apply()
    record = json.loads(json.dumps(f.record()))
    stack.containers["b"].restart(timeout=0)
    back = nf.Partition.revert_record(record, None)
    by_name = {n["container"]: n for n in back["namespaces"]}
    assert by_name[stack.containers["b"].name]["result"].startswith("container restarted")
    assert by_name[stack.containers["a"].name]["result"] == "removed"
    assert _chaoskit_rules(stack, "a") == [] and _chaoskit_rules(stack, "b") == []
    deadline = time.monotonic() + 20
    while not stack.can_connect("a", "b"):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_partition_groups_keep_inside_traffic_and_sweep(stack, docker_client) -> None:  # noqa: F811
    f = _fault(nf.Partition, _ctx(stack, docker_client), between=[["a"], ["b", "c"]], mode="reject")
    f.apply()
    assert not stack.can_connect("a", "b", timeout=0.5) and not stack.can_connect("c", "a", timeout=0.5)
    assert stack.can_connect("b", "c") and stack.can_connect("c", "b")
    # a crashed runner with no ledger: the sweep still finds and removes the marked rules
    out = nf.Partition.sweep(list(stack.containers.values()))
    assert set(out["cleaned"]) == {stack.containers[s].name for s in "abc"}
    # 2 peers x INPUT/OUTPUT x (tcp-reset rule + icmp-unreachable rule for the rest)
    assert out["cleaned"][stack.containers["a"].name]["rules"] == 8
    assert stack.can_connect("a", "b") and stack.can_connect("c", "a")
    assert f.revert()["took_effect"] is False  # nothing left for the revert: swept already


def test_partition_ipv6(docker_client, base_image) -> None:
    from tests.netfault_helpers import make_stack, remove_stack

    s6 = make_stack(docker_client, base_image, ("a", "b"), ipv6=True)
    try:
        assert s6.can_connect("a", "b", family=6)
        f = _fault(nf.Partition, _ctx(s6, docker_client), between=[["a"], ["b"]])
        f.apply()
        assert not s6.can_connect("a", "b", timeout=0.5, family=6)
        assert not s6.can_connect("a", "b", timeout=0.5, family=4)
        back = f.revert()
        assert back["took_effect"] is True
        assert {r["binary"] for n in back["namespaces"] for r in n["rules"]} == {"iptables", "ip6tables"}
        assert s6.can_connect("a", "b", family=6) and s6.can_connect("b", "a", family=6)
        assert _chaoskit_rules(s6, "a") == [] and _chaoskit_rules(s6, "b") == []
    finally:
        remove_stack(s6)


def _cli(*args: str, state_dir: Any, popen: bool = False) -> Any:
    import os
    import subprocess
    import sys

    env = dict(os.environ, CHAOSKIT_STATE_DIR=str(state_dir))
    cmd = [sys.executable, "-m", "chaoskit", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _wait_for_rules(stack_, svc: str, timeout: float = 60.0) -> list[netns.Rule]:  # noqa: F811
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rules = _chaoskit_rules(stack_, svc)
        if rules:
            return rules
        time.sleep(0.2)
    raise AssertionError(f"no chaoskit rule appeared in {svc}")


def test_experiment_partition_then_crash_rollback(stack, docker_client, tmp_path) -> None:  # noqa: F811
    """Through the real runner: a timed partition heals itself with counter evidence; a runner
    killed mid-partition leaves a ledger entry that `chaoskit rollback` (a new process) undoes."""
    import signal

    head = f"chaoskit: 1\ntitle: net\ntarget:\n  compose: {{project: {stack.project}}}\n"
    timed = tmp_path / "timed.yaml"
    timed.write_text(head + (
        "method:\n"
        "  - {fault: network.partition, name: cut a|b, between: [[a], [b]], mode: reject, duration: 3s}\n"
    ))
    state = tmp_path / "state"
    journal = tmp_path / "j.json"
    proc = _cli("run", str(timed), "--journal", str(journal), state_dir=state, popen=True)
    try:
        _wait_for_rules(stack, "a")
        assert not stack.can_connect("a", "b", timeout=0.5)  # traffic for the evidence
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    data = json.loads(journal.read_text())
    (fault,) = data["faults"]
    assert fault["evidence"]["path"] == "path: nsenter (root on the docker host)"
    revert = next(s for s in data["steps"] if s["phase"] == "revert")
    assert revert["evidence"]["took_effect"] is True and revert["evidence"]["packets"] > 0
    assert _chaoskit_rules(stack, "a") == [] and stack.can_connect("a", "b")

    held = tmp_path / "held.yaml"
    held.write_text(head + (
        "method:\n"
        "  - {fault: network.partition, name: cut a|b, between: [[a], [b]]}\n"
        "  - pause: 60s\n"
    ))
    proc = _cli("run", str(held), state_dir=state, popen=True)
    try:
        _wait_for_rules(stack, "b")
        assert not stack.can_connect("b", "a", timeout=0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert _chaoskit_rules(stack, "a"), "a SIGKILLed runner reverts nothing itself"
    r = _cli("rollback", "--all", state_dir=state)
    assert r.returncode == 0, r.stderr
    assert "reverted 1, failed 0" in r.stdout
    assert _chaoskit_rules(stack, "a") == [] and _chaoskit_rules(stack, "b") == []
    assert stack.can_connect("a", "b") and stack.can_connect("b", "a")


def test_loss_to_one_peer_only_and_shaping_faces_the_peer(stack, docker_client) -> None:  # noqa: F811
    ctx = _ctx(stack, docker_client)
    f = _fault(nf.Loss, ctx, target="a", percent=100, to=["c"], direction="both", ports=[7000])
    f.apply()
    try:
        assert not stack.can_connect("a", "c", timeout=0.5)
        assert stack.can_connect("a", "c", 7001)  # another port
        assert stack.can_connect("a", "b")  # another peer
    finally:
        back = f.revert()
    assert back["took_effect"] is True
    assert stack.can_connect("a", "c")
    bw = _fault(nf.Bandwidth, ctx, target="b", rate="1mbit", to=["a"])
    (ns,) = bw.record()["namespaces"]
    assert [q["dev"] for q in ns["qdiscs"]] == ["eth0"]
    assert ns["qdiscs"][0]["args"][:3] == ["tbf", "rate", "1000000bit"]
