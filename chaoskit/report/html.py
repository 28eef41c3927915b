"""The HTML page around the SVG timelines: one self-contained file (inline CSS, a few lines of
inline JS for filtering), readable offline, attachable to a CI run or an incident ticket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from chaoskit.report.svg import e, run_timeline
from chaoskit.report.timeline import RunView

CSS = """
:root { --ok:#2f9e44; --bad:#e03131; --warn:#f08c00; --ink:#212529; --mute:#868e96; --line:#dee2e6; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0; background: #f1f3f5; }
header.page { background: #212529; color: #f8f9fa; padding: 18px 28px; }
header.page h1 { margin: 0 0 4px; font-size: 22px; }
header.page .sub { color: #adb5bd; font-size: 13px; }
main { padding: 18px 28px 40px; max-width: 1280px; }
section.summary, article.run { background: #fff; border: 1px solid var(--line); border-radius: 8px;
       padding: 14px 18px; margin-bottom: 18px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #f1f3f5; vertical-align: top; }
th { font-size: 12px; color: var(--mute); font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 700; font-size: 12px;
       letter-spacing: .04em; text-transform: uppercase; color: #fff; background: var(--bad); }
.verdict.passed { background: var(--ok); }
.verdict.deviated { background: var(--warn); }
.verdict.incomplete, .verdict.running, .verdict.interrupted { background: #5c7cfa; }
.run h2 { margin: 0; font-size: 18px; display: inline; margin-right: 10px; }
.run .head { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin-bottom: 6px; }
dl.facts { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 6px 0 8px; color: #495057; font-size: 13px; }
dl.facts div { display: flex; gap: 6px; } dl.facts dt { color: var(--mute); } dl.facts dd { margin: 0; font-weight: 600; }
ul.reasons { margin: 4px 0 10px; padding-left: 18px; color: var(--bad); }
ul.notes { margin: 4px 0 10px; padding-left: 18px; color: #5c7cfa; }
figure.timeline { margin: 8px 0; } figure.timeline figcaption { font-size: 12px; color: var(--mute); }
svg.timeline, svg.soak-timeline { font: 11px system-ui, "DejaVu Sans", sans-serif; background: #fff; }
.lane-bg { fill: #f8f9fa; } .lane-label { fill: #343a40; font-weight: 600; } .lane-sub { fill: var(--mute); font-size: 10px; }
.grid { stroke: #e9ecef; } .tick { fill: var(--mute); }
.phase text { fill: #343a40; font-size: 10px; }
.fault-span { fill: #ff922b; opacity: .13; pointer-events: none; } .fault-span.mark { fill: #c92a2a; opacity: .35; }
.fault-span.alert { fill: #e03131; opacity: .05; }
.fault-span.unreverted, .fault-span.revert-failed { fill: #e03131; opacity: .12; }
.fault-band rect { fill: #ff922b; stroke: #d9480f; } .fault-band text { fill: #fff; font-weight: 700; }
.fault-band.unreverted rect, .fault-band.revert-failed rect { fill: url(#hatch); stroke: #c92a2a; stroke-width: 2; }
.fault-band.unreverted text, .fault-band.revert-failed text { fill: #c92a2a; }
.fault-mark rect, .fault-mark path { fill: #c92a2a; }
.fault-failed path { stroke: #c92a2a; stroke-width: 3; fill: none; }
.probe-point.ok { fill: var(--ok); } .probe-point.fail { fill: var(--bad); stroke: #fff; stroke-width: 1.5; }
.probe-value.fail { stroke: var(--bad); stroke-width: 2.5; }
.series-line { fill: none; stroke-width: 1.5; opacity: .6; }
.event-mark { fill: var(--bad); } .probe-error { fill: var(--bad); }
.throughput-all { fill: #ffc9c9; } .throughput { fill: #74c0fc; stroke: #1971c2; stroke-width: 1; }
.error-rate { fill: #ffa8a8; stroke: #e03131; stroke-width: 1; }
.axis-val { fill: var(--mute); font-size: 10px; } .peak { fill: #c92a2a; font-size: 10px; font-weight: 600; }
.note { fill: var(--mute); font-style: italic; }
.alert-band.critical rect { fill: #e03131; } .alert-band.high rect { fill: #f76707; } .alert-band.medium rect { fill: #fab005; }
.alert-band text { fill: #fff; font-weight: 700; }
.sev { font-weight: 700; text-transform: uppercase; font-size: 12px; }
.sev.critical { color: #c92a2a; } .sev.high { color: #d9480f; } .sev.medium { color: #e67700; }
.band-envelope { fill: #d0ebff; } .band-line { fill: none; stroke: #1971c2; stroke-width: 1.3; }
h3 { font-size: 14px; margin: 14px 0 6px; }
tr.finding.fail td { background: #fff5f5; } tr.finding.fail td.mark { color: var(--bad); font-weight: 700; }
tr.finding.ok td.mark { color: var(--ok); }
td.msg { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; white-space: pre-wrap; word-break: break-word; }
details summary { cursor: pointer; color: #495057; font-weight: 600; margin: 8px 0; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: #495057; margin: 2px 0 8px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; vertical-align: -1px; border-radius: 2px; }
.controls { margin: 0 0 10px; font-size: 13px; color: #495057; }
body.only-failed article.run.passed { display: none; }
body.only-failed tr.run-row.passed { display: none; }
"""

JS = """
(function () {
  var box = document.getElementById('only-failed');
  var runs = document.querySelectorAll('article.run');
  var failed = document.querySelectorAll('article.run:not(.passed)').length;
  var c = document.getElementById('failed-count');
  if (c) { c.textContent = failed + ' of ' + runs.length + ' run(s) did not pass'; }
  if (box) { box.addEventListener('change', function () { document.body.classList.toggle('only-failed', box.checked); }); }
  document.body.setAttribute('data-ready', '1');
})();
"""

LEGEND = (
    '<div class="legend"><span><i style="background:#ff922b"></i>fault active (applied → reverted)</span>'
    '<span><i style="background:#c92a2a;width:4px"></i>one-shot fault (kill)</span>'
    '<span><i style="background:repeating-linear-gradient(45deg,#e03131 0 3px,#ffe3e3 3px 6px)"></i>never reverted</span>'
    '<span><i style="background:#2f9e44;border-radius:6px;width:10px"></i>probe ok</span>'
    '<span><i style="background:#e03131;border-radius:6px;width:10px"></i>probe failed</span>'
    '<span><i style="background:#74c0fc"></i>ok ops/s</span><span><i style="background:#ffa8a8"></i>error rate</span></div>'
)


def _verdict_class(verdict: str) -> str:
    return "passed" if verdict == "passed" else verdict.lower().replace(" ", "-")


def _fmt_dur(s: float) -> str:
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _findings_table(v: RunView) -> str:
    if not v.verify:
        return '<p class="no-findings">No verification step in this run.</p>'
    rows = []
    for c in v.verify:
        if c.get("error") and not any(f.get("checker") == c["name"] for f in v.findings):
            rows.append(
                f'<tr class="finding fail"><td class="mark">ERROR</td><td>{e(c["name"])}</td><td></td>'
                f'<td class="msg">{e(c["error"])}</td></tr>'
            )
    for f in v.findings:
        ok = bool(f.get("ok", True))
        extra = {k: val for k, val in f.items() if k not in ("checker", "check", "name", "ok", "message")}
        msg = str(f.get("message") or "")
        if extra and not ok:
            msg += "\n" + json.dumps(extra, default=str)[:600]
        rows.append(
            f'<tr class="finding {"ok" if ok else "fail"}"><td class="mark">{"ok" if ok else "FAIL"}</td>'
            f'<td>{e(f.get("checker") or "")}/{e(f.get("check") or "")}</td><td>{e(f.get("name") or "")}</td>'
            f'<td class="msg">{e(msg)}</td></tr>'
        )
    failed = len(v.failed_findings)
    head = f"{failed} of {len(v.findings)} finding(s) failed" if v.findings else "no findings recorded"
    return (
        f'<p class="findings-summary">{e(head)}</p><table class="findings"><thead><tr><th></th><th>checker/check</th>'
        f"<th>name</th><th>message</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _value_text(s: dict[str, Any]) -> str:
    if "detail" in s and s.get("detail"):
        return str(s["detail"])
    if s.get("error"):
        return str(s["error"])
    for k in ("recovered_after", "summary", "evidence", "target"):
        if k in s:
            return f"{k}: " + json.dumps(s[k], default=str)[:200]
    return ""


def _steps_table(v: RunView) -> str:
    rows = []
    for s in v.steps:
        st = str(s.get("status"))
        rows.append(
            f'<tr class="step {e(st)}"><td class="num">{float(s.get("t_start") or 0):.2f}</td>'
            f'<td class="num">{float(s.get("duration") or 0):.2f}</td><td>{e(s.get("phase"))}</td>'
            f'<td>{e(s.get("kind"))}</td><td>{e(s.get("name"))}</td><td>{e(st)}</td>'
            f'<td class="msg">{e(_value_text(s)[:300])}</td></tr>'
        )
    return (
        f"<details class=\"steps\"><summary>{len(v.steps)} steps</summary><table><thead><tr><th class=num>t (s)</th>"
        "<th class=num>took (s)</th><th>phase</th><th>kind</th><th>name</th><th>status</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def run_section(v: RunView, idx: int) -> str:
    vc = _verdict_class(v.verdict)
    ops = v.ops
    facts = [
        ("run", v.run_id),
        ("seed", v.seed),
        ("started", v.started or "?"),
        ("duration", _fmt_dur(v.duration)),
        ("exit", v.exit_code if v.exit_code is not None else "-"),
        ("faults", f'<span class="fault-count">{v.fault_count}</span>'),
    ]
    if v.buckets:
        facts.append(("ops ok/fail/info", f"{ops['ok']}/{ops['fail']}/{ops['info']}"))
    if v.verify:
        facts.append(("findings failed", f'<span class="finding-fail-count">{len(v.failed_findings)}</span>'))
    dl = "".join(
        f"<div><dt>{e(k)}</dt><dd>{val if isinstance(val, str) and val.startswith('<span') else e(val)}</dd></div>"
        for k, val in facts
    )
    reasons = "".join(f"<li>{e(r)}</li>" for r in v.reasons)
    notes = "".join(f"<li>{e(n)}</li>" for n in v.notes)
    wl = ""
    if v.workload and v.workload.get("rate_note"):
        wl = f'<p class="workload-note">{e(v.workload["rate_note"])}</p>'
    return (
        f'<article class="run {e(vc)}" id="run-{idx}" data-verdict="{e(v.verdict)}" data-faults="{v.fault_count}">'
        f'<div class="head"><h2 class="run-title">{e(v.title)}</h2>'
        f'<span class="verdict {e(vc)}">{e(v.verdict)}</span></div>'
        f'<dl class="facts">{dl}</dl>'
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + (f'<ul class="notes">{notes}</ul>' if notes else "")
        + f'<figure class="timeline">{run_timeline(v)}<figcaption>time since the run started; hover for details</figcaption></figure>'
        + LEGEND
        + wl
        + f'<h3>Verification</h3><section class="findings">{_findings_table(v)}</section>'
        + _steps_table(v)
        + "</article>"
    )


def summary_table(views: list[RunView]) -> str:
    rows = []
    for i, v in enumerate(views):
        vc = _verdict_class(v.verdict)
        ops = v.ops
        err = f"{(ops['fail'] + ops['info']) / max(1, sum(ops.values())):.1%}" if v.buckets else "-"
        rows.append(
            f'<tr class="run-row {e(vc)}"><td><a href="#run-{i}">{e(v.title)}</a></td>'
            f'<td><span class="verdict {e(vc)}">{e(v.verdict)}</span></td><td class="num">{v.fault_count}</td>'
            f'<td class="num">{sum(ops.values()) if v.buckets else "-"}</td><td class="num">{err}</td>'
            f'<td class="num">{len(v.failed_findings) if v.verify else "-"}</td><td class="num">{_fmt_dur(v.duration)}</td></tr>'
        )
    return (
        '<section class="summary"><div class="controls"><label><input type="checkbox" id="only-failed"> '
        'show only runs that did not pass</label> · <span id="failed-count"></span></div>'
        "<table><thead><tr><th>run</th><th>verdict</th><th class=num>faults</th><th class=num>ops</th>"
        "<th class=num>errors</th><th class=num>failed findings</th><th class=num>duration</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def page(title: str, body: str, sub: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="page"><h1>{e(title)}</h1><div class="sub">{e(sub)} · generated {e(now)} by chaoskit</div></header>'
        f"<main>{body}</main><script>{JS}</script></body></html>"
    )
