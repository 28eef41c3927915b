"""Benchmark the built-in TCP fault proxy against direct loopback and socat.

Prints one table from one run: p50/p99 round trip of small ping-pong messages and streaming
throughput, for: direct loopback (the physical limit of this Python client/server pair), socat,
the chaoskit proxy with no toxic (the splice fast path), and with a 0 ms latency toxic on both
streams (every chunk through the toxic chain in Python). Server, socat and proxy each run in
their own process so no two share a GIL with the client.

    python bench/proxy.py                 # 2,000 round trips, 2 GB streamed
    python bench/proxy.py --bytes 500M --round-trips 5000
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    def echo(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(65536)
            if not d:
                return c.close()
            c.sendall(d)
    def sink(c):
        # first 8 bytes: how many bytes follow; reply b"k" once all arrived
        n = int.from_bytes(c.recv(8, socket.MSG_WAITALL), "big")
        buf = bytearray(1 << 20); view = memoryview(buf); got = 0
        while got < n:
            k = c.recv_into(view)
            if not k:
                break
            got += k
        c.sendall(b"k"); c.close()
    def serve(port, fn):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port)); s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=fn, args=(c,), daemon=True).start()
    threading.Thread(target=serve, args=(int(sys.argv[1]), echo), daemon=True).start()
    print("ready", flush=True)
    serve(int(sys.argv[2]), sink)
    """
)

PROXY = textwrap.dedent(
    """
    import sys, threading
    from chaoskit.proxy.server import ProxyServer
    srv = ProxyServer(seed=1).start_in_thread()
    srv.create_proxy("echo", f"127.0.0.1:{sys.argv[1]}", f"127.0.0.1:{sys.argv[3]}")
    srv.create_proxy("sink", f"127.0.0.1:{sys.argv[2]}", f"127.0.0.1:{sys.argv[4]}")
    if sys.argv[5] == "toxic":  # the toxic path: every chunk through the chain, both ways
        for name in ("echo", "sink"):
            for stream in ("upstream", "downstream"):
                srv.add_toxic(name, {"type": "latency", "stream": stream, "name": stream,
                                     "attributes": {"latency": 0}})
    print("ready", flush=True)
    threading.Event().wait()
    """
)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse_bytes(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@contextmanager
def process(argv: list[str], ready_line: bool = True) -> Iterator[subprocess.Popen[str]]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        if ready_line:
            assert p.stdout is not None
            line = p.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"{argv[0]} did not start: {line!r}")
        yield p
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` plus its reaped children (socat forks one per connection)."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def measured_stream(port: int, total: int, pid: int | None) -> tuple[float, float | None]:
    """(bytes/s, CPU seconds per GB the forwarding process spent)."""
    before = cpu_seconds(pid) if pid else 0.0
    bps = stream(port, total)
    if pid is None:
        return bps, None
    time.sleep(0.3)  # let socat reap its child so the child's CPU is counted
    return bps, (cpu_seconds(pid) - before) / (total / 1e9)


def ping_pong(port: int, n: int, size: int = 64) -> tuple[float, float]:
    c = socket.create_connection(("127.0.0.1", port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"p" * size
    out = []
    for i in range(n + 100):
        t = time.perf_counter()
        c.sendall(msg)
        got = 0
        while got < size:
            got += len(c.recv(size - got))
        if i >= 100:  # warm-up excluded
            out.append(time.perf_counter() - t)
    c.close()
    qs = statistics.quantiles(out, n=100)
    return statistics.median(out) * 1e6, qs[98] * 1e6


def stream(port: int, total: int) -> float:
    """Bytes/s for ``total`` bytes client -> server, until the server confirms all arrived."""
    c = socket.create_connection(("127.0.0.1", port))
    chunk = memoryview(b"\0" * (1 << 20))
    t = time.perf_counter()
    c.sendall(total.to_bytes(8, "big"))
    sent = 0
    while sent < total:
        k = min(len(chunk), total - sent)
        c.sendall(chunk[:k])
        sent += k
    assert c.recv(1) == b"k"
    elapsed = time.perf_counter() - t
    c.close()
    return total / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--round-trips", type=int, default=2000)
    ap.add_argument("--bytes", default="2G", help="bytes to stream per path (e.g. 2G, 500M)")
    ap.add_argument("--socat-buffer", type=int, default=262144, help="socat -b (default 256 KiB)")
    ap.add_argument(
        "--no-toxic-row",
        action="store_true",
        help="skip the row with a 0 ms latency toxic both ways (the toxic-chain path's cost)",
    )
    args = ap.parse_args()
    total = parse_bytes(args.bytes)
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    echo_port, sink_port = free_port(), free_port()
    rows: list[tuple[str, float, float, float, float | None]] = []
    with process([sys.executable, "-c", SERVER, str(echo_port), str(sink_port)]):
        wait_port(echo_port)
        wait_port(sink_port)
        p50, p99 = ping_pong(echo_port, args.round_trips)
        rows.append(("direct loopback", p50, p99, *measured_stream(sink_port, total, None)))

        if shutil.which("socat"):
            se, ss = free_port(), free_port()
            base = ["socat", "-b", str(args.socat_buffer)]
            with (
                process([*base, f"TCP-LISTEN:{se},bind=127.0.0.1,reuseaddr,fork",
                         f"TCP:127.0.0.1:{echo_port},nodelay"], ready_line=False),
                process([*base, f"TCP-LISTEN:{ss},bind=127.0.0.1,reuseaddr,fork",
                         f"TCP:127.0.0.1:{sink_port}"], ready_line=False) as sp,
            ):  # fmt: skip
                wait_port(se)
                wait_port(ss)
                time.sleep(0.3)  # wait_port's probe connections are reaped
                p50, p99 = ping_pong(se, args.round_trips)
                rows.append(("socat", p50, p99, *measured_stream(ss, total, sp.pid)))
        else:
            print(
                "socat not installed: skipping its row (apt-get install -y socat)", file=sys.stderr
            )

        modes = [("chaoskit proxy", "plain")]
        if not args.no_toxic_row:
            modes.append(("  + latency 0 toxic", "toxic"))
        for label, mode in modes:
            pe, ps = free_port(), free_port()
            argv = [sys.executable, "-c", PROXY, str(pe), str(ps), str(echo_port), str(sink_port)]
            with process([*argv, mode]) as pp:
                p50, p99 = ping_pong(pe, args.round_trips)
                rows.append((label, p50, p99, *measured_stream(ps, total, pp.pid)))

    direct = rows[0]
    print(f"{args.round_trips} round trips of 64 B; {total / 1e9:.2f} GB streamed per path")
    print(f"load average before: {load}")
    print(
        f"{'path':<18}{'p50 µs':>10}{'p99 µs':>10}{'added p50':>12}{'GB/s':>8}"
        f"{'fwd CPU s/GB':>14}{'GB/s per core':>15}"
    )
    for name, p50, p99, bps, cpu in rows:
        added = "" if name == direct[0] else f"{p50 - direct[1]:+.0f} µs"
        cpu_s = "" if cpu is None else f"{cpu:.2f}"
        per_core = "" if not cpu else f"{1 / cpu:.1f}"
        print(
            f"{name:<18}{p50:>10.0f}{p99:>10.0f}{added:>12}{bps / 1e9:>8.2f}"
            f"{cpu_s:>14}{per_core:>15}"
        )
    print(
        "fwd CPU: CPU time the forwarding process (socat / the proxy) spent per GB streamed;\n"
        "GB/s per core = 1 / that: what it would move with a core to itself."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
