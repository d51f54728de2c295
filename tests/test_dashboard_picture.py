"""``make dashboard-picture``: the README's picture of the dashboard, drawn from a local run.

A generated project with PostgreSQL runs the target end to end (service, throwaway Prometheus,
wrk, a proxy to the machine's PostgreSQL cut for the outage, headless Chromium) with a short
load.  What the script says its panels hold is checked against the scenario: the burst's 503s
are drawn as shed under their routes (never as ``<unmatched>``), the outage's as 5xx with the
pod not ready.  The PNG it writes is checked too: its size, and that its charts hold lines of
the panels' colours, not only axes and legends.
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

from helpers import DEFAULT_PACKAGE, TEMPLATE_DIR, clean_env, render
from servers import throwaway_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("prometheus", "chromium", "wrk")),
        reason="needs prometheus, chromium and wrk (apt-get install prometheus chromium wrk)",
    ),
]

WIDTH, HEIGHT = 1200, 44 + 3 * (290 + 8)  # six panels, two by two, under a header
COLOURS = ((0x73, 0xBF, 0x69), (0xF2, 0xCC, 0x0C), (0x8A, 0xB8, 0xFF), (0xFF, 0x78, 0x0A))


def make(project: Path, *arguments: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project, env=clean_env(**env), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def panels_described(output: str) -> dict[str, dict[str, tuple[str, str]]]:
    """What the script printed of each panel: its series, each with its lowest and highest value."""
    panels: dict[str, dict[str, tuple[str, str]]] = {}
    for line in output.splitlines():
        if match := re.fullmatch(r"  (.+): \d+ series, \d+ points", line):
            series = panels[match.group(1)] = {}
        elif match := re.fullmatch(r"    (.+): (.+) to (.+)", line):
            series[match.group(1)] = (match.group(2), match.group(3))
    return panels


def percent(value: str) -> float:
    assert value.endswith("%"), value
    return float(value.removesuffix("%"))


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


def test_make_dashboard_picture_draws_the_burst_as_shed_and_the_outage_as_errors(tmp_path: Path) -> None:
    result = render(tmp_path, {"database": "postgresql"}, skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    project = result.project()
    picture = project / "docs" / "dashboard.png"
    shipped = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "docs" / "dashboard.png").read_bytes()
    assert picture.read_bytes() == shipped, "cookiecutter copies the picture as it is"
    picture.unlink()

    with throwaway_database() as database_url:
        env = {f"{DEFAULT_PACKAGE.upper()}_DATABASE_URL": database_url}
        run = make(project, "dashboard-picture", "ARGS=--seconds 14", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "database outage: 4 connections" in run.stdout, run.stdout
    panels = panels_described(run.stdout)
    assert "<unmatched>" not in run.stdout, "every path of the load matches a route, shed or not"
    assert set(panels["Requests per second, by route"]) == {"/items", "/items/<int:item_id>"}, run.stdout
    errors = panels["Errors (5xx) and shed requests, per request, by route"]
    # The burst: a good share of the requests shed, counted under the routes they were for.
    assert percent(errors["shed /items/<int:item_id>"][1]) >= 20, run.stdout
    # The outage: (nearly) every request to the database answered 5xx, and the pod not ready.
    assert percent(errors["5xx /items/<int:item_id>"][1]) >= 90, run.stdout
    assert panels["Pods ready"] == {"pods": ("1", "1"), "ready": ("0", "1")}, run.stdout
    assert len(panels["Duration p99 and p50, by route"]) == 4, run.stdout

    data = picture.read_bytes()
    assert 10_000 < len(data) < 300_000
    width, height, rows = png_pixels(data)
    assert (width, height) == (WIDTH, HEIGHT)
    # The legends' swatches alone are under a thousand pixels (56 each); real series' lines add thousands.
    drawn = coloured_pixels(rows, COLOURS)
    assert sum(drawn.values()) > 2000, drawn
    assert sum(1 for count in drawn.values() if count > 400) >= 2, drawn
    print(f"\n[figures] make dashboard-picture (14 s of load): {len(data) // 1024} kB, palette pixels {drawn}")
