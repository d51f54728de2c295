"""Load-test the service the way production runs it: ``make bench``.

Starts the service with its own entrypoint (``python -m <package> serve``: one worker, JSON
logs to /dev/null) on a free local port, waits until it is ready, then drives each path with
wrk from a separate process and prints requests per second and p50/p99 latency.  Needs wrk (Debian/Ubuntu:
``sudo apt-get install wrk``; macOS: ``brew install wrk``).

It also times the access log's writer against structlog's processor chain, the general
path of every other log line (the writer exists because the chain costs more on this hot
path).

Flags after ``--`` go to the service, e.g. ``make bench ARGS="-- --server-workers 2"``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import timeit
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PACKAGE = "{{ cookiecutter.package_name }}"
PATHS = ("/items", "/health/live")
READY_TIMEOUT = 30.0
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclasses.dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(process: subprocess.Popen[bytes], url: str, timeout: float = READY_TIMEOUT) -> float:
    """Poll ``url`` until it answers 200; return the seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - a local URL
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} was not ready within {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_wrk(url: str, *, duration: int, connections: int, cpu: str | None = None) -> LoadResult:
    """One wrk run (one thread) against ``url``; optionally pinned to ``cpu`` with taskset."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"
        )
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {(result.stderr or result.stdout).strip()}")
    return parse_wrk(result.stdout)


def parse_wrk(output: str) -> LoadResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if rate is None or p50 is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    if errors is not None:
        raise RuntimeError(f"{errors.group(1)} requests failed during the run:\n{output}")
    return LoadResult(
        float(rate.group(1)),
        float(p50.group(1)) * _UNITS[p50.group(2)],
        float(p99.group(1)) * _UNITS[p99.group(2)],
    )


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def access_line_costs(lines: int = 20_000) -> tuple[float, float]:
    """Microseconds per JSON access line: the service's writer, and structlog's chain."""
    # Imported here: the load test drives the service from outside; only this needs its code.
    import structlog

    from {{ cookiecutter.package_name }}.chassis.logging import (
        RequestFields,
        access_log,
        bind_request_fields,
        configure_logging,
    )
    from {{ cookiecutter.package_name }}.settings import LoggingSettings

    fields: dict[str, Any] = {
        "method": "GET",
        "path": "/items/7",
        "route": "/items/<int:item_id>",
        "status": 200,
        "duration_ms": 1.234,
        "client": "127.0.0.1",
    }
    with contextlib.redirect_stdout(_Discard()):
        configure_logging(LoggingSettings(), service=PACKAGE, version="bench")
        bind_request_fields(RequestFields(request_id="0" * 32, trace_id="1" * 32, span_id="2" * 16))
        writer = access_log()
        chain = structlog.get_logger(logger_name="access").bind()
        if writer is None:
            raise RuntimeError("the access log is off at the default log level")

        def by_writer() -> None:
            writer(**fields)

        def by_chain() -> None:
            chain.info("request", **fields)

        return per_line(by_writer, lines), per_line(by_chain, lines)


def per_line(write: Callable[[], None], lines: int) -> float:
    return min(timeit.repeat(write, number=lines, repeat=5)) / lines * 1e6


def start_service(
    python: str, service_args: Sequence[str], *, cwd: Path, cpu: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service as production does, logs to /dev/null; return it and its base URL."""
    port = free_port()
    command = [
        python,
        "-m",
        PACKAGE,
        "serve",
        "--server-host",
        "127.0.0.1",
        "--server-port",
        str(port),
        "--shutdown-delay",  # no load balancer to wait for: stop at once
        "0",
        *service_args,
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"http://127.0.0.1:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per path (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("service_args", nargs="*", help="flags for the service, after --")
    args = parser.parse_args(argv)

    if shutil.which("wrk") is None:
        print("error: wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu)", file=sys.stderr)
        return 1
    project = Path(__file__).resolve().parents[1]
    process, base = start_service(sys.executable, args.service_args, cwd=project, cpu="0")
    try:
        ready = wait_until_ready(process, f"{base}/health/ready")
        print(
            f"ready {ready:.2f} s after start; {args.connections} connections, {args.duration:g} s per path"
        )
        print(f"{'path':<16}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
        for path in PATHS:
            result = run_wrk(f"{base}{path}", duration=args.duration, connections=args.connections, cpu="1")
            print(
                f"{path:<16}{result.requests_per_second:>12.0f}{result.p50_ms:>10.2f}{result.p99_ms:>10.2f}"
            )
        print(f"memory (RSS) after load: {rss_mb(process.pid):.1f} MB")
        writer, chain = access_line_costs()
        print(f"access line: {writer:.1f} us by its writer, {chain:.1f} us through structlog's chain")
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        exit_code = stop(process)
    if exit_code != 0:
        print(f"the service exited with code {exit_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
