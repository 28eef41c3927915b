"""Proxy faults on real containers (transparent DNAT steering through the host-side proxy) and the
toxiproxy.* faults against the built-in proxy's Toxiproxy API."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chaoskit import registry
from chaoskit.backends.base import Selection
from chaoskit.backends.compose import ComposeBackend
from chaoskit.errors import FaultError
from chaoskit.proxy.api import ApiServer
from chaoskit.runner.context import RunContext
from tests.proxy_helpers import EchoServer, connect, echo_server, median_ms, round_trips

pytestmark = pytest.mark.timeout(120)

PORT = 7100
ECHO = r"""
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7100)); s.listen(64)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            return c.close()
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
# median round trip in ms over a fresh connection, measured inside the client container
RTT = (
    "import socket,sys,time,statistics\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=10)\n"
    "c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\n"
    "out=[]\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    t=time.perf_counter(); c.sendall(b'p'*64); got=b''\n"
    "    while len(got)<64: got+=c.recv(64)\n"
    "    out.append(time.perf_counter()-t)\n"
    "print(statistics.median(out)*1000)\n"
)


@dataclass
class Stack:
    project: str
    network: Any
    client: Any
    server: Any

    @property
    def server_ip(self) -> str:
        self.server.reload()
        return self.server.attrs["NetworkSettings"]["Networks"][self.network.name]["IPAddress"]

    def rtt_ms(self, n: int = 5) -> float:
        code, out = self.client.exec_run(["python3", "-c", RTT, self.server_ip, str(PORT), str(n)])
        assert code == 0, out
        return float(out.decode().strip())

    def iptables_save(self) -> str:
        self.client.reload()
        pid = self.client.attrs["State"]["Pid"]
        return subprocess.run(
            ["nsenter", "-t", str(pid), "-n", "iptables-save"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout


@pytest.fixture(scope="module")
def stack(docker_client: Any, base_image: str) -> Iterator[Stack]:
    project = f"ckproxy{uuid.uuid4().hex[:8]}"
    labels = {"chaoskit.test": "1", "com.docker.compose.project": project}
    net = docker_client.networks.create(f"{project}_default", driver="bridge", labels=labels)
    made: list[Any] = []
    try:
        for service, cmd in (("server", ["python3", "-c", ECHO]), ("client", ["sleep", "900"])):
            made.append(
                docker_client.containers.run(
                    base_image,
                    cmd,
                    name=f"{project}_{service}_1",
                    detach=True,
                    network=net.name,
                    labels=labels | {"com.docker.compose.service": service},
                )
            )
        st = Stack(project, net, made[1], made[0])
        for _ in range(50):  # the echo server is up
            code, _ = st.client.exec_run(
                ["python3", "-c", RTT, st.server_ip, str(PORT), "1"], demux=False
            )
            if code == 0:
                break
            time.sleep(0.1)
        yield st
    finally:
        for c in made:
            c.remove(force=True)
        net.remove()


def _ctx(stack: Stack, docker_client: Any) -> RunContext:
    backend = ComposeBackend(stack.project, client=docker_client)
    return RunContext(run_id=f"t{uuid.uuid4().hex[:6]}", seed=3, backend=backend)


def _fault(name: str, ctx: RunContext, **params: Any) -> Any:
    cls = registry.faults.get(name)
    assert cls is not None
    return cls(cls.Params(**params), Selection(service="client"), ctx)


def test_proxy_latency_steers_client_connections_transparently(
    stack: Stack, docker_client: Any
) -> None:
    base = stack.rtt_ms(10)
    assert base < 50
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.latency", ctx, to=f"server:{PORT}", latency="200ms")
    f.prepare()
    ev = f.apply()
    try:
        rules = ev["namespaces"][0]["rules"]
        assert len(rules) == 1 and rules[0]["comment"] == f.marker
        assert "DNAT" in rules[0]["rule"] and stack.server_ip in rules[0]["rule"]
        assert f.marker in stack.iptables_save()
        slow = stack.rtt_ms(5)
        assert 160 <= slow - base <= 240 + base, slow
    finally:
        rev = f.revert()
    assert rev["packets"] > 0  # the DNAT rule matched the client's connection
    assert rev["took_effect"] and rev["bytes_delayed"] >= 5 * 64
    toxic = rev["proxies"][0]["toxics"]["latency_downstream"]
    assert toxic["delay_ms"] >= 5 * 190
    assert "chaoskit:" not in stack.iptables_save()
    assert stack.rtt_ms(10) < 50
    f.revert()  # a second revert is a no-op, not an error


def test_crash_rollback_removes_the_rule_from_the_record_alone(
    stack: Stack, docker_client: Any
) -> None:
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.limit_data", ctx, to=f"server:{PORT}", bytes=10)
    f.prepare()
    f.apply()
    record = f.record()
    assert f.marker in stack.iptables_save()
    type(f).revert_record(record, None)  # what `chaoskit rollback` does after a crash
    assert "chaoskit:" not in stack.iptables_save()
    assert stack.rtt_ms(3) < 50  # direct again, although our listener still runs
    f.revert()


def test_fault_that_bit_nothing_says_so(stack: Stack, docker_client: Any) -> None:
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.latency", ctx, to=f"server:{PORT + 1}", latency="10ms")
    f.prepare()
    f.apply()
    rev = f.revert()
    assert rev["packets"] == 0 and rev["took_effect"] is False


def test_bad_targets_are_clear_errors(stack: Stack, docker_client: Any) -> None:
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.latency", ctx, to="nosuch:80", latency="10ms")
    with pytest.raises(FaultError, match="service 'nosuch' has no running container"):
        f.prepare()
    f = _fault("proxy.latency", ctx, to=f"server:{PORT}", latency="10ms", network="other")
    with pytest.raises(FaultError, match="shares no Docker network"):
        f.prepare()
    cls = registry.faults.get("proxy.latency")
    with pytest.raises(ValueError, match="service:port"):
        cls.Params(to="server", latency="10ms")
    with pytest.raises(ValueError, match="toxicity"):
        cls.Params(to="server:1", latency="10ms", toxicity=2)
    with pytest.raises(ValueError, match="extra"):
        cls.Params(to="server:1", latency="10ms", latncy="5ms")


# --- toxiproxy.* against the built-in API ---------------------------------------------------


@pytest.fixture()
def api() -> Iterator[str]:
    server = ApiServer("127.0.0.1", 0).start_in_thread()
    host, port = server.address
    yield f"http://{host}:{port}"
    server.close()


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    with echo_server() as srv:
        yield srv


def _tp_fault(name: str, **params: Any) -> Any:
    cls = registry.faults.get(name)
    assert cls is not None
    return cls(cls.Params(**params), None, RunContext(run_id="tp1", seed=1))


def test_toxiproxy_toxic_fault(api: str, echo: EchoServer) -> None:
    import httpx

    listen = httpx.post(
        f"{api}/proxies", json={"name": "db", "upstream": f"127.0.0.1:{echo.port}"}
    ).json()["listen"]
    c = connect(listen)
    f = _tp_fault(
        "toxiproxy.toxic", api=api, proxy="db", type="latency", attributes={"latency": 150}
    )
    f.prepare()
    ev = f.apply()
    assert ev["toxic"]["type"] == "latency" and ev["toxic"]["attributes"]["latency"] == 150
    assert 120 <= median_ms(round_trips(c, 3)) <= 220
    rev = f.revert()
    assert rev["result"] == "removed" and rev["took_effect"] is True
    assert httpx.get(f"{api}/proxies/db/toxics").json() == []
    assert median_ms(round_trips(c, 5)) < 20
    assert f.revert()["result"] == "removed"  # idempotent
    c.close()


def test_toxiproxy_disable_fault(api: str, echo: EchoServer) -> None:
    import httpx

    httpx.post(f"{api}/proxies", json={"name": "db", "upstream": f"127.0.0.1:{echo.port}"})
    f = _tp_fault("toxiproxy.disable", api=api, proxy="db")
    assert f.apply()["enabled"] is False
    assert httpx.get(f"{api}/proxies/db").json()["enabled"] is False
    f.revert()
    assert httpx.get(f"{api}/proxies/db").json()["enabled"] is True


def test_toxiproxy_errors_are_clear(api: str) -> None:
    f = _tp_fault("toxiproxy.toxic", api=api, proxy="nope", type="latency")
    with pytest.raises(FaultError, match="no proxy 'nope'"):
        f.apply()
    f = _tp_fault("toxiproxy.toxic", api=api, proxy="p", type="latency", attributes={"x": 1})
    with pytest.raises(FaultError, match="unknown attribute 'x'"):
        f.prepare()
    f = _tp_fault("toxiproxy.disable", api="http://127.0.0.1:1", proxy="p")
    with pytest.raises(FaultError, match="cannot reach Toxiproxy"):
        f.apply()
    cls = registry.faults.get("toxiproxy.toxic")
    with pytest.raises(ValueError, match="unknown toxic type"):
        cls.Params(proxy="p", type="latncy")
    with pytest.raises(ValueError, match="http://host:8474"):
        cls.Params(proxy="p", type="latency", api="ftp://x")


HOLD = (
    "import socket,sys,time\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30)\n"
    "open('/tmp/held','w').write('open')\n"
    "try:\n"
    "    while True:\n"
    "        c.sendall(b'x')\n"
    "        if not c.recv(1): raise EOFError('closed')\n"
    "        time.sleep(0.05)\n"
    "except Exception as e:\n"
    "    open('/tmp/held','w').write(type(e).__name__)\n"
)


def test_reset_existing_moves_open_connections_onto_the_proxy(
    stack: Stack, docker_client: Any
) -> None:
    stack.client.exec_run(["python3", "-c", HOLD, stack.server_ip, str(PORT)], detach=True)
    for _ in range(50):
        if stack.client.exec_run(["cat", "/tmp/held"]).output == b"open":
            break
        time.sleep(0.1)
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.latency", ctx, to=f"server:{PORT}", latency="50ms", reset_existing=True)
    f.prepare()
    ev = f.apply()
    try:
        assert ev["reset_existing"] == [{"container": stack.client.name, "connections_reset": 1}]
        for _ in range(50):
            held = stack.client.exec_run(["cat", "/tmp/held"]).output
            if held != b"open":
                break
            time.sleep(0.1)
        assert held in (b"ConnectionAbortedError", b"ConnectionResetError"), held
    finally:
        f.revert()


def test_helper_container_path(
    stack: Stack, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not root on the Docker host / remote engine: the same fault through a NET_ADMIN helper."""
    from chaoskit import netns

    monkeypatch.setitem(netns.EXTRA_HELPER_LABELS, "chaoskit.test", "1")
    base = stack.rtt_ms(5)
    ctx = _ctx(stack, docker_client)
    f = _fault("proxy.latency", ctx, to=f"server:{PORT}", latency="100ms", via="helper")
    f.prepare()
    ev = f.apply()
    try:
        assert "helper" in ev["path"]
        assert 80 <= stack.rtt_ms(3) - base <= 140
    finally:
        rev = f.revert()
    assert rev["took_effect"] and "chaoskit:" not in stack.iptables_save()
