"""Load-test the service the way production runs it: ``make bench``.

Starts the service with its own entrypoint (``python -m <package> serve``: one worker, JSON
logs to /dev/null) on a free local port, waits until it is ready, then drives each path with
wrk from a separate process and prints requests per second and p50/p99 latency.  Needs wrk (Debian/Ubuntu:
``sudo apt-get install wrk``; macOS: ``brew install wrk``).

It also times the access log's writer against structlog's processor chain, the general
path of every other log line (the writer exists because the chain costs more on this hot
path).
{%- if cookiecutter.auth == "oidc" %}

The service trusts the tests' stand-in identity provider (``tests/identity_provider.py``, on
127.0.0.1), and wrk sends one of its tokens with every request, as a client reusing its token
does.  The cost of verifying a token is printed per algorithm: a token seen for the first
time, and one seen before.
{%- endif %}

Flags after ``--`` go to the service, e.g. ``make bench ARGS="-- --server-workers 2"``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
{%- if cookiecutter.auth == "oidc" %}
import importlib
{%- endif %}
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


{% if cookiecutter.auth == "oidc" -%}
def run_wrk(url: str, *, duration: int, connections: int, cpu: str | None = None, header: str) -> LoadResult:
    """One wrk run (one thread) against ``url``, sending ``header``; optionally pinned to ``cpu``."""
{%- else -%}
def run_wrk(url: str, *, duration: int, connections: int, cpu: str | None = None) -> LoadResult:
    """One wrk run (one thread) against ``url``; optionally pinned to ``cpu`` with taskset."""
{%- endif %}
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError(
            "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"
        )
{%- if cookiecutter.auth == "oidc" %}
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-H", header, url]
{%- else %}
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
{%- endif %}
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


{% if cookiecutter.auth == "oidc" -%}
def start_identity_provider(project: Path) -> Any:
    """The tests' stand-in identity provider, started on 127.0.0.1."""
    sys.path.insert(0, str(project))
    return importlib.import_module("tests.identity_provider").IdentityProvider().start()


def token_verification_costs(provider: Any, tokens: int = 2000) -> dict[str, tuple[float, float]]:
    """Microseconds to verify a token, by algorithm: seen for the first time (best of 3), and again."""
    import asyncio

    from {{ cookiecutter.package_name }}.chassis.auth import TokenVerifier
    from {{ cookiecutter.package_name }}.chassis.signing_keys import SigningKeys

    make_key = importlib.import_module("tests.identity_provider").make_key
    signing = [make_key(algorithm, kid=f"bench-{algorithm}") for algorithm in ("RS256", "ES256", "EdDSA")]
    provider.keys.extend(signing)

    def seconds_per_token(verifier: TokenVerifier, batch: list[str]) -> float:
        started = time.perf_counter()
        for token in batch:
            verifier.verify(token)
        return (time.perf_counter() - started) / len(batch)

    async def measure() -> dict[str, tuple[float, float]]:
        keys = SigningKeys(provider.settings())
        await keys.start()
        try:
            costs = {}
            for key in signing:
                batch = [provider.token(key=key, sub=f"user-{number}") for number in range(tokens)]
                verifiers = [TokenVerifier(provider.settings(), keys) for _ in range(3)]
                first = min(seconds_per_token(verifier, batch) for verifier in verifiers)
                again = min(seconds_per_token(verifiers[0], batch) for _ in range(3))
                costs[str(key.alg)] = (first * 1e6, again * 1e6)
            return costs
        finally:
            await keys.stop()

    return asyncio.run(measure())


{% endif -%}
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
{%- if cookiecutter.auth == "oidc" %}
    provider = start_identity_provider(project)
    header = f"Authorization: Bearer {provider.token(lifetime=3600)}"
    os.environ.update(provider.environment())  # the service trusts it
{%- endif %}
    process, base = start_service(sys.executable, args.service_args, cwd=project, cpu="0")
    try:
        ready = wait_until_ready(process, f"{base}/health/ready")
        print(
            f"ready {ready:.2f} s after start; {args.connections} connections, {args.duration:g} s per path"
        )
        print(f"{'path':<16}{'requests/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
        for path in PATHS:
{%- if cookiecutter.auth == "oidc" %}
            url = f"{base}{path}"
            result = run_wrk(
                url, duration=args.duration, connections=args.connections, cpu="1", header=header
            )
{%- else %}
            result = run_wrk(f"{base}{path}", duration=args.duration, connections=args.connections, cpu="1")
{%- endif %}
            print(
                f"{path:<16}{result.requests_per_second:>12.0f}{result.p50_ms:>10.2f}{result.p99_ms:>10.2f}"
            )
        print(f"memory (RSS) after load: {rss_mb(process.pid):.1f} MB")
        writer, chain = access_line_costs()
        print(f"access line: {writer:.1f} us by its writer, {chain:.1f} us through structlog's chain")
{%- if cookiecutter.auth == "oidc" %}
        for algorithm, (first, again) in token_verification_costs(provider).items():
            print(f"token verification, {algorithm}: {first:.1f} us the first time, {again:.2f} us again")
{%- endif %}
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
