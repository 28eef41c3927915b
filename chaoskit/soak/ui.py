"""Terminal output of a soak: alerts as they fire (colour by severity) and the summary table at
the end. Builds on the runner's ConsoleUI so phases and info lines look the same everywhere."""

from __future__ import annotations

from typing import Any

from chaoskit.ui import ConsoleUI, _esc

_SEV_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "bold yellow"}


class SoakConsole(ConsoleUI):
    def alert(self, a: dict[str, Any]) -> None:
        sev = str(a.get("severity", "?"))
        t = float(a.get("t") or 0)
        if a.get("status") == "resolved":
            self.console.print(
                f" [green]resolved[/] [dim]{t:8.1f}s[/] {_esc(a['rule'])} [dim]after {float(a.get('duration') or 0):.1f}s — "
                f"{_esc(a.get('detail', ''))}[/]"
            )
            return
        self.console.print(
            f" [{_SEV_STYLE.get(sev, 'bold')}]{sev.upper():>8}[/] [dim]{t:8.1f}s[/] {_esc(a.get('message') or a['rule'])}"
            f" [dim]— {_esc(a.get('probe'))}: {_esc(a.get('detail', ''))}[/]"
        )

    def summary(self, report: dict[str, Any]) -> None:
        from rich.table import Table

        rules = Table(title="alert rules", title_justify="left", show_lines=False)
        for col in ("rule", "severity", "probe", "fired", "now", "last"):
            rules.add_column(col, overflow="fold")
        for name, r in report.get("rules", {}).items():
            now = "[red]FIRING[/]" if r.get("firing_at_end") else "[green]ok[/]"
            fired = f"[bold]{r['fired']}[/]" if r.get("fired") else "0"
            rules.add_row(_esc(name), f"[{_SEV_STYLE.get(r['severity'], '')}]{r['severity']}[/]", _esc(r["probe"]),
                          fired, now, _esc(str(r.get("last_detail", ""))[:80]))
        probes = Table(title="probes", title_justify="left")
        for col in ("probe", "group", "reads", "errors", "min", "max", "last"):
            probes.add_column(col, overflow="fold")
        for name, p in report.get("probes", {}).items():
            s = p.get("series") or {}
            probes.add_row(_esc(name), _esc(p["group"]), str(p["reads"]),
                           f"[red]{p['errors']}[/]" if p["errors"] else "0",
                           _n(s.get("min")), _n(s.get("max")), _esc(_last(p)[:40]))
        self.console.print(rules)
        self.console.print(probes)
        c = report.get("counts", {})
        color = "green" if report.get("exit_code") == 0 else "red"
        self.console.print(
            f"[bold {color}]SOAK {str(report.get('verdict')).upper()}[/] (exit {report.get('exit_code')}) after "
            f"{float(report.get('duration') or 0):.1f}s — alerts: critical {c.get('critical', 0)}, high {c.get('high', 0)}, "
            f"medium {c.get('medium', 0)}"
        )
        for r in report.get("reasons", []):
            self.console.print(f"   - {_esc(r)}")
        files = report.get("files", {})
        self.console.print(f"   report: {_esc(files.get('html') or files.get('json'))}  alerts: {_esc(files.get('alerts'))}")


def _last(p: dict[str, Any]) -> str:
    from chaoskit.report.soak import _last as last

    return last(p)


def _n(v: Any) -> str:
    if v is None:
        return "-"
    f = float(v)
    return str(int(f)) if f == int(f) else f"{f:.2f}"
