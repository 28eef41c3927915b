"""Shared fixtures for the Kubernetes tests: a FAKE API server (tests/k8s_fake_apiserver.py) seeded
with the reference stack's shape, and a backend that reaches it through a generated kubeconfig."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_fake_apiserver import FakeKubeAPI

NS = "ledger"


@pytest.fixture()
def fake() -> Iterator[FakeKubeAPI]:
    """The fake, seeded like manifests/: ledger-api x3, broker x1, postgres statefulset x1, plus a
    decoy pod with the same labels in another namespace that nothing may ever touch."""
    with FakeKubeAPI() as api:
        api.add_deployment(NS, "ledger-api", 3, {"app": "ledger-api"})
        api.add_deployment(NS, "broker", 1, {"app": "broker"})
        api.add_statefulset(NS, "postgres", 1, {"app": "postgres"})
        api.add_pod("other", "ledger-api-decoy", {"app": "ledger-api"})
        api.allowed_namespaces = {NS}  # type: ignore[attr-defined]
        yield api
        foreign = [
            r
            for r in api.requests
            if not any(
                r.path.startswith(p)
                for ns in api.allowed_namespaces  # type: ignore[attr-defined]
                for p in (
                    f"/api/v1/namespaces/{ns}/",
                    f"/apis/apps/v1/namespaces/{ns}/",
                    f"/apis/networking.k8s.io/v1/namespaces/{ns}/",
                )
            )
        ]
        assert not foreign, f"requests outside the namespace: {[(r.method, r.path) for r in foreign]}"
        assert ("other", "ledger-api-decoy") in api.pods


@pytest.fixture()
def kubeconfig(fake: FakeKubeAPI, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture()
def backend(kubeconfig: Path):
    from chaoskit.backends.kubernetes import KubernetesBackend

    b = KubernetesBackend(NS, kubeconfig=str(kubeconfig))
    yield b
    b.close()


@pytest.fixture()
def ctx(backend):
    from chaoskit.runner.context import RunContext

    return RunContext(run_id="run-k8s-test", seed=7, backend=backend)
