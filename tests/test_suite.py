"""`chaoskit suite`: order, journals, JUnit, fail-fast, exit codes, validation up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

STACK = Path(__file__).parent / "stacks" / "simple"


def exp(d: Path, name: str, stack: dict, status: int) -> None:
    (d / name).write_text(textwrap.dedent(f"""\
        chaoskit: 1
        title: {name} expects {status}
        tags: [{'good' if status == 200 else 'bad'}]
        target:
          compose: {{file: {STACK}/docker-compose.yml, project: {stack['project']}}}
        hypothesis:
          - {{name: app, probe: http, url: "http://{stack['ips']['app']}:8000/health", expect: {{status: {status}}}}}
        method:
          - {{fault: container.pause, target: {{service: worker}}, duration: 100ms}}
        """))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chaoskit", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def test_suite_runs_all_writes_journals_and_junit(tmp_path, simple_stack):
    d = tmp_path / "exps"
    d.mkdir()
    exp(d, "01-good.yaml", simple_stack, 200)
    exp(d, "02-bad.yaml", simple_stack, 201)
    exp(d, "03-good.yaml", simple_stack, 200)
    (d / "_fragment.yaml").write_text("not: an experiment\n")
    junit = tmp_path / "junit.xml"
    r = cli("suite", str(d), "--junit", str(junit), "--reports-dir", str(tmp_path / "rep"))
    assert r.returncode == 1, r.stderr
    assert "2/3 passed" in r.stderr
    root = ET.parse(junit).getroot()
    ts = root.find("testsuite")
    assert ts.get("tests") == "3" and ts.get("failures") == "1"
    names = [c.get("name") for c in ts.findall("testcase")]
    assert names == ["01-good.yaml expects 200", "02-bad.yaml expects 201", "03-good.yaml expects 200"]
    assert ts.findall("testcase")[1].find("failure") is not None
    (suite_json,) = (tmp_path / "rep").glob("*/suite.json")
    data = json.loads(suite_json.read_text())
    assert data["passed"] == 2 and data["failed"] == 1 and data["status"] == "done"
    for case in data["cases"]:
        assert json.loads(Path(case["journal"]).read_text())["title"] == case["title"]


def test_fail_fast_tags_and_upfront_validation(tmp_path, simple_stack):
    d = tmp_path / "exps"
    d.mkdir()
    exp(d, "01-bad.yaml", simple_stack, 201)
    exp(d, "02-good.yaml", simple_stack, 200)
    r = cli("suite", str(d), "--fail-fast", "--output", "json", "--reports-dir", str(tmp_path / "rep"))
    assert r.returncode == 1
    assert len(json.loads(r.stdout)["cases"]) == 1
    r = cli("suite", str(d), "--tag", "good", "--output", "json", "--reports-dir", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    assert [c["title"] for c in json.loads(r.stdout)["cases"]] == ["02-good.yaml expects 200"]
    before = len(list((tmp_path / "rep").glob("*/*.json")))
    (d / "03-broken.yaml").write_text("chaoskit: 1\ntitle: x\nmethod: [{fault: nope, target: {service: a}}]\n")
    r = cli("suite", str(d), "--reports-dir", str(tmp_path / "rep"))
    assert r.returncode == 2 and "03-broken.yaml:3" in r.stderr
    assert len(list((tmp_path / "rep").glob("*/*.json"))) == before  # nothing ran: validated up front
