"""The soak part of the report: one lane per alert rule (bands from when the bad condition began
to when it resolved, coloured by severity) above one chart per probe (min/max envelope plus the
last value of each bucket), then the alert list and the per-probe and per-rule tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaoskit.report.svg import LEFT, RIGHT, SERIES, Axis, Svg, W, _area, e, fmt_exact, fmt_num
from chaoskit.report.timeline import _buckets

MAX_HISTORY_BYTES = 200 << 20  # beyond this the workload.stats series tells the story, faster


def _f(v: Any, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _clip_list(names: list[str], n: int = 150) -> str:
    s = ", ".join(names)
    return s if len(s) <= n else s[: n - 1] + "…"


def _num(v: Any) -> str:
    return "-" if v is None else fmt_exact(_f(v))


def _last(p: dict[str, Any]) -> str:
    """The last reading as a person wants it: the number plotted, else the value, else why not."""
    s = p.get("series") or {}
    if p.get("errors") and p.get("last_value") is None:
        return str(p.get("last_detail", ""))[:200]
    if s.get("last") is not None:
        return f"{fmt_exact(_f(s['last']))} ({p.get('plotted') or 'value'})"
    return json.dumps(p.get("last_value"), default=str)[:200]


def _workload_lanes(svg: Svg, rep: dict[str, Any]) -> None:
    """Throughput and error rate per second from the soak's workload history, when it has one."""
    hist = rep.get("history")
    if not hist or not Path(hist).is_file() or Path(hist).stat().st_size > MAX_HISTORY_BYTES:
        return
    buckets, _ = _buckets({"history": hist, "started": rep.get("started"), "steps": []}, None)
    if not buckets:
        return
    top = max(b.completed / b.width for b in buckets) or 1
    y = svg.lane("workload throughput", 60, sub=f"ops/s (max {fmt_num(top)})", cls="lane lane-throughput")
    _area(svg, [(b.t, b.width, b.completed / b.width) for b in buckets], y, 60, top, "throughput-all", "completed ops/s")
    _area(svg, [(b.t, b.width, b.ok / b.width) for b in buckets], y, 60, top, "throughput", "ok ops/s")
    y = svg.lane("workload errors", 40, sub="fail+info / completed", cls="lane lane-errors")
    _area(svg, [(b.t, b.width, b.error_rate) for b in buckets], y, 40, 1.0, "error-rate", "error rate per second")


def soak_timeline(rep: dict[str, Any]) -> str:
    span = max(_f(rep.get("duration")), 0.001)
    ax = Axis(span=span)
    svg = Svg(ax, "soak-timeline")
    rules = rep.get("rules") or {}
    alerts = rep.get("alerts") or []
    spans = []
    fired = {a.get("rule") for a in alerts}
    quiet = [n for n in rules if n not in fired]
    if quiet:  # one line for all rules that never fired: the page is about what happened
        y = svg.lane(f"{len(quiet)} quiet rule(s)", 20, sub="never fired", cls="lane lane-quiet")
        svg.add(f'<text class="note" x="{LEFT + 8}" y="{y + 14:.1f}">{e(_clip_list(quiet))}</text>')
    for name, r in rules.items():
        if name not in fired:
            continue
        y = svg.lane(name, 20, sub=f"{r.get('severity')} · {r.get('probe')}", cls=f"lane lane-rule {r.get('severity')}")
        for a in (a for a in alerts if a.get("rule") == name):
            a0 = _f(a.get("since_t"), _f(a.get("t")))
            a1 = _f(a.get("resolved_t"), span) if a.get("resolved_t") is not None else span
            x0, x1 = ax.x(a0), ax.x(a1)
            state = "resolved" if a.get("resolved_t") is not None else "firing at the end"
            tip = f"{a.get('severity')}: {name} {a0:.1f}s → {a1:.1f}s ({state}) — {a.get('detail', '')}"
            svg.add(
                f'<g class="alert-band {e(a.get("severity"))}" data-rule="{e(name)}"><title>{e(tip)}</title>'
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(3.0, x1 - x0):.1f}" height="20" rx="3"/>'
                + (f'<text x="{x0 + 4:.1f}" y="{y + 14:.1f}">{e(a.get("severity"))}</text>' if x1 - x0 > 60 else "")
                + "</g>"
            )
            spans.append((a0, a1, f"alert {a.get('severity')}"))
    _workload_lanes(svg, rep)
    for i, (name, p) in enumerate((rep.get("probes") or {}).items()):
        s = p.get("series") or {}
        pts = s.get("points") or []
        h = 44
        sub = str(p.get("group"))
        if p.get("plotted") and p.get("plotted") not in ("value", ""):
            sub += f" · {p['plotted']}"
        if p.get("errors"):
            sub += f" · {p['errors']} err"
        y = svg.lane(name, h, sub=sub, cls="lane lane-probe")
        for t_err in p.get("error_t") or []:  # unreadable moments: red ticks along the bottom
            x = ax.x(_f(t_err))
            svg.add(f'<rect class="probe-error" x="{x - 1.5:.1f}" y="{y + h - 8:.1f}" width="3" height="8">'
                    f"<title>{e(f'{_f(t_err):.1f}s: unreadable')}</title></rect>")
        if not pts:
            svg.add(f'<text class="note" x="{LEFT + 8}" y="{y + 26:.1f}">no numeric values</text>')
            continue
        lo, hi = _f(s.get("min")), _f(s.get("max"))
        if hi == lo:
            lo, hi = lo - 1, hi + 1

        def py(v: float, lo: float = lo, hi: float = hi, y: float = y, h: float = h) -> float:
            return y + h - 4 - (v - lo) / (hi - lo) * (h - 8)

        color = SERIES[i % len(SERIES)]
        top = " ".join(f"{ax.x(_f(pt[0])):.1f},{py(_f(pt[2])):.1f}" for pt in pts)
        bottom = " ".join(f"{ax.x(_f(pt[0])):.1f},{py(_f(pt[1])):.1f}" for pt in reversed(pts))
        svg.add(f'<polygon class="band-envelope" points="{top} {bottom}"/>')
        line = " ".join(f"{ax.x(_f(pt[0])):.1f},{py(_f(pt[3])):.1f}" for pt in pts)
        svg.add(f'<polyline class="band-line series" data-probe="{e(name)}" points="{line}" stroke="{color}"/>')
        if len(pts) <= 200:
            for pt in pts:
                svg.add(f'<circle class="soak-point" cx="{ax.x(_f(pt[0])):.1f}" cy="{py(_f(pt[3])):.1f}" r="2.2" '
                        f'fill="{color}"><title>{e(f"{_f(pt[0]):.1f}s: {fmt_exact(_f(pt[3]))}")}</title></circle>')
        svg.add(f'<text class="axis-val" x="{W - RIGHT + 2}" y="{y + 10:.1f}">{e(fmt_exact(_f(s.get("max"))))}</text>')
        svg.add(f'<text class="axis-val" x="{W - RIGHT + 2}" y="{y + h - 2:.1f}">{e(fmt_exact(_f(s.get("min"))))}</text>')
    return svg.render(spans)


def soak_section(rep: dict[str, Any], idx: int) -> str:
    verdict = str(rep.get("verdict") or "?")
    vc = "passed" if verdict == "passed" else verdict
    c = rep.get("counts") or {}
    facts = [
        ("soak", rep.get("soak_id")),
        ("target", rep.get("target") or "-"),
        ("started", rep.get("started")),
        ("watched", f"{_f(rep.get('duration')):.1f}s of {_f(rep.get('planned_duration')):.0f}s"),
        ("exit", rep.get("exit_code")),
        ("fail on", ", ".join(rep.get("fail_on") or [])),
    ]
    dl = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in facts)
    counts = " ".join(
        f'<span class="sev {s}">{s}: <span class="alert-count" data-severity="{s}">{int(c.get(s, 0))}</span></span>'
        for s in ("critical", "high", "medium")
    )
    reasons = "".join(f"<li>{e(r)}</li>" for r in rep.get("reasons") or [])
    arows = "".join(
        f'<tr class="alert {e(a.get("severity"))}"><td class="num">{_f(a.get("t")):.1f}</td>'
        f'<td><span class="sev {e(a.get("severity"))}">{e(a.get("severity"))}</span></td><td>{e(a.get("rule"))}</td>'
        f'<td>{e(a.get("probe"))}</td><td class="msg">{e(a.get("detail"))}</td>'
        f'<td>{"resolved at " + format(_f(a.get("resolved_t")), ".1f") + "s" if a.get("resolved_t") is not None else "<b>firing</b>"}</td></tr>'
        for a in rep.get("alerts") or []
    )
    alerts = (
        '<table class="alerts"><thead><tr><th class=num>t (s)</th><th>severity</th><th>rule</th><th>probe</th>'
        f"<th>detail</th><th>state</th></tr></thead><tbody>{arows}</tbody></table>"
        if arows
        else '<p class="no-alerts">No alert fired.</p>'
    )
    rrows = "".join(
        f'<tr><td>{e(n)}</td><td><span class="sev {e(r.get("severity"))}">{e(r.get("severity"))}</span></td>'
        f'<td>{e(r.get("probe"))}</td><td class="msg">{e(json.dumps(r.get("when")))}{" for " + str(r.get("for")) + "s" if r.get("for") else ""}</td>'
        f'<td class="num">{r.get("evaluations")}</td><td class="num">{r.get("bad")}</td><td class="num">{r.get("fired")}</td></tr>'
        for n, r in (rep.get("rules") or {}).items()
    )
    prows = "".join(
        f'<tr><td>{e(n)}</td><td>{e(p.get("group"))}</td><td>{e(p.get("probe"))}</td><td class="num">{p.get("reads")}</td>'
        f'<td class="num">{p.get("errors")}</td><td class="num">{_num((p.get("series") or {}).get("min"))}</td>'
        f'<td class="num">{_num((p.get("series") or {}).get("max"))}</td><td class="msg">{e(_last(p))}</td></tr>'
        for n, p in (rep.get("probes") or {}).items()
    )
    return (
        f'<article class="run soak {e(vc)}" id="soak-{idx}" data-verdict="{e(verdict)}">'
        f'<div class="head"><h2 class="run-title">{e(rep.get("title"))}</h2><span class="verdict {e(vc)}">{e(verdict)}</span>'
        f"<span>{counts}</span></div><dl class=\"facts\">{dl}</dl>"
        + (f'<ul class="reasons">{reasons}</ul>' if reasons else "")
        + f'<figure class="timeline">{soak_timeline(rep)}<figcaption>time since the soak started; alert bands run '
        "from when the bad condition began to when it resolved</figcaption></figure>"
        + f"<h3>Alerts</h3>{alerts}"
        + "<h3>Rules</h3><table class=\"rules\"><thead><tr><th>rule</th><th>severity</th><th>probe</th><th>bad when</th>"
        f"<th class=num>checks</th><th class=num>bad</th><th class=num>fired</th></tr></thead><tbody>{rrows}</tbody></table>"
        + "<h3>Probes</h3><table class=\"probes\"><thead><tr><th>probe</th><th>group</th><th>kind</th><th class=num>reads</th>"
        f"<th class=num>errors</th><th class=num>min</th><th class=num>max</th><th>last</th></tr></thead><tbody>{prows}</tbody></table>"
        + "</article>"
    )
