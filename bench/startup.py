"""Start-up time: `chaoskit --version` and `chaoskit validate FILE` against Chaos Toolkit's
`chaos --version`, side by side in one run, each from its own console script in one clean
virtualenv (chaostoolkit is installed there only, never as a chaoskit dependency).

    python bench/startup.py [--runs 30] [--venv /tmp/chaoskit-bench-venv]

Target (issue 2): both chaoskit commands at most half of `chaos --version`'s median wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "tests" / "stacks" / "simple" / "kill-app.yaml"


def ensure_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # a regular (non-editable) install, like a user's
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT), "chaostoolkit"],
                   check=True)
    return venv / "bin"


def wall(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(3):  # warm the page cache
        subprocess.run(argv, capture_output=True)
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{argv} failed: {r.stderr.decode()[-500:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--venv", type=Path, default=Path("/tmp/chaoskit-bench-venv"))
    args = ap.parse_args()
    bin_ = ensure_venv(args.venv)
    cases = [
        ("chaos --version (Chaos Toolkit)", [str(bin_ / "chaos"), "--version"]),
        ("chaoskit --version", [str(bin_ / "chaoskit"), "--version"]),
        (f"chaoskit validate {EXPERIMENT.name}", [str(bin_ / "chaoskit"), "validate", str(EXPERIMENT)]),
    ]
    results = {name: wall(argv, args.runs) for name, argv in cases}
    base = statistics.median(results[cases[0][0]])
    print(f"{'command':<40} {'p50 ms':>8} {'p90 ms':>8} {'vs chaos':>9}")
    print("-" * 68)
    ok = True
    for name, xs in results.items():
        xs.sort()
        p50, p90 = statistics.median(xs), xs[int(len(xs) * 0.9) - 1]
        ratio = p50 / base
        print(f"{name:<40} {p50 * 1000:>8.1f} {p90 * 1000:>8.1f} {ratio:>8.2f}x")
        if name.startswith("chaoskit") and ratio > 0.5:
            ok = False
    print(f"\ntarget: chaoskit commands <= 0.50x of chaos --version: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
