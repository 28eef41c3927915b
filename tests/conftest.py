"""Shared fixtures. Real Docker, real PostgreSQL: with CI=true a missing engine fails, never skips."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _need(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _need(f"no Docker engine: {exc}")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from chaoskit.images import ensure_base_image

    return ensure_base_image(docker_client)


@pytest.fixture(scope="session")
def test_network(docker_client) -> Iterator:
    net = docker_client.networks.create(f"chaoskit-test-{uuid.uuid4().hex[:8]}", driver="bridge")
    yield net
    net.reload()
    for c in net.containers:
        try:
            net.disconnect(c, force=True)
        except Exception:  # noqa: BLE001
            pass
    net.remove()


PG_CMD = (
    "set -e; mkdir -p /run/postgresql && chown postgres /run/postgresql; "
    "su postgres -c '/usr/lib/postgresql/15/bin/initdb -D /tmp/pg -A trust -U postgres >/dev/null'; "
    "echo \"host all all 0.0.0.0/0 trust\" >> /tmp/pg/pg_hba.conf; "
    "exec su postgres -c \"/usr/lib/postgresql/15/bin/postgres -D /tmp/pg -c listen_addresses='*' "
    "-c fsync=off -c max_connections=100 -c deadlock_timeout=200ms\""
)


def start_postgres(docker_client, base_image: str, network, name: str | None = None):
    """Start a throwaway PostgreSQL 15 container; returns (container, dsn)."""
    import psycopg

    name = name or f"chaoskit-pg-{uuid.uuid4().hex[:8]}"
    c = docker_client.containers.run(
        base_image,
        ["bash", "-c", PG_CMD],
        name=name,
        detach=True,
        network=network.name,
        labels={"chaoskit.test": "1"},
    )
    deadline = time.monotonic() + 60
    ip = None
    while time.monotonic() < deadline:
        c.reload()
        if c.status == "exited":
            raise RuntimeError(f"postgres exited: {c.logs()[-2000:]!r}")
        ip = c.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        if ip:
            try:
                with psycopg.connect(f"postgresql://postgres@{ip}:5432/postgres", connect_timeout=1):
                    break
            except psycopg.OperationalError:
                pass
        time.sleep(0.2)
    else:
        raise RuntimeError("postgres did not become ready in 60 s")
    return c, f"postgresql://postgres@{ip}:5432/postgres"


@pytest.fixture(scope="session")
def postgres(docker_client, base_image, test_network) -> Iterator[str]:
    """DSN of a session-wide PostgreSQL container. Tests create their own databases/tables."""
    c, dsn = start_postgres(docker_client, base_image, test_network)
    yield dsn
    c.remove(force=True)


@pytest.fixture()
def fresh_db(postgres) -> Iterator[str]:
    """A new empty database per test; returns its DSN."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield postgres.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,)
        )
        conn.execute(f'drop database if exists "{name}"')


STACKS = os.path.join(os.path.dirname(__file__), "stacks")


def _stack(docker_client, name: str) -> Iterator[dict]:
    from chaoskit import stack

    project = f"ckt{uuid.uuid4().hex[:8]}"
    path = os.path.join(STACKS, name)
    stack.up(path, project=project, build=False, timeout=90)
    ips = {}
    for c in docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"}):
        nets = c.attrs["NetworkSettings"]["Networks"]
        ips[c.labels["com.docker.compose.service"]] = next(iter(nets.values()))["IPAddress"]
    try:
        yield {"project": project, "path": path, "ips": ips}
    finally:
        stack.down(project, path)


@pytest.fixture(scope="module")
def simple_stack(docker_client, base_image) -> Iterator[dict]:
    """tests/stacks/simple (an HTTP app + a worker logging op.begin/op.end), unique project."""
    yield from _stack(docker_client, "simple")


@pytest.fixture(scope="module")
def multi_stack(docker_client, base_image) -> Iterator[dict]:
    """tests/stacks/multi: three replicas of service `pod`, unique project."""
    yield from _stack(docker_client, "multi")
