"""Self-contained HTML reports from run journals (and soak reports).

    render_report([load_journal_file(p) for p in paths], Path("report.html"))

A journal is the dict the runner writes (chaoskit/runner/journal.py). Each may carry the key
``__source__`` (its file path, set by :func:`load_journal_file`) so the workload history next to
it is found even when the journal names it by a relative path. Every text is redacted again on
the way out: a report is the file most likely to be mailed around.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chaoskit.errors import ChaoskitError
from chaoskit.report.html import page, run_section, summary_table
from chaoskit.report.timeline import RunView, build_view
from chaoskit.secrets import Redactor

__all__ = ["ReportError", "RunView", "build_view", "load_journal_file", "load_journals", "render_report"]


class ReportError(ChaoskitError):
    """A journal could not be read; exit 2 like any bad input."""

    exit_code = 2


def load_journal_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ReportError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise ReportError(f"{p}: not a chaoskit journal (invalid JSON{f' at line {line}' if line else ''})") from None
    if not isinstance(data, dict) or not ("chaoskit_journal" in data or data.get("kind") == "soak" or "steps" in data):
        raise ReportError(f"{p}: not a chaoskit journal (expected a JSON object with steps, as `chaoskit run` writes)")
    data["__source__"] = str(p)
    return data


def _suite_cases(p: Path) -> list[dict[str, Any]] | None:
    """A suite journal (``suite.json``) stands for its cases' journals, in suite order."""
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "chaoskit_suite" not in data:
        return None
    out = []
    for c in data.get("cases") or []:
        j = c.get("journal") if isinstance(c, dict) else None
        if not j:
            continue
        q = Path(j)
        for cand in (q, p.parent / q.name):
            if cand.is_file():
                out.append(load_journal_file(cand))
                break
        else:
            raise ReportError(f"{p}: case journal {j} not found")
    return out


def load_journals(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Files, suite journals (their cases), or directories (every journal ``*.json`` in them,
    sorted by name)."""
    out: list[dict[str, Any]] = []
    for raw in paths:
        p = Path(raw)
        cases = _suite_cases(p) if p.is_file() else None
        if cases is not None:
            out.extend(cases)
            continue
        if p.is_dir():
            found = 0
            for f in sorted(p.glob("*.json")):
                if f.name.startswith("."):
                    continue
                try:
                    out.append(load_journal_file(f))
                    found += 1
                except ReportError:
                    continue  # other JSON files in a reports dir are not an error
            if not found:
                raise ReportError(f"{p}: no chaoskit journals (*.json) in this directory")
        else:
            out.append(load_journal_file(p))
    return out


def _view(journal: dict[str, Any]) -> RunView:
    src = journal.get("__source__")
    return build_view(journal, Path(src) if src else None)


def render_report(journals: list[dict[str, Any]], out: Path, title: str | None = None) -> Path:
    """Write one HTML file for all runs (and soak reports) given; returns its path."""
    if not journals:
        raise ReportError("no journals to report on")
    red = Redactor()
    runs = [j for j in journals if j.get("kind") != "soak"]
    soaks = [j for j in journals if j.get("kind") == "soak"]
    views = [_view(red(j)) for j in runs]
    parts: list[str] = []
    if soaks:
        from chaoskit.report.soak import soak_section

        parts += [soak_section(red(s), i) for i, s in enumerate(soaks)]
    if len(views) > 1:
        parts.append(summary_table(views))
    parts += [run_section(v, i) for i, v in enumerate(views)]
    if title is None:
        if len(views) == 1 and not soaks:
            title = views[0].title
        elif soaks and not views:
            title = str(soaks[0].get("title") or "soak report")
        else:
            title = f"chaoskit report: {len(views) + len(soaks)} runs"
    passed = sum(1 for v in views if v.verdict == "passed")
    sub = f"{len(views)} run(s), {passed} passed" if views else "soak"
    if soaks and views:
        sub += f", {len(soaks)} soak(s)"
    html = page(title, "".join(parts), sub)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
