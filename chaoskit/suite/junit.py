"""JUnit XML, the format every CI system renders: one testcase per experiment."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def write_junit(result: Any, path: Path) -> Path:
    failures = sum(1 for c in result.cases if c.exit_code in (1,))
    errors = sum(1 for c in result.cases if c.exit_code not in (0, 1))
    suite = ET.Element(
        "testsuite",
        name=result.name,
        tests=str(len(result.cases)),
        failures=str(failures),
        errors=str(errors),
        time=f"{result.duration:.3f}",
        timestamp=result.started,
    )
    for c in result.cases:
        case = ET.SubElement(suite, "testcase", classname=result.name, name=c.title, time=f"{c.duration:.3f}", file=c.file)
        if c.exit_code == 1:
            el = ET.SubElement(case, "failure", message="; ".join(c.reasons)[:1000] or c.status, type=c.status)
            el.text = "\n".join(c.reasons)
        elif c.exit_code != 0:
            el = ET.SubElement(case, "error", message="; ".join(c.reasons)[:1000] or c.status, type=c.status)
            el.text = "\n".join(c.reasons)
        out = ET.SubElement(case, "system-out")
        out.text = f"journal: {c.journal}"
    root = ET.Element("testsuites")
    root.append(suite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
