"""`chaoskit report`: real journals from real runs against tests/stacks/simple, plus synthetic
edge cases (failed verification, a fault never reverted, no workload), rendered by headless
Chromium and checked on the DOM and on the pixels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from report_helpers import colours, dump_dom, png_pixels, screenshot

from chaoskit.report import ReportError, build_view, load_journal_file, load_journals, render_report

STACK = Path(__file__).parent / "stacks" / "simple"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chaoskit", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def _experiment(tmp: Path, stack: dict, name: str, title: str, body: str) -> Path:
    head = f"""\
    chaoskit: 1
    title: {title}
    target:
      compose: {{file: {STACK}/docker-compose.yml, project: {stack['project']}}}
    vars:
      app: http://{stack['ips']['app']}:8000
    """
    p = tmp / name
    p.write_text(textwrap.dedent(head) + textwrap.dedent(body))
    return p


@pytest.fixture(scope="module")
def real_journals(simple_stack, tmp_path_factory) -> dict[str, Path]:
    """Two real runs: one that passes (workload, a held pause, a kill) and one that fails (a
    trigger that never fires; the pause is reverted by the runner's finally)."""
    tmp = tmp_path_factory.mktemp("journals")
    ok = _experiment(tmp, simple_stack, "ok.yaml", "Kill the app under load", """\
        hypothesis:
          - {name: app healthy, probe: http, url: "${app}/health", expect: {status: 200}}
          - {name: requests served, probe: http, url: "${app}/count", expect: {path: $.json.count, gt: 0}}
        workload:
          http: {base_url: "${app}", rate: 30/s, concurrency: 8, ops: [{name: get, method: GET, path: /count}]}
        method:
          - {pause: 500ms}
          - {fault: container.pause, name: freeze worker, target: {service: worker}, duration: 1s}
          - {fault: container.kill, name: kill app, target: {service: app}, when: {after: 200ms}}
          - wait: {until: hypothesis, timeout: 30s}
        rollbacks:
          - {action: container.start, target: {service: app}}
        """)
    bad = _experiment(tmp, simple_stack, "bad.yaml", "Trigger that never fires", """\
        method:
          - {fault: container.pause, name: freeze worker, target: {service: worker}}
          - fault: container.kill
            name: kill on a line that never comes
            target: {service: app}
            when: {log: {service: app, match: "this never appears"}, within: 1s}
        """)
    out = {}
    for key, exp, code in (("ok", ok, 0), ("bad", bad, 3)):
        j = tmp / f"{key}.json"
        r = cli("run", str(exp), "--journal", str(j), "--seed", "11", "-q")
        assert r.returncode == code, (key, r.returncode, r.stderr[-3000:])
        out[key] = j
    return out


def synthetic_failed_verify(tmp: Path) -> dict:
    """A deviated run whose ledger check found a lost write and an imbalance; no workload."""
    return {
        "chaoskit_journal": 1, "run_id": "synthetic-verify", "title": "Ledger lost a write", "seed": 3,
        "started": "2026-11-01T10:00:00.000Z", "ended": "2026-11-01T10:00:09.000Z", "status": "deviated",
        "verdict": "deviated", "exit_code": 1, "duration": 9.0,
        "reasons": ["verification ledger failed: lost, balance_equation"],
        "steps": [
            {"phase": "method", "kind": "fault", "name": "lock entries", "id": "lock", "fault": "db.lock",
             "t_start": 1.0, "t_end": 4.0, "status": "ok", "firings": []},
            {"phase": "revert", "kind": "revert", "name": "revert lock entries", "id": "lock", "t_start": 3.9,
             "t_end": 4.0, "status": "ok"},
            {"phase": "hypothesis-after", "kind": "probe", "name": "books balance", "probe": "sql", "t_start": 4.2,
             "t_end": 4.4, "status": "failed", "value": 1999, "detail": "NOT 1999 == 0"},
            {"phase": "verify", "kind": "checker", "name": "ledger", "t_start": 5.0, "t_end": 8.5, "status": "failed",
             "result": {"ok": False, "findings": [
                 {"check": "history", "name": "lost", "ok": False, "message": "2 acknowledged writes are missing",
                  "examples": ["open-1-7", "open-1-9"]},
                 {"check": "invariant", "name": "balance_equation", "ok": False, "message": "EUR imbalance of 1999 cents"},
                 {"check": "invariant", "name": "txn_balanced", "ok": True, "message": "0 rows"},
             ]}},
        ],
        "events": [],
        "faults": [{"step": "lock", "fault": "db.lock", "applied_t": 1.05, "instances": [{"name": "pg-1"}], "evidence": {}}],
    }


def synthetic_unreverted(tmp: Path) -> dict:
    """A runner that died mid-method: journal never closed, the partition never reverted, and a
    workload history that says 2 of 4 ops failed in second 1."""
    hist = tmp / "dead.history.jsonl"
    t0 = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC).timestamp()  # the journal's "started"
    lines = []
    for i in range(4):
        lines.append({"type": "invoke", "process": i, "op": "open", "id": f"a{i}", "time": 0, "wall": t0 + 0.2})
        lines.append({"type": "ok", "process": i, "op": "open", "id": f"a{i}", "time": 1, "wall": t0 + 0.3})
    for i in range(4):
        lines.append({"type": "ok" if i < 2 else "fail", "process": i, "op": "open", "id": f"b{i}", "wall": t0 + 1.5})
    hist.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    return {
        "chaoskit_journal": 1, "run_id": "synthetic-dead", "title": "Runner died during a partition", "seed": 5,
        "started": "2026-11-01T10:00:00.000Z", "ended": None, "status": "running", "history": str(hist),
        "steps": [
            {"phase": "method", "kind": "fault", "name": "cut db", "id": "cut", "fault": "network.partition",
             "t_start": 0.5, "status": "running", "firings": [{"applied_t": 0.6, "instances": [{"name": "api-1"}]}]},
        ],
        "events": [{"t": 1.2, "kind": "deviation", "probe": "api healthy", "detail": "status 503"}],
    }


def test_view_of_real_run_has_bands_marks_probes_and_throughput(real_journals):
    j = load_journal_file(real_journals["ok"])
    v = build_view(j, real_journals["ok"])
    assert v.verdict == "passed" and v.fault_count == 2
    pause = next(b for b in v.faults if b.fault == "container.pause")
    kill = next(b for b in v.faults if b.fault == "container.kill")
    revert = next(s for s in j["steps"] if s["phase"] == "revert")
    assert pause.reverted and pause.end == pytest.approx(revert["t_end"]) and 0.9 < pause.end - pause.start < 2.5
    assert kill.end is None and kill.status == "ok"  # one-shot: a mark, not an open band
    assert {p.name for p in v.probes} == {"app healthy", "requests served"}
    served = [p.value for p in v.probes if p.name == "requests served"]
    assert all(x is not None and x > 0 for x in served) and served[-1] > served[0]  # $.json.count grows
    ops = v.ops
    counts = j["workload"]["counts"]
    assert ops["ok"] == counts["ok"] and ops["fail"] == counts["fail"] and ops["ok"] > 30


def test_view_of_failed_run_marks_the_fault_that_never_fired(real_journals):
    v = build_view(load_journal_file(real_journals["bad"]), real_journals["bad"])
    assert v.verdict == "failed" and v.exit_code == 3
    failed = [b for b in v.faults if b.status == "failed"]
    assert len(failed) == 1 and "did not fire" in failed[0].detail
    (pause,) = [b for b in v.faults if b.fault == "container.pause"]
    assert pause.reverted and pause.end is not None  # reverted in the runner's finally
    assert v.buckets == [] and v.history_note == "no workload in this run"


def test_synthetic_edges_unreverted_band_history_buckets_findings(tmp_path):
    v = build_view(synthetic_unreverted(tmp_path))
    (band,) = v.faults
    assert band.status == "unreverted" and not band.reverted and band.end == pytest.approx(v.duration)
    assert [(b.t, b.ok, b.fail) for b in v.buckets] == [(0, 4, 0), (1, 2, 2)]
    assert v.buckets[1].error_rate == 0.5
    assert v.verdict == "incomplete" and any("never closed" in n for n in v.notes)
    assert any("1 unreadable history line" in n for n in v.notes)
    f = build_view(synthetic_failed_verify(tmp_path))
    assert [x["name"] for x in f.failed_findings] == ["lost", "balance_equation"]
    assert f.findings[-1]["name"] == "txn_balanced"  # failures first
    assert f.faults[0].end == 4.0 and f.history_note == "no workload in this run"


def test_report_in_headless_chromium(real_journals, tmp_path):
    journals = load_journals([real_journals["ok"], real_journals["bad"]])
    journals += [synthetic_failed_verify(tmp_path), synthetic_unreverted(tmp_path)]
    out = render_report(journals, tmp_path / "report.html", title="Nightly chaos")
    html = out.read_text()
    assert "<script src" not in html and "http://" not in html.split("<body", 1)[1].replace('xmlns="http://www.w3.org/2000/svg"', "")
    dom = dump_dom(out)
    assert 'data-ready="1"' in dom  # the inline script ran
    assert "3 of 4 run(s) did not pass" in dom
    titles = re.findall(r'<h2 class="run-title">([^<]+)</h2>', dom)
    assert titles == ["Kill the app under load", "Trigger that never fires", "Ledger lost a write",
                      "Runner died during a partition"]
    verdicts = re.findall(r'<article class="run [^"]*" id="run-\d" data-verdict="([^"]+)" data-faults="(\d+)"', dom)
    assert verdicts == [("passed", "2"), ("failed", "2"), ("deviated", "1"), ("incomplete", "1")]
    assert len(re.findall(r'class="fault-band ok"', dom)) == 3  # two pauses, the db lock
    assert len(re.findall(r'class="fault-mark"', dom)) == 1  # the kill
    assert len(re.findall(r'class="fault-failed"', dom)) == 1  # the trigger that never fired
    assert len(re.findall(r'class="fault-band unreverted"', dom)) == 1
    assert "2 acknowledged writes are missing" in dom and "EUR imbalance of 1999 cents" in dom
    assert "2 of 3 finding(s) failed" in dom
    assert "did not fire within 1.0s" in dom  # the failed run's reason
    assert len(re.findall(r'class="probe-point fail"', dom)) == 1 and "NOT 1999 == 0" in dom
    assert len(re.findall(r'class="event-mark"', dom)) == 1 and "deviation: api healthy status 503" in dom
    assert dom.count('class="throughput"') == 2 and "peak 50% at 1s" in dom
    png = screenshot(out, tmp_path / "report.png")
    w, h, rows = png_pixels(png, max_rows=900)
    assert (w, h) == (1280, 2000)
    seen = colours(rows)
    assert len(seen) > 200, "the page looks blank"
    assert (255, 146, 43) in seen, "no fault band painted (#ff922b)"
    assert (47, 158, 68) in seen, "no passed verdict painted (#2f9e44)"


def test_report_cli_dirs_and_bad_input(real_journals, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", str(real_journals["ok"].parent), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "2 run(s)" in r.stdout and out.read_text().count('<article class="run') == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    r = cli("report", str(bad), "-o", str(out))
    assert r.returncode == 2 and "not a chaoskit journal (invalid JSON at line 1)" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("report", str(tmp_path / "missing.json"), "-o", str(out))
    assert r.returncode == 2 and "cannot read" in r.stderr
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"chaoskit_suite": 1, "cases": [{"journal": str(real_journals["bad"])},
                                                                {"journal": str(real_journals["ok"])}]}))
    assert [j["title"] for j in load_journals([suite])] == ["Trigger that never fires", "Kill the app under load"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no chaoskit journals"):
        load_journals([empty])


def test_secrets_are_redacted_in_the_report(tmp_path):
    j = synthetic_failed_verify(tmp_path)
    j["reasons"] = ["could not connect to postgresql://ledger:hunter2@db:5432/ledger"]
    j["title"] = "<script>alert(1)</script> & co"
    html = render_report([j], tmp_path / "s.html").read_text()
    assert "hunter2" not in html and "postgresql://ledger:***@db:5432/ledger" in html
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_long_history_is_merged_into_wider_buckets(tmp_path):
    from chaoskit.report.timeline import MAX_BUCKETS

    hist = tmp_path / "long.history.jsonl"
    t0 = datetime(2026, 11, 1, 10, 0, 0, tzinfo=UTC).timestamp()
    with open(hist, "w") as fh:
        for s in range(4000):  # one ok per second for 4000 s, plus 2 fails per second in [2000, 2010)
            fh.write(json.dumps({"type": "ok", "process": 0, "op": "o", "id": s, "wall": t0 + s + 0.5}) + "\n")
            if 2000 <= s < 2010:
                for k in range(2):
                    fh.write(json.dumps({"type": "fail", "process": 1, "op": "o", "id": f"f{s}{k}", "wall": t0 + s + 0.5}) + "\n")
    j = {"chaoskit_journal": 1, "title": "long", "started": "2026-11-01T10:00:00.000Z", "status": "completed",
         "verdict": "passed", "history": str(hist), "steps": [], "events": []}
    v = build_view(j)
    assert len(v.buckets) <= MAX_BUCKETS and v.buckets[0].width == 3
    assert sum(b.ok for b in v.buckets) == 4000 and sum(b.fail for b in v.buckets) == 20
    assert max(b.error_rate for b in v.buckets) > 0.5  # the burst is still visible
    assert v.duration >= 4000
    html = render_report([j], tmp_path / "long.html").read_text()
    assert 'class="throughput"' in html and len(html) < 2_000_000


def test_repeated_fault_pairs_each_firing_with_its_own_revert():
    steps = [{"phase": "method", "kind": "fault", "name": "flap", "id": "f", "fault": "container.pause",
              "t_start": 0.5, "t_end": 6.0, "status": "ok"}]
    faults = []
    for n, (a, b) in enumerate([(1.0, 2.0), (3.0, 4.0), (5.0, None)]):
        faults.append({"step": "f", "fault": "container.pause", "applied_t": a, "instances": [{"name": f"w{n}"}]})
        if b is not None:
            steps.append({"phase": "revert", "kind": "revert", "name": "revert flap", "id": "f",
                          "t_start": b - 0.1, "t_end": b, "status": "ok" if n == 0 else "failed", "error": "boom"})
    v = build_view({"title": "flap", "status": "failed", "verdict": "failed", "steps": steps, "faults": faults,
                    "duration": 7.0})
    assert [(b.start, b.end, b.status) for b in v.faults] == [
        (1.0, 2.0, "ok"), (3.0, 4.0, "revert-failed"), (5.0, 7.0, "unreverted")]
