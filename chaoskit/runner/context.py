"""Everything a fault, probe, trigger, workload or checker may use during one run."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaoskit.secrets import Redactor

if TYPE_CHECKING:
    from chaoskit.backends.base import Backend
    from chaoskit.runner.journal import Journal
    from chaoskit.runner.ledger import FaultLedger


def default_state_dir() -> Path:
    """Where fault ledgers live: fixed per user, so ``chaoskit rollback`` finds them after a crash."""
    env = os.environ.get("CHAOSKIT_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "chaoskit"


@dataclass
class RunContext:
    run_id: str
    seed: int
    backend: Backend | None = None
    journal: Journal | None = None
    ledger: FaultLedger | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    redactor: Redactor = field(default_factory=Redactor)
    stop: threading.Event = field(default_factory=threading.Event)
    t0: float = field(default_factory=time.monotonic)
    rng: random.Random = field(init=False)
    vars: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    replay: dict[str, Any] | None = None  # step id -> recorded firing, set by `chaoskit replay`
    workload_history: Path | None = None  # the running workload's history file, for probes

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def child_rng(self, label: str) -> random.Random:
        """An RNG per step, so adding a step does not shift the random choices of the others."""
        return random.Random(f"{self.seed}:{label}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the run is stopped. Returns False when interrupted."""
        return not self.stop.wait(max(0.0, seconds))

    def event(self, kind: str, **data: Any) -> None:
        if self.journal is not None:
            self.journal.event(kind, **data)
