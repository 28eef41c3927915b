"""The run journal: one JSON file per run, rewritten atomically after every step so a runner
that dies leaves a readable journal up to its last step. Secrets are redacted on every write."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaoskit.secrets import Redactor

JOURNAL_VERSION = 1


def utc_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "experiment"


def default_journal_path(title: str, reports_dir: Path | str = "reports") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(reports_dir) / f"{slug(title)}-{stamp}.json"


class Journal:
    def __init__(self, path: Path, redactor: Redactor, **header: Any):
        self.path = Path(path)
        self.redactor = redactor
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self.data: dict[str, Any] = {
            "chaoskit_journal": JOURNAL_VERSION,
            **header,
            "started": utc_iso(),
            "ended": None,
            "status": "running",
            "steps": [],
            "events": [],
        }
        self.flush()

    def offset(self) -> float:
        """Seconds since the run started, the time axis of the report."""
        return round(time.monotonic() - self._t0, 6)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
            self.flush()

    def event(self, kind: str, **data: Any) -> None:
        with self._lock:
            self.data["events"].append({"t": self.offset(), "at": utc_iso(), "kind": kind, **data})
            self.flush()

    @contextmanager
    def step(self, phase: str, kind: str, name: str, **info: Any) -> Iterator[dict[str, Any]]:
        """Record one step. The yielded dict is filled by the caller (status, value, evidence...)."""
        rec: dict[str, Any] = {
            "phase": phase,
            "kind": kind,
            "name": name,
            **info,
            "start": utc_iso(),
            "t_start": self.offset(),
            "status": "running",
        }
        with self._lock:
            self.data["steps"].append(rec)
            self.flush()
        try:
            yield rec
        except BaseException as exc:
            rec.setdefault("error", f"{type(exc).__name__}: {exc}")
            if rec["status"] == "running":
                rec["status"] = "error"
            raise
        finally:
            if rec["status"] == "running":
                rec["status"] = "ok"
            rec["end"] = utc_iso()
            rec["t_end"] = self.offset()
            rec["duration"] = round(rec["t_end"] - rec["t_start"], 6)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(self.redactor(self.data), indent=2, default=str))
            os.replace(tmp, self.path)

    def close(self, status: str, **final: Any) -> None:
        with self._lock:
            self.data.update(final)
            self.data["status"] = status
            self.data["ended"] = utc_iso()
            self.data["duration"] = self.offset()
            self.flush()


def load_journal(path: Path | str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
