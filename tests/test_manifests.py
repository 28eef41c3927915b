"""Static validation of manifests/: every document parses, has the fields the API requires, uses
only fields the API knows (checked against the official client's models, so a typo fails here
instead of being silently dropped by the API server), and RBAC stays least-privilege."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
COMPOSE = ROOT / "compose" / "ledger" / "docker-compose.yml"

MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("batch/v1", "Job"): "V1Job",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# What chaoskit's Kubernetes code calls, per (apiGroup, resource): the Role must grant exactly this.
NEEDED = {
    ("", "pods"): {"get", "list", "delete", "patch"},
    ("", "pods/log"): {"get"},
    ("", "pods/exec"): {"create", "get"},
    ("", "pods/ephemeralcontainers"): {"get", "patch"},
    ("", "pods/portforward"): {"create", "get"},
    ("apps", "deployments"): {"get", "list", "patch"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("apps", "statefulsets"): {"get", "list"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "create", "delete"},
}


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in docs() if d["kind"] == kind]


def strict_check(data: Any, type_name: str, where: str, errors: list[str]) -> None:
    """Walk ``data`` along the client's model types; unknown keys and wrong shapes are errors."""
    from kubernetes import client

    if type_name.startswith("List["):
        if not isinstance(data, list):
            errors.append(f"{where}: expected a list")
            return
        for i, item in enumerate(data):
            strict_check(item, type_name[5:-1], f"{where}[{i}]", errors)
        return
    if type_name.startswith("Dict["):
        if not isinstance(data, dict):
            errors.append(f"{where}: expected a map")
        return
    model = getattr(client, type_name, None)
    if model is None or not hasattr(model, "openapi_types"):
        return  # str, int, object, IntOrString ...
    if not isinstance(data, dict):
        errors.append(f"{where}: expected an object ({type_name})")
        return
    by_json = {v: k for k, v in model.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            errors.append(f"{where}.{key}: unknown field for {type_name}")
            continue
        strict_check(value, model.openapi_types[by_json[key]], f"{where}.{key}", errors)


def test_every_document_parses_and_has_identity() -> None:
    all_docs = docs()
    assert len(all_docs) >= 12
    for name, d in all_docs:
        assert d.get("apiVersion") and d.get("kind"), name
        assert DNS1123.match(d["metadata"]["name"]), (name, d["metadata"]["name"])
        assert (d["apiVersion"], d["kind"]) in MODELS, f"{name}: unexpected {d['apiVersion']} {d['kind']}"
        assert "namespace" not in d["metadata"] or d["kind"] == "Namespace", "kustomize sets the namespace"


def test_documents_match_the_api_schema() -> None:
    from kubernetes import client

    api = client.ApiClient()
    errors: list[str] = []
    for name, d in docs():
        model = MODELS[(d["apiVersion"], d["kind"])]
        strict_check(d, model, f"{name}:{d['kind']}/{d['metadata']['name']}", errors)
        # and the client can build the object (required fields present)
        obj = api._ApiClient__deserialize(d, model)  # type: ignore[attr-defined]
        assert obj.metadata.name == d["metadata"]["name"]
    assert not errors, "\n".join(errors)


def _pod_specs() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for kind in ("Deployment", "StatefulSet", "Job"):
        for d in by_kind(kind):
            out.append((f"{kind}/{d['metadata']['name']}", d, d["spec"]["template"]))
    return out


def test_workloads_selectors_match_and_containers_have_images() -> None:
    specs = _pod_specs()
    assert {n for n, _, _ in specs} >= {"Deployment/ledger-api", "Deployment/broker", "StatefulSet/postgres", "Job/chaoskit-suite"}
    for name, d, tpl in specs:
        labels = tpl["metadata"]["labels"]
        if d["kind"] != "Job":
            sel = d["spec"]["selector"]["matchLabels"]
            assert sel and all(labels.get(k) == v for k, v in sel.items()), f"{name}: selector does not match template"
            assert labels.get("app") == d["metadata"]["name"], f"{name}: chaoskit targets by the app label"
        for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]:
            assert c.get("name") and c.get("image"), name
            assert c.get("imagePullPolicy") == "IfNotPresent", f"{name}/{c['name']}: kind-loaded images must not be pulled"


def test_services_select_a_workload_and_reach_a_container_port() -> None:
    specs = _pod_specs()
    for svc in by_kind("Service"):
        sel = svc["spec"]["selector"]
        matches = [tpl for _, _, tpl in specs if all(tpl["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert matches, f"Service/{svc['metadata']['name']} selects nothing"
        ports = {p["containerPort"] for tpl in matches for c in tpl["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in ports


def test_job_runs_the_suite_as_the_service_account() -> None:
    (job,) = by_kind("Job")
    spec = job["spec"]["template"]["spec"]
    sa_names = {d["metadata"]["name"] for d in by_kind("ServiceAccount")}
    assert spec["serviceAccountName"] in sa_names
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    (c,) = spec["containers"]
    assert c["image"].startswith("chaoskit/chaoskit:") and c["args"][0] == "suite"
    assert "--junit" in c["args"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert any(a.startswith("/results") for a in c["args"] if a.startswith("/")) and "/results" in mounts


def test_rbac_is_least_privilege_and_namespaced() -> None:
    kinds = {d["kind"] for _, d in docs()}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    (role,) = by_kind("Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                granted.setdefault((group, res), set()).update(rule["verbs"])
    assert ("", "secrets") not in granted
    assert granted == NEEDED
    (rb,) = by_kind("RoleBinding")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    sa = {d["metadata"]["name"] for d in by_kind("ServiceAccount")}
    assert [s["name"] for s in rb["subjects"] if s["kind"] == "ServiceAccount"][0] in sa


def test_kustomization_lists_every_file_and_every_image() -> None:
    kz = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kz["resources"]) == sorted(p.name for p in manifest_files())
    (ns,) = by_kind("Namespace")
    assert kz["namespace"] == ns["metadata"]["name"]
    listed = {i["name"] for i in kz["images"]}
    used = {c["image"].split(":")[0] for _, _, tpl in _pod_specs()
            for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]}
    assert used == listed


def test_images_are_the_ones_the_compose_stack_builds() -> None:
    if not COMPOSE.is_file():
        pytest.fail("compose/ledger/docker-compose.yml is missing: the manifests' images come from it")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    compose_images = {s["image"] for s in services.values() if "image" in s}
    used = {c["image"] for _, _, tpl in _pod_specs() for c in tpl["spec"]["containers"]}
    assert compose_images <= used, f"compose builds {compose_images}, manifests use {used}"


def test_the_schema_check_catches_typos() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "x", "image": "i", "imagePullPolcy": "Never"}]}}},
    }
    errors: list[str] = []
    strict_check(bad, "V1Deployment", "bad", errors)
    assert errors == ["bad.spec.template.spec.containers[0].imagePullPolcy: unknown field for V1Container"]


def test_kustomize_builds_everything_into_the_namespace() -> None:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to check the kustomization (it has kustomize built in)")
    out = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(built) == len(docs())
    for d in built:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "chaoskit-ledger", d["metadata"]["name"]
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "chaoskit-ledger"


def test_the_suite_job_experiments_validate() -> None:
    from click.testing import CliRunner

    from chaoskit.cli import main

    (job,) = by_kind("Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    in_image = args[1]
    assert in_image == "/opt/chaoskit/manifests/experiments"
    files = sorted((MANIFESTS / "experiments").glob("*.yaml"))
    assert len(files) >= 5
    res = CliRunner().invoke(main, ["validate", *map(str, files)])
    assert res.exit_code == 0, res.output
    for f in files:
        exp = yaml.safe_load(f.read_text())
        assert "kubernetes" in exp["target"] and "compose" not in exp["target"]
        assert exp["vars"]["dsn"].startswith("${env:LEDGER_DSN")  # the Job passes the Secret's DSN
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"LEDGER_DSN", "LEDGER_API", "CHAOSKIT_STATE_DIR"} <= env


def test_kind_workflow_loads_every_image_the_manifests_use() -> None:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "chaos-kind.yml").read_text())
    loaded = set(wf["env"]["IMAGES"].split())
    used = {c["image"] for _, _, tpl in _pod_specs() for c in tpl["spec"].get("initContainers", []) + tpl["spec"]["containers"]}
    assert used <= loaded, f"not loaded into kind: {used - loaded}"
    text = yaml.safe_dump(wf, width=10_000)
    for needed in ("kind load docker-image", "kubectl apply -k manifests/", "scripts/build-chaoskit-image.sh",
                   "actions/upload-artifact", "app.kubernetes.io/managed-by=chaoskit"):
        assert needed in text, needed
    assert wf["env"]["NAMESPACE"] == by_kind("Namespace")[0]["metadata"]["name"]
