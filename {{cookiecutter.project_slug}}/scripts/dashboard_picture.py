"""Draw the Grafana dashboard's main panels from a local run: ``make dashboard-picture``.

Writes ``docs/dashboard.png``, the picture the README shows, from real data, so that it shows
what this service's metrics look like on its dashboard in a scenario a reader knows: steady
traffic, a burst that is partly shed, then (for a service with a database) an outage of the
database, and recovery.

1. starts the service as ``make bench`` does (``python -m <package> serve`` on a free port of
   127.0.0.1), with its concurrency limit lowered so that the burst is partly shed (503), as an
   overloaded pod's would be;
2. starts a throwaway Prometheus (its configuration and data in a temporary folder) that scrapes
   the service's metrics every second, labelled as the chart's ServiceMonitor labels them in a
   cluster (``job`` is the release's full name: the project's slug for a release named after it);
3. loads the service with wrk in phases (``PHASES``) on a mix of routes (items found, the list,
   an item that does not exist), while a thread probes readiness every second as the kubelet
   would.
{%- if cookiecutter.database == "postgresql" %}  The service reaches its database through a proxy
   (``database_outage.py``) that is cut for the outage phase and then restored.
{%- else %}  There is no outage phase: the items are kept in memory, so there is no dependency
   to cut (a project made with a database has one).
{%- endif %}
4. asks Prometheus (``/api/v1/query_range``) for each main panel's queries, read from the chart's
   ``dashboards/service.json`` with ``$job``, ``$__rate_interval`` and ``__METRICS_PATH__``
   filled in as Grafana and Helm would, and draws them as SVG line charts titled like the
   panels, each phase marked on them, in one self-contained HTML page (no script, nothing fetched);
5. screenshots that page with headless Chromium.

No Grafana is needed. Needs ``prometheus``, ``chromium`` and ``wrk`` on PATH (Debian/Ubuntu:
``sudo apt-get install prometheus chromium wrk``). Every process it starts is stopped before it
returns, whatever happens. ``--seconds`` sets the length of the load (default 40); ``--title``
the picture's title (default: the project's name).
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
from typing import Any, Literal, Protocol

from bench import free_port, start_service, stop, wait_until_ready
{%- if cookiecutter.database == "postgresql" %}
from database_outage import database_outage
{%- endif %}

SLUG = "{{ cookiecutter.project_slug }}"
PROJECT = Path(__file__).resolve().parents[1]
DASHBOARD = PROJECT / "charts" / SLUG / "dashboards" / "service.json"
OUTPUT = PROJECT / "docs" / "dashboard.png"
METRICS_PATH = "/metrics"
POD = "local"
MAIN_PANELS = 6  # rate, errors, duration, in flight, event-loop lag, readiness
RATE_WINDOW = "4s"  # $__rate_interval for a 1 s scrape, as Grafana works it out: four scrapes
CONCURRENCY_LIMIT = 24  # the burst's connections exceed it: some requests are shed with 503
WIDTH, PANEL_HEIGHT, HEADER_HEIGHT = 1200, 290, 44
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a")
TOOLS = {"prometheus": "prometheus", "chromium": "chromium", "wrk": "wrk"}
# Chromium fetches nothing: no proxy that answers, no name that resolves but 127.0.0.1.
OFFLINE = ("--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of the load: its share of the run, wrk's connections and a pause per request;
    its ``kind`` marks it on the picture (an outage: the dependency is cut meanwhile)."""

    name: str
    share: float
    connections: int
    pause_ms: int
    kind: Literal["steady", "burst", "outage"] = "steady"


STEADY = 4, 10  # connections, ms of pause: a few hundred requests a second
PHASES = (
    Phase("steady traffic", 0.25, *STEADY),
    Phase("burst", 0.15, 2 * CONCURRENCY_LIMIT, 0, "burst"),  # twice the limit: some requests are shed
    Phase("steady", 0.15, *STEADY),
)
# Run when the service has a dependency to cut.
OUTAGE_PHASES = (
    Phase("outage", 0.25, *STEADY, "outage"),
    Phase("recovered", 0.2, *STEADY),
)
# Weighted by repetition: mostly items found, some lists, some 404s (an item that does not exist).
# Every path matches a route, so ``<unmatched>`` on the picture would be a bug, not the load.
PATHS = ("/items/1", "/items/1", "/items/1", "/items/1", "/items", "/items", "/items/424242")


class Outage(Protocol):
    """A dependency of the service that the load's outage phase cuts, then restores."""

    name: str  # what the picture calls it: "database"
    service_args: list[str]  # the flags that point the service at it, through the cut

    def cut(self) -> None: ...

    def restore(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Span:
    """When a phase ran, by the wall clock (as Prometheus stamps its samples)."""

    name: str
    start: float
    end: float
    kind: str


@dataclasses.dataclass
class Series:
    name: str
    points: list[tuple[float, float]]
    colour: str = COLOURS[0]


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


def load(
    base: str, seconds: float, folder: Path, headers: dict[str, str], outage: Outage | None
) -> list[Span]:
    """Drive the service through PHASES, then OUTAGE_PHASES if there is an ``outage`` to cause,
    ``seconds`` in all, one wrk process at a time. Returns when each phase ran."""
    phases = [*PHASES, *(OUTAGE_PHASES if outage is not None else ())]
    total_share = sum(phase.share for phase in phases)
    spans = []
    for number, phase in enumerate(phases):
        duration = max(1, round(seconds * phase.share / total_share))
        script = folder / f"phase{number}.lua"
        script.write_text(wrk_script(phase.pause_ms, headers), encoding="utf-8")
        command = [TOOLS["wrk"], "-t1", f"-c{phase.connections}", f"-d{duration}s", "-s", str(script), base]
        cut = outage if phase.kind == "outage" else None
        name = f"{cut.name} {phase.name}" if cut is not None else phase.name
        print(f"  {name}: {phase.connections} connections for {duration} s")
        start = time.time()
        if cut is not None:
            cut.cut()
        try:
            succeeded = run_bounded(command, timeout=duration + 15).returncode == 0
        finally:
            if cut is not None:
                cut.restore()
        if not succeeded:
            raise RuntimeError(f"wrk failed in the {name} phase")
        spans.append(Span(name, start, time.time(), phase.kind))
    return spans


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
                if points:
                    series.append(Series(legend(target.get("legendFormat", ""), item["metric"]), points))
        series.sort(key=lambda one: one.name)
        for index, one in enumerate(series):  # Grafana's way: the palette in turn
            one.colour = COLOURS[index % len(COLOURS)]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        panels.append(Panel(panel["title"], unit, series))
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


def chart_svg(panel: Panel, spans: list[Span], start: float, end: float, width: int, height: int) -> str:
    """One panel's series as SVG polylines on a grid, with the y axis in the panel's unit, and
    the load's phases marked as Grafana marks annotations: a name over each, the outage shaded."""
    left, right, top, bottom = 74, 10, 18, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((value for one in panel.series for _, value in one.points), default=0.0)
    y_max = 4 * nice_ceiling(highest * 1.05 / 4) if highest > 0 else 1.0  # four round steps
    if panel.unit == "percentunit" and highest <= 1:
        y_max = min(y_max, 1.0)  # a share tops out at 100%

    def x(t: float) -> float:
        return left + (t - start) / (end - start) * plot_w

    def y(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for span in spans:
        parts.append(
            f'<rect x="{x(span.start):.1f}" y="{top}" width="{x(span.end) - x(span.start):.1f}" '
            f'height="{plot_h}" class="{span.kind}"/>'
        )
        name, kind = html.escape(span.name), span.kind
        parts.append(f'<text x="{x(span.start) + 3:.1f}" y="{top - 5}" class="{kind}-name">{name}</text>')
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
        if x(t) > width - right - 24:  # its label would be cut off at the edge
            continue
        label = time.strftime("%H:%M:%S", time.localtime(t))
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 6}" class="axis" text-anchor="middle">{label}</text>'
        )
    for one in panel.series:
        for run in contiguous(one.points):
            path = " ".join(f"{x(t):.1f},{y(value):.1f}" for t, value in run)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{one.colour}" stroke-width="1.6"/>')
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
.steady { fill: none; stroke: #464c54; stroke-dasharray: 3 3; }
.burst { fill: #f2cc0c; fill-opacity: 0.07; stroke: #f2cc0c; stroke-opacity: 0.5; stroke-dasharray: 3 3; }
.outage { fill: #f2495c; fill-opacity: 0.12; stroke: #f2495c; stroke-opacity: 0.6; stroke-dasharray: 3 3; }
.steady-name { fill: #8e8e9e; font-size: 10px; }
.burst-name { fill: #f2cc0c; font-size: 10px; }
.outage-name { fill: #ff7383; font-size: 10px; }
ul { list-style: none; margin: 0 10px; padding: 0; display: flex; flex-wrap: wrap; gap: 2px 14px; }
li::before { content: ""; display: inline-block; width: 14px; height: 4px; margin: 0 5px 2px 0;
  background: var(--colour); vertical-align: middle; }
"""


def page(panels: list[Panel], spans: list[Span], title: str, subtitle: str) -> str:
    """The self-contained page Chromium photographs: the panels two by two, as on the dashboard."""
    chart_w, chart_h = WIDTH // 2 - 14, PANEL_HEIGHT - 62
    start, end = spans[0].start - 3, spans[-1].end + 3
    sections = []
    for panel in panels:
        items = "".join(
            f'<li style="--colour: {one.colour}">{html.escape(one.name or "value")}</li>'
            for one in panel.series
        )
        svg = chart_svg(panel, spans, start, end, chart_w, chart_h)
        sections.append(f"<section><h2>{html.escape(panel.title)}</h2>{svg}<ul>{items}</ul></section>")
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{STYLE % PANEL_HEIGHT}</style></head>'
        f"<body><header>{html.escape(title)}<small>{html.escape(subtitle)}</small></header>"
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
    """Each panel's series, with the range of their values: what the picture shows, in words.
    The first panel (requests per second) must have data."""
    lines = []
    for panel in panels:
        points = sum(len(one.points) for one in panel.series)
        lines.append(f"  {panel.title}: {len(panel.series)} series, {points} points")
        for one in panel.series:
            values = [value for _, value in one.points]
            low, high = format_value(min(values), panel.unit), format_value(max(values), panel.unit)
            lines.append(f"    {one.name or 'value'}: {low} to {high}")
    if not panels or not panels[0].series:
        raise RuntimeError("Prometheus has no requests of the service: was it scraped?")
    return lines


def make_picture(seconds: float, output: Path, title: str, service_args: Sequence[str]) -> None:
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
{%- if cookiecutter.database == "postgresql" %}
        database = stack.enter_context(database_outage())
        outage: Outage | None = database
        service_args = [*database.service_args, *service_args]
{%- else %}
        outage: Outage | None = None
        print("no outage phase: the items are kept in memory, so there is no dependency to cut")
{%- endif %}
        limit = ["--http-max-concurrent-requests", str(CONCURRENCY_LIMIT)]
        process, base = start_service(sys.executable, [*limit, *service_args], cwd=PROJECT)
        stack.callback(stop, process)
        wait_until_ready(process, f"{base}/health/ready")
        send(f"{base}/items", {"name": "lamp", "price_cents": 1999}, headers)  # item 1
        prometheus = start_prometheus(folder, base.removeprefix("http://"), stack)
        wait_for_first_scrape(prometheus)
        print(f"service at {base}, Prometheus at {prometheus}; {seconds:g} s of load:")
        with probing_readiness(f"{base}/health/ready"):
            spans = load(base, seconds, folder, headers, outage)
            time.sleep(3)  # a last scrape after the load
        panels = query_panels(prometheus, spans[0].start - 3, spans[-1].end + 3)
        print("\n".join(describe(panels)))
        scenario = ", ".join(span.name for span in spans)
        subtitle = f"a local run, {time.strftime('%Y-%m-%d')}: {scenario} ({seconds:g} s of wrk load)"
        html_file = folder / "dashboard.html"
        html_file.write_text(page(panels, spans, title, subtitle), encoding="utf-8")
        screenshot(html_file, output, page_height(len(panels)), folder / "chromium")
    print(f"wrote {output} ({output.stat().st_size // 1024} kB)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=40, help="seconds of load in all (default 40)")
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help="the PNG to write (default docs/dashboard.png)"
    )
    parser.add_argument("--title", default=SLUG, help=f"the picture's title (default {SLUG})")
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
        make_picture(args.seconds, args.output.resolve(), args.title, args.service_args)
    except (RuntimeError, urllib.error.URLError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
