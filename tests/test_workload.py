"""The workloads against real local servers: classification, history completeness, seeded ids,
pick/take, retries, rate control, bad input, and the command workload."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaoskit.errors import ExperimentError
from chaoskit.runner.context import RunContext
from chaoskit.workload import WORKLOADS, make_workload
from chaoskit.workload.history import HistoryWriter, check_complete, read_history


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        srv: Server = self.server  # type: ignore[assignment]
        with srv.lock:
            srv.seen.append((self.path, body))
            n = srv.hits[body.get("id")] = srv.hits[body.get("id")] + 1
        path = self.path
        if path == "/ok":
            self._reply(200, {"echo": body.get("id")})
        elif path == "/reject":
            self._reply(409, {"error": "conflict"})
        elif path == "/boom":
            self._reply(500, {"error": "internal"})
        elif path == "/slow":
            time.sleep(srv.slow_s)
            self._reply(200, {"late": True})
        elif path == "/reset":
            # RST after the request arrived: the client cannot know whether it took effect
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif path == "/flaky":
            self._reply(500 if n == 1 else 200, {"n": n})
        elif path.startswith("/close/"):
            self._reply(200, {"closed": path.rsplit("/", 1)[1]})
        else:
            self._reply(404, {"error": "no route"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, Any]] = []
        self.hits: Counter[Any] = Counter()
        self.slow_s = 1.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _op(name: str, path: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "method": "POST", "path": path, "json": {"id": "${id}"}, "id_field": "id", **kw}


def _run(params: dict[str, Any], tmp_path: Path, seed: int = 1, name: str = "h.jsonl") -> tuple[Any, Path]:
    hist = tmp_path / name
    wl = make_workload("http", params, RunContext(run_id="t", seed=seed), hist)
    wl.start()
    wl.join()
    return wl, hist


def _records(hist: Path) -> list[dict[str, Any]]:
    out = []
    for _, rec in read_history(hist):
        assert isinstance(rec, dict), rec
        out.append(rec)
    return out


def test_classification_against_a_real_server(server: Server, tmp_path: Path) -> None:
    server.slow_s = 0.8
    ops = [_op("ok", "/ok"), _op("reject", "/reject"), _op("boom", "/boom"),
           _op("slow", "/slow"), _op("reset", "/reset")]
    wl, hist = _run({"base_url": server.url, "rate": 40, "duration": 1.5, "concurrency": 32,
                     "timeout": 0.3, "ops": ops}, tmp_path)
    done = check_complete(hist)
    assert done.ok, done.as_dict()
    by_op: dict[str, Counter[str]] = {}
    errors: dict[str, set[str]] = {}
    for r in _records(hist):
        if r["type"] != "invoke":
            by_op.setdefault(r["op"], Counter())[r["type"]] += 1
            errors.setdefault(r["op"], set()).add((r.get("error") or "").split(":")[0])
    assert set(by_op) == {"ok", "reject", "boom", "slow", "reset"}, by_op
    assert set(by_op["ok"]) == {"ok"}
    assert set(by_op["reject"]) == {"fail"}  # definite 4xx rejection
    assert set(by_op["boom"]) == {"info"}  # 5xx: may have happened
    assert set(by_op["slow"]) == {"info"} and errors["slow"] == {"timeout"}
    assert set(by_op["reset"]) == {"info"}  # reset after sending
    ok = next(r for r in _records(hist) if r["type"] == "ok")
    assert ok["value"]["http_status"] == 200 and ok["value"]["response"] == {"echo": ok["id"]}
    s = wl.summary()
    assert s["counts"]["invoke"] == sum(sum(c.values()) for c in by_op.values())


def test_connection_refused_is_fail(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    wl, hist = _run({"base_url": f"http://127.0.0.1:{port}", "rate": 20, "duration": 0.5,
                     "ops": [_op("x", "/ok")]}, tmp_path)
    recs = [r for r in _records(hist) if r["type"] != "invoke"]
    assert recs and all(r["type"] == "fail" and "not sent" in r["error"] for r in recs)
    assert check_complete(hist).ok


def test_ids_unique_and_reproduced_by_seed(server: Server, tmp_path: Path) -> None:
    params = {"base_url": server.url, "rate": 50, "duration": 0.6, "ops": [_op("a", "/ok"), _op("b", "/ok")]}
    _, h1 = _run(params, tmp_path, seed=5, name="1.jsonl")
    _, h2 = _run(params, tmp_path, seed=5, name="2.jsonl")
    _, h3 = _run(params, tmp_path, seed=6, name="3.jsonl")

    def ids(h: Path) -> list[tuple[str, str]]:
        return [(r["op"], r["id"]) for r in _records(h) if r["type"] == "invoke"]

    assert len(set(ids(h1))) == len(ids(h1)) > 10
    per_op = {op: {i for o, i in ids(h1) if o == op} for op in ("a", "b")}
    per_op2 = {op: {i for o, i in ids(h2) if o == op} for op in ("a", "b")}
    for op in ("a", "b"):  # ids are (seed, op, seq): the shorter run's ids are all in the longer
        small, big = sorted((per_op[op], per_op2[op]), key=len)
        assert small <= big
    assert not set(ids(h1)) & set(ids(h3))


def test_pick_and_take_refer_to_acknowledged_ops(server: Server, tmp_path: Path) -> None:
    ops = [_op("open", "/ok", weight=2),
           {"name": "close", "path": "/close/${take:open}", "json": {"id": "${id}", "trade": "${take:open}"},
            "id_field": "id", "weight": 1}]
    _, hist = _run({"base_url": server.url, "rate": 60, "duration": 1.5, "ops": ops}, tmp_path)
    recs = _records(hist)
    acked: dict[str, int] = {}
    closed: Counter[str] = Counter()
    for n, r in enumerate(recs):
        if r["op"] == "open" and r["type"] == "ok":
            acked[r["id"]] = n
        if r["op"] == "close" and r["type"] == "invoke":
            trade = r["value"]["trade"]
            assert r["path"] == f"/close/{trade}"  # one pick per operation, path and body agree
            assert trade in acked and acked[trade] < n, "closed before its open was acknowledged"
            closed[trade] += 1
    assert closed and max(closed.values()) == 1  # take: each open closed at most once


def test_retry_keeps_the_id_and_resolves_unknown(server: Server, tmp_path: Path) -> None:
    _, hist = _run({"base_url": server.url, "rate": 10, "duration": 0.5,
                    "ops": [_op("f", "/flaky", retries=2, retry_backoff="10ms")]}, tmp_path)
    oks = [r for r in _records(hist) if r["type"] == "ok"]
    assert oks and all(r["value"]["attempts"] == 2 for r in oks)
    assert all(server.hits[r["id"]] == 2 for r in oks)  # same id, same body, twice
    assert check_complete(hist).ok


def test_rate_control_holds_and_note_explains_a_miss(server: Server, tmp_path: Path) -> None:
    wl, _ = _run({"base_url": server.url, "rate": 50, "duration": 3, "concurrency": 8,
                  "ops": [_op("x", "/ok")]}, tmp_path, name="a.jsonl")
    s = wl.summary()
    assert abs(s["achieved_rate"] - 50) <= 2.5, s
    assert s["rate_note"] is None
    server.slow_s = 0.25
    wl, hist = _run({"base_url": server.url, "rate": 40, "duration": 1.5, "concurrency": 2, "timeout": 2,
                     "ops": [_op("x", "/slow")]}, tmp_path, name="b.jsonl")
    s = wl.summary()
    assert s["skipped_busy"] > 0 and s["achieved_rate"] < 0.5 * 40
    assert "processes busy" in s["rate_note"]
    assert check_complete(hist).ok


def test_stop_ends_an_open_ended_workload(server: Server, tmp_path: Path) -> None:
    hist = tmp_path / "h.jsonl"
    events: list[tuple[str, dict[str, Any]]] = []

    class Ctx(RunContext):
        def event(self, kind: str, **data: Any) -> None:
            events.append((kind, data))

    wl = make_workload("http", {"base_url": server.url, "rate": 100, "ops": [_op("x", "/ok")]},
                       Ctx(run_id="t", seed=1), hist)
    wl.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    wl.stop()
    wl.join()
    assert time.monotonic() - t0 < 2
    assert check_complete(hist).ok and wl.summary()["counts"]["invoke"] > 20
    kinds = [k for k, _ in events]
    assert kinds[0] == "workload.start" and events[0][1]["history"] == str(hist)
    assert "workload.finished" in kinds


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"base_url": "http://x", "rate": "fast", "ops": [_op("a", "/")]}, "rate"),
        ({"base_url": "http://x", "rate": 1, "ops": [_op("a", "/${bogus}")]}, "unknown placeholder"),
        ({"base_url": "http://x", "rate": 1, "ops": [_op("a", "/", colour="red")]}, "colour"),
        ({"base_url": "x", "rate": 1, "ops": [_op("a", "/")]}, "base_url"),
        ({"base_url": "http://x", "rate": 1}, "ops"),
        ({"base_url": "http://x", "rate": 1, "ops": [_op("a", "/${take:nope}")]}, "nope"),
        ({"base_url": "http://x", "rate": 1, "ops_file": "/nonexistent.yml"}, "ops_file"),
    ],
)
def test_bad_params_are_clear_errors(params: dict[str, Any], needle: str, tmp_path: Path) -> None:
    with pytest.raises(ExperimentError) as exc:
        make_workload("http", params, RunContext(run_id="t", seed=1), tmp_path / "h.jsonl")
    assert needle in str(exc.value)
    with pytest.raises(ExperimentError, match="unknown workload"):
        make_workload("grpc", {}, RunContext(run_id="t", seed=1), tmp_path / "h.jsonl")


def test_ledger_ops_file_is_valid() -> None:
    from chaoskit.workload.http import load_ops_file

    ops = load_ops_file(Path(__file__).parent.parent / "compose" / "ledger" / "workload.yml")
    assert {o.name for o in ops} == {"open", "fill", "close", "margin", "recon", "replay"}
    assert WORKLOADS["http"].Params.model_validate({"base_url": "http://x", "rate": "5/s", "ops_file": "f"})


def test_history_completeness_checker_finds_every_defect(tmp_path: Path) -> None:
    h = tmp_path / "h.jsonl"
    w = HistoryWriter(h)
    for rec in [
        {"type": "invoke", "process": 0, "op": "a", "id": "1"},
        {"type": "ok", "process": 0, "op": "a", "id": "1"},
        {"type": "ok", "process": 0, "op": "a", "id": "1"},  # second completion
        {"type": "invoke", "process": 1, "op": "a", "id": "2"},  # never completed
        {"type": "info", "process": 2, "op": "a", "id": "3"},  # never invoked
        {"type": "invoke", "process": 3, "op": "a", "id": "4"},
        {"type": "fail", "process": 3, "op": "a", "id": "4"},
        {"type": "invoke", "process": 3, "op": "a", "id": "4"},  # id reused
    ]:
        w.write(rec)
    w.close()
    with open(h, "a") as fh:
        fh.write("{not json\n")
        fh.write('{"type": "maybe", "process": 1, "op": "a"}\n')
    c = check_complete(h)
    assert not c.ok
    assert c.double == ["a/1"] and "a/2" in c.open and c.orphans == ["a/3"] and c.duplicate_ids == ["a/4"]
    assert len(c.bad_lines) == 2 and "type" in c.bad_lines[1]
    first = json.loads(h.read_text().splitlines()[0])
    assert isinstance(first["time"], int) and first["time"] >= 0 and first["wall"] > 1.7e9


PROGRAM = r"""
import json, os, sys, time
out = open(os.environ["CHAOSKIT_HISTORY"], "a") if len(sys.argv) > 1 and sys.argv[1] == "file" else sys.stdout
for i in range(5):
    out.write(json.dumps({"type": "invoke", "process": 0, "op": "w", "id": f"k{i}", "value": {"n": i}}) + "\n")
    out.write(json.dumps({"type": "ok", "process": 0, "op": "w", "id": f"k{i}"}) + "\n")
    out.flush()
out.write("this is not json\n")
out.write(json.dumps({"type": "invoke", "op": "w"}) + "\n")
out.flush()
print("seed=" + os.environ["CHAOSKIT_SEED"], file=sys.stderr)
if len(sys.argv) > 2:
    time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["stdout", "file"])
def test_command_workload_validates_lines(mode: str, tmp_path: Path) -> None:
    prog = tmp_path / "client.py"
    prog.write_text(PROGRAM)
    hist = tmp_path / "h.jsonl"
    wl = make_workload("command", {"argv": [sys.executable, str(prog), mode], "output": mode},
                       RunContext(run_id="t", seed=42), hist)
    wl.start()
    wl.join(timeout=30)
    s = wl.summary()
    assert s["returncode"] == 0 and s["counts"] == {"invoke": 5, "ok": 5, "fail": 0, "info": 0}
    assert s["bad_lines"] == 2 and "not JSON" in s["bad_examples"][0] and "process" in s["bad_examples"][1]
    assert check_complete(hist).ok
    assert [r["id"] for r in _records(hist) if r["type"] == "ok"] == [f"k{i}" for i in range(5)]


def test_command_workload_stop_and_bad_argv(tmp_path: Path) -> None:
    prog = tmp_path / "client.py"
    prog.write_text(PROGRAM)
    wl = make_workload("command", [sys.executable, str(prog), "stdout", "hang"],
                       RunContext(run_id="t", seed=1), tmp_path / "h.jsonl")
    wl.start()
    time.sleep(1.0)
    assert wl.running()
    t0 = time.monotonic()
    wl.stop()
    wl.join(timeout=20)
    assert time.monotonic() - t0 < 10 and not wl.running()
    s = wl.summary()
    assert s["stopped_by_chaoskit"] and s["counts"]["ok"] == 5
    bad = make_workload("command", {"argv": ["/nonexistent/client"]}, RunContext(run_id="t", seed=1),
                        tmp_path / "b.jsonl")
    bad.start()
    bad.join(timeout=5)
    assert "cannot start" in bad.summary()["error"]
    with pytest.raises(ExperimentError, match="argv"):
        make_workload("command", {"argv": []}, RunContext(run_id="t", seed=1), tmp_path / "c.jsonl")
