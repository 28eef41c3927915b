"""The fast validator (fast accept, slow reject): sound against the full loader, shipped IR fresh,
the bench file accepted without importing pydantic."""

from __future__ import annotations

import copy
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoskit.cli import main
from chaoskit.errors import ExperimentError
from chaoskit.experiment import fast, fastir
from chaoskit.experiment.fastchecks import CHECKS
from chaoskit.experiment.load import load_experiment

ROOT = Path(__file__).resolve().parent.parent
BENCH_FILE = ROOT / "tests" / "stacks" / "simple" / "kill-app.yaml"
PHASE7 = sorted((ROOT / "experiments" / "phase7").glob("*.yaml"))


def _yaml_files() -> list[Path]:
    out = [p for d in ("experiments", "tests/stacks", "examples", "docs") for p in (ROOT / d).rglob("*.y*ml")]
    return sorted(p for p in out if p.suffix in (".yaml", ".yml"))


def _doc_blocks() -> list[str]:
    """```yaml blocks of the README and docs/ that are experiments."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [b for t in texts for b in re.findall(r"```yaml\n(.*?)```", t.read_text(), re.S)]
    return [b for b in blocks if b.startswith("chaoskit: 1")]


def _full_accepts(path: Path) -> bool:
    try:
        load_experiment(path)
    except ExperimentError:
        return False
    return True


def _sound(path: Path) -> bool:
    """The property: fast True implies the full loader accepts. Returns the fast answer."""
    ok = fast.fast_valid(path)
    if ok:
        assert _full_accepts(path), f"fast path accepted a file the loader rejects:\n{path.read_text()}"
    return ok


def _bases() -> list[dict[str, Any]]:
    """Every parsed experiment, plus each without verify: (so that mutations elsewhere are not
    all hidden behind a broken verify block)."""
    out = []
    for text in [p.read_text() for p in _yaml_files()] + _doc_blocks():
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and doc.get("chaoskit") == 1:
            out.append(doc)
            if "verify" in doc:
                out.append({k: v for k, v in doc.items() if k != "verify"})
    return out


BASES = _bases()

# ------------------------------------------------------------------ mutations


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


REPLACEMENTS = [
    None, True, False, 0, -1, 1, 2, 101, 10**9, 0.5, -0.5, 1e300, "", "x", "30s", "-1s", "5x", "1.5.2ms",
    "25/s", "0/s", "SIGNOPE", "9", "http", "ftp://x", "a:0", "db:99999", "db:5432", "postgresql://a@b/c",
    "postgresql://a b", "10.0.0.0/33", "(", "all", "tcp", "one", "nope.fault", "container.kill",
    "container.start", "hypothesis", "${undefined_var}", [], [1], ["a"], [["a"], ["b"]], [["a"], ["a"]],
    {}, {"service": "app"}, {"after": "1s"}, {"status": 200}, {"nope": 1},
]
UNKNOWN_KEYS = ["nope", "fault", "action", "probe", "wait", "pause", "parallel", "target", "repeat", "every",
                "within", "delay", "window", "at", "expect", "mode", "fixed", "percent", "kubernetes", "compose",
                "selector", "owner", "from", "from_", "between", "ports", "protocol", "ops", "stall"]


def mutate(doc: dict[str, Any], pick) -> dict[str, Any]:  # noqa: ANN001 - pick(seq) -> one element
    """1-3 edits at random paths: delete a key, add a (known or unknown) key, replace a value
    (wrong types, bad durations, unknown names, out-of-range numbers)."""
    doc = copy.deepcopy(doc)
    for _ in range(pick([1, 1, 2, 3])):
        path = pick(_paths(doc))
        parent = _get(doc, path[:-1]) if path else None
        op = pick(["delete", "add", "replace", "replace", "name"])
        if op == "delete" and path and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(_get(doc, path), dict):
            _get(doc, path)[pick(UNKNOWN_KEYS)] = copy.deepcopy(pick(REPLACEMENTS))
        elif op == "name" and path and isinstance(parent, dict) and path[-1] in ("fault", "action", "probe"):
            parent[path[-1]] = pick(["nope", "container.kill", "container.start", "http", "sql", "db.slow"])
        elif path:
            parent[path[-1]] = copy.deepcopy(pick(REPLACEMENTS))
    return doc


def _check_mutant(doc: dict[str, Any]) -> bool:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mutant.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        return _sound(p)


# ------------------------------------------------------------------ soundness


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_files_sound(path):
    _sound(path)


def test_doc_examples_sound(tmp_path):
    for i, block in enumerate(_doc_blocks()):
        p = tmp_path / f"doc{i}.yaml"
        p.write_text(block)
        _sound(p)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutations_sound(data):
    base = data.draw(st.sampled_from(BASES))
    _check_mutant(mutate(base, lambda seq: data.draw(st.sampled_from(seq))))


def _param_models() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, pydantic Params, IR node) of every built-in fault, probe, trigger, checker and workload."""
    from chaoskit import registry
    from chaoskit.workload import WORKLOADS

    ir = fast._load_ir()
    out = []
    for kind in ("faults", "probes", "triggers", "checkers"):
        for name, cls in fastir._builtins(getattr(registry, kind)):
            node = ir[kind][name]["p"] if kind == "faults" else ir[kind][name]
            if node is not None and getattr(cls, "Params", None) is not None:
                out.append((name, cls.Params, node))
    out += [(kind, cls.Params, ir["workloads"][kind]) for kind, cls in sorted(WORKLOADS.items())]
    return out


PARAM_MODELS = _param_models()
PARAM_VALUES = REPLACEMENTS + [
    ["a", "b"], {"a": "b"}, "SIGTERM", 15, [80], "postgresql://u@h:5432/d", "10.0.0.1", "10.0.0.0/8",
    "exclusive", "row exclusive", ["t"], {"work_mem": "1MB"}, "app", "http://x", "x.*", ["1s", "2s"], 0.2, "200ms",
    "reference", "invariants.sql", 4096, 3000, {"tables": ["t"]}, {"table": "t", "id_column": "id"},
    {"present_once": "select 1 where %(id)s"}, {"t": "c"}, {"t": ["c"]},
]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_plugin_params_sound(data):
    """Each plugin's IR node against its pydantic Params, directly: what the IR (and the twins of
    its validators) accepts, pydantic accepts."""
    from chaoskit.experiment.fastchecks import Reject

    name, model, node = data.draw(st.sampled_from(PARAM_MODELS))
    keys = sorted({"nope", *model.model_fields, *(f.alias for f in model.model_fields.values() if f.alias)})
    params = data.draw(st.dictionaries(st.sampled_from(keys), st.sampled_from(PARAM_VALUES), max_size=5))
    try:
        fast._Walker(fast._load_ir()).check(node, params)
    except Reject:
        return
    model.model_validate(params)  # raises (fails the test) if the IR over-accepted


def test_mutations_reach_both_answers():
    """The mutation corpus is not vacuous: some mutants are fast-accepted, some are rejected by
    the loader, and the fast path says "not sure" about every rejected one."""
    rng = random.Random(7)
    fast_yes = loader_no = 0
    for _ in range(300):
        doc = mutate(rng.choice(BASES), rng.choice)
        fast_yes += _check_mutant(doc)
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.yaml"
            p.write_text(yaml.safe_dump(doc, sort_keys=False))
            loader_no += not _full_accepts(p)
    assert fast_yes >= 15 and loader_no >= 60, (fast_yes, loader_no)


# ------------------------------------------------------------------ coverage


def test_bench_file_and_every_phase7_scenario_are_fast_accepted():
    assert fast.fast_valid(BENCH_FILE)
    assert len(PHASE7) == 12
    for p in PHASE7:
        assert fast.fast_valid(p), p.name


def test_readme_experiment_fast_where_the_preset_finds_invariants(tmp_path, monkeypatch):
    """``preset: reference`` without invariants looks for compose/ledger/invariants.sql from the
    working directory: found (the repo) the file is fast-accepted; not found, the preset's
    built-in invariants are not compiled, so the full loader decides."""
    exp = tmp_path / "readme.yaml"
    exp.write_text(_doc_blocks()[0])
    monkeypatch.chdir(ROOT)
    assert fast.fast_valid(exp)
    monkeypatch.chdir(tmp_path)
    assert not fast.fast_valid(exp) and _full_accepts(exp)


def test_every_twin_is_pinned_to_the_current_validator():
    """A changed validator makes its IR node opaque (sound, but slow): review the twin in
    fastchecks.py, then update its pin (python -m chaoskit.experiment.fastir --pins)."""
    for key, (twin, pinned, helpers) in CHECKS.items():
        real = fastir._resolve(key)
        if pinned is None:
            assert real is twin, key
        else:
            assert fastir.pin(real, helpers) == pinned, f"{key} changed: review its twin, then re-pin"


def _launch(*args: str) -> subprocess.CompletedProcess:
    """The console script's entry point in a fresh interpreter; prints what it imported."""
    code = (
        "import sys\n"
        f"sys.argv = ['chaoskit', *{list(args)!r}]\n"
        "from chaoskit.launch import run\n"
        "try:\n    run()\n"
        "finally:\n    print('loaded:', 'pydantic' in sys.modules, 'click' in sys.modules, file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_no_pydantic_nor_click_on_the_fast_path():
    r = _launch("validate", str(BENCH_FILE), str(PHASE7[0]))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ok: {BENCH_FILE}\nok: {PHASE7[0]}\n"
    assert "loaded: False False" in r.stderr


def test_launcher_hands_everything_else_to_the_full_loader(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BENCH_FILE.read_text().replace("signal: SIGKILL", "signal: SIGNOPE"))
    r = _launch("validate", str(BENCH_FILE), str(bad))
    assert r.returncode == 2 and f"ok: {BENCH_FILE}" in r.stdout
    assert re.search(rf"{re.escape(str(bad))}:\d+: method\[0\]", r.stderr), r.stderr
    assert "loaded: True True" in r.stderr
    r = _launch("validate", str(BENCH_FILE), "--output", "json")
    assert r.returncode == 0 and '"valid"' in r.stdout
    assert _launch("--version").stdout.startswith("chaoskit, version ")


# ------------------------------------------------------------------ the shipped IR


def test_shipped_ir_is_fresh():
    assert Path(fast.IR_PATH).read_text() == fastir.dumps(fastir.validator_ir()), (
        "shipped validator IR is stale: run `chaoskit schema --validator -o chaoskit/schema/validate.json`"
    )


def test_missing_or_foreign_ir_skips_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.setattr(fast, "_ir", None)
    monkeypatch.setattr(fast, "IR_PATH", tmp_path / "missing.json")
    assert not fast.fast_valid(BENCH_FILE)
    foreign = tmp_path / "validate.json"
    foreign.write_text('{"version": "0.0.0-other"}')
    monkeypatch.setattr(fast, "_ir", None)
    monkeypatch.setattr(fast, "IR_PATH", foreign)
    assert not fast.fast_valid(BENCH_FILE)
    r = CliRunner().invoke(main, ["validate", str(BENCH_FILE)])  # the full loader still says ok
    assert r.exit_code == 0 and f"ok: {BENCH_FILE}" in r.output


# ------------------------------------------------------------------ the command


def test_cli_fast_and_slow_paths_agree_on_output(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BENCH_FILE.read_text().replace("signal: SIGKILL", "signal: SIGNOPE"))
    r = CliRunner().invoke(main, ["validate", str(BENCH_FILE), str(bad), "--output", "json"])
    assert r.exit_code == 2
    assert '"valid": [\n    "' + str(BENCH_FILE) in r.output
    r = CliRunner().invoke(main, ["validate", str(bad)])
    assert r.exit_code == 2 and re.search(rf"{re.escape(str(bad))}:\d+: method\[0\]", r.output), r.output
