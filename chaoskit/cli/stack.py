"""``chaoskit up`` / ``down`` / ``images``: the stacks chaoskit tests against, from chaoskit itself."""

from __future__ import annotations

import json
import sys

import click

from chaoskit.errors import ChaoskitError


def _fail(exc: ChaoskitError) -> None:
    msg = str(exc).strip() or type(exc).__name__
    click.echo(f"chaoskit: {msg}", err=True)
    sys.exit(exc.exit_code)


def _env(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            click.echo(f"chaoskit: --env expects NAME=VALUE, got {p!r}", err=True)
            sys.exit(2)
        out[k] = v
    return out


@click.command("up")
@click.argument("path", type=click.Path())
@click.option("-p", "--project", help="compose project name (default: the directory's name)")
@click.option("--no-build", is_flag=True, help="do not build images first")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="seconds to wait for health")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the compose file (repeatable)")
@click.option("--label", "labels", multiple=True, help="NAME=VALUE label put on every container")
@click.option("--json", "as_json", is_flag=True, help="print the stack (IPs, ports) as JSON")
def up(path: str, project: str | None, no_build: bool, timeout: float, env: tuple[str, ...],
       labels: tuple[str, ...], as_json: bool) -> None:
    """Build images and bring the compose stack at PATH up; wait until every service is healthy."""
    from chaoskit import stack

    try:
        info = stack.up(path, project=project, env=_env(env), build=not no_build, timeout=timeout,
                        labels=_env(labels) or None, log=lambda s: click.echo(s, err=True))
    except ChaoskitError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(info.as_dict(), indent=2))
        return
    click.echo(f"project {info.project}: healthy")
    for name, s in sorted(info.services.items()):
        ports = ", ".join(f"{h}->{c}" for c, h in sorted(s.ports.items())) or "-"
        click.echo(f"  {name:<12} {s.health:<8} ip={s.ip}  {ports}")


@click.command("down")
@click.argument("path", type=click.Path())
@click.option("-p", "--project", help="compose project name (default: the directory's name)")
@click.option("--keep-volumes", is_flag=True, help="keep named volumes (data survives)")
def down(path: str, project: str | None, keep_volumes: bool) -> None:
    """Tear the compose stack at PATH down (containers, network, and volumes unless kept)."""
    from chaoskit import stack

    try:
        name = stack.normalize_project(project) if project else stack.default_project(path)
        stack.down(name, path, volumes=not keep_volumes)
    except ChaoskitError as exc:
        _fail(exc)
        return
    click.echo(f"project {name}: down")


@click.command("images")
@click.argument("path", type=click.Path(), required=False)
@click.option("-p", "--project", help="compose project name for PATH's images")
def images(path: str | None, project: str | None) -> None:
    """Build the local base image (debootstrap when no registry); with PATH, also that stack's images."""
    from chaoskit import stack
    from chaoskit.images import BASE_TAG, ImageError, ensure_base_image

    try:
        tag = ensure_base_image(log=lambda s: click.echo(s, err=True))
        click.echo(f"base image: {tag}" if tag == BASE_TAG else f"base image: {tag} ({BASE_TAG} expected)")
        if path:
            file = stack.compose_file(path)
            name = stack.normalize_project(project) if project else stack.default_project(file)
            stack._run([*stack.compose_command(), "-f", str(file), "-p", name, "build"], None,
                       f"compose build ({file})", timeout=900)
            click.echo(f"images of {file}: built")
    except ImageError as exc:
        click.echo(f"chaoskit: {exc}", err=True)
        sys.exit(3)
    except ChaoskitError as exc:
        _fail(exc)
