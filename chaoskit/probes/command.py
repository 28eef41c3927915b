"""Command probe: run a program; value {exit_code, stdout, stderr, duration_ms}."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from pydantic import Field

from chaoskit import registry
from chaoskit.errors import ProbeError
from chaoskit.probes.base import Probe, ProbeParams
from chaoskit.units import Duration


@registry.probes.register("command")
class CommandProbe(Probe):
    summary = "run a command: value {exit_code, stdout, stderr, duration_ms}"

    class Params(ProbeParams):
        argv: list[str] | None = Field(None, description="program and arguments (no shell)")
        shell: str | None = Field(None, description="a shell command line, run with sh -c")
        env: dict[str, str] = Field(default_factory=dict)
        cwd: str | None = None
        timeout: Duration = 30.0

    def read(self) -> dict[str, Any]:
        p = self.params
        if (p.argv is None) == (p.shell is None):
            raise ProbeError("command probe: give exactly one of argv or shell")
        argv = p.argv if p.argv is not None else ["sh", "-c", p.shell or ""]
        cwd = p.cwd
        if cwd and not os.path.isabs(cwd):
            cwd = str(self.ctx.base_dir / cwd)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=p.timeout,
                env={**os.environ, **p.env},
                cwd=cwd or str(self.ctx.base_dir),
            )
        except FileNotFoundError:
            raise ProbeError(f"command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise ProbeError(f"command timed out after {p.timeout}s: {argv[0]}") from None
        return {
            "exit_code": proc.returncode,
            "stdout": proc.stdout[-8192:],
            "stderr": proc.stderr[-4096:],
            "duration_ms": round((time.perf_counter() - t0) * 1000, 3),
        }
