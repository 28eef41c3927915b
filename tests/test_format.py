"""The experiment format: every error names file, line and key; all errors at once; exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaoskit.cli import main
from chaoskit.errors import ExperimentError
from chaoskit.experiment import load_experiment

GOOD = """\
chaoskit: 1
title: Kill the ledger API while a trade opens
tags: [process, ledger]
target:
  compose: {file: ../compose/ledger/docker-compose.yml, project: ledger}
vars:
  api: http://127.0.0.1:8080
  dsn: ${env:CK_TEST_DSN:-postgresql://ledger@127.0.0.1:5432/ledger}
  token: {secret: s3cr3t-token}
hypothesis:
  - {name: api healthy, probe: http, url: "${api}/health", expect: {status: 200}}
  - {name: books balance, probe: sql, dsn: "${dsn}",
     query: "select coalesce(sum(amount_cents),0) from entries", expect: {equals: 0}}
method:
  - fault: container.kill
    target: {service: ledger-api}
    signal: SIGKILL
    when: {log: {service: ledger-api, match: 'trade\\.open\\.begin'}, within: 20s}
  - wait: {until: hypothesis, timeout: 60s}
rollbacks:
  - {action: container.start, target: {service: ledger-api}}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path: Path, **kw) -> list[str]:
    with pytest.raises(ExperimentError) as ei:
        load_experiment(path, **kw)
    return [str(p) for p in ei.value.problems]


def test_good_experiment_loads_and_resolves(tmp_path, monkeypatch):
    monkeypatch.delenv("CK_TEST_DSN", raising=False)
    exp = load_experiment(write(tmp_path, GOOD))
    assert exp.title.startswith("Kill the ledger API")
    assert exp.hypothesis[0].params.url == "http://127.0.0.1:8080/health"
    assert exp.hypothesis[1].params.dsn == "postgresql://ledger@127.0.0.1:5432/ledger"
    kill = exp.method[0]
    assert kill.spec.fault == "container.kill" and kill.params.signal == "SIGKILL"
    assert kill.trigger.kind == "log" and kill.trigger.within == 20.0
    assert exp.method[1].until.timeout == 60.0
    # relative compose path resolved against the experiment file
    assert exp.spec.target.compose.file == str((tmp_path / "../compose/ledger/docker-compose.yml").resolve())
    assert exp.secrets == ["s3cr3t-token"]


def test_env_and_var_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("CK_TEST_DSN", "postgresql://u:pw@db:5432/x")
    p = write(tmp_path, GOOD)
    varfile = tmp_path / "vars.yaml"
    varfile.write_text("api: http://10.9.9.9:1\n")
    exp = load_experiment(p, overrides={"api": "http://example.invalid:9"}, var_files=[varfile])
    assert exp.hypothesis[0].params.url == "http://example.invalid:9/health"  # --var beats var file
    assert exp.hypothesis[1].params.dsn == "postgresql://u:pw@db:5432/x"
    assert exp.overrides == {"api": "http://example.invalid:9"}
    exp2 = load_experiment(p, var_files=[varfile])
    assert exp2.hypothesis[0].params.url == "http://10.9.9.9:1/health"


def test_every_error_at_once_with_file_line_and_key(tmp_path):
    p = write(
        tmp_path,
        """\
        chaoskit: 1
        title: broken
        hypothesis:
          - {name: h, probe: http, url: "http://x", expect: {stauts: 200}}
          - {name: s, probe: sqll, dsn: x, query: y}
        method:
          - fault: container.kill
            target: {service: api}
            signall: SIGKILL
          - fault: container.pause
            target: {service: api}
            duration: forever
          - wait: {until: hypothesis, timeout: 60s}
            extra: 1
        bogus_top: 1
        """,
    )
    errs = problems(p)
    text = "\n".join(errs)
    assert f"{p}:4: hypothesis[0].expect.stauts: unknown expectation 'stauts'" in text
    assert f"{p}:5: hypothesis[1].probe: unknown probe 'sqll'" in text
    assert f"{p}:9: method[0].signall: unknown key 'signall'" in text
    assert "expected one of" in text and "signal" in text
    assert f"{p}:12: method[1].duration:" in text and "duration" in text
    assert f"{p}:14: method[2].extra: unknown key 'extra'" in text
    assert f"{p}:15: bogus_top: unknown key 'bogus_top'" in text
    assert len(errs) == 6, errs


def test_unknown_variable_and_bad_yaml(tmp_path):
    p = write(tmp_path, "chaoskit: 1\ntitle: t\nmethod:\n  - {pause: '${nope}'}\n")
    assert any(":4: method[0].pause: unknown variable ${nope}" in e for e in problems(p))
    bad = write(tmp_path, "chaoskit: 1\ntitle: [unclosed\n", "bad.yaml")
    errs = problems(bad)
    assert len(errs) == 1 and errs[0].startswith(f"{bad}:") and "invalid YAML" in errs[0]
    dup = write(tmp_path, "chaoskit: 1\ntitle: a\ntitle: b\nmethod: [{pause: 1}]\n", "dup.yaml")
    assert any(":3:" in e and "duplicate key 'title'" in e for e in problems(dup))


def test_version_key_required_and_checked(tmp_path):
    p = write(tmp_path, "chaoskit: 2\ntitle: t\nmethod: [{pause: 1}]\n")
    assert any(":1: chaoskit:" in e for e in problems(p))
    p2 = write(tmp_path, "title: t\nmethod: [{pause: 1}]\n", "nov.yaml")
    assert any("chaoskit: required key is missing" in e for e in problems(p2))


def test_trigger_and_step_validation(tmp_path):
    p = write(
        tmp_path,
        """\
        chaoskit: 1
        title: t
        method:
          - fault: container.kill
            target: {service: a}
            when: {lgo: {service: a, match: x}}
          - fault: container.kill
            target: {service: a}
            when: {log: {service: a, match: "(unclosed"}}
          - fault: container.kill
            target: {service: a}
            when: {at: random, window: [20s, 2s]}
          - {frobnicate: 1}
          - fault: container.kill
        """,
    )
    text = "\n".join(problems(p))
    assert "method[0].when.lgo: unknown trigger 'lgo'" in text
    assert "method[1].when.log.match: invalid regular expression" in text
    assert "method[2].when.at.window: window must be [earliest, latest]" in text
    assert ":13: method[3]: a step has exactly one of" in text
    assert ":14: method[4]: container.kill needs a target" in text


def test_cli_validate_exit_codes_and_no_traceback(tmp_path):
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, "chaoskit: 1\ntitle: t\nmethod:\n  - {fault: nope.nope, target: {service: a}}\n", "bad.yaml")
    r = subprocess.run([sys.executable, "-m", "chaoskit", "validate", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "chaoskit", "validate", str(good), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{bad}:4: method[0].fault: unknown fault 'nope.nope'" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "chaoskit", "run", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_cli_validate_json_output(tmp_path):
    bad = write(tmp_path, "chaoskit: 1\ntitle: t\nmethod: [{pause: -1}]\n")
    res = CliRunner().invoke(main, ["validate", "--output", "json", str(bad)])
    assert res.exit_code == 2
    data = json.loads(res.stdout)
    assert data["problems"][0]["line"] == 3 and data["problems"][0]["key"] == "method[0].pause"


def test_schema_is_generated_and_shipped(tmp_path):
    import jsonschema

    from chaoskit.experiment.schema import experiment_schema

    schema = experiment_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    shipped = Path(__file__).parent.parent / "chaoskit" / "schema" / "experiment.schema.json"
    assert json.loads(shipped.read_text()) == json.loads(json.dumps(schema)), (
        "shipped schema is stale: run `chaoskit schema -o chaoskit/schema/experiment.schema.json`"
    )
    import yaml

    good = yaml.safe_load(GOOD)
    jsonschema.validate(good, schema)
    bad = dict(good, method=[{"fault": "container.kill", "target": {"service": "a"}, "signall": 9}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    res = CliRunner().invoke(main, ["schema"])
    assert res.exit_code == 0 and json.loads(res.stdout)["title"] == "chaoskit experiment"


def test_list_names_builtins():
    res = CliRunner().invoke(main, ["list", "--output", "json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    for f in ("container.kill", "container.stop", "container.start", "container.restart", "container.pause"):
        assert f in data["faults"]
    for p in ("http", "sql", "container", "command"):
        assert p in data["probes"]
    for e in ("equals", "range", "regex", "jsonpath", "status", "all", "any"):
        assert e in data["expectations"]
    for t in ("after", "at", "log", "sql", "http"):
        assert t in data["triggers"]


def test_workload_placeholders_pass_through(tmp_path):
    p = write(tmp_path, """\
        chaoskit: 1
        title: inline ops
        vars: {api: "http://127.0.0.1:9"}
        workload:
          http:
            base_url: "${api}"
            rate: 5/s
            duration: 1s
            ops:
              - {name: open, method: POST, path: /trades, id_field: client_order_id,
                 json: {client_order_id: "${id}", side: "${choice:buy,sell}"}}
              - {name: close, method: POST, path: "/trades/${take:open}/close", json: {client_order_id: "${id}"}}
        method: [{pause: 10ms}]
        """)
    exp = load_experiment(p)
    kind, params = exp.workload
    assert kind == "http" and params.base_url == "http://127.0.0.1:9"
    assert exp.resolved["workload"]["http"]["ops"][0]["json"]["client_order_id"] == "${id}"
    assert exp.resolved["workload"]["http"]["ops"][1]["path"] == "/trades/${take:open}/close"
