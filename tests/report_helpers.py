"""Headless Chromium and a tiny PNG reader for the report tests (no Pillow on these machines)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def chromium() -> str:
    """Debian's chromium; with CI=true its absence is a failure (scripts/setup.sh installs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    msg = "chromium is not installed (apt-get install -y chromium)"
    if IN_CI:
        pytest.fail(f"CI=true and {msg}")
    pytest.skip(msg)


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1"]
    env = {**os.environ, "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(base + args, capture_output=True, text=True, timeout=timeout, env=env)


def dump_dom(html: Path) -> str:
    """The DOM after scripts ran, serialized by the browser."""
    r = _run(["--virtual-time-budget=2000", "--dump-dom", html.resolve().as_uri()])
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def screenshot(html: Path, png: Path, size: str = "1280,2000") -> Path:
    r = _run([f"--screenshot={png}", f"--window-size={size}", html.resolve().as_uri()])
    assert r.returncode == 0 and png.is_file(), r.stderr[-2000:]
    return png


def png_pixels(path: Path, max_rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) for 8-bit non-interlaced RGB/RGBA PNGs, which is
    what Chromium writes. Only the first ``max_rows`` rows are decoded (pure Python is slow)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    n = height if max_rows is None else min(height, max_rows)
    for y in range(n):
        off = y * (stride + 1)
        ftype = raw[off]
        line = bytearray(raw[off + 1 : off + 1 + stride])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) for r in rows] if bpp == 3 else [_rgb(r) for r in rows]


def _rgb(rgba: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(rgba), 4):
        out += rgba[i : i + 3]
    return bytes(out)


def colours(rows: list[bytes]) -> set[tuple[int, int, int]]:
    out: set[tuple[int, int, int]] = set()
    for r in rows:
        for i in range(0, len(r), 3):
            out.add((r[i], r[i + 1], r[i + 2]))
    return out
