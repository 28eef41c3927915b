"""Bring your own client: any program that writes history JSON lines.

The program writes to stdout (``output: stdout``, the default) or to the file named by
``$CHAOSKIT_HISTORY`` (``output: file``; stdout is then free for logs). Lines are validated as
they arrive and copied into the run's history; a bad line is counted and reported, never a
traceback. The program also gets ``CHAOSKIT_SEED`` and ``CHAOSKIT_RUN_ID``. ``stop()`` sends
SIGTERM to its process group, then SIGKILL after ``stop_grace``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chaoskit.units import Duration
from chaoskit.workload.history import HistoryLineError, HistoryWriter, parse_line

MAX_BAD_EXAMPLES = 10


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1, description="program and arguments")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, description="working directory (relative to the experiment)")
    output: Literal["stdout", "file"] = "stdout"
    duration: Duration | None = Field(None, description="stop the program after this long")
    stop_grace: Duration = Field(10.0, description="SIGTERM to SIGKILL")


class CommandWorkload:
    Params = Params

    def __init__(self, params: Params | dict[str, Any] | list[str], ctx: Any, history_path: str | Path):
        if isinstance(params, list):
            params = {"argv": params}
        self.params = params if isinstance(params, Params) else Params.model_validate(params)
        self.ctx = ctx
        self.history_path = Path(history_path)
        self.raw_path = self.history_path.with_suffix(".raw.jsonl")
        self.proc: subprocess.Popen[bytes] | None = None
        self.writer: HistoryWriter | None = None
        self.bad = 0
        self.bad_examples: list[str] = []
        self.lines = 0
        self.log_tail: list[str] = []
        self.error: str | None = None
        self.returncode: int | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._done = threading.Event()
        self.t0 = 0.0
        self.t1 = 0.0

    def start(self) -> None:
        self.writer = HistoryWriter(self.history_path)
        env = {**os.environ, **self.params.env,
               "CHAOSKIT_SEED": str(getattr(self.ctx, "seed", 0)),
               "CHAOSKIT_RUN_ID": str(getattr(self.ctx, "run_id", ""))}
        if self.params.output == "file":
            self.raw_path.write_bytes(b"")
            env["CHAOSKIT_HISTORY"] = str(self.raw_path)
        cwd = self.params.cwd
        if cwd and not Path(cwd).is_absolute():
            cwd = str(Path(getattr(self.ctx, "base_dir", None) or Path.cwd()) / cwd)
        self.t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.params.argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError as exc:
            self.error = f"cannot start {self.params.argv[0]!r}: {exc.strerror or exc}"
            self.writer.close()
            self._done.set()
            self._event("workload.error", workload="command", error=self.error)
            return
        self._event("workload.start", workload="command", argv=self.params.argv, pid=self.proc.pid,
                    history=str(self.history_path))
        if self.params.output == "stdout":
            self._spawn(self._read_stream, self.proc.stdout, True)
        else:
            self._spawn(self._read_stream, self.proc.stdout, False)
            self._spawn(self._tail_file)
        self._spawn(self._read_stream, self.proc.stderr, False)
        self._spawn(self._watch)

    def _spawn(self, fn: Any, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name=f"chaoskit-cmd-{fn.__name__}")
        t.start()
        self._threads.append(t)

    def _event(self, event_kind: str, **data: Any) -> None:
        ev = getattr(self.ctx, "event", None)
        if ev is not None:
            ev(event_kind, **data)

    def _take(self, line: str) -> None:
        if not line.strip():
            return
        self.lines += 1
        try:
            rec = parse_line(line)
        except HistoryLineError as exc:
            self.bad += 1
            if len(self.bad_examples) < MAX_BAD_EXAMPLES:
                self.bad_examples.append(f"line {self.lines}: {exc} | {line.strip()[:120]}")
            return
        assert self.writer is not None
        if rec.get("time") is None:
            rec["time"] = self.writer.now()
        self.writer.write({k: v for k, v in rec.items() if v is not None or k in ("value",)})

    def _read_stream(self, stream: Any, history: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            if history:
                self._take(line)
            else:
                self.log_tail = (self.log_tail + [line.rstrip()])[-20:]

    def _tail_file(self) -> None:
        """Follow the file the program appends to; a partial last line waits for its newline."""
        buf = ""
        with open(self.raw_path, errors="replace") as fh:
            while True:
                chunk = fh.read(65536)
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split("\n")
                    for line in lines:
                        self._take(line)
                    continue
                if self._done.is_set():
                    if buf.strip():
                        self._take(buf)
                    return
                time.sleep(0.05)

    def _watch(self) -> None:
        assert self.proc is not None
        deadline = self.t0 + self.params.duration if self.params.duration is not None else None
        while self.proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline and not self._stopping.is_set():
                self._terminate()
            time.sleep(0.05)
        self.returncode = self.proc.returncode
        self.t1 = time.monotonic()
        self._done.set()

    def _terminate(self) -> None:
        self._stopping.set()
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(self.params.stop_grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            threading.Thread(target=self._terminate, daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)
        for t in self._threads:
            t.join(None if timeout is None else 5)
        if self.writer is not None and not self.writer.closed:
            self.writer.close()
            s = self.summary()
            if self.bad:
                self._event("workload.bad_lines", count=self.bad, examples=self.bad_examples)
            self._event("workload.finished", counts=s["counts"], returncode=self.returncode)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def summary(self) -> dict[str, Any]:
        counts: Counter[str] = self.writer.counts if self.writer else Counter()
        out: dict[str, Any] = {
            "kind": "command",
            "argv": self.params.argv,
            "history": str(self.history_path),
            "counts": {t: int(counts.get(t, 0)) for t in ("invoke", "ok", "fail", "info")},
            "lines": self.lines,
            "bad_lines": self.bad,
            "bad_examples": self.bad_examples,
            "returncode": self.returncode,
            "stopped_by_chaoskit": self._stopping.is_set(),
            "elapsed_s": round((self.t1 or time.monotonic()) - self.t0, 3) if self.t0 else 0.0,
        }
        if self.error:
            out["error"] = self.error
        if self.returncode not in (0, None) and not self._stopping.is_set():
            out["stderr_tail"] = self.log_tail[-10:]
        return out
