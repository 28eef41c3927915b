"""The built-in fault proxy on loopback: every toxic measured on real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from chaoskit.proxy.server import ProxyError, ProxyServer
from chaoskit.proxy.toxics import Toxic, ToxicError
from tests.proxy_helpers import (
    EchoServer,
    connect,
    echo_server,
    median_ms,
    recv_exactly,
    round_trips,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    with echo_server() as srv:
        yield srv


@pytest.fixture()
def engine() -> Iterator[ProxyServer]:
    srv = ProxyServer(seed=7).start_in_thread()
    yield srv
    srv.close()


def _proxy(engine: ProxyServer, echo: EchoServer, name: str = "echo") -> str:
    return engine.create_proxy(name, "127.0.0.1:0", f"127.0.0.1:{echo.port}")["listen"]


def test_latency_applies_to_connection_opened_before_the_toxic(
    engine: ProxyServer, echo: EchoServer
) -> None:
    c = connect(_proxy(engine, echo))
    base = median_ms(round_trips(c, 50))
    assert base < 20
    engine.add_toxic("echo", {"type": "latency", "attributes": {"latency": 200}})
    with_toxic = median_ms(round_trips(c, 5))
    assert 160 <= with_toxic - base <= 240, with_toxic
    ev = engine.evidence("echo")["toxics"]["latency_downstream"]
    assert ev["connections_hit"] == 1 and ev["bytes"] == 5 * 64
    assert ev["delay_ms"] >= 5 * 190  # the evidence: bytes really were held back
    engine.remove_toxic("echo", "latency_downstream")
    assert median_ms(round_trips(c, 20)) < 20  # back on the fast path
    c.close()


def test_upstream_latency_and_jitter(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic(
        "echo",
        {"type": "latency", "stream": "upstream", "attributes": {"latency": 100, "jitter": 40}},
    )
    rtts = [s * 1000 for s in round_trips(c, 12)]
    assert all(55 <= r <= 190 for r in rtts), rtts
    assert max(rtts) - min(rtts) > 5  # jitter varies the delay
    c.close()


def test_toxicity_zero_means_no_effect(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic("echo", {"type": "latency", "toxicity": 0, "attributes": {"latency": 200}})
    c2 = connect(engine.get_proxy("echo")["listen"])  # a connection opened after the toxic
    assert median_ms(round_trips(c, 10)) < 20
    assert median_ms(round_trips(c2, 10)) < 20
    ev = engine.evidence("echo")["toxics"]["latency_downstream"]
    assert ev["connections_hit"] == 0 and ev["connections_spared"] == 2 and ev["bytes"] == 0
    c.close()
    c2.close()


def test_toxicity_draw_is_seeded(echo: EchoServer) -> None:
    def draws(seed: int) -> list[int]:
        srv = ProxyServer(seed=seed).start_in_thread()
        try:
            addr = srv.create_proxy("p", "127.0.0.1:0", f"127.0.0.1:{echo.port}")["listen"]
            conns = [connect(addr) for _ in range(8)]
            for c in conns:
                round_trips(c, 1)  # each connection is fully set up
            srv.add_toxic("p", {"type": "latency", "toxicity": 0.5, "attributes": {"latency": 1}})
            ev = srv.evidence("p")["toxics"]["latency_downstream"]
            for c in conns:
                c.close()
            return [ev["connections_hit"], ev["connections_spared"]]
        finally:
            srv.close()

    a = draws(42)
    assert a == draws(42)
    assert sum(a) == 8


def test_reset_peer_breaks_an_in_flight_connection(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    round_trips(c, 3)
    engine.add_toxic("echo", {"type": "reset_peer", "attributes": {"timeout": 0}})
    c.sendall(b"hello")
    with pytest.raises(ConnectionResetError):
        c.recv(100)
    c.close()
    ev = engine.evidence("echo")["toxics"]["reset_peer_downstream"]
    assert ev["resets"] == 1


def test_limit_data_cuts_after_n_bytes(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic("echo", {"type": "limit_data", "attributes": {"bytes": 1000}})
    c.sendall(b"x" * 5000)
    got = bytearray()
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += d
    assert len(got) == 1000
    ev = engine.evidence("echo")["toxics"]["limit_data_downstream"]
    assert ev["bytes"] == 1000 and ev["closes"] == 1
    c.close()


def test_slicer_delivers_every_byte_in_slices(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic(
        "echo",
        {
            "type": "slicer",
            "attributes": {"average_size": 100, "size_variation": 20, "delay": 2000},
        },
    )
    payload = bytes(range(256)) * 40  # 10,240 bytes
    c.sendall(payload)
    reads = 0
    got = bytearray()
    while len(got) < len(payload):
        got += c.recv(65536)
        reads += 1
    assert bytes(got) == payload
    assert reads >= 10  # arrived in slices, not in one piece
    ev = engine.evidence("echo")["toxics"]["slicer_downstream"]
    assert ev["bytes"] == len(payload) and ev["delay_ms"] >= 50
    c.close()


def test_bandwidth_limits_throughput(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    round_trips(c, 1)
    engine.add_toxic("echo", {"type": "bandwidth", "attributes": {"rate": 500}})  # 500 KB/s
    size = 500_000
    t = time.perf_counter()
    c.sendall(b"b" * size)
    recv_exactly(c, size)
    elapsed = time.perf_counter() - t
    rate = size / elapsed / 1000
    assert 400 <= rate <= 600, rate
    c.close()


def test_timeout_drops_data_then_closes(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    round_trips(c, 1)
    engine.add_toxic("echo", {"type": "timeout", "attributes": {"timeout": 300}})
    t = time.perf_counter()
    c.sendall(b"lost")
    assert c.recv(100) == b""  # nothing came through, then the connection closed
    assert 0.25 <= time.perf_counter() - t <= 1.0
    ev = engine.evidence("echo")["toxics"]["timeout_downstream"]
    assert ev["dropped_bytes"] == 4 and ev["closes"] == 1
    c.close()


def test_timeout_zero_holds_data_until_removed(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic(
        "echo", {"type": "timeout", "stream": "upstream", "attributes": {"timeout": 0}}
    )
    c.sendall(b"dropped")
    c.settimeout(0.3)
    with pytest.raises(TimeoutError):
        c.recv(100)
    engine.remove_toxic("echo", "timeout_upstream")
    c.settimeout(5)
    assert round_trips(c, 1)  # the connection works again
    c.close()


def test_slow_close_delays_the_close(engine: ProxyServer, echo: EchoServer) -> None:
    c = connect(_proxy(engine, echo))
    engine.add_toxic("echo", {"type": "slow_close", "attributes": {"delay": 300}})
    round_trips(c, 1)
    t = time.perf_counter()
    c.shutdown(socket.SHUT_WR)  # echo server closes -> downstream EOF held 300 ms
    assert c.recv(10) == b""
    assert 0.25 <= time.perf_counter() - t <= 1.5
    c.close()


def test_large_transfer_is_intact(engine: ProxyServer, echo: EchoServer) -> None:
    """Backpressure on the fast path: 32 MiB each way arrive complete and in order."""
    import threading

    c = connect(_proxy(engine, echo))
    payload = bytes(range(256)) * (32 * 4096)
    sender = threading.Thread(target=c.sendall, args=(payload,))
    sender.start()
    got = recv_exactly(c, len(payload))
    sender.join()
    assert got == payload
    stats = engine.evidence("echo")
    assert stats["bytes_upstream"] == stats["bytes_downstream"] == len(payload)
    c.close()


def test_disable_drops_connections_and_enable_listens_again(
    engine: ProxyServer, echo: EchoServer
) -> None:
    addr = _proxy(engine, echo)
    c = connect(addr)
    round_trips(c, 1)
    engine.update_proxy("echo", {"enabled": False})
    assert c.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(addr)
    engine.update_proxy("echo", {"enabled": True})
    c2 = connect(addr)
    assert round_trips(c2, 1)
    c2.close()
    c.close()


def test_upstream_down_closes_the_client(engine: ProxyServer) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    addr = engine.create_proxy("dead", "127.0.0.1:0", f"127.0.0.1:{port}")["listen"]
    c = connect(addr)
    assert c.recv(10) == b""
    assert engine.evidence("dead")["connect_failures"] == 1
    c.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "latncy"}, "invalid toxic type"),
        ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
        ({"type": "latency", "toxicity": 1.5}, "between 0 and 1"),
        ({"type": "latency", "attributes": {"delay": 5}}, "unknown attribute 'delay'"),
        ({"type": "bandwidth", "attributes": {"rate": "fast"}}, "must be a number"),
        ({"type": "latency", "attributes": {"latency": -1}}, "cannot be negative"),
    ],
)
def test_bad_toxics_are_clear_errors(body: dict, message: str) -> None:
    with pytest.raises(ToxicError, match=message):
        Toxic.from_json(body)


def test_proxy_errors(engine: ProxyServer, echo: EchoServer) -> None:
    _proxy(engine, echo)
    with pytest.raises(ProxyError, match="already exists") as e:
        _proxy(engine, echo)
    assert e.value.status == 409
    with pytest.raises(ProxyError, match="not found") as e:
        engine.add_toxic("nope", {"type": "latency"})
    assert e.value.status == 404
    with pytest.raises(ProxyError, match="host:port"):
        engine.create_proxy("bad", "127.0.0.1:0", "no-port")
    engine.add_toxic("echo", {"type": "latency"})
    with pytest.raises(ProxyError, match="toxic already exists"):
        engine.add_toxic("echo", {"type": "latency"})


def test_toxics_toggled_mid_stream_keep_every_byte_in_order(
    engine: ProxyServer, echo: EchoServer
) -> None:
    """Fast path -> toxic chain -> fast path while 16 MiB flow both ways: nothing lost or reordered."""
    import threading

    c = connect(_proxy(engine, echo))
    payload = bytes(range(256)) * (16 * 4096)
    chunks: list[int] = []
    first_added = threading.Event()

    def toggle() -> None:
        for i in range(6):
            stream = "upstream" if i % 2 else "downstream"
            engine.add_toxic(
                "echo",
                {
                    "name": f"t{i}",
                    "type": "latency",
                    "stream": stream,
                    "attributes": {"latency": 2},
                },
            )
            first_added.set()
            time.sleep(0.02)
            chunks.append(engine.evidence("echo")["toxics"][f"t{i}"]["chunks"])
            engine.remove_toxic("echo", f"t{i}")
            time.sleep(0.02)

    toggler = threading.Thread(target=toggle)
    toggler.start()
    first_added.wait(5)
    sender = threading.Thread(target=c.sendall, args=(payload,))
    sender.start()
    got = recv_exactly(c, len(payload))
    sender.join()
    toggler.join()
    assert got == payload
    assert sum(chunks) > 0  # the toxics really were in the path for part of the stream
    c.close()
