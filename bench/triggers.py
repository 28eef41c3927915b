"""Log-trigger precision: from a log line being written inside the container to the SIGKILL
landing on the container's process, over many firings.

A container logs `begin <wall time>` every 20 ms. For each firing chaoskit's
own log trigger follows its log stream, and chaoskit's container.kill (direct PID path) fires
on the matching line. "Landed" is the later of kill(2) returning and the last heartbeat the target wrote (every
~0.5 ms) to a file shared with the host: after that it ran no user code. The time the process
is reaped (pidfd) is printed too, and so is the trigger's own share. Target
(issue 7): p50 < 10 ms, p99 < 50 ms over at least 200 firings.

    python bench/triggers.py [--firings 200]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import tempfile
import time
import uuid

import docker

from chaoskit.backends.base import Selection
from chaoskit.backends.compose import ComposeBackend
from chaoskit.faults.container import Kill
from chaoskit.images import ensure_base_image
from chaoskit.runner.context import RunContext
from chaoskit.triggers.log import LogTrigger

# Logs a `begin` line every 20 ms; between lines it writes a heartbeat timestamp every ~0.5 ms
# to a file shared with the host, so the last heartbeat says when the process stopped running.
LOGGER = """
import os, time
fd = os.open('/hb/beat', os.O_RDWR | os.O_CREAT)
nxt = 0.0
while True:
    now = time.time()
    os.pwrite(fd, f'{now:.6f}'.encode().ljust(24), 0)
    if now >= nxt:
        print(f'begin {now:.6f}', flush=True)
        nxt = now + 0.02
    time.sleep(0.0005)
"""


def wait_running(c, old_pid: int | None, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.reload()
        pid = c.attrs["State"]["Pid"]
        if c.status == "running" and pid and pid != old_pid:
            return pid
        time.sleep(0.02)
    raise RuntimeError("container did not come back")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--firings", type=int, default=200)
    args = ap.parse_args()
    client = docker.from_env()
    image = ensure_base_image(client)
    project = f"ckbench{uuid.uuid4().hex[:6]}"
    hb = tempfile.mkdtemp(prefix="ckbench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    c = client.containers.run(
        image, ["python3", "-u", "-c", LOGGER], detach=True, volumes={hb: {"bind": "/hb", "mode": "rw"}},
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "logger", "chaoskit.bench": "1"},
    )
    lat: list[float] = []
    observe: list[float] = []
    applied: list[float] = []
    gone_l: list[float] = []
    try:
        backend = ComposeBackend(project, client=client)
        ctx = RunContext(run_id="bench", seed=1, backend=backend)
        pid = wait_running(c, None)
        for _ in range(args.firings):
            trig = LogTrigger(LogTrigger.Params(service="logger", match=r"^begin "), ctx, "bench")
            fault = Kill(Kill.Params(signal="SIGKILL", await_exit=0), Selection(service="logger"), ctx)
            fault.prepare()
            fd = os.pidfd_open(fault.instances[0].pid)
            trig.arm()
            firing = trig.wait(time.monotonic() + 10)
            if firing is None:
                raise RuntimeError("trigger did not fire")
            t_a = time.time()
            fault.apply()
            t_sent = time.time()  # kill(2) returned: SIGKILL is queued and cannot be caught
            applied.append((t_a - float(firing.evidence["line"].split()[1])) * 1000)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(5000)
            gone = time.time()
            with open(os.path.join(hb, "beat")) as fh:
                stopped = float(fh.read().strip())
            os.close(fd)
            trig.close()
            written = float(firing.evidence["line"].split()[1])
            lat.append((max(stopped, t_sent) - written) * 1000)
            gone_l.append((gone - written) * 1000)
            observe.append((firing.observed_wall - written) * 1000)
            while c.reload() or c.status == "running":
                time.sleep(0.01)
            c.start()  # restart by hand: Docker's restart policy backs off after quick deaths
            pid = wait_running(c, pid)
    finally:
        c.remove(force=True)
        import shutil

        shutil.rmtree(hb, ignore_errors=True)
    lat.sort()
    observe.sort()

    def p(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    print(f"{f'stage (ms, n={len(lat)})':<40} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    print("-" * 72)
    print(f"{'line written -> seen by the trigger':<40} {statistics.median(observe):>7.2f} {p(observe, .9):>7.2f} "
          f"{p(observe, .99):>7.2f} {observe[-1]:>7.2f}")
    applied.sort()
    print(f"{'line written -> kill called':<40} {statistics.median(applied):>7.2f} {p(applied, .9):>7.2f} "
          f"{p(applied, .99):>7.2f} {applied[-1]:>7.2f}")
    print(f"{'line written -> SIGKILL landed':<40} {statistics.median(lat):>7.2f} {p(lat, .9):>7.2f} "
          f"{p(lat, .99):>7.2f} {lat[-1]:>7.2f}")
    gone_l.sort()
    print(f"{'line written -> process reaped (pidfd)':<40} {statistics.median(gone_l):>7.2f} {p(gone_l, .9):>7.2f} "
          f"{p(gone_l, .99):>7.2f} {gone_l[-1]:>7.2f}")
    print("(landed = the later of kill(2) returning and the target's last heartbeat: after that it ran no user\n"
          " code; reaped also includes the kernel tearing the process down)")
    ok = statistics.median(lat) < 10 and p(lat, 0.99) < 50
    print(f"\ntarget p50 < 10 ms and p99 < 50 ms: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
