"""The on-disk fault ledger: a fault is written here *before* it is applied and removed after it
is reverted. Whatever is left after a crash is what ``chaoskit rollback`` must undo."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class FaultLedger:
    def __init__(self, state_dir: Path, run_id: str):
        self.dir = Path(state_dir) / "runs" / run_id / "faults"
        self.run_id = run_id

    def add(self, record: dict[str, Any]) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        entry_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        data = dict(record, run_id=self.run_id, entry=entry_id, at=time.time())
        tmp = self.dir / f".{entry_id}.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / f"{entry_id}.json")
        _fsync_dir(self.dir)
        return entry_id

    def update(self, entry_id: str, **extra: Any) -> None:
        path = self.dir / f"{entry_id}.json"
        data = json.loads(path.read_text()) | extra
        tmp = self.dir / f".{entry_id}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def remove(self, entry_id: str) -> None:
        try:
            (self.dir / f"{entry_id}.json").unlink()
        except FileNotFoundError:
            pass

    def entries(self) -> list[dict[str, Any]]:
        return list(_read_dir(self.dir))


def _read_dir(d: Path) -> Iterator[dict[str, Any]]:
    if not d.is_dir():
        return
    # newest first: undo in reverse order of application
    for path in sorted(d.glob("*.json"), reverse=True):
        try:
            yield json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue


def pending_runs(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """run id -> fault records still in the ledger."""
    runs_dir = Path(state_dir) / "runs"
    out: dict[str, list[dict[str, Any]]] = {}
    if not runs_dir.is_dir():
        return out
    for run in sorted(runs_dir.iterdir()):
        entries = list(_read_dir(run / "faults"))
        if entries:
            out[run.name] = entries
    return out


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
