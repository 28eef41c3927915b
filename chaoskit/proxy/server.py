"""The asyncio TCP fault proxy engine.

Each accepted connection gets two pipes (upstream: client -> server, downstream: server ->
client). A pipe with no active toxic moves every chunk from a selector callback with ``splice``
(socket -> kernel pipe -> socket: the bytes never enter Python; one check per chunk, no queue, no
task), which is what keeps the no-toxic path near socat. As soon as a toxic is attached, chunks go through a per-pipe queue and a worker task
that runs the toxic chain; when the last toxic goes and the queue drains, the pipe falls back to
the fast path. The check is per chunk, so a toxic added later applies to connections that were
already open (a known Toxiproxy gap).

Toxicity is decided per connection and toxic, when the toxic meets the connection (toxic added,
or connection opened), with the server's seeded RNG: reruns with the same seed draw the same.

The loop runs in a daemon thread (``start_in_thread``) so a runner's main thread stays free;
every public method is thread-safe and blocks until the loop has done the work.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import random
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chaoskit.proxy.toxics import Toxic, ToxicError

T = TypeVar("T")

READ_SIZE = 1024 * 1024  # large moves: per-chunk overhead is what limits Python throughput
_SPLICE = hasattr(os, "splice") and os.environ.get("CHAOSKIT_PROXY_SPLICE", "1") != "0"
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
QUEUE_HIGH = 4 * 1024 * 1024  # slow path: pause reading above this many queued bytes
QUEUE_LOW = 1024 * 1024


class ProxyError(ToxicError):
    """A proxy-level API error (not found, exists, cannot listen), with its HTTP status."""


def split_hostport(value: str, what: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ProxyError(f"{what} must be host:port, got {value!r}")
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        port = int(port_s)
    except ValueError:
        raise ProxyError(f"{what} must be host:port, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ProxyError(f"{what} port out of range: {port}")
    return host, port


@dataclass
class ProxyStats:
    connections_total: int = 0
    connections_active: int = 0
    connect_failures: int = 0
    bytes_upstream: int = 0  # client -> server
    bytes_downstream: int = 0  # server -> client

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Side:
    """One non-blocking socket of a connection. All selector registrations go through here and
    become no-ops once it is closed, so a late callback can never touch a reused fd."""

    def __init__(self, conn: Connection, role: str, sock: socket.socket):
        self.conn = conn
        self.role = role  # "client" or "server"
        self.sock = sock
        self.fd = sock.fileno()
        self.closed = False
        self.reading = False
        self.writing = False

    def watch_read(self, cb: Callable[[], None]) -> None:
        if not self.closed and not self.reading:
            self.conn.loop.add_reader(self.fd, cb)
            self.reading = True

    def unwatch_read(self) -> None:
        if self.reading and not self.closed:
            self.conn.loop.remove_reader(self.fd)
        self.reading = False

    def watch_write(self, cb: Callable[[], None]) -> None:
        if not self.closed and not self.writing:
            self.conn.loop.add_writer(self.fd, cb)
            self.writing = True

    def unwatch_write(self) -> None:
        if self.writing and not self.closed:
            self.conn.loop.remove_writer(self.fd)
        self.writing = False

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.unwatch_read()
        self.unwatch_write()
        self.closed = True
        if rst:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.sock.close()


_EOF = object()


class Pipe:
    """One direction of one connection, with the toxics that apply to it.

    Fast path (no toxic, nothing queued): on readable, ``splice`` socket -> kernel pipe ->
    socket, so the bytes never enter Python (falls back to recv/send where splice is absent).
    While the kernel pipe cannot drain into the destination, reading stops: that is the
    backpressure. Slow path: ``recv`` into a queue that the worker runs through the toxics."""

    def __init__(self, conn: Connection, stream: str, src: _Side, dst: _Side):
        self.conn = conn
        self.stream = stream
        self.src = src
        self.dst = dst
        self.active: list[Toxic] = []  # attached toxics whose toxicity draw said "apply"
        self.queue: collections.deque[tuple[float, Any]] = collections.deque()
        self.queued = 0
        self.worker: asyncio.Task[None] | None = None
        self.pause_reasons: set[str] = set()
        self.changed = asyncio.Event()  # set when toxics change, to cut sleeps short
        self.toxic_state: dict[Toxic, dict[str, Any]] = {}
        self.closed = False
        self.eof_seen = False  # src sent FIN
        self.eof_pending = False  # FIN to pass on once the staging area drained
        self.eof_sent = False
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._bytes_attr = "bytes_upstream" if stream == "upstream" else "bytes_downstream"
        # staging between read and write: a kernel pipe (splice) or a user buffer
        self.staged = 0
        self._kpipe: tuple[int, int] | None = None
        self._buf: memoryview | None = None
        self._pending: memoryview | None = None
        if _SPLICE:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(w, _F_SETPIPE_SZ, READ_SIZE)
            except OSError:
                pass  # default pipe size (64 KiB) still works, just more wakeups
            self._kpipe = (r, w)
        else:
            self._buf = memoryview(bytearray(READ_SIZE))

    # -- reading --------------------------------------------------------------------------------
    def start(self) -> None:
        self._update_reader()

    def _update_reader(self) -> None:
        if self.closed or self.eof_seen or self.pause_reasons:
            self.src.unwatch_read()
        else:
            self.src.watch_read(self._on_readable)

    def pause(self, reason: str) -> None:
        self.pause_reasons.add(reason)
        self._update_reader()

    def resume(self, reason: str) -> None:
        self.pause_reasons.discard(reason)
        self._update_reader()

    def _on_readable(self) -> None:
        if self.closed:
            return
        if self.active or self.worker is not None:
            self._read_slow()
            return
        try:
            if self._kpipe is not None:
                n = os.splice(self.src.fd, self._kpipe[1], READ_SIZE, flags=_SPLICE_FLAGS)
            else:
                assert self._buf is not None
                n = self.src.sock.recv_into(self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.conn.close()
            return
        if n == 0:
            self._got_eof()
            return
        stats = self.conn.proxy.stats
        setattr(stats, self._bytes_attr, getattr(stats, self._bytes_attr) + n)
        self.staged = n
        if self._buf is not None:
            self._pending = self._buf[:n]
        self._flush()

    def _flush(self) -> None:
        """Move staged bytes to the destination; stop reading while it cannot take them."""
        while self.staged:
            try:
                if self._kpipe is not None:
                    m = os.splice(self._kpipe[0], self.dst.fd, self.staged, flags=_SPLICE_FLAGS)
                else:
                    assert self._pending is not None
                    m = self.dst.sock.send(self._pending)
                    self._pending = self._pending[m:]
            except (BlockingIOError, InterruptedError):
                self.pause("dst")
                self.dst.watch_write(self._on_writable)
                return
            except OSError:
                self.conn.close()
                return
            self.staged -= m
        self.dst.unwatch_write()
        waiters, self._flush_waiters = self._flush_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self.eof_pending:
            self.eof_pending = False
            self._send_eof()
        self.resume("dst")

    def _on_writable(self) -> None:
        if not self.closed:
            self._flush()

    def _read_slow(self) -> None:
        try:
            data = self.src.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.conn.close()
            return
        if not data:
            self._got_eof()
            return
        self.queue.append((self.conn.loop.time(), data))
        self.queued += len(data)
        if self.queued > QUEUE_HIGH:
            self.pause("queue")
        self._ensure_worker()

    def _got_eof(self) -> None:
        self.eof_seen = True
        self._update_reader()
        if not self.active and self.worker is None:
            if self.staged:
                self.eof_pending = True
            else:
                self._send_eof()
            return
        self.queue.append((self.conn.loop.time(), _EOF))
        self._ensure_worker()

    # -- toxics -------------------------------------------------------------------------------
    def attach(self, toxic: Toxic) -> None:
        self.active.append(toxic)
        self.toxic_state[toxic] = {"since": self.conn.loop.time(), "count": 0}
        if toxic.type == "timeout":
            timeout_ms = toxic.attr("timeout")
            if timeout_ms > 0:
                self.toxic_state[toxic]["timer"] = self.conn.loop.call_later(
                    timeout_ms / 1000, self._timeout_fired, toxic
                )

    def detach(self, toxic: Toxic) -> None:
        if toxic in self.active:
            self.active.remove(toxic)
        state = self.toxic_state.pop(toxic, None)
        if state and "timer" in state:
            state["timer"].cancel()
        self.changed.set()

    def _timeout_fired(self, toxic: Toxic) -> None:
        if toxic in self.active:
            toxic.stats.closes += 1
            self.conn.close()

    def _ensure_worker(self) -> None:
        if self.worker is None and not self.closed:
            self.worker = self.conn.loop.create_task(self._work())

    async def _work(self) -> None:
        """Drain the queue through the toxic chain; exit when it is empty (reads restart it)."""
        try:
            while self.queue and not self.closed:
                ts, data = self.queue.popleft()
                if data is _EOF:
                    await self._chain_eof(list(self.active))
                    continue
                self.queued -= len(data)
                if self.queued < QUEUE_LOW:
                    self.resume("queue")
                await self._chain(ts, data, list(self.active), 0)
        except OSError:
            self.conn.close()
        finally:
            self.worker = None

    async def _sleep_until(self, deadline: float, toxic: Toxic) -> float:
        """Sleep until ``deadline`` (loop time) unless the toxic is removed; returns time slept."""
        loop = self.conn.loop
        start = loop.time()
        while toxic in self.active and not self.closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        return max(0.0, loop.time() - start)

    async def _chain(self, ts: float, data: bytes, toxics: list[Toxic], i: int) -> None:
        """Run ``data`` through toxics[i:], then write it."""
        if self.closed:
            return
        while i < len(toxics) and toxics[i] not in self.active:
            i += 1  # removed since this chunk started: skip it
        if i == len(toxics):
            await self._write(data)
            return
        toxic = toxics[i]
        st = toxic.stats
        st.chunks += 1
        loop = self.conn.loop
        kind = toxic.type
        if kind == "latency":
            delay = toxic.attr("latency")
            jitter = toxic.attr("jitter")
            if jitter > 0:
                delay += self.conn.proxy.server.rng.uniform(-jitter, jitter)
            deadline = ts + max(0.0, delay) / 1000
            st.bytes += len(data)
            st.delay_s += await self._sleep_until(deadline, toxic)
            await self._chain(max(ts, deadline), data, toxics, i + 1)
        elif kind == "bandwidth":
            rate = toxic.attr("rate") * 1000  # bytes/s
            st.bytes += len(data)
            if rate <= 0:
                await self._chain(ts, data, toxics, i + 1)
                return
            state = self.toxic_state.get(toxic)
            if state is None:
                await self._chain(ts, data, toxics, i + 1)
                return
            piece = max(1, int(rate / 10))  # at most 100 ms worth per write, like Toxiproxy
            view = memoryview(data)
            for off in range(0, len(data), piece):
                part = view[off : off + piece]
                nxt = max(state.get("next", 0.0), loop.time()) + len(part) / rate
                state["next"] = nxt
                st.delay_s += await self._sleep_until(nxt, toxic)
                await self._chain(ts, bytes(part), toxics, i + 1)
        elif kind == "slicer":
            avg = int(toxic.attr("average_size"))
            var = int(toxic.attr("size_variation"))
            delay_s = toxic.attr("delay") / 1e6
            st.bytes += len(data)
            if avg <= 0:
                await self._chain(ts, data, toxics, i + 1)
                return
            rng = self.conn.proxy.server.rng
            off = 0
            view = memoryview(data)
            while off < len(data):
                size = avg + (rng.randint(-var, var) if var > 0 else 0)
                size = max(1, size)
                await self._chain(ts, bytes(view[off : off + size]), toxics, i + 1)
                off += size
                if off < len(data) and delay_s > 0:
                    st.delay_s += await self._sleep_until(loop.time() + delay_s, toxic)
        elif kind == "limit_data":
            state = self.toxic_state.get(toxic)
            limit = int(toxic.attr("bytes"))
            sent = state["count"] if state else 0
            room = max(0, limit - sent)
            part = data[:room]
            if state is not None:
                state["count"] = sent + len(part)
            st.bytes += len(part)
            st.dropped_bytes += len(data) - len(part)
            if part:
                await self._chain(ts, part, toxics, i + 1)
            if state is not None and state["count"] >= limit:
                st.closes += 1
                self.conn.close()
        elif kind == "timeout":
            st.dropped_bytes += len(data)  # swallowed while the toxic is active
        elif kind == "reset_peer":
            st.dropped_bytes += len(data)
            state = self.toxic_state.get(toxic)
            if state is not None and not state.get("fired"):
                state["fired"] = True
                wait = toxic.attr("timeout") / 1000
                if wait > 0:
                    st.delay_s += await self._sleep_until(loop.time() + wait, toxic)
                if toxic in self.active:
                    st.resets += 1
                    self.conn.reset()
        else:  # slow_close acts on EOF only
            st.bytes += len(data)
            await self._chain(ts, data, toxics, i + 1)

    async def _chain_eof(self, toxics: list[Toxic]) -> None:
        loop = self.conn.loop
        for toxic in toxics:
            if toxic.type == "slow_close" and toxic in self.active:
                toxic.stats.chunks += 1
                toxic.stats.delay_s += await self._sleep_until(
                    loop.time() + toxic.attr("delay") / 1000, toxic
                )
            elif toxic.type in ("timeout", "reset_peer") and toxic in self.active:
                return  # the stream is held: the EOF is swallowed too
        if self.staged:
            self.eof_pending = True
        else:
            self._send_eof()

    async def _write(self, data: bytes) -> None:
        """Slow-path write: after whatever the fast path staged, wait for room, send it all."""
        if self.staged:
            fut = self.conn.loop.create_future()
            self._flush_waiters.append(fut)
            await fut
        view = memoryview(data)
        while view and not self.closed:
            try:
                n = self.dst.sock.send(view)
            except (BlockingIOError, InterruptedError):
                fut = self.conn.loop.create_future()
                self.dst.watch_write(lambda f=fut: f.done() or f.set_result(None))
                try:
                    await fut
                finally:
                    self.dst.unwatch_write()
                continue
            if n == len(view):
                break
            view = view[n:]
        if not self.closed:
            stats = self.conn.proxy.stats
            setattr(stats, self._bytes_attr, getattr(stats, self._bytes_attr) + len(data))

    def _send_eof(self) -> None:
        self.eof_sent = True
        if not self.dst.closed:
            try:
                self.dst.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.conn.maybe_finished()

    def stop(self) -> None:
        self.closed = True
        for state in self.toxic_state.values():
            if "timer" in state:
                state["timer"].cancel()
        self.changed.set()
        for w in self._flush_waiters:
            if not w.done():
                w.cancel()
        if self.worker is not None:
            self.worker.cancel()
        if self._kpipe is not None:
            for fd in self._kpipe:
                os.close(fd)
            self._kpipe = None


class Connection:
    """A proxied TCP connection: the accepted client socket and its upstream socket."""

    def __init__(self, proxy: Proxy, csock: socket.socket):
        self.proxy = proxy
        self.loop = proxy.server.loop
        self.client = _Side(self, "client", csock)
        self.server: _Side | None = None
        self.up: Pipe | None = None
        self.down: Pipe | None = None
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.proxy.connections.add(self)
        self.proxy.stats.connections_total += 1
        self.proxy.stats.connections_active += 1
        self.task = self.loop.create_task(self._connect_upstream())

    async def _connect_upstream(self) -> None:
        host, port = self.proxy.upstream_addr
        sock: socket.socket | None = None
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            await self.loop.sock_connect(sock, addr)
        except (OSError, IndexError):
            if sock is not None:
                sock.close()
            self.proxy.stats.connect_failures += 1
            self.close()
            return
        if self.closed:
            sock.close()
            return
        _tune(sock)
        self.server = _Side(self, "server", sock)
        self.up = Pipe(self, "upstream", self.client, self.server)
        self.down = Pipe(self, "downstream", self.server, self.client)
        for toxic in self.proxy.toxics.values():
            self.offer(toxic)
        self.up.start()
        self.down.start()

    def offer(self, toxic: Toxic) -> None:
        """Draw the toxicity for this connection and attach the toxic if it applies."""
        pipe = self.up if toxic.stream == "upstream" else self.down
        if pipe is None or self.closed:
            return
        if toxic.toxicity > 0 and self.proxy.server.rng.random() < toxic.toxicity:
            toxic.stats.connections_hit += 1
            pipe.attach(toxic)
        else:
            toxic.stats.connections_spared += 1

    def withdraw(self, toxic: Toxic) -> None:
        for pipe in (self.up, self.down):
            if pipe is not None:
                pipe.detach(toxic)

    def maybe_finished(self) -> None:
        if self.up is not None and self.down is not None:
            if self.up.eof_sent and self.down.eof_sent:
                self.close()

    def close(self, rst: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for pipe in (self.up, self.down):
            if pipe is not None:
                pipe.stop()
        for side in (self.client, self.server):
            if side is not None:
                side.close(rst)
        if self in self.proxy.connections:
            self.proxy.connections.discard(self)
            self.proxy.stats.connections_active -= 1

    def reset(self) -> None:
        """Close both sockets with SO_LINGER 0: the peers see a TCP RST."""
        self.close(rst=True)


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(eq=False)
class Proxy:
    """A named listener forwarding to one upstream, with its toxics (Toxiproxy's proxy)."""

    server: ProxyServer
    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: dict[str, Toxic] = field(default_factory=dict)
    stats: ProxyStats = field(default_factory=ProxyStats)
    connections: set[Connection] = field(default_factory=set)
    _lsock: socket.socket | None = None

    @property
    def upstream_addr(self) -> tuple[str, int]:
        return split_hostport(self.upstream, "upstream")

    async def start(self) -> None:
        if self._lsock is not None:
            return
        host, port = split_hostport(self.listen, "listen")
        loop = self.server.loop
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, addr = infos[0]
            lsock = socket.create_server(addr, family=family, backlog=512)
        except (OSError, IndexError) as exc:
            msg = getattr(exc, "strerror", None) or str(exc)
            raise ProxyError(f"cannot listen on {self.listen}: {msg}", 500) from exc
        lsock.setblocking(False)
        self._lsock = lsock
        loop.add_reader(lsock.fileno(), self._accept)
        sockname = lsock.getsockname()
        self.listen = f"{sockname[0]}:{sockname[1]}"
        self.enabled = True

    def _accept(self) -> None:
        lsock = self._lsock
        for _ in range(64):  # bounded: never starve the other connections
            if lsock is None:
                return
            try:
                csock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. EMFILE: try again on the next readiness event
            _tune(csock)
            Connection(self, csock).start()

    async def stop(self) -> None:
        """Stop listening and drop every open connection (Toxiproxy's disable)."""
        if self._lsock is not None:
            self.server.loop.remove_reader(self._lsock.fileno())
            self._lsock.close()
            self._lsock = None
        for conn in list(self.connections):
            conn.close()
        self.enabled = False

    def add_toxic(self, toxic: Toxic) -> None:
        if toxic.name in self.toxics:
            raise ProxyError(f"toxic already exists: {toxic.name}", 409)
        self.toxics[toxic.name] = toxic
        for conn in list(self.connections):
            conn.offer(toxic)

    def remove_toxic(self, name: str) -> Toxic:
        toxic = self.toxics.pop(name, None)
        if toxic is None:
            raise ProxyError(f"toxic not found: {name}", 404)
        for conn in list(self.connections):
            conn.withdraw(toxic)
        return toxic

    def update_toxic(self, name: str, body: Any) -> Toxic:
        toxic = self.toxics.get(name)
        if toxic is None:
            raise ProxyError(f"toxic not found: {name}", 404)
        if toxic.update(body):  # toxicity changed: draw again for every open connection
            for conn in list(self.connections):
                conn.withdraw(toxic)
                conn.offer(toxic)
        else:
            for conn in list(self.connections):
                for pipe in (conn.up, conn.down):
                    if pipe is not None:
                        pipe.changed.set()
        return toxic

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [t.to_json() for t in self.toxics.values()],
        }

    def evidence(self) -> dict[str, Any]:
        """Counters for journals: connections, bytes both ways, and what each toxic did."""
        return {
            "proxy": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            **self.stats.to_json(),
            "toxics": {t.name: {"type": t.type, **t.stats.to_json()} for t in self.toxics.values()},
        }


class ProxyServer:
    """The proxy collection and its event loop. Public methods are thread-safe."""

    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)
        self.proxies: dict[str, Proxy] = {}
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------
    def start_in_thread(self) -> ProxyServer:
        with self._lock:
            if self._thread is None:
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(self.loop)
                    self.loop.call_soon(ready.set)
                    self.loop.run_forever()

                self._thread = threading.Thread(target=run, name="chaoskit-proxy", daemon=True)
                self._thread.start()
                ready.wait(5)
        return self

    def close(self) -> None:
        """Stop every proxy and the loop thread."""
        if self._thread is None:
            return
        try:
            self._call(self._close_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._thread = None
            self.loop.close()

    async def _close_all(self) -> None:
        for p in list(self.proxies.values()):
            await p.stop()
        self.proxies.clear()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        if self._thread is None:
            self.start_in_thread()
        if threading.current_thread() is self._thread:
            raise RuntimeError("ProxyServer sync methods cannot be called from the loop thread")
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def _run(self, fn: Callable[[], T]) -> T:
        async def wrap() -> T:
            return fn()

        return self._call(wrap())

    # -- proxies ------------------------------------------------------------------------------
    def create_proxy(
        self, name: str, listen: str, upstream: str, enabled: bool = True
    ) -> dict[str, Any]:
        return self._call(self._create(name, listen, upstream, enabled))

    async def _create(self, name: str, listen: str, upstream: str, enabled: bool) -> dict[str, Any]:
        if not name or not isinstance(name, str):
            raise ProxyError("missing required field: name")
        if not upstream:
            raise ProxyError("missing required field: upstream")
        split_hostport(upstream, "upstream")
        if name in self.proxies:
            raise ProxyError("proxy already exists", 409)
        p = Proxy(self, name, listen or "127.0.0.1:0", upstream)
        if enabled:
            await p.start()
        else:
            p.enabled = False
        self.proxies[name] = p
        return p.to_json()

    def _get(self, name: str) -> Proxy:
        p = self.proxies.get(name)
        if p is None:
            raise ProxyError("proxy not found", 404)
        return p

    def get_proxy(self, name: str) -> dict[str, Any]:
        return self._run(lambda: self._get(name).to_json())

    def list_proxies(self) -> dict[str, dict[str, Any]]:
        return self._run(lambda: {n: p.to_json() for n, p in self.proxies.items()})

    def update_proxy(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self._update(name, body))

    async def _update(self, name: str, body: Any) -> dict[str, Any]:
        p = self._get(name)
        if not isinstance(body, dict):
            raise ProxyError("bad request body: expected a JSON object")
        listen = body.get("listen", p.listen)
        upstream = body.get("upstream", p.upstream)
        enabled = body.get("enabled", p.enabled)
        if not isinstance(enabled, bool):
            raise ProxyError("enabled must be true or false")
        split_hostport(upstream, "upstream")
        if listen != p.listen or upstream != p.upstream:
            await p.stop()
            p.listen, p.upstream = listen, upstream
        if enabled and p._lsock is None:
            await p.start()
        elif not enabled and p.enabled:
            await p.stop()
        return p.to_json()

    def delete_proxy(self, name: str) -> None:
        self._call(self._delete(name))

    async def _delete(self, name: str) -> None:
        p = self._get(name)
        await p.stop()
        del self.proxies[name]

    def reset(self) -> None:
        """Toxiproxy's /reset: enable every proxy, remove every toxic."""
        self._call(self._reset())

    async def _reset(self) -> None:
        for p in self.proxies.values():
            for tname in list(p.toxics):
                p.remove_toxic(tname)
            if p._lsock is None:
                await p.start()

    def populate(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._call(self._populate(bodies))

    async def _populate(self, bodies: Any) -> list[dict[str, Any]]:
        if not isinstance(bodies, list):
            raise ProxyError("bad request body: expected a JSON array of proxies")
        out = []
        for body in bodies:
            if not isinstance(body, dict):
                raise ProxyError("bad request body: each proxy must be a JSON object")
            name = body.get("name")
            existing = self.proxies.get(name) if isinstance(name, str) else None
            if existing is not None:
                if existing.upstream == body.get("upstream") and (
                    body.get("listen") in (None, existing.listen)
                ):
                    out.append(existing.to_json())
                    continue
                await self._delete(existing.name)
            out.append(
                await self._create(
                    name,
                    body.get("listen") or "127.0.0.1:0",
                    body.get("upstream", ""),
                    bool(body.get("enabled", True)),
                )
            )
        return out

    # -- toxics -------------------------------------------------------------------------------
    def add_toxic(self, proxy: str, body: dict[str, Any] | Toxic) -> dict[str, Any]:
        def do() -> dict[str, Any]:
            p = self._get(proxy)
            toxic = body if isinstance(body, Toxic) else Toxic.from_json(body)
            p.add_toxic(toxic)
            return toxic.to_json()

        return self._run(do)

    def update_toxic(self, proxy: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._run(lambda: self._get(proxy).update_toxic(name, body).to_json())

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._run(lambda: self._get(proxy).remove_toxic(name))

    def list_toxics(self, proxy: str) -> list[dict[str, Any]]:
        return self._run(lambda: [t.to_json() for t in self._get(proxy).toxics.values()])

    def get_toxic(self, proxy: str, name: str) -> dict[str, Any]:
        def do() -> dict[str, Any]:
            t = self._get(proxy).toxics.get(name)
            if t is None:
                raise ProxyError("toxic not found", 404)
            return t.to_json()

        return self._run(do)

    def evidence(self, proxy: str) -> dict[str, Any]:
        return self._run(lambda: self._get(proxy).evidence())


_shared: ProxyServer | None = None
_shared_lock = threading.Lock()


def shared_server(seed: int | None = None) -> ProxyServer:
    """The process-wide proxy engine the faults use (one loop thread, many listeners)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ProxyServer(seed).start_in_thread()
        return _shared
