"""Kill precision: from the moment a kill is due to the target process being gone.

Three paths side by side, in one run, on fresh containers:
  pid     chaoskit's direct path: os.kill() on the cached init PID (root on the Docker host)
  api     chaoskit's Docker Engine API path (docker SDK, container.kill)
  docker  `docker kill` run as a subprocess, as a shell-based tool does

"Gone" is observed with a pidfd on the container's init process, by a thread parked in poll()
before the kill is issued, so it sees the exit even while the kill call is still returning. Targets (issue 2): pid p50 < 2 ms, api p50 < 25 ms.

    python bench/kill_latency.py [--trials 30]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import threading
import time

import docker

from chaoskit.images import ensure_base_image


def one(client, image: str, method: str) -> float:
    c = client.containers.run(image, ["sleep", "3600"], detach=True, labels={"chaoskit.bench": "1"})
    try:
        c.reload()
        pid = c.attrs["State"]["Pid"]
        fd = os.pidfd_open(pid)
        gone: list[float] = []

        def watch() -> None:  # sees the exit while the kill call may still be returning
            p = select.poll()
            p.register(fd, select.POLLIN)
            p.poll(10_000)
            gone.append(time.perf_counter())

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.01)  # the watcher is parked in poll()
        try:
            t0 = time.perf_counter()
            if method == "pid":
                os.kill(pid, signal.SIGKILL)
            elif method == "api":
                c.kill(signal="SIGKILL")
            else:
                subprocess.run(["docker", "kill", "-s", "KILL", c.id], check=True, capture_output=True)
            returned = time.perf_counter()
            watcher.join(10)
            return (gone[0] - t0) * 1000, (returned - t0) * 1000
        finally:
            os.close(fd)
    finally:
        c.remove(force=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root on the Docker host (the direct PID path)")
    client = docker.from_env()
    image = ensure_base_image(client)
    res: dict[str, list[float]] = {"pid": [], "api": [], "docker": []}
    ret: dict[str, list[float]] = {"pid": [], "api": [], "docker": []}
    for _ in range(args.trials):  # interleaved, so load changes hit all three alike
        for m in res:
            landed, returned = one(client, image, m)
            res[m].append(landed)
            ret[m].append(returned)
    labels = {"pid": "chaoskit direct PID (os.kill)", "api": "chaoskit Docker API", "docker": "`docker kill` subprocess"}
    print(f"{'path':<32} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'min':>7} {'max':>8}")
    print("-" * 76)
    for m, xs in res.items():
        print(f"{labels[m]:<32} {statistics.median(xs):>8.2f} {pct(xs, .9):>8.2f} {pct(xs, .99):>8.2f} "
              f"{min(xs):>7.2f} {max(xs):>8.2f}")
    print("\n(due -> process gone; the call itself returned after, p50: "
          + ", ".join(f"{m} {statistics.median(v):.1f} ms" for m, v in ret.items()) + ")")
    pid50, api50 = statistics.median(res["pid"]), statistics.median(res["api"])
    print(f"\ntargets: pid p50 < 2 ms: {'MET' if pid50 < 2 else 'NOT MET'} ({pid50:.2f}); "
          f"api p50 < 25 ms: {'MET' if api50 < 25 else 'NOT MET'} ({api50:.2f})")


if __name__ == "__main__":
    main()
