"""Loopback helpers for the proxy tests: a threaded echo server and round-trip timing."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class EchoServer:
    """Blocking echo server on 127.0.0.1 (one thread per connection)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, addr = self.sock.accept()
            except OSError:
                return
            self.peers.append(addr[0])
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _serve(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                d = c.recv(262144)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@contextmanager
def echo_server() -> Iterator[EchoServer]:
    srv = EchoServer()
    try:
        yield srv
    finally:
        srv.close()


def connect(addr: str, timeout: float = 10.0) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_exactly(c: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        d = c.recv(n - len(buf))
        if not d:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)


def round_trips(c: socket.socket, n: int, size: int = 64) -> list[float]:
    """Seconds per ping-pong of ``size`` bytes, ``n`` times."""
    msg = b"p" * size
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.sendall(msg)
        recv_exactly(c, size)
        out.append(time.perf_counter() - t)
    return out


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000
