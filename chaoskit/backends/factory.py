"""Build the backend an experiment's ``target:`` names, and refuse targets that match nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chaoskit.backends.base import Backend
from chaoskit.errors import TargetError


def compose_project_name(compose_file: str | None, project: str | None) -> str:
    """The project name compose itself would use: explicit, else the file's directory name."""
    if project:
        return project
    if not compose_file:
        raise TargetError("target.compose needs a project or a file")
    name = Path(compose_file).resolve().parent.name.lower()
    return re.sub(r"[^a-z0-9_-]", "", name) or "default"


def make_backend(target: Any, log=print) -> Backend | None:
    if target is None:
        return None
    if target.compose is not None:
        from chaoskit.backends.compose import ComposeBackend

        c = target.compose
        project = compose_project_name(c.file, c.project)
        if c.up:
            if not c.file:
                raise TargetError("target.compose.up needs target.compose.file")
            from chaoskit import stack

            stack.up(c.file, project=project, log=log)
        return ComposeBackend(project=project, compose_file=c.file)
    k = target.kubernetes
    try:
        from chaoskit.backends.kubernetes import KubernetesBackend
    except ImportError as exc:
        raise TargetError(f"the kubernetes backend is not available: {exc}") from None
    return KubernetesBackend(namespace=k.namespace, context=k.context, kubeconfig=k.kubeconfig)


def check_target(backend: Backend, services: set[str]) -> None:
    """Fail before anything is touched when the target or a step's service matches nothing."""
    if backend.kind == "compose":
        have = set(backend.services())  # type: ignore[attr-defined]
        if not have:
            raise TargetError(
                f"{backend.describe()} has no containers: is the stack up? (chaoskit up COMPOSE_DIR)"
            )
        missing = sorted(s for s in services if s and s not in have)
        if missing:
            raise TargetError(
                f"service(s) {', '.join(missing)} not found in {backend.describe()} "
                f"(it has: {', '.join(sorted(have))})"
            )
