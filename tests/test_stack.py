"""chaoskit.stack and ``chaoskit up/down/images``: compose detection, clear errors, health."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import project_name

from chaoskit import stack

CLI = [sys.executable, "-c", "from chaoskit.cli import main; main()"]


def _script(d: Path, name: str, body: str) -> None:
    p = d / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def test_compose_command_prefers_v2_when_it_answers(tmp_path: Path) -> None:
    _script(tmp_path, "docker", '[ "$1 $2" = "compose version" ] && echo "Docker Compose version v2.29.0" && exit 0; exit 1')
    _script(tmp_path, "docker-compose", "echo v1")
    assert stack.compose_command(path=str(tmp_path)) == [str(tmp_path / "docker"), "compose"]


def test_compose_command_falls_back_to_v1(tmp_path: Path) -> None:
    _script(tmp_path, "docker", 'echo "docker: unknown command: docker compose" >&2; exit 1')
    _script(tmp_path, "docker-compose", "echo v1")
    assert stack.compose_command(path=str(tmp_path)) == [str(tmp_path / "docker-compose")]
    (tmp_path / "docker-compose").unlink()
    with pytest.raises(stack.StackError, match="neither"):
        stack.compose_command(path=str(tmp_path))


def test_compose_command_here_works() -> None:
    cmd = stack.compose_command()
    r = subprocess.run([*cmd, "version"], capture_output=True, text=True)
    assert r.returncode == 0 and "version" in r.stdout.lower()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["up", "/nonexistent/stack"], "no such compose file"),
        (["down", "/nonexistent/stack"], "no such compose file"),
        (["up", "{tmp}"], "no docker-compose.yml"),
        (["up", "{tmp}/empty.yml"], "no services"),
        (["up", "{tmp}/bad.yml"], "not valid YAML"),
        (["up", "{tmp}/empty.yml", "-e", "NOEQUALS"], "NAME=VALUE"),
        (["up", "{tmp}/empty.yml", "-p", "!!!"], "project name"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    (tmp_path / "empty.yml").write_text("version: '2.4'\nservices: {}\n")
    (tmp_path / "bad.yml").write_text("services: [\n")
    r = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_default_project_is_the_directory_name() -> None:
    ledger = Path(__file__).resolve().parent.parent / "compose" / "ledger"
    assert stack.default_project(ledger) == "ledger"
    assert stack.default_project(ledger / "docker-compose.yml") == "ledger"


def test_images_command_reports_the_base_image(base_image: str) -> None:
    r = _cli("images")
    assert r.returncode == 0, r.stderr
    assert f"base image: {base_image}" in r.stdout


def test_unhealthy_service_is_named_with_its_logs(docker_client: Any, base_image: str, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(
        "version: '2.4'\n"
        "services:\n"
        "  good:\n"
        f"    image: {base_image}\n"
        "    command: [sleep, '300']\n"
        "  bad:\n"
        f"    image: {base_image}\n"
        "    command: [bash, -c, 'echo boom-marker-42; sleep 300']\n"
        "    healthcheck: {test: [CMD, 'false'], interval: 1s, retries: 2, timeout: 1s}\n"
    )
    project = project_name("ckst")
    t0 = time.monotonic()
    try:
        with pytest.raises(stack.StackError) as exc:
            stack.up(tmp_path, project=project, build=False, timeout=8, labels={"chaoskit.test": "1"})
        msg = str(exc.value)
        assert time.monotonic() - t0 < 60
        assert "service bad: unhealthy" in msg and "boom-marker-42" in msg and "service good" not in msg
        containers = docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert {c.labels["chaoskit.test"] for c in containers} == {"1"} and len(containers) == 2
        info = stack.stack_info(project, client=docker_client)
        assert info.services["good"].health == "running" and info.services["good"].ip
    finally:
        stack.down(project, tmp_path)
    assert not docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    assert os.path.exists(tmp_path / "docker-compose.yml")
