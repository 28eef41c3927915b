"""Kubernetes backend against the FAKE API server (tests/k8s_fake_apiserver.py): resolution,
selection modes, the namespace guard, config loading."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaoskit.backends.base import Selection
from chaoskit.backends.kubernetes import KubernetesBackend, KubernetesTarget
from chaoskit.errors import TargetError

pytest_plugins = ("kubernetes_helpers",)  # the fake-API fixtures
NS = "ledger"  # the namespace the fake is seeded in (kubernetes_helpers.NS)


def names(insts) -> list[str]:
    return [i.name for i in insts]


def test_find_by_selector_service_and_owner(fake, backend) -> None:
    api_pods = sorted(n for (ns, n) in fake.pods if ns == NS and n.startswith("ledger-api-"))
    by_sel = backend.find(Selection(selector={"app": "ledger-api"}))
    assert sorted(names(by_sel)) == api_pods and len(api_pods) == 3
    assert {i.service for i in by_sel} == {"ledger-api"}
    assert all(i.meta["container"] == "main" and i.meta["namespace"] == NS for i in by_sel)
    assert sorted(names(backend.find(Selection(service="ledger-api")))) == api_pods
    assert sorted(names(backend.find(Selection(owner="ledger-api")))) == api_pods
    assert names(backend.find(Selection(owner="postgres"))) == ["postgres-0"]
    # the decoy in namespace "other" has the same labels and is never seen
    assert "ledger-api-decoy" not in names(by_sel)
    sent = [r.query.get("labelSelector") for r in fake.requests if r.path.endswith("/pods")]
    assert ["app=ledger-api"] in sent


def test_owner_missing_and_container_missing_are_clear_errors(backend) -> None:
    with pytest.raises(TargetError, match="no deployment or statefulset named 'nope'"):
        backend.find(Selection(owner="nope"))
    with pytest.raises(TargetError, match="has no container 'sidecar'"):
        backend.find(Selection(service="broker", container="sidecar"))
    with pytest.raises(TargetError, match="matched nothing"):
        backend.resolve(Selection(service="ghost"), random.Random(1))


@pytest.mark.parametrize(
    ("sel", "count"),
    [
        ({"mode": "one"}, 1),
        ({"mode": "all"}, 3),
        ({"fixed": 2}, 2),
        ({"percent": 50}, 1),
        ({"percent": 100}, 3),
        ({"mode": "all", "limit": 2}, 2),
        ({}, 1),
    ],
)
def test_selection_modes_and_limit(backend, sel, count) -> None:
    got = backend.resolve(Selection(service="ledger-api", **sel), random.Random(3))
    assert len(got) == count


def test_seeded_choice_is_reproducible(backend) -> None:
    sel = Selection(owner="ledger-api", fixed=2)
    runs = {seed: names(backend.resolve(sel, random.Random(seed))) for seed in range(12)}
    again = {seed: names(backend.resolve(sel, random.Random(seed))) for seed in range(12)}
    assert runs == again
    assert len({tuple(v) for v in runs.values()}) > 1  # the seed really drives the choice


def test_replayed_instance_names(fake, backend) -> None:
    pod = sorted(n for (ns, n) in fake.pods if ns == NS and n.startswith("broker-"))[0]
    assert names(backend.resolve(Selection(service="broker", instances=[pod]), random.Random(0))) == [pod]
    with pytest.raises(TargetError, match="no longer exist"):
        backend.resolve(Selection(service="broker", instances=["broker-gone"]), random.Random(0))


def test_refuses_instances_of_another_namespace(fake, kubeconfig, backend) -> None:
    fake.allowed_namespaces = {NS, "other"}
    other = KubernetesBackend("other", kubeconfig=str(kubeconfig))
    decoy = other.find(Selection(service="ledger-api"))
    assert names(decoy) == ["ledger-api-decoy"]
    assert not backend.owns(decoy[0])
    with pytest.raises(TargetError, match="refusing to touch ledger-api-decoy"):
        backend.check_owned(decoy[0])
    # forging the namespace in meta does not help: the pod object itself says "other"
    decoy[0].meta["namespace"] = NS
    assert not backend.owns(decoy[0])


@pytest.mark.parametrize(
    "selector",
    [
        {"app": "ledger-api,app notin (x)"},
        {"app": "a b"},
        {"app in (x),b": "c"},
        {"": "x"},
    ],
)
def test_selector_cannot_be_smuggled(fake, backend, selector) -> None:
    with pytest.raises(TargetError, match="invalid label"):
        backend.find(Selection(selector=selector))
    assert not any(r.path.endswith("/pods") for r in fake.requests)


def test_every_request_stays_in_the_namespace(fake, backend) -> None:
    backend.find(Selection(owner="ledger-api"))
    backend.find(Selection(owner="postgres"))
    backend.find(Selection(selector={"app": "broker"}))
    assert fake.requests and fake.foreign_requests(NS) == []
    assert not any(r.path == "/version" or r.path.startswith("/api/v1/pods") for r in fake.requests)


def test_config_errors_are_clear(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(TargetError, match="kubeconfig not found"):
        KubernetesBackend("ledger", kubeconfig=str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(TargetError, match="cannot load Kubernetes config"):
        KubernetesBackend("ledger", kubeconfig=str(bad))
    with pytest.raises(TargetError, match="invalid Kubernetes namespace"):
        KubernetesBackend("Not_A_Namespace", api_client=object())


def test_from_target_relative_kubeconfig_and_context_namespace(fake, kubeconfig: Path) -> None:
    b = KubernetesBackend.from_target({"kubeconfig": kubeconfig.name}, base_dir=kubeconfig.parent)
    assert b.namespace == NS  # from the context
    assert b.kubeconfig == str(kubeconfig)
    assert KubernetesBackend.from_record(b.target_record()).namespace == NS
    with pytest.raises(ValueError, match="Extra inputs"):
        KubernetesTarget.model_validate({"namespace": "x", "namepsace": "typo"})
