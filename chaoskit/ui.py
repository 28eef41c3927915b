"""Terminal progress. The runner reports through this small interface, so CI can ask for quiet
or JSON output without the runner knowing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


class QuietUI:
    def phase(self, name: str) -> None: ...
    def info(self, text: str) -> None: ...
    def check(self, name: str, ok: bool, detail: str) -> None: ...
    def final(self, status: str, code: int, reasons: list[str], journal: Path) -> None: ...


class ConsoleUI(QuietUI):
    def __init__(self, stream: Any = None):
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False)

    def phase(self, name: str) -> None:
        self.console.print(f"[bold cyan]== {name}[/]")

    def info(self, text: str) -> None:
        self.console.print(f"   {text}", markup=False)

    def check(self, name: str, ok: bool, detail: str) -> None:
        mark = "[green]ok  [/]" if ok else "[red]FAIL[/]"
        self.console.print(f" {mark} {_esc(name)}" + (f" [dim]— {_esc(detail)}[/]" if detail else ""))

    def final(self, status: str, code: int, reasons: list[str], journal: Path) -> None:
        color = "green" if code == 0 else "red"
        self.console.print(f"[bold {color}]{status.upper()}[/] (exit {code}) journal: {journal}")
        for r in reasons:
            self.console.print(f"   - {_esc(r)}")


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(str(s))
