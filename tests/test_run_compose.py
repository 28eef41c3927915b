"""The runner end to end through the CLI, against real containers of tests/stacks/simple."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

STACK = Path(__file__).parent / "stacks" / "simple"


def run_cli(*args: str, timeout: float = 120, state_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if state_dir is not None:
        env["CHAOSKIT_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "chaoskit", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def experiment(tmp_path: Path, stack: dict, *bodies: str, name: str = "exp.yaml") -> Path:
    head = f"""\
    chaoskit: 1
    title: {name}
    target:
      compose: {{file: {STACK}/docker-compose.yml, project: {stack['project']}}}
    vars:
      app: http://{stack['ips']['app']}:8000
    """
    p = tmp_path / name
    p.write_text(textwrap.dedent(head) + "".join(textwrap.dedent(b) for b in bodies))
    return p


def container(docker_client, stack: dict, service: str):
    (c,) = docker_client.containers.list(
        all=True,
        filters={"label": [f"com.docker.compose.project={stack['project']}", f"com.docker.compose.service={service}"]},
    )
    return c


HYP = """\
hypothesis:
  - {name: app healthy, probe: http, url: "${app}/health", expect: {status: 200}}
  - {name: app running, probe: container, service: app, expect: {path: running, equals: true}}
"""


def test_sigkill_restart_and_recovery(tmp_path, simple_stack, docker_client):
    before = container(docker_client, simple_stack, "app")
    pid0, restarts0 = before.attrs["State"]["Pid"], before.attrs["RestartCount"]
    p = experiment(
        tmp_path,
        simple_stack,
        HYP,
        """\
        method:
          - {fault: container.kill, name: kill app, target: {service: app}, when: {after: 100ms}}
          - wait: {until: hypothesis, timeout: 30s}
        rollbacks:
          - {action: container.start, target: {service: app}}
        """,
    )
    j = tmp_path / "j.json"
    r = run_cli("run", str(p), "--journal", str(j), "--seed", "7")
    assert r.returncode == 0, r.stderr
    journal = json.loads(j.read_text())
    assert journal["status"] == "completed" and journal["exit_code"] == 0 and journal["seed"] == 7
    (fault,) = journal["faults"]
    ev = fault["evidence"]
    assert ev["took_effect"] is True and ev["signal"] == signal.SIGKILL
    inst = ev["instances"][0]
    assert inst["before"]["pid"] == pid0
    assert inst["after"]["exit_code"] == 137 or inst["after"]["pid"] != pid0
    steps = {(s["phase"], s["name"]): s for s in journal["steps"]}
    assert steps[("method", "wait until hypothesis")]["status"] == "ok"
    assert steps[("hypothesis-after", "app healthy")]["status"] == "ok"
    assert steps[("rollback", "container.start")]["status"] == "ok"
    after = container(docker_client, simple_stack, "app")
    assert after.attrs["RestartCount"] > restarts0 and after.attrs["State"]["Pid"] != pid0


def test_failed_step_still_reverts_and_rolls_back(tmp_path, simple_stack, docker_client):
    state = tmp_path / "state"
    p = experiment(
        tmp_path,
        simple_stack,
        HYP,
        """\
        method:
          - {fault: container.pause, name: freeze worker, target: {service: worker}}
          - fault: container.kill
            name: kill on a line that never comes
            target: {service: app}
            when: {log: {service: app, match: "this never appears"}, within: 1s}
        rollbacks:
          - {action: container.start, target: {service: app}}
        """,
    )
    j = tmp_path / "j.json"
    r = run_cli("run", str(p), "--journal", str(j), state_dir=state)
    assert r.returncode == 3, (r.returncode, r.stderr)
    journal = json.loads(j.read_text())
    assert journal["status"] == "failed"
    assert any("did not fire within 1.0s" in x for x in journal["reasons"])
    phases = [(s["phase"], s["status"]) for s in journal["steps"]]
    assert ("revert", "ok") in phases and ("rollback", "ok") in phases
    w = container(docker_client, simple_stack, "worker")
    assert w.attrs["State"]["Paused"] is False and w.status == "running"
    assert not list(state.glob("runs/*/faults/*.json")), "fault ledger must be empty after revert"


def test_hypothesis_failing_before_is_exit_1_and_method_skipped(tmp_path, simple_stack, docker_client):
    pid0 = container(docker_client, simple_stack, "app").attrs["State"]["Pid"]
    p = experiment(
        tmp_path,
        simple_stack,
        """\
        hypothesis:
          - {name: impossible, probe: http, url: "${app}/health", expect: {status: 418}}
        method:
          - {fault: container.kill, target: {service: app}}
        """,
    )
    j = tmp_path / "j.json"
    r = run_cli("run", str(p), "--journal", str(j))
    assert r.returncode == 1
    journal = json.loads(j.read_text())
    assert journal["status"] == "deviated"
    assert not [s for s in journal["steps"] if s["kind"] == "fault"]
    assert container(docker_client, simple_stack, "app").attrs["State"]["Pid"] == pid0


def test_sigterm_stops_method_reverts_and_exits_143(tmp_path, simple_stack, docker_client):
    state = tmp_path / "state"
    p = experiment(
        tmp_path,
        simple_stack,
        """\
        method:
          - {fault: container.pause, name: freeze worker, target: {service: worker}}
          - {pause: 60s}
        rollbacks:
          - {action: container.start, target: {service: worker}}
        """,
    )
    j = tmp_path / "j.json"
    env = dict(os.environ, CHAOSKIT_STATE_DIR=str(state))
    proc = subprocess.Popen([sys.executable, "-m", "chaoskit", "run", str(p), "--journal", str(j)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if container(docker_client, simple_stack, "worker").attrs["State"]["Paused"]:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("worker never paused")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == 143
    journal = json.loads(j.read_text())
    assert journal["status"] == "interrupted" and journal["exit_code"] == 143
    assert any("SIGTERM" in r for r in journal["reasons"])
    assert container(docker_client, simple_stack, "worker").attrs["State"]["Paused"] is False
    assert [s for s in journal["steps"] if s["phase"] == "rollback"][0]["status"] == "ok"


def test_stop_start_restart_and_timed_pause(tmp_path, simple_stack, docker_client):
    p = experiment(
        tmp_path,
        simple_stack,
        """\
        method:
          - {fault: container.stop, name: stop worker, target: {service: worker}, timeout: 1, duration: 500ms}
          - {fault: container.restart, name: restart worker, target: {service: worker}, timeout: 1}
          - {fault: container.pause, name: pause worker, target: {service: worker}, duration: 300ms}
          - {fault: container.kill, name: kill via api, target: {service: worker}, via: api, signal: SIGKILL}
          - {fault: container.start, name: start worker, target: {service: worker}}
        """,
    )
    j = tmp_path / "j.json"
    r = run_cli("run", str(p), "--journal", str(j))
    assert r.returncode == 0, r.stderr
    journal = json.loads(j.read_text())
    by = {f["step"]: f for f in journal["faults"]}
    assert by["method[0]"]["evidence"]["instances"][0]["after"]["status"] == "exited"
    assert by["method[1]"]["evidence"]["took_effect"] is True
    assert by["method[2]"]["evidence"]["instances"][0]["status"] == "paused"
    assert by["method[3]"]["evidence"]["via"] == "api" and by["method[3]"]["evidence"]["took_effect"]
    reverts = [s for s in journal["steps"] if s["phase"] == "revert"]
    assert [s["status"] for s in reverts] == ["ok", "ok"]  # stop and pause were held, then reverted
    w = container(docker_client, simple_stack, "worker")
    assert w.status == "running" and not w.attrs["State"]["Paused"]


def test_dry_run_touches_nothing(tmp_path, simple_stack, docker_client):
    pid0 = container(docker_client, simple_stack, "app").attrs["State"]["Pid"]
    p = experiment(tmp_path, simple_stack, "method:\n  - {fault: container.kill, target: {service: app}}\n")
    j = tmp_path / "j.json"
    r = run_cli("run", str(p), "--dry-run", "--journal", str(j))
    assert r.returncode == 0, r.stderr
    journal = json.loads(j.read_text())
    assert journal["dry_run_plan"][0]["would_hit"][0]["service"] == "app"
    assert container(docker_client, simple_stack, "app").attrs["State"]["Pid"] == pid0


def test_target_that_matches_nothing_refuses_to_start(tmp_path, simple_stack):
    p = experiment(tmp_path, simple_stack, "method:\n  - {fault: container.kill, target: {service: nosuch}}\n")
    r = run_cli("run", str(p), "--journal", str(tmp_path / "j.json"))
    assert r.returncode == 3
    assert "service(s) nosuch not found" in r.stderr
    other = tmp_path / "o.yaml"
    other.write_text(p.read_text().replace(simple_stack["project"], "no-such-project-xyz"))
    r = run_cli("run", str(other), "--journal", str(tmp_path / "j2.json"))
    assert r.returncode == 3 and "has no containers" in r.stderr


def test_log_triggered_kill_lands_inside_the_operation(tmp_path, simple_stack, docker_client):
    """worker logs op.begin, works 50 ms, logs op.end: the kill must land between the two."""
    p = experiment(
        tmp_path,
        simple_stack,
        """\
        method:
          - fault: container.kill
            target: {service: worker}
            when: {log: {service: worker, match: 'op\\.begin'}, within: 10s}
        """,
    )
    for trial in range(3):
        j = tmp_path / f"j{trial}.json"
        r = run_cli("run", str(p), "--journal", str(j))
        assert r.returncode == 0, r.stderr
        journal = json.loads(j.read_text())
        f = journal["faults"][0]
        line = f["trigger_evidence"]["line"]
        n = line.split("n=")[1]
        inst = f["evidence"]["instances"][0]
        finished = inst["after"]["finished_at"]
        # the log of the killed run: the matched op.begin has no op.end after it
        c = container(docker_client, simple_stack, "worker")
        logs = c.logs().decode().splitlines()
        assert f"op.begin n={n}" in logs
        assert f["delay_ms"] < 50, f
        assert finished and finished != "0001-01-01T00:00:00Z"
        idx = max(i for i, x in enumerate(logs) if x == f"op.begin n={n}")
        assert idx + 1 >= len(logs) or logs[idx + 1] != f"op.end n={n}", logs[idx : idx + 3]
