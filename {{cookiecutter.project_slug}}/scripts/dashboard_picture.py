"""Draw the Grafana dashboard's main panels from a local run: ``make dashboard-picture``.

Writes ``docs/dashboard.png``, the picture the README shows, from real data, so that it shows
what this service's metrics really look like on its dashboard:

1. starts the service as ``make bench`` does (``python -m <package> serve`` on a free port of
   127.0.0.1), with its concurrency limit lowered so that the load's burst is partly shed (503),
   as an overloaded pod's would be, and the errors panel has something to show;
2. starts a throwaway Prometheus (its configuration and data in a temporary folder) that scrapes
   the service's metrics every second, labelled as the chart's ServiceMonitor labels them in a
   cluster (``job`` is the release's full name: the project's slug for a release named after it);
3. loads the service with wrk in a few phases (steady, busier, a burst, calm) on a mix of routes:
   items found, the list, an item that does not exist and a page that does not exist (404), while
   a thread probes readiness every second as the kubelet would;
4. asks Prometheus (``/api/v1/query_range``) for each main panel's queries, read from the chart's
   ``dashboards/service.json`` with ``$job``, ``$__rate_interval`` and ``__METRICS_PATH__``
   filled in as Grafana and Helm would, and draws them as SVG line charts titled like the
   panels, in one self-contained HTML page (no script, nothing fetched);
5. screenshots that page with headless Chromium.

No Grafana is needed. Needs ``prometheus``, ``chromium`` and ``wrk`` on PATH (Debian/Ubuntu:
``sudo apt-get install prometheus chromium wrk``). Every process it starts is stopped before it
returns, whatever happens. ``--seconds`` sets the length of the load (default 30).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import free_port, start_service, stop, wait_until_ready

SLUG = "{{ cookiecutter.project_slug }}"
PROJECT = Path(__file__).resolve().parents[1]
DASHBOARD = PROJECT / "charts" / SLUG / "dashboards" / "service.json"
OUTPUT = PROJECT / "docs" / "dashboard.png"
METRICS_PATH = "/metrics"
POD = "local"
MAIN_PANELS = 6  # rate, errors, duration, in flight, event-loop lag, readiness
RATE_WINDOW = "5s"  # $__rate_interval for a 1 s scrape: short enough for a short run
CONCURRENCY_LIMIT = 24  # the burst's connections exceed it: some requests are shed with 503
WIDTH, PANEL_HEIGHT, HEADER_HEIGHT = 1200, 290, 44
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")
TOOLS = {"prometheus": "prometheus", "chromium": "chromium", "wrk": "wrk"}
# Chromium fetches nothing: no proxy that answers, no name that resolves but 127.0.0.1.
OFFLINE = ("--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of the load: its share of the run, wrk's connections, and a pause per request."""

    name: str
    share: float
    connections: int
    pause_ms: int


PHASES = (
    Phase("steady", 0.35, 4, 2),
    Phase("busier", 0.25, 12, 0),
    Phase("burst", 0.15, 2 * CONCURRENCY_LIMIT, 0),
    Phase("calm", 0.25, 2, 5),
)
# Weighted by repetition: mostly items found, some lists, some 404s.
PATHS = ("/items/1", "/items/1", "/items/1", "/items/1", "/items", "/items", "/items/424242", "/no-such-page")


@dataclasses.dataclass
class Series:
    name: str
    points: list[tuple[float, float]]


@dataclasses.dataclass
class Panel:
    title: str
    unit: str
    series: list[Series]


def missing_tools() -> list[str]:
    return [name for name, command in TOOLS.items() if shutil.which(command) is None]


@contextlib.contextmanager
def running(command: Sequence[str], *, cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A background process, in a session of its own, stopped (TERM, then KILL after 10 s) on exit."""
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        end_session(process, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            end_session(process, signal.SIGKILL)
            process.wait(timeout=10)


def end_session(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def run_bounded(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ``command``; past ``timeout`` seconds, kill it and whatever it started, and fail."""
    with running(command) as process:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{command[0]} took more than {timeout:g} s") from None
    return subprocess.CompletedProcess(command, process.returncode)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a local URL
        return json.load(response)


def send(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    request = urllib.request.Request(  # noqa: S310 - a local URL
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - a local URL
        pass


def prometheus_config(target: str) -> str:
    """Scrape ``target`` every second as the chart's ServiceMonitor would (JSON is YAML)."""
    job = {
        "job_name": SLUG,
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "metrics_path": METRICS_PATH,
        "static_configs": [{"targets": [target], "labels": {"pod": POD}}],
    }
    return json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}, indent=2)


def start_prometheus(folder: Path, target: str, stack: contextlib.ExitStack) -> str:
    """A throwaway Prometheus scraping ``target``, its data in ``folder``; returns its URL once ready."""
    (folder / "prometheus.yml").write_text(prometheus_config(target), encoding="utf-8")
    port = free_port()
    command = [
        TOOLS["prometheus"],
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = stack.enter_context(running(command))
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(process, f"{url}/-/ready")
    return url


def wait_for_first_scrape(prometheus: str, timeout: float = 15) -> None:
    query = urllib.parse.urlencode({"query": 'up{job="' + SLUG + '"} == 1'})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get_json(f"{prometheus}/api/v1/query?{query}")["data"]["result"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"Prometheus did not scrape the service within {timeout:g} s")


def wrk_script(pause_ms: int, headers: dict[str, str]) -> str:
    """wrk's Lua: each request a random path of PATHS, after a pause of ``pause_ms``."""
    paths = ", ".join(f'"{path}"' for path in PATHS)
    lines = ["local paths = {" + paths + "}"]
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    lines.append('request = function() return wrk.format("GET", paths[math.random(#paths)]) end')
    if pause_ms:
        lines.append(f"delay = function() return {pause_ms} end")
    return "\n".join(lines) + "\n"


def load(base: str, seconds: float, folder: Path, headers: dict[str, str]) -> None:
    """Drive the service through PHASES, ``seconds`` in all, one wrk process at a time."""
    for phase in PHASES:
        duration = max(1, round(seconds * phase.share))
        script = folder / f"{phase.name}.lua"
        script.write_text(wrk_script(phase.pause_ms, headers), encoding="utf-8")
        command = [TOOLS["wrk"], "-t1", f"-c{phase.connections}", f"-d{duration}s", "-s", str(script), base]
        print(f"  {phase.name}: {phase.connections} connections for {duration} s")
        if run_bounded(command, timeout=duration + 15).returncode != 0:
            raise RuntimeError(f"wrk failed in the {phase.name} phase")


@contextlib.contextmanager
def probing_readiness(url: str) -> Iterator[None]:
    """Ask ``url`` every second, as the kubelet's readiness probe does, until the block ends."""
    done = threading.Event()

    def probe() -> None:
        while not done.wait(1.0):
            with contextlib.suppress(urllib.error.URLError, OSError):
                urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - a local URL

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def dashboard_panels(path: Path = DASHBOARD, count: int = MAIN_PANELS) -> list[dict[str, Any]]:
    """The dashboard's first ``count`` panels, their queries filled in as Helm and Grafana would."""
    text = path.read_text(encoding="utf-8").replace("__JOB__", SLUG).replace("__METRICS_PATH__", METRICS_PATH)
    panels: list[dict[str, Any]] = json.loads(text)["panels"][:count]
    for panel in panels:
        for target in panel["targets"]:
            target["expr"] = target["expr"].replace("$__rate_interval", RATE_WINDOW).replace("$job", SLUG)
    return panels


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match.group(1), ""), template).strip()


def query_panels(prometheus: str, start: float, end: float) -> list[Panel]:
    """Each main panel's series over [start, end], one point a second, NaN and infinities left out."""
    panels = []
    for panel in dashboard_panels():
        series = []
        for target in panel["targets"]:
            query = urllib.parse.urlencode({"query": target["expr"], "start": start, "end": end, "step": 1})
            result = get_json(f"{prometheus}/api/v1/query_range?{query}")["data"]["result"]
            for item in result:
                points = [(float(t), float(v)) for t, v in item["values"] if math.isfinite(float(v))]
                series.append(Series(legend(target.get("legendFormat", ""), item["metric"]), points))
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        panels.append(Panel(panel["title"], unit, sorted(series, key=lambda one: one.name)))
    return panels


def format_value(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        for scale, suffix in ((1.0, " s"), (1e-3, " ms"), (1e-6, " µs")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return "0"
    text = f"{value / 1000:.3g}k" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} req/s" if unit == "reqps" else text


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    power = 10.0 ** math.floor(math.log10(value)) if value > 0 else 1.0
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value)


def chart_svg(panel: Panel, start: float, end: float, width: int, height: int) -> str:
    """One panel's series as SVG polylines on a grid, with the y axis in the panel's unit."""
    left, right, top, bottom = 74, 10, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((value for one in panel.series for _, value in one.points), default=0.0)
    y_max = 4 * nice_ceiling(highest * 1.05 / 4) if highest > 0 else 1.0  # four round steps

    def x(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    def y(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for tick in range(5):
        value = y_max * tick / 4
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" class="grid"/>'
        )
        label = html.escape(format_value(value, panel.unit))
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" class="axis" text-anchor="end">{label}</text>'
        )
    step = max(5, round((end - start) / 6 / 5) * 5)
    for t in range(math.ceil(start / step) * step, int(end) + 1, step):
        label = time.strftime("%H:%M:%S", time.localtime(t))
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 6}" class="axis" text-anchor="middle">{label}</text>'
        )
    for index, one in enumerate(panel.series):
        colour = COLOURS[index % len(COLOURS)]
        for run in contiguous(one.points):
            path = " ".join(f"{x(t):.1f},{y(value):.1f}" for t, value in run)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
    if not panel.series:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" class="nodata" text-anchor="middle">No data</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def contiguous(points: list[tuple[float, float]], gap: float = 1.5) -> Iterator[list[tuple[float, float]]]:
    """Runs of points at most ``gap`` seconds apart: a missing sample breaks the line, as in Grafana."""
    run: list[tuple[float, float]] = []
    for point in points:
        if run and point[0] - run[-1][0] > gap:
            yield run
            run = []
        run.append(point)
    if run:
        yield run


STYLE = """
body { margin: 0; background: #111217; color: #ccccdc; font: 12px/1.3 "DejaVu Sans", Arial, sans-serif; }
header { height: 36px; padding: 8px 12px 0; font-size: 16px; }
header small { color: #8e8e9e; font-size: 12px; margin-left: 10px; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; padding: 0 8px; }
section { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; height: %dpx;
  overflow: hidden; }
h2 { margin: 6px 10px 0; font-size: 13px; font-weight: 500; color: #d8d9da; }
.grid { stroke: #2c3235; stroke-width: 1; }
.axis { fill: #8e8e9e; font-size: 11px; }
.nodata { fill: #8e8e9e; font-size: 14px; }
ul { list-style: none; margin: 0 10px; padding: 0; display: flex; flex-wrap: wrap; gap: 2px 14px; }
li::before { content: ""; display: inline-block; width: 14px; height: 4px; margin: 0 5px 2px 0;
  background: var(--colour); vertical-align: middle; }
"""


def page(panels: list[Panel], start: float, end: float, subtitle: str) -> str:
    """The self-contained page Chromium photographs: the panels two by two, as on the dashboard."""
    chart_w, chart_h = WIDTH // 2 - 14, PANEL_HEIGHT - 62
    sections = []
    for panel in panels:
        items = "".join(
            f'<li style="--colour: {COLOURS[index % len(COLOURS)]}">{html.escape(one.name or "value")}</li>'
            for index, one in enumerate(panel.series)
        )
        svg = chart_svg(panel, start, end, chart_w, chart_h)
        sections.append(f"<section><h2>{html.escape(panel.title)}</h2>{svg}<ul>{items}</ul></section>")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{STYLE % PANEL_HEIGHT}</style></head>'
        f"<body><header>{html.escape(SLUG)}<small>{html.escape(subtitle)}</small></header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )


def page_height(panels: int) -> int:
    return HEADER_HEIGHT + math.ceil(panels / 2) * (PANEL_HEIGHT + 8)


def screenshot(html_file: Path, output: Path, height: int, profile: Path) -> None:
    """Photograph ``html_file`` with headless Chromium into ``output`` (WIDTH x ``height``)."""
    command = [
        TOOLS["chromium"],
        "--headless=new",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *OFFLINE,
        f"--window-size={WIDTH},{height}",
        f"--screenshot={output}",
        html_file.as_uri(),
    ]
    if os.geteuid() == 0:  # Chromium refuses to run as root inside its sandbox
        command.insert(1, "--no-sandbox")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    run_bounded(command, timeout=60)
    if not output.exists():
        raise RuntimeError("Chromium wrote no screenshot")


def describe(panels: list[Panel]) -> list[str]:
    """One line per panel: its series and points; the first (requests per second) must have data."""
    lines = []
    for panel in panels:
        points = sum(len(one.points) for one in panel.series)
        lines.append(f"  {panel.title}: {len(panel.series)} series, {points} points")
    if not panels or not panels[0].series:
        raise RuntimeError("Prometheus has no requests of the service: was it scraped?")
    return lines


def make_picture(seconds: float, output: Path, service_args: Sequence[str]) -> None:
    headers: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory(prefix="dashboard-picture-") as temporary,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(temporary)
{%- if cookiecutter.auth == "oidc" %}
        # Only the tests' identity provider's tokens are accepted: the load sends one, as bench does.
        from bench import start_identity_provider

        provider = start_identity_provider(PROJECT)
        stack.callback(provider.stop)
        headers["Authorization"] = f"Bearer {provider.token(lifetime=3600)}"
        os.environ.update(provider.environment())
{%- endif %}
        limit = ["--http-max-concurrent-requests", str(CONCURRENCY_LIMIT)]
        process, base = start_service(sys.executable, [*limit, *service_args], cwd=PROJECT)
        stack.callback(stop, process)
        wait_until_ready(process, f"{base}/health/ready")
        send(f"{base}/items", {"name": "lamp", "price_cents": 1999}, headers)  # item 1
        prometheus = start_prometheus(folder, base.removeprefix("http://"), stack)
        wait_for_first_scrape(prometheus)
        print(f"service at {base}, Prometheus at {prometheus}; {seconds:g} s of load:")
        start = time.time() - 3
        with probing_readiness(f"{base}/health/ready"):
            load(base, seconds, folder, headers)
            time.sleep(3)  # the calm after, and a last scrape
        end = time.time()
        panels = query_panels(prometheus, start, end)
        print("\n".join(describe(panels)))
        day = time.strftime("%Y-%m-%d")
        subtitle = f"a local run: {seconds:g} s of wrk load, scraped every second by Prometheus, {day}"
        html_file = folder / "dashboard.html"
        html_file.write_text(page(panels, start, end, subtitle), encoding="utf-8")
        screenshot(html_file, output, page_height(len(panels)), folder / "chromium")
    print(f"wrote {output} ({output.stat().st_size // 1024} kB)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30, help="seconds of load in all (default 30)")
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help="the PNG to write (default docs/dashboard.png)"
    )
    parser.add_argument("service_args", nargs="*", help="flags for the service, after --")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(
            f"error: needs {', '.join(missing)} on PATH: `sudo apt-get install {' '.join(missing)}`",
            file=sys.stderr,
        )
        return 1
    try:
        make_picture(args.seconds, args.output.resolve(), args.service_args)
    except (RuntimeError, urllib.error.URLError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
