"""A tiny compose-like stack for network-fault tests: containers labelled like compose services
on a user-defined bridge, each running a TCP server (7000: accept+close, 7001: send N bytes)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

SERVER = r"""
import socket, threading
def listener(port):
    try:  # dual stack where the container has IPv6
        s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", port))
    except OSError:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    s.listen(512)
    return s
def serve(port, handle):
    s = listener(port)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
def close(c):
    c.close()
def bulk(c):
    try:
        n = int(c.recv(32).decode().strip()); chunk = b"x" * 65536; sent = 0
        while sent < n:
            k = min(len(chunk), n - sent); c.sendall(chunk[:k]); sent += k
    finally:
        c.close()
threading.Thread(target=serve, args=(7000, close), daemon=True).start()
serve(7001, bulk)
"""

CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
    "except OSError as e:\n"
    "    print(type(e).__name__); sys.exit(1)\n"
)


@dataclass
class Stack:
    project: str
    network: Any
    containers: dict[str, Any] = field(default_factory=dict)

    def ip(self, service: str, family: int = 4) -> str:
        c = self.containers[service]
        c.reload()
        s = c.attrs["NetworkSettings"]["Networks"][self.network.name]
        return s["IPAddress"] if family == 4 else s["GlobalIPv6Address"]

    def can_connect(
        self, src: str, dst: str, port: int = 7000, timeout: float = 1.0, family: int = 4
    ) -> bool:
        """TCP connect from inside container ``src`` to ``dst``."""
        return self.connect_error(src, dst, port, timeout, family) is None

    def connect_error(
        self, src: str, dst: str, port: int = 7000, timeout: float = 1.0, family: int = 4
    ) -> str | None:
        """None when the connect works, else the exception's name (TimeoutError, ConnectionRefusedError)."""
        code, out = self.containers[src].exec_run(
            ["python3", "-c", CONNECT, self.ip(dst, family), str(port), str(timeout)]
        )
        return None if code == 0 else out.decode().strip() or f"exit {code}"


def host_can_connect(ip: str, port: int = 7000, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((ip, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def make_stack(
    docker_client: Any, base_image: str, services: tuple[str, ...] = ("a", "b", "c"), ipv6: bool = False
) -> Stack:
    project = f"ckt-net-{uuid.uuid4().hex[:8]}"
    kw: dict[str, Any] = {}
    if ipv6:
        import docker.types

        subnet = f"fd00:c4a0:{uuid.uuid4().hex[:4]}::/64"
        kw = {"enable_ipv6": True, "ipam": docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])}
    net = docker_client.networks.create(project, driver="bridge", labels={"chaoskit.test": "1"}, **kw)
    stack = Stack(project, net)
    try:
        for svc in services:
            stack.containers[svc] = docker_client.containers.run(
                base_image,
                ["python3", "-c", SERVER],
                name=f"{project}-{svc}-1",
                detach=True,
                network=net.name,
                labels={
                    "chaoskit.test": "1",
                    "com.docker.compose.project": project,
                    "com.docker.compose.service": svc,
                },
            )
        deadline = time.monotonic() + 30
        for svc in services:
            while not host_can_connect(stack.ip(svc), 7000, 0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server in {svc} did not come up")
                time.sleep(0.1)
    except Exception:
        remove_stack(stack)
        raise
    return stack


def remove_stack(stack: Stack) -> None:
    for c in stack.containers.values():
        try:
            c.remove(force=True)
        except Exception:  # noqa: BLE001
            pass
    try:
        stack.network.remove()
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture(scope="module")
def stack(docker_client, base_image) -> Iterator[Stack]:
    s = make_stack(docker_client, base_image)
    yield s
    remove_stack(s)


@pytest.fixture(autouse=True)
def _label_helpers(monkeypatch) -> None:
    """Helper containers started by tests carry the test label too."""
    from chaoskit import netns

    monkeypatch.setitem(netns.EXTRA_HELPER_LABELS, "chaoskit.test", "1")
