"""Bring compose stacks up and down from chaoskit itself, healthy or with a clear reason why not.

Compose v2 (``docker compose``) is used when it works, v1 (``docker-compose``) otherwise: both set
the same ``com.docker.compose.*`` labels, which is all the rest of chaoskit relies on. Health is
read from the Docker API, not from compose, so it works the same with either.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

from chaoskit.backends.compose import docker_client
from chaoskit.errors import ChaoskitError
from chaoskit.images import ensure_base_image

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")


class StackError(ChaoskitError):
    """The stack could not be built, started or made healthy (exit 3)."""


class StackInputError(ChaoskitError):
    """Bad input: no compose file there, a bad project name (exit 2)."""

    exit_code = 2


def compose_command(path: str | None = None) -> list[str]:
    """``["docker", "compose"]`` if compose v2 answers, else ``["docker-compose"]``.

    ``path`` overrides PATH for the lookup (tests point it at a directory of their own)."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    docker_bin = shutil.which("docker", path=env.get("PATH"))
    if docker_bin:
        try:
            r = subprocess.run(
                [docker_bin, "compose", "version"], capture_output=True, text=True, timeout=20, env=env
            )
            if r.returncode == 0 and "version" in (r.stdout + r.stderr).lower():
                return [docker_bin, "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    v1 = shutil.which("docker-compose", path=env.get("PATH"))
    if v1:
        return [v1]
    raise StackError("neither `docker compose` (v2) nor `docker-compose` (v1) is installed")


def compose_file(path: str | os.PathLike[str]) -> Path:
    """A compose file, or a directory holding one."""
    p = Path(path)
    if p.is_dir():
        for name in COMPOSE_NAMES:
            if (p / name).is_file():
                return (p / name).resolve()
        raise StackInputError(f"{p}: no {' / '.join(COMPOSE_NAMES)} in this directory")
    if p.is_file():
        return p.resolve()
    raise StackInputError(f"{p}: no such compose file or directory")


def default_project(path: str | os.PathLike[str]) -> str:
    """What compose itself would call it: the directory's name, normalized."""
    return normalize_project(compose_file(path).parent.name)


def normalize_project(name: str) -> str:
    norm = re.sub(r"[^a-z0-9_-]", "", name.lower())
    if not norm:
        raise StackInputError(f"project name {name!r} has no letters or digits")
    return norm


@dataclass
class ServiceInfo:
    service: str
    container: str
    ip: str | None
    ports: dict[str, str] = field(default_factory=dict)  # "8080/tcp" -> "127.0.0.1:49153"
    health: str = ""


@dataclass
class StackInfo:
    project: str
    file: str
    services: dict[str, ServiceInfo]

    def ip(self, service: str) -> str:
        info = self.services.get(service)
        if info is None or not info.ip:
            raise StackError(f"service {service!r} of project {self.project!r} has no IP address")
        return info.ip

    def url(self, service: str, port: int) -> str:
        return f"http://{self.ip(service)}:{port}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "file": self.file,
            "services": {k: vars(v) for k, v in self.services.items()},
        }


def _run(cmd: list[str], env: Mapping[str, str] | None, what: str, timeout: float) -> str:
    full_env = {**os.environ, **(env or {})}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} did not finish in {timeout:.0f}s") from exc
    except OSError as exc:
        raise StackError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise StackError(f"{what} failed (exit {r.returncode}):\n{tail}")
    return r.stdout


def _services(file: Path) -> list[str]:
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise StackInputError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or not services:
        raise StackInputError(f"{file}: no services defined")
    return sorted(services)


def _label_override(file: Path, labels: Mapping[str, str]) -> Path:
    """An override file putting ``labels`` on every service (e.g. ``chaoskit.test=1`` in tests)."""
    doc = {
        "version": _version(file),
        "services": {s: {"labels": dict(labels)} for s in _services(file)},
    }
    fd, name = tempfile.mkstemp(prefix="chaoskit-labels-", suffix=".yml")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump({k: v for k, v in doc.items() if v is not None}, fh)
    return Path(name)


def _version(file: Path) -> str | None:
    doc = yaml.safe_load(file.read_text()) or {}
    v = doc.get("version") if isinstance(doc, dict) else None
    return str(v) if v is not None else None


def up(
    compose_file_or_dir: str | os.PathLike[str],
    project: str | None = None,
    env: Mapping[str, str] | None = None,
    build: bool = True,
    wait_healthy: bool = True,
    timeout: float = 120,
    labels: Mapping[str, str] | None = None,
    client: docker.DockerClient | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> StackInfo:
    """Base image, ``compose build``, ``up -d``, then wait until every service is healthy."""
    file = compose_file(compose_file_or_dir)
    project = normalize_project(project) if project else default_project(file)
    services = _services(file)
    client = client or docker_client()
    ensure_base_image(client, log=log)
    cmd = compose_command()
    files = ["-f", str(file)]
    override = _label_override(file, labels) if labels else None
    if override:
        files += ["-f", str(override)]
    base = [*cmd, *files, "-p", project]
    try:
        if build:
            log(f"building images of {project} ({', '.join(services)})")
            _run([*base, "build"], env, f"compose build ({file})", timeout=max(timeout, 900))
        log(f"starting {project}")
        _run([*base, "up", "-d", "--no-build"], env, f"compose up ({project})", timeout=max(timeout, 60))
    finally:
        if override:
            override.unlink(missing_ok=True)
    if wait_healthy:
        return _wait_until_healthy(project, timeout, client=client, services=services, file=file)
    return stack_info(project, client=client, file=file)


def down(
    project: str,
    compose_file_or_dir: str | os.PathLike[str],
    volumes: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> None:
    """``compose down`` (with volumes unless told otherwise). Only this project is touched."""
    file = compose_file(compose_file_or_dir)
    project = normalize_project(project)
    cmd = [*compose_command(), "-f", str(file), "-p", project, "down", "--remove-orphans", "-t", "5"]
    if volumes:
        cmd.append("-v")
    _run(cmd, env, f"compose down ({project})", timeout=timeout)


def _containers(client: docker.DockerClient, project: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})


def _health(c: Any) -> str:
    state = c.attrs.get("State", {})
    if state.get("Status") != "running":
        return state.get("Status", "unknown")
    h = state.get("Health")
    return h.get("Status", "running") if h else "running"  # no healthcheck: running is enough


def stack_info(project: str, client: docker.DockerClient | None = None, file: Path | None = None) -> StackInfo:
    client = client or docker_client()
    out: dict[str, ServiceInfo] = {}
    for c in _containers(client, project):
        svc = c.labels.get(SERVICE_LABEL, "")
        nets = c.attrs.get("NetworkSettings", {}).get("Networks") or {}
        ip = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), None)
        ports = {
            k: f"{v[0]['HostIp']}:{v[0]['HostPort']}"
            for k, v in (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).items()
            if v
        }
        out[svc] = ServiceInfo(service=svc, container=c.name, ip=ip, ports=ports, health=_health(c))
    return StackInfo(project=project, file=str(file or ""), services=out)


def _wait_until_healthy(
    project: str,
    timeout: float = 120,
    client: docker.DockerClient | None = None,
    services: list[str] | None = None,
    file: Path | None = None,
) -> StackInfo:
    """Poll the Docker API until every service's container is healthy; else name the laggards
    with their state and last log lines."""
    client = client or docker_client()
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        cs = _containers(client, project)
        states = {}
        for c in cs:
            c.reload()
            states[c.labels.get(SERVICE_LABEL, c.name)] = _health(c)
        expected = services or sorted(states)
        if not expected:
            raise StackError(f"project {project!r} has no containers")
        missing = [s for s in expected if s not in states]
        bad = [s for s in expected if states.get(s) not in ("healthy", "running")]
        if not bad and not missing:
            return stack_info(project, client=client, file=file)
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lines = [f"project {project!r} not healthy after {timeout:.0f}s:"]
    for s in expected:
        st = states.get(s, "no container")
        if st in ("healthy", "running"):
            continue
        lines.append(f"  service {s}: {st}")
        for c in _containers(client, project):
            if c.labels.get(SERVICE_LABEL) == s:
                h = (c.attrs.get("State", {}).get("Health") or {}).get("Log") or []
                if h:
                    lines.append(f"    last healthcheck: {h[-1].get('Output', '').strip()[:300]}")
                tail = c.logs(tail=10).decode(errors="replace").rstrip().splitlines()
                lines += [f"    | {t}" for t in tail]
    raise StackError("\n".join(lines))


wait_healthy = _wait_until_healthy
