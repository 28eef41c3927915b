"""The built-in HTTP workload: weighted operation templates fired open-loop at a target rate.

Open-loop on absolute deadlines (operation k is due at start + k/rate, so there is no drift):
a scheduler thread hands each due operation to an idle worker thread, each with its own
``httpx.Client`` and one keep-alive connection. Measured here (loaded 2-core machine, loopback
server in another process): sync httpx with a client per thread ~900-1,100 req/s, httpx
AsyncClient on one loop ~400-600 req/s and slower as its shared pool grows, so threads it is.
``concurrency`` is the number of logical processes; a tick
that finds every process busy is skipped and counted, never queued, so latency does not hide
behind a backlog and the summary can say why the target rate was not reached.

Classification (the Jepsen split):
    expected status (default any 2xx)              -> ok
    other 4xx: the server definitely rejected it   -> fail
    5xx, timeout, reset after the request was sent -> info (outcome unknown)
    connection refused / connect timeout / no pool -> fail (it never reached the server)
A process whose operation ended ``info`` continues under a new process id.
"""

from __future__ import annotations

import json
import queue
import random
import socket
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chaoskit.units import Duration, Rate
from chaoskit.workload.history import HistoryWriter
from chaoskit.workload.templates import (
    Pools,
    Unavailable,
    check_placeholder,
    op_id,
    placeholders,
    refs,
    render,
)

MAX_VALUE_CHARS = 2000


class OpTemplate(BaseModel):
    """One kind of operation. ``json`` is the body template."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[\w.-]+$", description="template name; the history's op")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(description="URL path, may hold placeholders, e.g. /trades/${take:open}/close")
    json_body: Any = Field(None, alias="json", description="JSON body template")
    headers: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(1.0, ge=0, description="relative frequency")
    id_field: str | None = Field(None, description="body field holding the operation id (history id)")
    expect: list[int] | None = Field(None, description="statuses that mean ok (default: any 2xx)")
    retries: int = Field(0, ge=0, le=10, description="retries with the same id after an unknown outcome")
    retry_backoff: Duration = Field(0.2, description="pause before each retry")

    @field_validator("expect", mode="before")
    @classmethod
    def _one_status(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @model_validator(mode="after")
    def _check(self) -> OpTemplate:
        for p in placeholders([self.path, self.json_body, self.headers]):
            problem = check_placeholder(p)
            if problem:
                raise ValueError(problem)
        if self.id_field is not None and (
            not isinstance(self.json_body, dict) or self.id_field not in self.json_body
        ):
            raise ValueError(f"id_field {self.id_field!r} is not a key of the json body")
        return self


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://127.0.0.1:8080")
    rate: Rate = Field(description="target operations per second, e.g. 50/s")
    concurrency: int = Field(16, ge=1, le=2048, description="logical processes (max in flight)")
    duration: Duration | None = Field(None, description="stop by itself after this long")
    ops: list[OpTemplate] = Field(default_factory=list)
    ops_file: str | None = Field(None, description="YAML file with an ops: list (relative to the experiment)")
    timeout: Duration = Field(5.0, description="per request")
    seed: int | None = Field(None, description="default: the run's seed")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("rate")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("rate must be positive")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _some_ops(self) -> Params:
        if not self.ops and not self.ops_file:
            raise ValueError("give ops (a list of templates) or ops_file")
        names = [o.name for o in self.ops]
        if len(set(names)) != len(names):
            raise ValueError("template names must be unique")
        return self


class WorkloadError(Exception):
    """Bad workload input (a clear one-liner, never a traceback)."""


def load_ops_file(path: Path) -> list[OpTemplate]:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WorkloadError(f"ops_file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise WorkloadError(f"ops_file {path}: not valid YAML: {exc}") from exc
    ops = doc.get("ops") if isinstance(doc, dict) else doc
    if not isinstance(ops, list):
        raise WorkloadError(f"ops_file {path}: expected a list under ops:")
    out = []
    for i, raw in enumerate(ops):
        try:
            out.append(OpTemplate.model_validate(raw))
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(x) for x in e["loc"])
            raise WorkloadError(f"ops_file {path}: ops[{i}]{'.' + where if where else ''}: {e['msg']}") from exc
    return out


def _percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 2)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99), "max": round(s[-1], 2)}


class HttpWorkload:
    Params = Params

    def __init__(self, params: Params | dict[str, Any], ctx: Any, history_path: str | Path):
        self.params = params if isinstance(params, Params) else Params.model_validate(params)
        self.ctx = ctx
        self.history_path = Path(history_path)
        ops = list(self.params.ops)
        if self.params.ops_file:
            f = Path(self.params.ops_file)
            base = Path(getattr(ctx, "base_dir", None) or Path.cwd())
            ops += load_ops_file(f if f.is_absolute() else base / f)
        names = [o.name for o in ops]
        if len(set(names)) != len(names):
            raise WorkloadError(f"template names must be unique, got {names}")
        for o in ops:
            for dep in refs([o.path, o.json_body]):
                if dep not in names:
                    raise WorkloadError(f"template {o.name!r} picks from {dep!r}, which is not a template")
        if not any(o.weight > 0 for o in ops):
            raise WorkloadError("every template has weight 0")
        self.ops = ops
        self.needs = {o.name: refs([o.path, o.json_body]) for o in ops}
        self.seed = self.params.seed if self.params.seed is not None else int(getattr(ctx, "seed", 0))
        self.pools = Pools()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writer: HistoryWriter | None = None
        self.error: str | None = None
        self.seqs = dict.fromkeys(names, 0)
        self.latency: dict[str, list[float]] = {}
        self.lag_ms: list[float] = []
        self.scheduled = 0
        self.skipped_busy = 0
        self.no_eligible = 0
        self.started_at: float | None = None
        self.t_start = 0.0
        self.t_end = 0.0
        self._lat_lock = threading.Lock()
        self._summary: dict[str, Any] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.writer = HistoryWriter(self.history_path)
        self.started_at = time.time()
        self._event("workload.start", workload="http", history=str(self.history_path),
                    rate=self.params.rate, concurrency=self.params.concurrency, seed=self.seed)
        self._thread = threading.Thread(target=self._run, name="chaoskit-http-workload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return
        if self.writer is not None and not self.writer.closed:
            self.writer.close()
            s = self.summary()
            self._event("workload.finished", **{k: s[k] for k in ("counts", "target_rate", "achieved_rate")})
            if s.get("rate_note"):
                self._event("workload.rate", target=s["target_rate"], achieved=s["achieved_rate"],
                            note=s["rate_note"])

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _event(self, event_kind: str, **data: Any) -> None:
        ev = getattr(self.ctx, "event", None)
        if ev is not None:
            ev(event_kind, **data)

    def _run(self) -> None:
        try:
            self._main()
        except Exception as exc:  # noqa: BLE001 - reported in the summary, never a silent death
            self.error = f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ the loop

    def _client(self, ssl_ctx: Any) -> httpx.Client:
        # One SSL context for all clients: httpx builds one per client otherwise (~10 ms CPU each).
        # TCP_NODELAY: httpx writes headers and body separately; with Nagle the body waits for
        # the server's delayed ACK (~40 ms a request, measured against http.server).
        transport = httpx.HTTPTransport(
            verify=ssl_ctx,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        return httpx.Client(base_url=self.params.base_url, timeout=httpx.Timeout(self.params.timeout),
                            transport=transport, headers=self.params.headers)

    def _main(self) -> None:
        idle: deque[_Worker] = deque()
        lock = threading.Lock()
        ssl_ctx = ssl.create_default_context()
        workers = [_Worker(self, i, idle, lock, self._client(ssl_ctx)) for i in range(self.params.concurrency)]
        for w in workers:
            w.thread.start()
        ready = time.monotonic() + 5
        while len(idle) < len(workers) and time.monotonic() < ready:  # all waiting before tick 0
            time.sleep(0.001)
        try:
            self._schedule(idle, lock)
        finally:
            for w in workers:
                w.jobs.put(None)
            for w in workers:
                w.thread.join()

    def _schedule(self, idle: deque[_Worker], lock: threading.Lock) -> None:
        interval = 1.0 / self.params.rate
        start = time.monotonic()
        self.t_start = start
        end = start + self.params.duration if self.params.duration is not None else float("inf")
        rng = random.Random(f"{self.seed}:schedule")
        k = 0
        while not self._stop.is_set():
            deadline = start + k * interval
            if deadline >= end:
                break
            now = time.monotonic()
            if deadline > now:
                self._stop.wait(min(deadline - now, 0.2))
                continue  # re-check stop (and the clock) after every sleep
            k += 1
            self.scheduled += 1
            self.lag_ms.append((now - deadline) * 1000)
            tmpl = self._choose(rng)
            if tmpl is None:
                self.no_eligible += 1
                continue
            with lock:
                worker = idle.pop() if idle else None
            if worker is None:
                self.skipped_busy += 1
                continue
            seq = self.seqs[tmpl.name]
            self.seqs[tmpl.name] = seq + 1
            worker.jobs.put((tmpl, seq))
        self.t_end = min(time.monotonic(), end)

    def _choose(self, rng: random.Random) -> OpTemplate | None:
        ready = [o for o in self.ops if o.weight > 0 and self.pools.ready(self.needs[o.name])]
        if not ready:
            return None
        return rng.choices(ready, weights=[o.weight for o in ready])[0]

    def _one(self, client: httpx.Client, tmpl: OpTemplate, seq: int, worker: _Worker) -> None:
        assert self.writer is not None
        rng = random.Random(f"{self.seed}:{tmpl.name}:{seq}")
        gen_id = op_id(self.seed, tmpl.name, seq)
        cache: dict[str, str] = {}
        ctx = {"id": gen_id, "seq": seq}

        def draw(op: str, take: bool) -> str | None:
            return self.pools.draw(op, rng, take)

        try:
            path = render(tmpl.path, ctx, rng, draw, cache)
            body = render(tmpl.json_body, ctx, rng, draw, cache)
            headers = render(tmpl.headers, ctx, rng, draw, cache)
        except Unavailable:
            self.no_eligible += 1
            return
        hid = str(body[tmpl.id_field]) if tmpl.id_field else gen_id
        value = dict(body) if isinstance(body, dict) else ({"body": body} if body is not None else {})
        inv: dict[str, Any] = {"type": "invoke", "process": worker.process, "op": tmpl.name, "id": hid,
                               "value": value, "path": path}
        if cache:
            inv["refs"] = dict(cache)
        self.writer.write(inv)
        t0 = time.perf_counter()
        outcome, error, extra = "info", "the workload failed before the outcome was known", {}
        try:
            outcome, error, extra = self._attempts(client, tmpl, path, body, headers)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            rec: dict[str, Any] = {"type": outcome, "process": worker.process, "op": tmpl.name, "id": hid,
                                   "value": {**value, **extra}}
            if error:
                rec["error"] = error
            self.writer.write(rec)
            with self._lat_lock:
                self.latency.setdefault(f"{tmpl.name}:{outcome}", []).append(ms)
            if outcome == "ok":
                self.pools.add(tmpl.name, hid)
            elif outcome == "info":
                worker.process += self.params.concurrency  # Jepsen: that process may still be in flight

    def _attempts(self, client: httpx.Client, tmpl: OpTemplate, path: str, body: Any,
                  headers: dict[str, str]) -> tuple[str, str | None, dict[str, Any]]:
        """Outcome of the operation over its retries: once an attempt may have reached the server,
        a later refusal cannot make it a definite fail."""
        maybe_sent = False
        outcome, error, extra = "info", None, {}
        for attempt in range(tmpl.retries + 1):
            if attempt:
                time.sleep(tmpl.retry_backoff)
            outcome, error, extra = self._attempt(client, tmpl, path, body, headers)
            if tmpl.retries:
                extra["attempts"] = attempt + 1
            if outcome != "info":
                break
            maybe_sent = True
        if outcome == "fail" and maybe_sent and "http_status" not in extra:
            outcome, error = "info", f"earlier attempt unknown; last: {error}"
        return outcome, error, extra

    def _attempt(self, client: httpx.Client, tmpl: OpTemplate, path: str, body: Any,
                 headers: dict[str, str]) -> tuple[str, str | None, dict[str, Any]]:
        try:
            r = client.request(tmpl.method, path, json=body, headers=headers or None)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return "fail", f"not sent: {type(exc).__name__}: {exc}"[:300], {}
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return "fail", f"not sent: {type(exc).__name__}: {exc}"[:300], {}
        except httpx.TimeoutException as exc:
            return "info", f"timeout: {type(exc).__name__}", {}
        except httpx.HTTPError as exc:  # reset, protocol error, read error after sending
            return "info", f"{type(exc).__name__}: {exc}"[:300], {}
        extra: dict[str, Any] = {"http_status": r.status_code}
        text = r.text
        try:
            extra["response"] = json.loads(text) if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS]
        except ValueError:
            extra["response"] = text[:MAX_VALUE_CHARS]
        ok = r.status_code in tmpl.expect if tmpl.expect else 200 <= r.status_code < 300
        if ok:
            return "ok", None, extra
        err = f"HTTP {r.status_code}: {text[:200]}"
        if 400 <= r.status_code < 500:
            return "fail", err, extra
        return "info", err, extra


    # ------------------------------------------------------------ results

    def summary(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        lat_all: list[float] = []
        lat: dict[str, dict[str, float]] = {}
        for key, xs in sorted(self.latency.items()):
            op, outcome = key.rsplit(":", 1)
            counts.setdefault(op, {})[outcome] = len(xs)
            lat[key] = _percentiles(xs)
            lat_all += xs
        by_type = self.writer.counts if self.writer else {}
        elapsed = max(1e-9, (self.t_end or 0) - self.t_start) if self.t_end else 0.0
        invoked = int(by_type.get("invoke", 0))
        achieved = invoked / elapsed if elapsed else 0.0
        target = self.params.rate
        out: dict[str, Any] = {
            "kind": "http",
            "history": str(self.history_path),
            "seed": self.seed,
            "counts": {t: int(by_type.get(t, 0)) for t in ("invoke", "ok", "fail", "info")},
            "by_op": counts,
            "target_rate": round(target, 3),
            "achieved_rate": round(achieved, 3),
            "elapsed_s": round(elapsed, 3),
            "scheduled": self.scheduled,
            "skipped_busy": self.skipped_busy,
            "no_eligible": self.no_eligible,
            "latency_ms": _percentiles(lat_all),
            "latency_ms_by_op": lat,
            "schedule_lag_ms": _percentiles(self.lag_ms),
            "rate_note": None,
        }
        if self.error:
            out["error"] = self.error
        if elapsed and abs(achieved - target) > 0.05 * target:
            out["rate_note"] = self._rate_note(achieved, target, out)
        return out

    def _rate_note(self, achieved: float, target: float, s: dict[str, Any]) -> str:
        why = []
        if self.skipped_busy:
            xs = [x for v in self.latency.values() for x in v]
            mean = sum(xs) / len(xs) if xs else 0.0
            cap = self.params.concurrency / max(mean, 1e-3) * 1000
            why.append(
                f"{self.skipped_busy} of {self.scheduled} ticks skipped: all {self.params.concurrency} "
                f"processes busy (server latency mean {mean:.0f} ms, p99 {s['latency_ms'].get('p99', 0)} ms; "
                f"{self.params.concurrency} processes sustain about {cap:.0f} ops/s at that mean, less "
                "in its bursts: raise concurrency or lower the rate)"
            )
        if self.no_eligible:
            why.append(f"{self.no_eligible} ticks found no eligible template (pick/take pools empty)")
        lag = s["schedule_lag_ms"].get("p99", 0)
        if lag > 20:
            why.append(f"the load generator fell behind its schedule (lag p99 {lag} ms): CPU-bound client")
        if self.error:
            why.append(f"the workload stopped on an error: {self.error}")
        if not why:
            why.append("stopped early or too short to settle")
        return f"achieved {achieved:.1f} ops/s of {target:.1f} target: " + "; ".join(why)


class _Worker:
    """One logical process: a thread with its own httpx.Client (one keep-alive connection)."""

    def __init__(self, wl: HttpWorkload, index: int, idle: deque[_Worker], lock: threading.Lock,
                 client: httpx.Client):
        self.wl = wl
        self.client = client
        self.process = index
        self.idle = idle
        self.lock = lock
        self.jobs: queue.SimpleQueue[tuple[OpTemplate, int] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"chaoskit-http-p{index}", daemon=True)

    def _loop(self) -> None:
        with self.lock:
            self.idle.append(self)
        with self.client as client:
            while True:
                job = self.jobs.get()
                if job is None:
                    return
                try:
                    self.wl._one(client, job[0], job[1], self)
                except Exception as exc:  # noqa: BLE001 - keep the process alive, report it
                    self.wl.error = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.idle.append(self)
