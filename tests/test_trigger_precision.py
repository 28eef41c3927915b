"""A log-triggered SIGKILL lands inside the operation it aims at: 20 of 20 trials.

The target logs `op.begin n=N`, works 50 ms, logs `op.end n=N`. chaoskit's log trigger and
container.kill (direct PID path) fire on `op.begin`; the container's own log then shows that
`op.end n=N` was never written."""

from __future__ import annotations

import time
import uuid

from chaoskit.backends.base import Selection
from chaoskit.backends.compose import ComposeBackend
from chaoskit.faults.container import Kill
from chaoskit.runner.context import RunContext
from chaoskit.triggers.log import LogTrigger

WORKER = (
    "import sys, time\n"
    "i = 0\n"
    "while True:\n"
    "    i += 1\n"
    "    print(f'op.begin n={i}', flush=True)\n"
    "    time.sleep(0.05)\n"
    "    print(f'op.end n={i}', flush=True)\n"
    "    time.sleep(0.1)\n"
)


def test_kill_lands_between_begin_and_end_20_of_20(docker_client, base_image):
    project = f"ckprec{uuid.uuid4().hex[:6]}"
    c = docker_client.containers.run(
        base_image, ["python3", "-u", "-c", WORKER], detach=True,
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "worker", "chaoskit.test": "1"},
    )
    try:
        ctx = RunContext(run_id="prec", seed=1, backend=ComposeBackend(project, client=docker_client))
        inside = 0
        for trial in range(20):
            deadline = time.monotonic() + 20
            while True:
                c.reload()
                if c.status == "running":
                    break
                assert time.monotonic() < deadline
                time.sleep(0.02)
            trig = LogTrigger(LogTrigger.Params(service="worker", match=r"op\.begin", nth=1 + trial % 3), ctx, "t")
            fault = Kill(Kill.Params(), Selection(service="worker"), ctx)
            fault.prepare()
            trig.arm()
            firing = trig.wait(time.monotonic() + 10)
            assert firing is not None, "trigger never fired"
            ev = fault.apply()
            trig.close()
            assert ev["via"] == "pid" and ev["took_effect"], ev
            n = firing.evidence["line"].split("n=")[1]
            lines = c.logs().decode().splitlines()
            last_run = lines[max(i for i, x in enumerate(lines) if x == "op.begin n=1"):]
            assert f"op.begin n={n}" in last_run
            if f"op.end n={n}" not in last_run:
                inside += 1
            c.reload()
            while c.status == "running":
                time.sleep(0.01)
                c.reload()
            c.start()
        assert inside == 20
    finally:
        c.remove(force=True)
