#!/usr/bin/env python3
"""Step 1 of building chaoskit's image: a directory of wheels for chaoskit and its runtime
dependencies, so ``docker build`` installs with ``pip --no-index`` (pip inside docker build
cannot reach PyPI on machines behind a TLS-intercepting proxy).

Two sources:
- default: ``pip download`` on the host, pinned to the image's interpreter (CPython 3.11,
  manylinux x86_64/aarch64 wheels), which works wherever the host's pip works;
- ``--from-installed``: repack the distributions already installed in this interpreter into
  wheels, fully offline (air-gapped CI; needs this interpreter to be CPython 3.11 on Linux like
  the image's, so compiled extensions load).

Usage: python3 scripts/chaoskit_wheelhouse.py OUT_DIR [--from-installed]
(writes OUT_DIR/chaoskit/ and OUT_DIR/deps/: two layers, so a code change reinstalls only chaoskit)
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import platform
import re
import subprocess
import sys
import zipfile
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_PY = (3, 11)


def _write_wheel(target: Path, files: dict[str, bytes], info_dir: str) -> Path:
    """A wheel is a zip with a RECORD of sha256 digests; nothing more is needed to pip-install it."""
    records = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            # fixed timestamps: the same inputs give the same bytes, so docker's layer cache holds
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append((rel, f"sha256={digest}", str(len(data))))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows(records)
        w.writerow((f"{info_dir}/RECORD", "", ""))
        info = zipfile.ZipInfo(f"{info_dir}/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        zf.writestr(info, buf.getvalue())
    return target


def build_chaoskit_wheel(out: Path) -> Path:
    """chaoskit's own (pure-Python) wheel, written straight from the working tree: no network,
    no build backend or ``wheel`` package needed on the host."""
    import tomllib

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name, version = proj["name"], proj["version"]
    info = f"{name}-{version}.dist-info"
    for old in out.glob(f"{name}-*.whl"):
        old.unlink()
    files: dict[str, bytes] = {}
    for path in sorted((ROOT / name).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            f"Summary: {proj.get('description', '')}", f"Requires-Python: {proj.get('requires-python', '')}"]
    meta += [f"Requires-Dist: {d}" for d in proj.get("dependencies", [])]
    files[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: chaoskit_wheelhouse\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    eps = "".join(f"{k} = {v}\n" for k, v in proj.get("scripts", {}).items())
    files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{eps}".encode()
    return _write_wheel(out / f"{name}-{version}-py3-none-any.whl", files, info)


def download_deps(wheel: Path, out: Path) -> None:
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[
        platform.machine().lower()
    ]
    plats = [f"manylinux_2_{v}_{arch}" for v in (36, 34, 31, 28, 17)] + [f"manylinux2014_{arch}"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(out), "--only-binary=:all:",
           "--python-version", f"{IMAGE_PY[0]}.{IMAGE_PY[1]}", "--implementation", "cp"]
    for p in plats:
        cmd += ["--platform", p]
    subprocess.run(cmd + [str(wheel)], check=True)


def _requirement_closure(root: str) -> list[Distribution]:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = default_environment()
    seen: dict[str, Distribution] = {}
    todo: list[tuple[str, set[str]]] = [(root, set())]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"--from-installed: {name} is not installed here") from None
        first = key not in seen
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            wanted = any(req.marker is None or req.marker.evaluate(env | {"extra": e}) for e in (extras or {""}))
            if req.marker is not None and not wanted:
                continue
            if first or req.extras:
                todo.append((req.name, set(req.extras)))
    seen.pop(re.sub(r"[-_.]+", "-", root).lower(), None)
    return list(seen.values())


def repack(dist: Distribution, out: Path) -> Path:
    """An installed distribution back into a wheel (files under site-packages only; RECORD
    regenerated; console scripts come back from entry_points.txt on install)."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    version = dist.version
    info_dir = None
    for f in dist.files or []:
        if f.parts[0].endswith(".dist-info"):
            info_dir = f.parts[0]
            break
    if info_dir is None:
        raise SystemExit(f"--from-installed: {name} has no .dist-info (an egg install?)")
    wheel_meta = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:")]
    # the filename carries the compressed tag set (py2.py3-none-any), or pip rejects py2-only
    parts = [t.split("-") for t in tags] or [["py3", "none", "any"]]
    tag = "-".join(".".join(sorted({p[i] for p in parts})) for i in range(3))
    files: dict[str, bytes] = {}
    for f in dist.files or []:
        rel = f.as_posix()
        if rel.startswith("..") or "__pycache__" in f.parts or rel.endswith(".pyc"):
            continue
        if f.parts[0] == info_dir and f.name in {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}:
            continue
        path = Path(str(dist.locate_file(f)))
        if path.is_file():
            files[rel] = path.read_bytes()
    return _write_wheel(out / f"{name}-{version}-{tag}.whl", files, info_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--from-installed", action="store_true", help="repack installed distributions (offline)")
    args = ap.parse_args(argv)
    out: Path = args.out
    (out / "chaoskit").mkdir(parents=True, exist_ok=True)
    (out / "deps").mkdir(parents=True, exist_ok=True)
    wheel = build_chaoskit_wheel(out / "chaoskit")
    if args.from_installed:
        if sys.version_info[:2] != IMAGE_PY or sys.platform != "linux":
            print(f"--from-installed needs CPython {IMAGE_PY[0]}.{IMAGE_PY[1]} on Linux (the image's)", file=sys.stderr)
            return 2
        for dist in _requirement_closure("chaoskit"):
            repack(dist, out / "deps")
    else:
        download_deps(wheel, out / "deps")
    print(f"wheelhouse ready: {out} ({len(list(out.glob('*/*.whl')))} wheels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
