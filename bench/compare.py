"""Chassis overhead: a generated service against a bare Quart app, in one interleaved run.

It serves, on each engine with the same server settings (one process, uvloop, loopback):
  - bare:    a Quart app that answers GET /info with the same JSON document, and nothing else;
  - chassis: GET /info of the generated service (a small JSON document, as bare's), with
             every chassis feature on: JSON logs (to /dev/null), access log, metrics,
             request ids, trace context without exporter.
The engines are Hypercorn, as the service serves in production (`python -m <package>
serve`), and uvicorn with httptools hosting the same app from the same factory.  The
service does not offer uvicorn (see the README's "Hostile clients"), but its faster
server leaves more of each request's time to the app, so the chassis' own cost shows
more there.
Rounds alternate bare and chassis so machine noise hits both alike; the medians
and the chassis/bare throughput ratio per engine are printed, with p50/p99 latency,
memory after load and the time from process start to ready.

The server runs on CPU 0 and wrk on CPU 1 (taskset) so they do not compete.

Usage:
    python bench/compare.py --project build/my-service [--duration 5] [--rounds 3]
The project must have been generated with verification (it has a .venv).
Needs wrk: `sudo apt-get install wrk`; uvicorn and httptools are installed, once, into a
folder of their own beside the project's environment (the project's stays untouched).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

# The bare app, then how each engine serves it.
BARE_APP = '''
import sys
from quart import Quart

app = Quart(__name__)
BODY = {body}


@app.get("/info")
async def info():
    return BODY
'''

ON_HYPERCORN = '''
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
config.accesslog = None
uvloop.run(serve(app, config))
'''

ON_UVICORN = '''
import uvicorn

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False, lifespan="on")
'''

# The service's own factory and settings (logging as `serve` sets it up), on uvicorn.
CHASSIS_ON_UVICORN = '''
import sys
import uvicorn
from {package}.cli import build_app
from {package}.settings import load_settings

settings = load_settings(environ=dict(__import__("os").environ)).settings
uvicorn.run(build_app(settings), host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop",
            http="httptools", log_level="warning", access_log=False, lifespan="on")
'''
UVICORN_PACKAGES = ("uvicorn==0.54.0", "httptools==0.9.0")
ENGINES = ("hypercorn", "uvicorn")


def load_project_bench(project: Path) -> ModuleType:
    """The generated project's own bench helpers (wrk, start, stop, memory): one implementation."""
    spec = importlib.util.spec_from_file_location("project_bench", project / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def install_uvicorn(python: str, project: Path) -> Path:
    """uvicorn and httptools in a folder of their own (added to PYTHONPATH), installed once, by the uv
    beside this Python (the project's .venv, made by uv, has no pip) for the project's Python."""
    folder = project.parent / f".{project.name}-uvicorn"
    marker = folder / ("-".join(UVICORN_PACKAGES) + ".installed")
    if not marker.exists():
        uv = str(Path(sys.executable).with_name("uv"))
        subprocess.run([uv, "pip", "install", "--quiet", "--no-deps", "--upgrade", "--python", python, "--target",
                        str(folder), *UVICORN_PACKAGES], check=True)
        marker.touch()
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description="Chassis overhead against bare Quart, interleaved.")
    parser.add_argument("--project", type=Path, required=True, help="a generated, verified project")
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    project = args.project.resolve()
    bench = load_project_bench(project)
    python = str(project / ".venv" / "bin" / "python")
    # The document the chassis' /info answers (no build settings given).
    document = ('{"name": p.DISTRIBUTION_NAME, "version": p.__version__, "commit": "unknown", '
                '"build_time": "unknown", "python": platform.python_version(), "template_version": p.TEMPLATE_VERSION}')
    body = subprocess.run([python, "-c", f"import json, platform, {bench.PACKAGE} as p; print(json.dumps({document}))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    scripts = Path(tempfile.mkdtemp())
    script_of = {("hypercorn", "bare"): BARE_APP.format(body=body) + ON_HYPERCORN,
                 ("uvicorn", "bare"): BARE_APP.format(body=body) + ON_UVICORN,
                 ("uvicorn", "chassis"): CHASSIS_ON_UVICORN.format(package=bench.PACKAGE)}
    for (engine, target), text in script_of.items():
        (scripts / f"{engine}_{target}.py").write_text(text, encoding="utf-8")
    uvicorn_env = {**os.environ, "PYTHONPATH": str(install_uvicorn(python, project))}

    def start(engine: str, target: str):  # -> (process, ready URL, loaded URL)
        if (engine, target) == ("hypercorn", "chassis"):
            process, base = bench.start_service(python, [], cwd=project, cpu="0")
            return process, f"{base}/health/ready", f"{base}/info"
        port = bench.free_port()
        process = subprocess.Popen(["taskset", "-c", "0", python, str(scripts / f"{engine}_{target}.py"), str(port)],
                                   cwd=project, env=uvicorn_env if engine == "uvicorn" else None,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        if target == "chassis":
            return process, f"{base}/health/ready", f"{base}/info"
        return process, f"{base}/info", f"{base}/info"

    print(f"{args.rounds} interleaved rounds of {args.duration} s, {args.connections} connections")
    runs = [(engine, target) for engine in ENGINES for target in ("bare", "chassis")]
    results: dict[tuple[str, str], list] = {run: [] for run in runs}
    memory: dict[tuple[str, str], float] = {}
    ready: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for _ in range(args.rounds):
        for run in runs:
            process, ready_url, url = start(*run)
            try:
                ready[run].append(bench.wait_until_ready(process, ready_url))
                results[run].append(bench.run_wrk(url, duration=args.duration,
                                                  connections=args.connections, cpu="1"))
                memory[run] = bench.rss_mb(process.pid)
            finally:
                bench.stop(process)
    throughput = {}
    for run in runs:
        throughput[run] = statistics.median(r.requests_per_second for r in results[run])
        print(f"  {run[0]:<10}{run[1]:<9}{throughput[run]:>9.0f} req/s"
              f"   p50 {statistics.median(r.p50_ms for r in results[run]):6.2f} ms"
              f"   p99 {statistics.median(r.p99_ms for r in results[run]):6.2f} ms"
              f"   RSS after load {memory[run]:5.1f} MB"
              f"   start to ready {statistics.median(ready[run]):.2f} s")
    for engine in ENGINES:
        ratio = throughput[(engine, "chassis")] / throughput[(engine, "bare")]
        late = statistics.median(ready[(engine, "chassis")]) - statistics.median(ready[(engine, "bare")])
        print(f"ratio on {engine}: {ratio:.2f} (chassis ready {late:+.2f} s after bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
