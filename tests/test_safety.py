"""Blast radius, guards, secrets, parallel branches, replay, and crash rollback."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

STACKS = Path(__file__).parent / "stacks"


def cli(*args: str, state: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if state is not None:
        env["CHAOSKIT_STATE_DIR"] = str(state)
    return subprocess.run([sys.executable, "-m", "chaoskit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def write(tmp_path: Path, stack: dict, stack_name: str, body: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(
        textwrap.dedent(
            f"""\
            chaoskit: 1
            title: {name}
            target:
              compose: {{file: {STACKS / stack_name}/docker-compose.yml, project: {stack['project']}}}
            """
        )
        + textwrap.dedent(body)
    )
    return p


def containers(docker_client, project: str, service: str | None = None):
    labels = [f"com.docker.compose.project={project}"]
    if service:
        labels.append(f"com.docker.compose.service={service}")
    return sorted(docker_client.containers.list(all=True, filters={"label": labels}), key=lambda c: c.name)


@pytest.fixture()
def decoy(docker_client, base_image, multi_stack):
    """A container with the same service label but outside the target project."""
    c = docker_client.containers.run(
        base_image, ["sleep", "600"], detach=True,
        labels={"com.docker.compose.project": "not-" + multi_stack["project"],
                "com.docker.compose.service": "pod", "chaoskit.test": "1"},
    )
    c.reload()
    yield c
    c.remove(force=True)


def test_selection_modes_and_limits_never_touch_a_decoy(tmp_path, multi_stack, docker_client, decoy):
    pid0 = decoy.attrs["State"]["Pid"]
    p = write(tmp_path, multi_stack, "multi", """\
        method:
          - {fault: container.pause, name: all, target: {service: pod, mode: all}, duration: 200ms}
          - {fault: container.pause, name: fixed, target: {service: pod, fixed: 2}, duration: 100ms}
          - {fault: container.pause, name: percent, target: {service: pod, percent: 34}, duration: 100ms}
          - {fault: container.pause, name: limited, target: {service: pod, mode: all, limit: 1}, duration: 100ms}
          - {fault: container.kill, name: kill one, target: {service: pod}}
        """)
    j = tmp_path / "j.json"
    r = cli("run", str(p), "--journal", str(j), "--seed", "3")
    assert r.returncode == 0, r.stderr
    faults = {f["step"]: f for f in json.loads(j.read_text())["faults"]}
    assert len(faults["method[0]"]["instances"]) == 3
    assert len(faults["method[1]"]["instances"]) == 2
    assert len(faults["method[2]"]["instances"]) == 1
    assert len(faults["method[3]"]["instances"]) == 1
    assert len(faults["method[4]"]["instances"]) == 1
    for f in faults.values():
        assert all(i["name"].startswith(multi_stack["project"]) for i in f["instances"])
    decoy.reload()
    assert decoy.status == "running" and decoy.attrs["State"]["Pid"] == pid0
    # the same seed picks the same instance; the choice is in the journal
    j2 = tmp_path / "j2.json"
    assert cli("run", str(p), "--journal", str(j2), "--seed", "3").returncode == 0
    again = {f["step"]: f for f in json.loads(j2.read_text())["faults"]}
    assert again["method[4]"]["instances"] == faults["method[4]"]["instances"]
    assert again["method[1]"]["instances"] == faults["method[1]"]["instances"]


def test_guard_failure_aborts_method_and_rolls_back(tmp_path, simple_stack, docker_client):
    flag = tmp_path / "healthy"
    flag.write_text("1")
    p = write(tmp_path, simple_stack, "simple", f"""\
        settings: {{continuous_interval: 100ms}}
        guards:
          - {{name: flag file present, probe: command, argv: [test, -f, "{flag}"], expect: {{path: exit_code, equals: 0}}}}
        method:
          - {{fault: container.pause, name: freeze worker, target: {{service: worker}}}}
          - {{pause: 30s}}
        rollbacks:
          - {{action: container.start, target: {{service: worker}}}}
        """)
    j = tmp_path / "j.json"
    env = dict(os.environ, CHAOSKIT_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "chaoskit", "run", str(p), "--journal", str(j)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    flag.unlink()
    t0 = time.monotonic()
    proc.wait(30)
    assert time.monotonic() - t0 < 10, "the guard must stop the 30 s pause"
    assert proc.returncode == 1
    journal = json.loads(j.read_text())
    assert any("guard flag file present failed" in r for r in journal["reasons"])
    assert any(e["kind"] == "guard_failed" for e in journal["events"])
    (w,) = containers(docker_client, simple_stack["project"], "worker")
    assert not w.attrs["State"]["Paused"]


def test_secrets_never_reach_the_journal(tmp_path, simple_stack):
    p = write(tmp_path, simple_stack, "simple", """\
        vars:
          token: {secret: tok-9f8e7d6c5b}
          dsn: postgresql://ledger:hunter2pw@127.0.0.1:1/ledger
        hypothesis:
          - {name: echo, probe: command, argv: [echo, "${token}", "${dsn}"], expect: {path: exit_code, equals: 0}}
          - name: "token ${token} in a name"
            probe: command
            argv: [sh, -c, "echo ${dsn}; exit 0"]
            expect: {path: stdout, regex: "hunter2pw"}
        method:
          - {pause: 10ms}
        """)
    j = tmp_path / "j.json"
    r = cli("run", str(p), "--journal", str(j))
    assert r.returncode == 0, r.stderr
    text = j.read_text()
    assert "tok-9f8e7d6c5b" not in text and "hunter2pw" not in text
    assert "tok-9f8e7d6c5b" not in r.stderr + r.stdout and "hunter2pw" not in r.stderr + r.stdout
    assert "postgresql://ledger:***@127.0.0.1:1/ledger" in text


def test_parallel_branches_run_concurrently(tmp_path, simple_stack):
    p = write(tmp_path, simple_stack, "simple", """\
        method:
          - parallel:
              - {fault: container.pause, name: pause worker, target: {service: worker}, duration: 1500ms}
              - [{pause: 500ms}, {fault: container.pause, name: pause app, target: {service: app}, duration: 1s}]
        """)
    j = tmp_path / "j.json"
    t0 = time.monotonic()
    r = cli("run", str(p), "--journal", str(j))
    assert r.returncode == 0, r.stderr
    journal = json.loads(j.read_text())
    par = [s for s in journal["steps"] if s["kind"] == "parallel"][0]
    assert 1.4 < par["duration"] < 2.4, par["duration"]  # not 1.5 + 0.5 + 1.0 in series
    starts = {f["step"]: f["applied_t"] for f in journal["faults"]}
    assert abs(starts["method[0].parallel[0]"] - starts["method[0].parallel[1][1]"]) < 1.0
    assert time.monotonic() - t0 < 30


def test_replay_fires_same_instances_at_same_nth_match(tmp_path, multi_stack):
    p = write(tmp_path, multi_stack, "multi", """\
        method:
          - fault: container.pause
            target: {service: pod}
            duration: 100ms
            when: {log: {service: pod, match: tick, nth: 4}, within: 10s}
          - fault: container.pause
            target: {service: pod, fixed: 2}
            duration: 100ms
            when: {at: random, window: [100ms, 900ms]}
        """)
    j = tmp_path / "orig.json"
    r = cli("run", str(p), "--journal", str(j))
    assert r.returncode == 0, r.stderr
    orig = json.loads(j.read_text())
    j2 = tmp_path / "replay.json"
    r = cli("replay", str(j), "--journal-out", str(j2), "-q")
    assert r.returncode == 0, r.stderr
    rep = json.loads(j2.read_text())
    assert rep["seed"] == orig["seed"] and rep["replay_of"] == orig["run_id"]
    fo = {f["step"]: f for f in orig["faults"]}
    fr = {f["step"]: f for f in rep["faults"]}
    for step in fo:
        assert [i["name"] for i in fr[step]["instances"]] == [i["name"] for i in fo[step]["instances"]]
    assert fr["method[0]"]["trigger_evidence"]["nth"] == fo["method[0]"]["trigger_evidence"]["nth"] == 4
    assert fr["method[1]"]["trigger_evidence"]["offset"] == fo["method[1]"]["trigger_evidence"]["offset"]
    assert "original" in r.stdout and "replay" in r.stdout and "verdict" in r.stdout


def _leftovers(docker_client, project: str) -> list[str]:
    out = []
    for c in containers(docker_client, project):
        c.reload()
        if c.attrs["State"].get("Paused"):
            out.append(f"{c.name} paused")
        if c.status != "running":
            out.append(f"{c.name} {c.status}")
    return out


def _chaoskit_rules(docker_client, project: str) -> list[str]:
    out = []
    for c in containers(docker_client, project):
        c.reload()
        pid = c.attrs["State"].get("Pid")
        if not pid:
            continue
        for tool in ("iptables-save", "ip6tables-save"):
            r = subprocess.run(["nsenter", "-t", str(pid), "-n", tool], capture_output=True, text=True)
            out += [f"{c.name}: {line}" for line in r.stdout.splitlines() if "chaoskit:" in line]
    return out


def _chaoskit_sessions(dsn: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "select pid, application_name from pg_stat_activity where application_name like 'chaoskit%'"
        ).fetchall()


def test_runner_sigkilled_at_random_points_then_rollback_leaves_nothing(tmp_path, simple_stack, docker_client,
                                                                         fresh_db):
    """20 trials: SIGKILL the runner while it partitions, pauses, stops and locks; after
    `chaoskit rollback --all` no rule, paused/stopped container or chaoskit DB session remains."""
    import psycopg

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("create table accounts (id int primary key, cents bigint)")
        conn.execute("insert into accounts values (1, 100), (2, 200)")
    p = write(tmp_path, simple_stack, "simple", f"""\
        method:
          - {{fault: network.partition, name: cut app from worker, between: [[app], [worker]]}}
          - {{fault: container.pause, name: freeze worker, target: {{service: worker}}}}
          - {{fault: db.lock, name: lock accounts, dsn: "{fresh_db}", table: accounts, mode: exclusive}}
          - {{fault: container.stop, name: stop app, target: {{service: app}}, timeout: 0}}
          - {{pause: 30s}}
        """)
    rng = random.Random(20261201)
    state = tmp_path / "state"
    clean = 0
    reverted: set[str] = set()
    for trial in range(20):
        env = dict(os.environ, CHAOSKIT_STATE_DIR=str(state))
        proc = subprocess.Popen([sys.executable, "-m", "chaoskit", "run", str(p), "-q",
                                 "--journal", str(tmp_path / f"j{trial}.json")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        r = cli("rollback", "--all", state=state)
        assert r.returncode == 0, r.stdout + r.stderr
        for line in r.stderr.splitlines():
            if line.endswith(": reverted"):
                reverted.add(line.split()[1].rstrip(":"))
        left = _leftovers(docker_client, simple_stack["project"])
        left += _chaoskit_rules(docker_client, simple_stack["project"])
        left += [f"db session {s}" for s in _chaoskit_sessions(fresh_db)]
        if not left:
            clean += 1
        else:  # restore for the next trial, and fail below
            for c in containers(docker_client, simple_stack["project"]):
                c.reload()
                if c.attrs["State"].get("Paused"):
                    c.unpause()
                if c.status != "running":
                    c.start()
        assert not list(state.glob("runs/*/faults/*.json"))
    assert clean == 20
    # the kills landed while real faults were in force, not only before the first one
    assert {"network.partition", "container.pause", "db.lock"} <= reverted, reverted
