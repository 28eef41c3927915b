"""Server-side SVG timelines: no JavaScript, no fonts to fetch, testable as plain markup.

One run is drawn as stacked lanes on a shared time axis: phases, one lane per fault step
(bands from applied to reverted, thin marks for one-shot faults), probe checks, one small chart
per numeric probe, workload throughput and error rate per second. Fault bands are repeated as
faint spans behind every lane so cause and effect line up vertically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from chaoskit.report.timeline import FaultBand, RunView

W = 1160
LEFT = 200
RIGHT = 76
PW = W - LEFT - RIGHT

PHASE_COLORS = {
    "setup": "#adb5bd",
    "hypothesis-before": "#74c0fc",
    "before": "#a5d8ff",
    "workload": "#b2f2bb",
    "method": "#ffd8a8",
    "hypothesis-after": "#74c0fc",
    "verify": "#d0bfff",
    "rollback": "#ced4da",
}
SERIES = ["#1971c2", "#2f9e44", "#9c36b5", "#e8590c", "#0c8599", "#c2255c", "#5c940d", "#364fc7"]
_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400]


def e(s: object) -> str:
    return escape(str(s), quote=True)


def fmt_t(t: float, span: float) -> str:
    if span <= 10:
        return f"{t:.1f}s"
    if span <= 180:
        return f"{t:.0f}s"
    if span <= 2 * 3600:
        return f"{int(t // 60)}:{int(t % 60):02d}"
    return f"{t / 3600:.1f}h"


def fmt_num(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def fmt_exact(v: float) -> str:
    """Axis and table values: integers in full (a one-cent drift in 600,000,000 cents must
    show), other numbers to four significant digits."""
    if float(v).is_integer() and abs(v) < 2**53:
        return f"{int(v):,}"
    return f"{v:.4g}"


def tick_step(span: float) -> float:
    for s in _TICKS:
        if span / s <= 10:
            return s
    return _TICKS[-1] * max(1, int(span / _TICKS[-1] / 10) + 1)


@dataclass
class Axis:
    span: float
    t0: float = 0.0

    def x(self, t: float) -> float:
        return LEFT + max(0.0, min(1.0, (t - self.t0) / self.span)) * PW


class Svg:
    """A tiny builder: collects elements and lanes, knows the running height."""

    def __init__(self, axis: Axis, css_class: str):
        self.axis = axis
        self.cls = css_class
        self.parts: list[str] = []
        self.back: list[str] = []  # drawn first (behind the lanes)
        self.y = 28.0

    def lane(self, label: str, height: float, sub: str = "", cls: str = "lane") -> float:
        y = self.y
        self.parts.append(
            f'<g class="{e(cls)}"><rect class="lane-bg" x="{LEFT}" y="{y:.1f}" width="{PW}" height="{height:.1f}"/>'
            f'<text class="lane-label" x="{LEFT - 8}" y="{y + min(height, 22) / 2 + 4:.1f}" text-anchor="end">{e(_clip(label, 26))}</text>'
            + (f'<text class="lane-sub" x="{LEFT - 8}" y="{y + min(height, 22) / 2 + 17:.1f}" text-anchor="end">{e(sub)}</text>' if sub else "")
            + "</g>"
        )
        self.y += height + 6
        return y

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self, spans: Sequence[tuple[float, float, str]] = ()) -> str:
        top, bottom = 24.0, self.y
        ax = self.axis
        ticks = []
        step = tick_step(ax.span)
        n = int(ax.span / step) + 1
        for i in range(n + 1):
            t = ax.t0 + i * step
            if t > ax.t0 + ax.span + 1e-9:
                break
            x = ax.x(t)
            ticks.append(
                f'<line class="grid" x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}"/>'
                f'<text class="tick" x="{x:.1f}" y="16" text-anchor="middle">{e(fmt_t(t - ax.t0, ax.span))}</text>'
            )
        span_rects = [
            f'<rect class="fault-span {e(c)}" x="{ax.x(a):.1f}" y="{top:.1f}" '
            f'width="{max(1.5, ax.x(b) - ax.x(a)):.1f}" height="{bottom - top:.1f}"/>'
            for a, b, c in spans
        ]
        h = bottom + 8
        return (
            f'<svg class="{e(self.cls)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h:.0f}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" role="img">'
            '<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">'
            '<rect width="8" height="8" fill="#ffe3e3"/><line x1="0" y1="0" x2="0" y2="8" stroke="#e03131" stroke-width="4"/>'
            "</pattern></defs>"
            + "".join(ticks)
            + "".join(self.back)
            + "".join(self.parts)
            + "".join(span_rects)
            + "</svg>"
        )


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _band(svg: Svg, b: FaultBand, y: float, h: float) -> None:
    ax = svg.axis
    x0 = ax.x(b.start)
    inst = ", ".join(b.instances) or "-"
    if b.status == "failed":
        tip = f"{b.name} ({b.fault}) failed at {b.start:.3f}s: {b.detail}"
        svg.add(
            f'<g class="fault-failed" data-fault="{e(b.fault)}"><title>{e(tip)}</title>'
            f'<path d="M{x0 - 6:.1f},{y + 3:.1f} l12,{h - 6:.1f} M{x0 + 6:.1f},{y + 3:.1f} l-12,{h - 6:.1f}" /></g>'
        )
        return
    if b.end is None:
        tip = f"{b.name} ({b.fault}) at {b.start:.3f}s on {inst}"
        svg.add(
            f'<g class="fault-mark" data-fault="{e(b.fault)}" data-start="{b.start:.3f}"><title>{e(tip)}</title>'
            f'<rect x="{x0 - 1.5:.1f}" y="{y:.1f}" width="3" height="{h:.1f}"/>'
            f'<path d="M{x0 - 6:.1f},{y:.1f} h12 l-6,7 z"/></g>'
        )
        return
    x1 = ax.x(b.end)
    tip = f"{b.name} ({b.fault}) {b.start:.3f}s → {b.end:.3f}s ({b.end - b.start:.2f}s) on {inst}"
    if b.detail:
        tip += f" — {b.detail}"
    label = b.fault if x1 - x0 > 8 * len(b.fault) else ""
    svg.add(
        f'<g class="fault-band {e(b.status)}" data-fault="{e(b.fault)}" data-start="{b.start:.3f}" '
        f'data-end="{b.end:.3f}"><title>{e(tip)}</title>'
        f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(2.0, x1 - x0):.1f}" height="{h:.1f}" rx="3"/>'
        + (f'<text x="{x0 + 5:.1f}" y="{y + h / 2 + 4:.1f}">{e(label)}</text>' if label else "")
        + "</g>"
    )


def _series(svg: Svg, pts: list[tuple[float, float, bool, str]], y: float, h: float, color: str) -> tuple[float, float]:
    vals = [v for _, v, _, _ in pts]
    lo, hi = min(vals), max(vals)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    ax = svg.axis

    def py(v: float) -> float:
        return y + h - 4 - (v - lo) / (hi - lo) * (h - 8)

    coords = [(ax.x(t), py(v)) for t, v, _, _ in pts]
    if len(coords) > 1:
        d = "M" + " L".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
        svg.add(f'<path class="series-line" d="{d}" stroke="{color}"/>')
    for (x, yy), (t, v, ok, detail) in zip(coords, pts, strict=True):
        svg.add(
            f'<circle class="probe-value {"ok" if ok else "fail"}" cx="{x:.1f}" cy="{yy:.1f}" r="3.5" fill="{color}">'
            f"<title>{e(f'{t:.2f}s: {fmt_exact(v)} — {detail}')}</title></circle>"
        )
    svg.add(f'<text class="axis-val" x="{W - RIGHT + 2}" y="{y + 10:.1f}">{e(fmt_exact(max(vals)))}</text>')
    svg.add(f'<text class="axis-val" x="{W - RIGHT + 2}" y="{y + h - 2:.1f}">{e(fmt_exact(min(vals)))}</text>')
    return lo, hi


def _area(svg: Svg, xs: list[tuple[float, float, float]], y: float, h: float, top: float, cls: str, tip: str) -> None:
    """Step area of (t, width, value) buckets, scaled to [0, top]."""
    ax = svg.axis
    top = top or 1.0
    d = [f"M{ax.x(xs[0][0]):.1f},{y + h:.1f}"]
    for t, w, v in xs:
        yy = y + h - (v / top) * (h - 4)
        d.append(f"L{ax.x(t):.1f},{yy:.1f} L{ax.x(t + w):.1f},{yy:.1f}")
    d.append(f"L{ax.x(xs[-1][0] + xs[-1][1]):.1f},{y + h:.1f} Z")
    svg.add(f'<path class="{e(cls)}" d="{" ".join(d)}"><title>{e(tip)}</title></path>')


def run_timeline(v: RunView) -> str:
    ax = Axis(span=v.duration)
    svg = Svg(ax, "timeline")
    # phases
    if v.phases:
        y = svg.lane("phases", 18, cls="lane lane-phases")
        for name, a, b in v.phases:
            color = PHASE_COLORS.get(name, "#dee2e6")
            x0, x1 = ax.x(a), ax.x(b)
            label = name if x1 - x0 > 7 * len(name) else ""
            svg.add(
                f'<g class="phase" data-phase="{e(name)}"><title>{e(f"{name}: {a:.2f}s → {b:.2f}s")}</title>'
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(1.0, x1 - x0):.1f}" height="18" fill="{color}"/>'
                + (f'<text x="{x0 + 4:.1f}" y="{y + 13:.1f}">{e(label)}</text>' if label else "")
                + "</g>"
            )
    # faults: one lane per step
    lanes: dict[str, list[FaultBand]] = {}
    for b in v.faults:
        lanes.setdefault(b.lane, []).append(b)
    for bands in lanes.values():
        y = svg.lane(bands[0].name, 22, sub=bands[0].fault, cls="lane lane-faults")
        for b in bands:
            _band(svg, b, y, 22)
    # probe checks and failure events
    if v.probes or any(ev.get("kind") in ("deviation", "guard_failed") for ev in v.events):
        y = svg.lane("probe checks", 20, cls="lane lane-checks")
        for p in v.probes:
            tip = f"{p.t:.2f}s {p.phase} {p.name}: {'ok' if p.ok else 'FAILED'} — {p.detail}"
            svg.add(
                f'<circle class="probe-point {"ok" if p.ok else "fail"}" cx="{ax.x(p.t):.1f}" cy="{y + 10:.1f}" r="5">'
                f"<title>{e(tip)}</title></circle>"
            )
        for ev in v.events:
            if ev.get("kind") in ("deviation", "guard_failed"):
                t = float(ev.get("t") or 0)
                x = ax.x(t)
                tip = f"{t:.2f}s {ev.get('kind')}: {ev.get('probe') or ev.get('guard') or ''} {ev.get('detail') or ''}"
                svg.add(
                    f'<path class="event-mark" d="M{x - 6:.1f},{y + 19:.1f} l6,-16 l6,16 z"><title>{e(tip)}</title></path>'
                )
    # numeric probe values: one small chart per probe
    series: dict[str, list[tuple[float, float, bool, str]]] = {}
    units: dict[str, str] = {}
    for p in v.probes:
        if p.value is not None:
            series.setdefault(p.name, []).append((p.t, p.value, p.ok, p.detail))
            units.setdefault(p.name, p.unit)
    for i, (name, pts) in enumerate(list(series.items())[:8]):
        y = svg.lane(name, 40, sub=units.get(name, "value"), cls="lane lane-values")
        _series(svg, pts, y, 40, SERIES[i % len(SERIES)])
    # workload
    if v.buckets:
        top = max(b.completed / b.width for b in v.buckets) or 1
        y = svg.lane("throughput", 70, sub=f"ops/s (max {fmt_num(top)})", cls="lane lane-throughput")
        _area(svg, [(b.t, b.width, b.completed / b.width) for b in v.buckets], y, 70, top, "throughput-all", "completed ops/s")
        _area(svg, [(b.t, b.width, b.ok / b.width) for b in v.buckets], y, 70, top, "throughput", "ok ops/s")
        y = svg.lane("error rate", 50, sub="fail+info / completed", cls="lane lane-errors")
        _area(svg, [(b.t, b.width, b.error_rate) for b in v.buckets], y, 50, 1.0, "error-rate", "error rate per second")
        svg.add(f'<text class="axis-val" x="{W - RIGHT + 2}" y="{y + 10:.1f}">100%</text>')
        worst = max(v.buckets, key=lambda b: b.error_rate)
        if worst.error_rate > 0:
            svg.add(
                f'<text class="peak" x="{ax.x(worst.t):.1f}" y="{y + 12:.1f}">peak {worst.error_rate:.0%} at {worst.t}s</text>'
            )
    else:
        y = svg.lane("workload", 20, cls="lane lane-no-workload")
        svg.add(f'<text class="note" x="{LEFT + 8}" y="{y + 14:.1f}">{e(v.history_note or "no workload")}</text>')
    spans = [
        (b.start, b.end if b.end is not None else b.start, "mark" if b.end is None else b.status)
        for b in v.faults
        if b.status != "failed"
    ]
    return svg.render(spans)
