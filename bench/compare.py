"""Chassis overhead: a generated service against a bare Quart app, in one interleaved run.

It serves, on Hypercorn with the same server settings (one process, uvloop, loopback):
  - bare:    a Quart app that returns the same JSON for GET / and nothing else;
  - chassis: GET /info of the generated service (`python -m <package> serve`; a
             small JSON document, as bare's), with every chassis
             feature on: JSON logs (to /dev/null), access log, metrics, request ids,
             trace context without exporter.
Rounds alternate bare and chassis so machine noise hits both alike; the medians
and the chassis/bare throughput ratio are printed, with p50/p99 latency, memory
after load and the time from process start to ready.

The server runs on CPU 0 and wrk on CPU 1 (taskset) so they do not compete.

Usage:
    python bench/compare.py --project build/my-service [--duration 5] [--rounds 3]
The project must have been generated with verification (it has a .venv).
Needs wrk: `sudo apt-get install wrk`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType

BARE_APP = '''
import sys
import uvloop
from quart import Quart

app = Quart(__name__)
BODY = {body}


@app.get("/")
async def index():
    return BODY


from hypercorn.asyncio import serve
from hypercorn.config import Config

config = Config()
config.bind = [f"127.0.0.1:{{sys.argv[1]}}"]
config.accesslog = None
uvloop.run(serve(app, config))
'''


def load_project_bench(project: Path) -> ModuleType:
    """The generated project's own bench helpers (wrk, start, stop, memory): one implementation."""
    spec = importlib.util.spec_from_file_location("project_bench", project / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


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
    name = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    index = subprocess.run([python, "-c", f"import {bench.PACKAGE} as p; print(p.__version__)"],
                           capture_output=True, text=True, check=True)
    # The shape of the chassis' /info.
    body = {"name": name, "version": index.stdout.strip(), "commit": "unknown", "build_time": "unknown",
            "python": "3.11.7"}
    bare_script = Path(tempfile.mkdtemp()) / "bare_app.py"
    bare_script.write_text(BARE_APP.format(body=json.dumps(body)), encoding="utf-8")

    def start(target: str):  # -> (process, ready URL, loaded URL)
        if target == "chassis":
            process, base = bench.start_service(python, [], cwd=project, cpu="0")
            return process, f"{base}/health/ready", f"{base}/info"
        port = bench.free_port()
        process = subprocess.Popen(["taskset", "-c", "0", python, str(bare_script), str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        return process, f"{base}/", f"{base}/"

    print(f"{args.rounds} interleaved rounds of {args.duration} s, {args.connections} connections")
    results: dict[str, list] = {"bare": [], "chassis": []}
    memory: dict[str, float] = {}
    ready: dict[str, list[float]] = {"bare": [], "chassis": []}
    for _ in range(args.rounds):
        for target in ("bare", "chassis"):
            process, ready_url, url = start(target)
            try:
                ready[target].append(bench.wait_until_ready(process, ready_url))
                results[target].append(bench.run_wrk(url, duration=args.duration,
                                                     connections=args.connections, cpu="1"))
                memory[target] = bench.rss_mb(process.pid)
            finally:
                bench.stop(process)
    rows = {}
    for target, runs in results.items():
        rows[target] = (statistics.median(r.requests_per_second for r in runs),
                        statistics.median(r.p50_ms for r in runs),
                        statistics.median(r.p99_ms for r in runs))
        print(f"  {target:<9}{rows[target][0]:>9.0f} req/s   p50 {rows[target][1]:6.2f} ms"
              f"   p99 {rows[target][2]:6.2f} ms   RSS after load {memory[target]:5.1f} MB")
    ratio = rows["chassis"][0] / rows["bare"][0]
    print(f"  chassis keeps {ratio:.0%} of bare throughput; start to ready (median): "
          f"chassis {statistics.median(ready['chassis']):.2f} s, bare {statistics.median(ready['bare']):.2f} s")
    print(f"ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
