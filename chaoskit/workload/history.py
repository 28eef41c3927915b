"""The workload's history: JSON lines, each operation once as ``invoke`` and then once as ``ok``,
``fail`` or ``info`` (outcome unknown). This is what the history checker judges the ledger
against, so the writer never drops a line and the reader never crashes on a bad one.

Fields: ``type``, ``process`` (worker id; a worker that saw ``info`` continues under a new id,
as in Jepsen, because its last operation may still be in flight), ``op`` (template name),
``id`` (the operation's unique id, e.g. the client_order_id), ``time`` (ns since the workload
started, monotonic), ``wall`` (unix seconds), ``value`` (request parameters; on completions
the relevant part of the response), ``error`` (fail/info).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

TYPES = ("invoke", "ok", "fail", "info")
COMPLETIONS = ("ok", "fail", "info")


class HistoryRecord(BaseModel):
    """One line. Extra keys are kept (user programs may add their own)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["invoke", "ok", "fail", "info"]
    process: int | str
    op: str
    id: str | int | None = None
    time: int | None = None
    wall: float | None = None
    value: Any = None
    error: str | None = None


class HistoryLineError(ValueError):
    pass


def parse_line(line: str) -> dict[str, Any]:
    """A validated record, or HistoryLineError with a one-line reason."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise HistoryLineError(f"not JSON: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise HistoryLineError("not a JSON object")
    try:
        rec = HistoryRecord.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "line"
        raise HistoryLineError(f"{where}: {first['msg']}") from exc
    return rec.model_dump(exclude_none=False)


class HistoryWriter:
    """Thread-safe, buffered. ``time`` comes from one monotonic clock started with the writer."""

    def __init__(self, path: str | Path, t0_ns: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self.t0_ns = t0_ns if t0_ns is not None else time.monotonic_ns()
        self.counts: Counter[str] = Counter()
        self._last_flush = time.monotonic()
        self.closed = False

    def now(self) -> int:
        return time.monotonic_ns() - self.t0_ns

    def write(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``time``/``wall`` if missing, append one line. Returns the stamped record."""
        if "time" not in rec or rec["time"] is None:
            rec["time"] = self.now()
        if "wall" not in rec or rec["wall"] is None:
            rec["wall"] = time.time()
        line = json.dumps(rec, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self.closed:
                raise RuntimeError("history writer is closed")
            self._fh.write(line)
            self.counts[rec["type"]] += 1
            now = time.monotonic()
            if now - self._last_flush > 0.5:  # a crashed runner still leaves most of the history
                self._fh.flush()
                self._last_flush = now
        return rec

    def flush(self) -> None:
        with self._lock:
            if not self.closed:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self._fh.flush()
                self._fh.close()
                self.closed = True


def read_history(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | HistoryLineError]]:
    """(line number, record or the error of a bad line)."""
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, parse_line(line)
            except HistoryLineError as exc:
                yield n, exc


@dataclass
class Completeness:
    """Is every invoke matched by exactly one completion, and is every id used once?"""

    invokes: int = 0
    completions: Counter[str] = field(default_factory=Counter)
    open: list[str] = field(default_factory=list)  # invoked, never completed
    orphans: list[str] = field(default_factory=list)  # completed, never invoked
    double: list[str] = field(default_factory=list)  # completed twice
    duplicate_ids: list[str] = field(default_factory=list)  # invoked twice
    bad_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.open or self.orphans or self.double or self.duplicate_ids or self.bad_lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "complete": self.ok,
            "invokes": self.invokes,
            "completions": dict(self.completions),
            "open": self.open[:20],
            "orphans": self.orphans[:20],
            "double": self.double[:20],
            "duplicate_ids": self.duplicate_ids[:20],
            "bad_lines": self.bad_lines[:20],
        }


def check_complete(path: str | Path) -> Completeness:
    """Operations are keyed by (op, id); records without an id are keyed by process order."""
    res = Completeness()
    pending: dict[tuple[str, str], int] = {}
    seen_invoke: set[tuple[str, str]] = set()
    done: set[tuple[str, str]] = set()
    for n, rec in read_history(path):
        if isinstance(rec, HistoryLineError):
            res.bad_lines.append(f"line {n}: {rec}")
            continue
        key = (rec["op"], str(rec["id"]) if rec["id"] is not None else f"process:{rec['process']}")
        label = f"{key[0]}/{key[1]}"
        if rec["type"] == "invoke":
            res.invokes += 1
            if key in seen_invoke:
                res.duplicate_ids.append(label)
            seen_invoke.add(key)
            pending[key] = n
        else:
            res.completions[rec["type"]] += 1
            if key in pending:
                del pending[key]
                done.add(key)
            elif key in done:
                res.double.append(label)
            else:
                res.orphans.append(label)
    res.open = [f"{op}/{i}" for op, i in pending]
    return res
