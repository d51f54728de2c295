"""``make dashboard-picture``: the README's picture of the dashboard, drawn from a local run.

A generated project's target runs end to end (service, throwaway Prometheus, wrk, headless
Chromium) with a short load, and the PNG it writes is checked: its size, and that its charts
hold lines of the panels' colours, not only axes and legends.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from helpers import TEMPLATE_DIR, clean_env, render

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("prometheus", "chromium", "wrk")),
        reason="needs prometheus, chromium and wrk (apt-get install prometheus chromium wrk)",
    ),
]

WIDTH, HEIGHT = 1200, 44 + 3 * (290 + 8)  # six panels, two by two, under a header
COLOURS = ((0x73, 0xBF, 0x69), (0xF2, 0xCC, 0x0C), (0x8A, 0xB8, 0xFF), (0xFF, 0x78, 0x0A))


def make(project: Path, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit, non-interlaced PNG, decoded with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG"
    chunks, position = {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.setdefault(kind, []).append(data[position + 8 : position + 8 + length])
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert (depth, interlace) == (8, 0) and colour_type in (2, 6), (depth, colour_type, interlace)
    channels = 4 if colour_type == 6 else 3
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - channels] if x >= channels else 0
            b, c = previous[x], previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line[i] for i in range(stride) if i % channels < 3))
        previous = line
    return width, height, rows


def coloured_pixels(rows: list[bytes], colours: tuple[tuple[int, int, int], ...]) -> dict[tuple[int, int, int], int]:
    """For each of ``colours``, the pixels within a small distance of it (lines are anti-aliased)."""
    pixels = Counter(row[x : x + 3] for row in rows for x in range(0, len(row), 3))
    return {
        colour: sum(count for pixel, count in pixels.items() if sum(abs(pixel[i] - colour[i]) for i in range(3)) <= 24)
        for colour in colours
    }


def test_make_dashboard_picture_draws_real_series(tmp_path: Path) -> None:
    result = render(tmp_path, skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    project = result.project()
    picture = project / "docs" / "dashboard.png"
    shipped = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "docs" / "dashboard.png").read_bytes()
    assert picture.read_bytes() == shipped, "cookiecutter copies the picture as it is"
    picture.unlink()

    run = make(project, "dashboard-picture", 'ARGS=--seconds 8')
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    counts = dict(re.findall(r"^  (.+): (\d+) series, \d+ points$", run.stdout, re.MULTILINE))
    assert int(counts["Requests per second, by route"]) >= 3, run.stdout  # /items, /items/<id>, <unmatched>
    assert int(counts["Duration p99 and p50, by route"]) >= 6, run.stdout
    assert int(counts["Pods ready"]) == 2, run.stdout

    data = picture.read_bytes()
    assert 10_000 < len(data) < 300_000
    width, height, rows = png_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT)
    # The legends' swatches alone are under a thousand pixels (56 each); real series' lines add thousands.
    drawn = coloured_pixels(rows, COLOURS)
    assert sum(drawn.values()) > 2000, drawn
    assert sum(1 for count in drawn.values() if count > 400) >= 2, drawn
    print(f"\n[figures] make dashboard-picture (8 s of load): {len(data) // 1024} kB, palette pixels {drawn}")
