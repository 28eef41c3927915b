"""`chaoskit soak`: real PostgreSQL probed on intervals, a value changed mid-run so one rule
fires and resolves while the others stay quiet, alerts in the JSONL file and at a real local
webhook, exit codes through the CLI, Ctrl-C, and container CPU/memory via the Docker API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from report_helpers import dump_dom

from chaoskit.cli import main
from chaoskit.errors import ExperimentError
from chaoskit.soak import load_soak_config, run_soak
from chaoskit.soak.resources import cpu_percent, memory

ROOT = Path(__file__).parent.parent


class Hook:
    """A real HTTP server on loopback that records every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        hook = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture()
def knob_db(fresh_db: str) -> str:
    with psycopg.connect(fresh_db, autocommit=True) as c:
        c.execute("create table knob (v int not null)")
        c.execute("insert into knob values (1)")
    return fresh_db


def set_knob(dsn: str, v: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("update knob set v = %s", (v,))


def soak_file(tmp: Path, dsn: str, extra: str = "", name: str = "soak.yaml") -> Path:
    p = tmp / name
    p.write_text(textwrap.dedent(f"""\
        chaoskit: 1
        kind: soak
        title: knob soak
        vars:
          dsn: "{dsn}"
        groups:
          health:
            interval: 250ms
            probes:
              - {{name: db reachable, probe: sql, dsn: "${{dsn}}", query: "select 1"}}
              - {{name: knob, probe: sql, dsn: "${{dsn}}", query: "select v from knob"}}
          integrity:
            interval: 500ms
            probes:
              - {{name: negative knobs, probe: sql, dsn: "${{dsn}}", query: "select v from knob where v < 0", result: rows}}
        alerts:
          - {{name: knob too high, severity: critical, probe: knob, when: {{gt: 100}}}}
          - {{name: knob high for a while, severity: high, probe: knob, when: {{gt: 100}}, for: 1s}}
          - {{name: knob high for ages, severity: high, probe: knob, when: {{gt: 100}}, for: 60s}}
          - {{name: negative knob, severity: critical, probe: negative knobs, when: {{rows: {{gt: 0}}}}}}
          - {{name: database connection issues, severity: high, probe: db reachable, when: error}}
        """) + textwrap.dedent(extra))
    return p


def wait_for(pred, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def samples(out: Path, probe: str) -> list[dict]:
    f = out / "samples.jsonl"
    if not f.exists():
        return []
    return [r for r in map(json.loads, f.read_text().splitlines()) if r["probe"] == probe]


def test_soak_cli_rule_fires_resolves_webhook_jsonl_exit_1(tmp_path, knob_db, hook):
    cfg = soak_file(tmp_path, knob_db)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "soak", str(cfg), "--duration", "8s", "--out", str(out),
         "--webhook", hook.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "160"},
    )
    try:
        wait_for(lambda: len(samples(out, "knob")) >= 3, what="first knob readings")
        set_knob(knob_db, 500)
        wait_for(lambda: any(s["value"] == 500 for s in samples(out, "knob")), what="the new value read")
        time.sleep(1.8)  # > for: 1s, << for: 60s
        set_knob(knob_db, 1)
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert "CRITICAL" in stderr and "knob too high" in stderr and "SOAK FAILED" in stderr

    lines = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
    by_rule: dict[str, list[str]] = {}
    for a in lines:
        by_rule.setdefault(a["rule"], []).append(a["status"])
    assert by_rule == {"knob too high": ["firing", "resolved"], "knob high for a while": ["firing", "resolved"]}
    fired = next(a for a in lines if a["rule"] == "knob too high" and a["status"] == "firing")
    assert fired["severity"] == "critical" and fired["value"] == 500 and fired["detail"] == "500 > 100"
    slow = next(a for a in lines if a["rule"] == "knob high for a while" and a["status"] == "firing")
    assert slow["t"] - slow["since_t"] >= 1.0  # held for its `for` before alerting
    resolved = next(a for a in lines if a["rule"] == "knob too high" and a["status"] == "resolved")
    assert resolved["value"] == 1 and resolved["resolved_t"] > fired["t"]

    wait_for(lambda: len(hook.bodies) >= 4, timeout=5, what="webhook posts")
    assert sorted((b["alert"]["rule"], b["alert"]["status"]) for b in hook.bodies) == sorted(
        (a["rule"], a["status"]) for a in lines
    )
    assert any(b["text"].startswith("[CRITICAL] FIRING: knob too high") for b in hook.bodies)

    rep = json.loads((out / "soak-report.json").read_text())
    assert rep["verdict"] == "failed" and rep["exit_code"] == 1 and rep["counts"] == {"critical": 1, "high": 1, "medium": 0}
    ages = rep["rules"]["knob high for ages"]
    assert ages["fired"] == 0 and ages["bad"] >= 3  # the condition held, just not for 60 s
    assert rep["rules"]["negative knob"]["evaluations"] >= 5 and rep["rules"]["negative knob"]["bad"] == 0
    assert rep["probes"]["knob"]["series"]["max"] == 500 and rep["probes"]["knob"]["errors"] == 0
    assert rep["webhook"]["sent"] == 4 and rep["webhook"]["failed"] == 0
    assert 7.5 < rep["duration"] < 14
    assert rep["probes"]["negative knobs"]["plotted"] == "rows" and rep["probes"]["negative knobs"]["series"]["max"] == 0
    dom = dump_dom(out / "soak-report.html")  # the soak report, as a browser renders it
    assert '<span class="alert-count" data-severity="critical">1</span>' in dom
    assert 'class="alert-band critical" data-rule="knob too high"' in dom
    assert 'class="alert-band high" data-rule="knob high for a while"' in dom
    assert "3 quiet rule(s)" in dom and "SOAK" not in dom
    r = CliRunner().invoke(main, ["report", str(out / "soak-report.json"), "-o", str(tmp_path / "again.html")])
    assert r.exit_code == 0 and "knob too high" in (tmp_path / "again.html").read_text()


def test_soak_gate_fail_on_and_webhook_failure_do_not_break_it(tmp_path, knob_db):
    set_knob(knob_db, 7)
    extra = """\
        fail_on: [critical]
        outputs:
          samples_file: null
          webhook: {url: "http://127.0.0.1:9/nothing-listens", timeout: 1s}
        """
    cfg = load_soak_config(soak_file(tmp_path, knob_db, extra + """\
        """))
    cfg.spec.alerts.append(cfg.spec.alerts[0].model_copy(update={"name": "any knob", "severity": "medium", "when": {"gt": 0}}))
    r1 = run_soak(cfg, duration=1.5, out_dir=tmp_path / "a")
    assert r1.ok and r1.exit_code == 0 and r1.verdict == "passed"
    assert [a["rule"] for a in r1.alerts] == ["any knob"]  # fired, but medium does not fail the gate
    assert r1.report["webhook"]["failed"] == 1 and "ConnectError" in r1.report["webhook"]["last_error"]
    assert not (tmp_path / "a" / "samples.jsonl").exists()
    cfg.spec.fail_on = ["critical", "medium"]
    r2 = run_soak(cfg, duration=1.0, out_dir=tmp_path / "b")
    assert not r2.ok and r2.exit_code == 1 and "any knob" in r2.reasons[-1]


def test_soak_ctrl_c_ends_early_and_still_reports(tmp_path, knob_db):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "soak", str(soak_file(tmp_path, knob_db)), "--duration", "1h",
         "--out", str(out), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: len(samples(out, "knob")) >= 2, what="first readings")
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert took < 10 and "Traceback" not in stderr
    rep = json.loads((out / "soak-report.json").read_text())
    assert rep["status"] == "interrupted" and rep["verdict"] == "interrupted" and rep["gate"] == "passed"
    assert rep["probes"]["knob"]["reads"] >= 2 and rep["duration"] < 60
    assert any("SIGINT" in r for r in rep["reasons"]) and (out / "soak-report.html").exists()


def test_soak_stop_event_ends_it_for_a_calling_gauntlet(tmp_path, knob_db):
    cfg = load_soak_config(soak_file(tmp_path, knob_db))
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    t = time.monotonic()
    res = run_soak(cfg, duration=3600, out_dir=tmp_path / "out", stop=stop)
    assert time.monotonic() - t < 10
    assert res.ok and res.exit_code == 0 and not res.interrupted
    assert res.report["status"] == "stopped" and res.reasons[0].startswith("stopped early by the caller")
    assert res.report["probes"]["knob"]["reads"] >= 2 and res.report_path and res.report_path.is_file()


class Shop:
    """A loopback HTTP service for the soak's workload; ``broken`` makes it answer 500."""

    def __init__(self) -> None:
        self.broken = False
        shop = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                code = 500 if shop.broken else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_soak_with_workload_alerts_on_its_error_rate(tmp_path):
    shop = Shop()
    p = tmp_path / "wl.yaml"
    p.write_text(textwrap.dedent(f"""\
        chaoskit: 1
        kind: soak
        title: shop under load
        workload:
          http: {{base_url: "{shop.url}", rate: 40/s, concurrency: 4, ops: [{{name: browse, method: GET, path: /items}}]}}
        groups:
          load:
            interval: 250ms
            probes:
              - {{name: traffic, probe: workload.stats, window: 1s}}
        alerts:
          - {{name: shop errors, severity: critical, probe: traffic, when: {{path: $.error_rate, gt: 0.5}}, for: 500ms}}
          - {{name: shop slow, severity: high, probe: traffic, when: {{path: $.latency_ms.p99, gt: 2000}}}}
        """))
    text = p.read_text()
    nowl = tmp_path / "nowl.yaml"
    nowl.write_text(text.split("workload:")[0] + "groups:" + text.split("groups:")[1])
    with pytest.raises(ExperimentError, match="a workload.stats probe needs a workload"):
        load_soak_config(nowl)
    cfg = load_soak_config(p)
    threading.Timer(1.5, lambda: setattr(shop, "broken", True)).start()
    try:
        res = run_soak(cfg, duration=4, out_dir=tmp_path / "out")
    finally:
        shop.server.shutdown()
        shop.server.server_close()
    assert not res.ok and res.exit_code == 1
    assert [a["rule"] for a in res.alerts] == ["shop errors"]
    a = res.alerts[0]
    assert a["value"]["error_rate"] > 0.5 and a["value"]["fail"] + a["value"]["info"] > 0 and a["t"] > 1.5
    wl = res.report["workload"]["counts"]
    assert wl["ok"] > 20 and wl["fail"] + wl["info"] > 20 and Path(res.report["history"]).is_file()
    traffic = res.report["probes"]["traffic"]
    assert traffic["plotted"] == "$.error_rate" and traffic["series"]["min"] == 0 and traffic["series"]["max"] > 0.5
    html = res.report_path.read_text() if res.report_path else ""
    assert 'class="throughput"' in html and 'class="error-rate"' in html


@pytest.fixture()
def hog(docker_client, base_image) -> Iterator[str]:
    """A container labelled as a one-service compose project, holding ~40 MB under a 64 MB limit."""
    project = f"cks{uuid.uuid4().hex[:8]}"
    c = docker_client.containers.run(
        base_image,
        ["python3", "-c", "import time; x = b'x' * (40 << 20); time.sleep(600)"],
        detach=True, mem_limit="64m", name=f"{project}_hog_1",
        labels={"chaoskit.test": "1", "com.docker.compose.project": project, "com.docker.compose.service": "hog"},
    )
    try:
        wait_for(lambda: (c.reload(), c.attrs["State"]["Running"])[1], what="hog running")
        yield project
    finally:
        c.remove(force=True)


def test_soak_container_stats_memory_alert(tmp_path, hog):
    p = tmp_path / "res.yaml"
    p.write_text(textwrap.dedent(f"""\
        chaoskit: 1
        kind: soak
        title: resources
        target: {{compose: {{project: {hog}}}}}
        duration: 3s
        groups:
          resources:
            interval: 1s
            probes:
              - {{name: stack resources, probe: container.stats}}
              - {{name: hog state, probe: container, service: hog}}
        alerts:
          - {{name: high memory, severity: medium, probe: stack resources, when: {{path: $.mem_percent, gt: 50}}}}
          - {{name: high cpu, severity: medium, probe: stack resources, when: {{path: $.cpu_percent, gt: 80}}}}
          - {{name: hog crashed, severity: critical, probe: hog state, when: {{path: running, equals: false}}}}
        """))
    cfg = load_soak_config(p)
    wait_for(lambda: memory(__import__("docker").from_env().containers.get(f"{hog}_hog_1").stats(stream=False))[2] > 50,
             what="the hog's memory")
    res = run_soak(cfg, out_dir=tmp_path / "out")
    assert res.ok and res.exit_code == 0  # medium alerts do not fail the default gate
    assert [a["rule"] for a in res.alerts] == ["high memory"]
    val = res.alerts[0]["value"]
    hog_stats = val["containers"][f"{hog}_hog_1"]
    assert hog_stats["mem_limit"] == 64 << 20 and 50 < hog_stats["mem_percent"] < 100
    assert isinstance(hog_stats["cpu_percent"], float) and 0 <= hog_stats["cpu_percent"] < 80
    assert res.report["probes"]["stack resources"]["reads"] >= 2
    assert res.report["probes"]["stack resources"]["plotted"] == "$.mem_percent"


def test_cpu_percent_matches_docker_cli_formula():
    s = {"cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000, "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000}, "system_cpu_usage": 18_000_000_000}}
    assert cpu_percent(s) == 100.0  # one of two cores busy for the whole interval
    assert cpu_percent({"cpu_stats": {}, "precpu_stats": {}}) is None
    mem = {"memory_stats": {"usage": 100, "limit": 400, "stats": {"total_inactive_file": 20}}}
    assert memory(mem) == (80, 400, 20.0)


def test_soak_bad_input_is_exit_2_with_file_and_line(tmp_path, knob_db):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        chaoskit: 1
        kind: soak
        title: typos
        groups:
          health:
            interval: soon
            probes:
              - {name: one, probe: sql, dsn: "x", query: "select 1", qurey: typo}
              - {probe: http, url: "http://127.0.0.1:1/"}
        alerts:
          - {name: a, severity: urgent, probe: one, when: {gt: 1}}
          - {name: b, severity: high, probe: nope, when: {greater: 1}}
          - {name: c, severity: high, probe: one, wen: error}
        """))
    runner = CliRunner()
    r = runner.invoke(main, ["soak", str(bad), "--duration", "1s"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    err = r.output
    assert f"{bad}:6: groups.health.interval:" in err
    assert f"{bad}:8: groups.health.probes[0].qurey: unknown key 'qurey'" in err
    assert f"{bad}:9: groups.health.probes[1]: every soak probe needs a name" in err
    assert f"{bad}:11: alerts[0].severity:" in err and "'critical', 'high' or 'medium'" in err
    assert f"{bad}:12: alerts[1].probe: no probe named 'nope'" in err
    assert f"{bad}:12: alerts[1].when.greater: unknown expectation 'greater'" in err
    assert f"{bad}:13: alerts[2].wen: unknown key 'wen'" in err
    good = soak_file(tmp_path, knob_db)
    for args, msg in (
        (["--duration", "soon"], "--duration: expected a duration like 500ms"),
        ([], "no duration: give --duration"),
        (["--duration", "1s", "--fail-on", "critical,urgent"], "--fail-on: unknown severity urgent"),
        (["--duration", "1s", "--webhook", "ftp://x"], "--webhook must be an http:// or https:// URL"),
    ):
        r = runner.invoke(main, ["soak", str(good), *args])
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
    r = runner.invoke(main, ["soak", str(tmp_path / "missing.yaml"), "--duration", "1s"])
    assert r.exit_code == 2 and "cannot read" in r.output
    r = runner.invoke(main, ["soak", str(good), "--check"])
    assert r.exit_code == 2 and "no duration" in r.output  # --check validates everything the run would need
    r = runner.invoke(main, ["soak", str(good), "--check", "--duration", "72h"])
    assert r.exit_code == 0 and "ok: " in r.output and "5 rules, fail on critical" in r.output
    assert 'alert [high] knob high for a while: knob {"gt": 100} for 1s' in r.output
    r = runner.invoke(main, ["soak", str(good), "--duration", "1s", "--out", str(tmp_path / "j"), "--output", "json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["verdict"] == "passed" and res["alerts"] == 0 and Path(res["report"]).is_file()
    nothing = tmp_path / "nothing.yaml"
    nothing.write_text(good.read_text().replace("vars:", "target: {compose: {project: ckt-no-such-project}}\nvars:"))
    r = runner.invoke(main, ["soak", str(nothing), "--duration", "1s", "--out", str(tmp_path / "n")])
    assert r.exit_code == 3 and "has no containers: is the stack up?" in r.output and "Traceback" not in r.output


def test_ledger_soak_config_is_valid_and_covers_the_reference_alerts():
    cfg = load_soak_config(ROOT / "experiments" / "soak" / "ledger-soak.yaml")
    assert set(cfg.spec.groups) == {"health", "positions", "integrity"}
    sev = {r.name: r.severity for r in cfg.spec.alerts}
    assert sev["balance equation violated"] == "critical" and sev["reconciliation mismatch"] == "critical"
    assert sev["high resource use"] == "medium" and sev["database connection issues"] == "high"
    thresholds = {r.name: r.when for r in cfg.spec.alerts}
    assert thresholds["slow position reads"] == {"latency_ms": {"gt": 100}}
    assert thresholds["slow trades"] == {"path": "$.latency_ms.p99", "gt": 100}
    assert cfg.workload is not None and cfg.workload[0] == "http" and cfg.workload[1].rate == 5.0
    assert cfg.workload[1].ops_file == "../../compose/ledger/workload.yml"
    assert cfg.spec.target is not None and cfg.spec.target.compose is not None
    assert cfg.spec.target.compose.file and cfg.spec.target.compose.file.endswith("compose/ledger/docker-compose.yml")


def test_workload_stats_tails_partial_lines_and_pairs_latency(tmp_path):
    from chaoskit.runner.context import RunContext
    from chaoskit.soak.workload_stats import WorkloadStatsProbe

    hist = tmp_path / "h.jsonl"
    ctx = RunContext(run_id="t", seed=1)
    ctx.workload_history = hist  # type: ignore[attr-defined]
    probe = WorkloadStatsProbe(WorkloadStatsProbe.Params(window="30s"), ctx)
    assert probe.read()["completed"] == 0  # no file yet: nothing, not an error
    now = time.time()
    with open(hist, "w") as fh:
        fh.write(json.dumps({"type": "invoke", "process": 0, "op": "open", "id": "a", "wall": now - 2}) + "\n")
        fh.write(json.dumps({"type": "ok", "process": 0, "op": "open", "id": "a", "wall": now - 1.95}) + "\n")
        fh.write(json.dumps({"type": "invoke", "process": 1, "op": "open", "id": "b", "wall": now - 1.5}) + "\n")
        fh.write('{"type": "fail", "process": 1, "op": "op')  # half-written line
        fh.flush()
        v = probe.read()
        assert (v["ok"], v["fail"], v["latency_ms"]["p50"]) == (1, 0, 50.0)
        fh.write('en", "id": "b", "wall": %f}\n' % (now - 1.2))
        fh.write(json.dumps({"type": "ok", "process": 9, "op": "close", "id": "old", "wall": now - 99}) + "\n")
    v = probe.read()
    assert (v["ok"], v["fail"], v["completed"], v["error_rate"]) == (1, 1, 2, 0.5)
    assert v["by_op"] == {"open": {"ok": 1, "fail": 1, "info": 0}}  # the old one is outside the window
    ctx2 = RunContext(run_id="t", seed=1)
    with pytest.raises(Exception, match="this run has no workload"):
        WorkloadStatsProbe(WorkloadStatsProbe.Params(), ctx2).read()


def test_series_stays_bounded_and_keeps_spikes():
    from chaoskit.soak.series import MAX_POINTS, Series

    s = Series()
    for i in range(10_000):
        s.add(float(i), 1000 if i == 4321 else i % 7)
    assert len(s.points) <= 2 * MAX_POINTS and s.count == 10_000
    assert s.hi == 1000 and max(p[2] for p in s.points) == 1000  # the spike survives merging
    assert sum(p[4] for p in s.points) == 10_000 and s.points[0][0] == 0.0
