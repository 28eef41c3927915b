"""Rate control of the HTTP workload: target vs achieved rate and latency, 10 s per step.

Two targets in the same run, side by side: a trivial local HTTP server (asyncio, fixed 200
reply: the baseline, i.e. what the load generator itself can do on this machine) and the
reference ledger stack (brought up through chaoskit with a unique project name, or an already
running one with --ledger-url).

    python bench/workload.py                      # both, 100 / 500 / 1000 ops/s
    python bench/workload.py --rates 100,1000 --seconds 5 --ledger-url http://172.18.0.4:8080
    python bench/workload.py --no-ledger          # baseline only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaoskit.runner.context import RunContext  # noqa: E402
from chaoskit.workload import make_workload  # noqa: E402
from chaoskit.workload.history import check_complete  # noqa: E402

REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class TrivialServer:
    """Minimal keep-alive HTTP/1.1 server on loopback in its own event loop thread."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(REPLY)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        srv = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = srv.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()


def run_one(base_url: str, rate: float, seconds: float, ops: dict[str, Any], concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chaoskit-bench-") as tmp:
        hist = Path(tmp) / "history.jsonl"
        ctx = RunContext(run_id=f"bench-{uuid.uuid4().hex[:6]}", seed=int(rate))
        params = {"base_url": base_url, "rate": rate, "duration": seconds, "concurrency": concurrency, **ops}
        w = make_workload("http", params, ctx, hist)
        w.start()
        w.join()
        s = w.summary()
        s["complete"] = check_complete(hist).ok
        return s


def row(target: str, s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    dev = (s["achieved_rate"] - s["target_rate"]) / s["target_rate"] * 100
    c = s["counts"]
    return (f"{target:<9} {s['target_rate']:>7.0f} {s['achieved_rate']:>9.1f} {dev:>+6.1f}% "
            f"{lat.get('p50', 0):>8.1f} {lat.get('p99', 0):>8.1f} {c['ok']:>6} {c['fail']:>5} {c['info']:>5} "
            f"{'yes' if s['complete'] else 'NO':>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="100,500,1000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--ledger-url", help="use this running ledger-api instead of starting one")
    ap.add_argument("--no-ledger", action="store_true")
    ap.add_argument("--json", help="also write all summaries to this file")
    ap.add_argument("--serve-trivial", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_trivial:
        srv = TrivialServer()
        print(srv.port, flush=True)
        threading.Event().wait()
    rates = [float(r) for r in args.rates.split(",")]

    # The baseline server runs in its own process: in ours it would share the GIL with the client.
    child = subprocess.Popen([sys.executable, __file__, "--serve-trivial"], stdout=subprocess.PIPE, text=True)
    port = int(child.stdout.readline())
    targets: list[tuple[str, str, dict[str, Any]]] = [
        ("trivial", f"http://127.0.0.1:{port}",
         {"ops": [{"name": "ping", "method": "POST", "path": "/x", "json": {"id": "${id}"}, "id_field": "id"}]}),
    ]
    project = None
    if not args.no_ledger:
        url = args.ledger_url
        if url is None:
            from chaoskit import stack

            project = f"bench{uuid.uuid4().hex[:6]}"
            print(f"bringing up the ledger stack as project {project} ...", file=sys.stderr)
            info = stack.up(ROOT / "compose" / "ledger", project=project, labels={"chaoskit.test": "1"},
                            env={"LEDGER_API_PORT": "", "BROKER_PORT": "", "LEDGER_PG_PORT": "",
                                 "LEDGER_DB_POOL": "32"})
            url = info.url("ledger-api", 8080)
        targets.append(("ledger", url, {"ops_file": str(ROOT / "compose" / "ledger" / "workload.yml")}))

    results = []
    try:
        print(f"{'target':<9} {'rate':>7} {'achieved':>9} {'dev':>7} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'ok':>6} {'fail':>5} {'info':>5} {'complete':>8}")
        for rate in rates:
            for name, url, ops in targets:
                s = run_one(url, rate, args.seconds, ops, args.concurrency)
                results.append({"target": name, **s})
                print(row(name, s), flush=True)
                if s.get("rate_note"):
                    print(f"          note: {s['rate_note']}", flush=True)
    finally:
        child.kill()
        child.wait()
        if project:
            from chaoskit import stack

            stack.down(project, ROOT / "compose" / "ledger")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
