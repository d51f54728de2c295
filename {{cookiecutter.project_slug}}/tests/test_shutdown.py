"""Graceful shutdown of the real process, on both event loops.

A stop signal turns readiness to 503 at once; after ``shutdown.delay`` the port is
closed; requests in flight still complete; the process exits 0.  Neither an idle
keep-alive connection nor a client that sends its body slowly holds the process
past the grace period.  A second signal exits at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX as PREFIX

{% if cookiecutter.auth == "oidc" -%}
from .identity_provider import shared_identity_provider
{% endif -%}
from .test_serve import free_port, get_json, running, wait_until_ready

DELAY = 1.0
SLOW_SECONDS = 3.0
IN_FLIGHT = 20

# The service with one extra, slow endpoint: the same entrypoint code, used as a library.
SLOW_SERVICE = textwrap.dedent(
    """
    import asyncio
    import os
    import sys

    from quart import Quart, request

    from {{ cookiecutter.package_name }} import DISTRIBUTION_NAME, __version__
    from {{ cookiecutter.package_name }}.app import create_app
    from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle, Resource
    from {{ cookiecutter.package_name }}.chassis.parts import part_of
    from {{ cookiecutter.package_name }}.chassis.logging import configure_logging
    from {{ cookiecutter.package_name }}.chassis.server import serve
    from {{ cookiecutter.package_name }}.services import Services
    from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository
    from {{ cookiecutter.package_name }}.settings import Settings, load_settings


    class Unreachable(Resource):
        async def start(self) -> None:
            raise ConnectionError("broker.invalid:5672 refused the connection")


    def app_with_slow_endpoint(settings: Settings) -> Quart:
        configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
        app = create_app(settings, services=Services(items=InMemoryItemRepository()))
        if os.environ.get("FAIL_TO_START"):
            part_of(app, Lifecycle).add("broker", Unreachable())

        async def slow() -> dict[str, float]:
            seconds = float(request.args["seconds"])
            await asyncio.sleep(seconds)
            return {"slept": seconds}

        app.add_url_rule("/slow", "slow", slow)
        return app


    if __name__ == "__main__":  # worker processes import this module too
        settings = load_settings().settings
        configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
        sys.exit(serve(app_with_slow_endpoint, settings))
    """
)


@contextlib.contextmanager
def slow_service_running(tmp_path: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The service with its slow endpoint as a process on a free port; settings by name: shutdown_delay=..."""
    port = free_port()
    with running(*slow_service_command(tmp_path, port, **settings)) as process:
        yield process, port


def slow_service_command(tmp_path: Path, port: int, **settings: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run the service with its slow endpoint on ``port``."""
    script = tmp_path / "slow_service.py"
    script.write_text(SLOW_SERVICE, encoding="utf-8")
    env = {
        **os.environ,
        f"{PREFIX}_SERVER_HOST": "127.0.0.1",
        f"{PREFIX}_SERVER_PORT": str(port),
        **{f"{PREFIX}_{name.upper()}": value for name, value in settings.items()},
{%- if cookiecutter.auth == "oidc" %}
        **shared_identity_provider().environment(),
{%- endif %}
    }
    return [sys.executable, str(script)], env


@pytest.fixture(params=["uvloop", "asyncio"])
def slow_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    settings = {"server_loop": request.param, "shutdown_delay": str(DELAY), "shutdown_grace_period": "10"}
    with slow_service_running(tmp_path, **settings) as (process, port):
        yield process, f"http://127.0.0.1:{port}"


def test_a_resource_that_fails_to_start_stops_the_process(tmp_path: Path) -> None:
    command, env = slow_service_command(tmp_path, free_port())
    result = subprocess.run(
        command,
        env={**env, "FAIL_TO_START": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    failure = [line for line in result.stdout.splitlines() if "startup failed" in line]
    assert len(failure) == 1, result.stdout
    assert "broker" in failure[0]
    assert "refused the connection" in failure[0]


def slow_request(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/slow?seconds={SLOW_SECONDS}", timeout=30) as response:  # noqa: S310
        status: int = response.status
        return status


def connection_refused(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_in_flight_requests_complete_across_sigterm(slow_service: tuple[subprocess.Popen[str], str]) -> None:
    process, base_url = slow_service
    wait_until_ready(process, base_url)
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        in_flight = [pool.submit(slow_request, base_url) for _ in range(IN_FLIGHT)]
        time.sleep(0.5)  # let every request reach the handler
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)

        # During the delay: the port is open, and readiness says to stop sending traffic.
        assert get_json(f"{base_url}/health/ready") == (503, {"status": "DRAINING", "checks": {}})
        assert not connection_refused(base_url)
        # After it: new connections are refused while the in-flight requests still run.
        while not connection_refused(base_url):
            assert time.monotonic() - signalled < DELAY + 1.5, "the port was not closed after the delay"
            time.sleep(0.05)
        assert time.monotonic() - signalled >= DELAY
        assert process.poll() is None, "the service is still draining"
        assert not any(request.done() for request in in_flight)

        statuses = [request.result() for request in in_flight]
    assert statuses == [200] * IN_FLIGHT
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_a_second_signal_exits_at_once(slow_service: tuple[subprocess.Popen[str], str]) -> None:
    process, base_url = slow_service
    wait_until_ready(process, base_url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow_request, base_url)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        signalled_again = time.monotonic()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
        assert time.monotonic() - signalled_again < 2
        assert process.returncode == 1
        assert "second stop signal" in output
        with pytest.raises(ConnectionError):  # the connection was dropped, not answered
            pending.result()


def open_idle_connection(port: int) -> socket.socket:
    """A keep-alive connection that has had its answer and now sends nothing."""
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    return idle


def start_slow_upload(port: int) -> socket.socket:
    """A request whose body will arrive a byte at a time, and never in full."""
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow.sendall(
        b"POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
{%- if cookiecutter.auth == "oidc" %}
        + f"Authorization: Bearer {shared_identity_provider().token()}\r\n".encode()
        + b"Content-Length: 100000\r\n\r\n{"
{%- else %}
        b"Content-Length: 100000\r\n\r\n{"
{%- endif %}
    )
    slow.settimeout(0.05)
    return slow


def trickle_until_exit(process: subprocess.Popen[str], slow: socket.socket, limit: float) -> bytes:
    """Send the slow body a byte every 0.1 s until the process exits; return what the client got."""
    answer = b""
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # the server may close or reset the connection
            slow.sendall(b" ")
        with contextlib.suppress(TimeoutError, OSError):
            answer += slow.recv(4096)
        time.sleep(0.05)
    return answer


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_idle_and_slow_clients_do_not_hold_the_stop(tmp_path: Path, loop: str) -> None:
    """Exit 0 within shutdown.delay + shutdown.grace_period + resources.stop_timeout (plus a second).

    The slow client is answered 503 when the grace period ends; the handler's own time limit
    (http.request_timeout) is far longer, so only the grace period can end it in time.
    """
    delay, grace_period, stop_timeout = 0.1, 0.5, 0.5
    settings = {
        "server_loop": loop,
        "shutdown_delay": str(delay),
        "shutdown_grace_period": str(grace_period),
        "resources_stop_timeout": str(stop_timeout),
        "http_request_timeout": "60",
    }
    limit = delay + grace_period + stop_timeout + 1
    with slow_service_running(tmp_path, **settings) as (process, port):
        wait_until_ready(process, f"http://127.0.0.1:{port}")
        with open_idle_connection(port), start_slow_upload(port) as slow:
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            answer = trickle_until_exit(process, slow, limit + 5)
            stopped_in = time.monotonic() - signalled
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert stopped_in < limit, f"stopped in {stopped_in:.1f} s"
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"application/problem+json" in answer
    assert "Traceback" not in output


def test_a_stop_signal_to_the_whole_group_drains_every_worker_once(tmp_path: Path) -> None:
    """Ctrl+C in a terminal (or systemd's control-group kill) reaches the supervisor and each worker."""
    port = free_port()
    command, env = slow_service_command(
        tmp_path, port, server_workers="2", shutdown_delay="0.2", metrics_multiprocess_root=str(tmp_path)
    )
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready = 0
        for line in process.stdout:  # readiness over HTTP proves only one worker; wait for both
            ready += json.loads(line)["event"] == "service ready"
            if ready == 2:
                break
        wait_until_ready(process, f"http://127.0.0.1:{port}")
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert output.count('"event": "server stopped"') == 2, output
    assert "second stop signal" not in output
