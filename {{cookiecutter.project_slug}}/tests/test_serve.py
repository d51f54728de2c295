"""The real entrypoint as a process: it serves over HTTP and stops cleanly on a signal."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from {{ cookiecutter.package_name }}.chassis.http_server import bind_addresses
from {{ cookiecutter.package_name }}.chassis.server import ServerError, loop_factory
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX as PREFIX
from {{ cookiecutter.package_name }}.settings import (
    ManagementSettings,
    ServerSettings,
    Settings,
)
{%- if cookiecutter.auth == "oidc" %}

from .identity_provider import shared_identity_provider
{%- endif %}

START_TIMEOUT = 20.0
SERVICE_COMMAND = [sys.executable, "-m", "{{ cookiecutter.package_name }}"]
HEALTHCHECK_COMMAND = [sys.executable, "-m", "{{ cookiecutter.package_name }}.healthcheck"]
MANAGEMENT_PATHS = (
    "/health/live",
    "/health/ready",
    "/health/startup",
    "/metrics",
    "/info",
    "/openapi.json",
    "/docs",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def local_request(url: str) -> urllib.request.Request:
{%- if cookiecutter.auth == "oidc" %}
    """A GET of ``url`` with a token the service trusts (it is given no other identity provider)."""
    return urllib.request.Request(url, headers=shared_identity_provider().authorization())  # noqa: S310
{%- else %}
    return urllib.request.Request(url)  # noqa: S310 - local test server
{%- endif %}


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(local_request(url), timeout=2) as response:  # noqa: S310 - local test server
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:  # an error response is a file too; Python 3.14 warns when it is left open
            return error.code, json.load(error)


def wait_until_ready(process: subprocess.Popen[str], base_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited early with code {process.returncode}")
        try:
            if get_json(f"{base_url}/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    pytest.fail("the service did not become ready in time")


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A process with stdout and stderr merged into ``stdout``; killed at the end if still running."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def service_env(
{%- if cookiecutter.database == "postgresql" %}
    database_env: dict[str, str],
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    broker_env: dict[str, str],
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.broker != "none" %}
{% endif -%}
) -> dict[str, str]:
    """The environment of a service process on 127.0.0.1{% if cookiecutter.database == "postgresql" or cookiecutter.broker != "none" %}, using the test servers{% endif %}."""
    return {
        **os.environ,
{%- if cookiecutter.database == "postgresql" %}
        **database_env,
{%- endif %}
{%- if cookiecutter.broker != "none" %}
        **broker_env,
{%- endif %}
        f"{PREFIX}_SERVER_HOST": "127.0.0.1",
        f"{PREFIX}_SHUTDOWN_DELAY": "0.2",  # no load balancer to wait for
{%- if cookiecutter.auth == "oidc" %}
        **shared_identity_provider().environment(),
{%- endif %}
    }


@pytest.fixture(params=["uvloop", "asyncio"])
def service(
    request: pytest.FixtureRequest, service_env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The service as a real process on a free port, on each event loop."""
    port = free_port()
    env = {**service_env, f"{PREFIX}_SERVER_PORT": str(port), f"{PREFIX}_SERVER_LOOP": request.param}
    with running(SERVICE_COMMAND, env) as process:
        yield process, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_on_signal(service: tuple[subprocess.Popen[str], str], stop_signal: int) -> None:
    process, base_url = service
    wait_until_ready(process, base_url)
    assert get_json(f"{base_url}/items")[0] == 200
    process.send_signal(stop_signal)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    for line in output.splitlines():
        assert json.loads(line)["service"], line


@pytest.mark.parametrize(("loop", "expected"), [("asyncio", None), ("auto", "uvloop"), ("uvloop", "uvloop")])
def test_event_loop_setting(loop: str, expected: str | None) -> None:
    factory = loop_factory(Settings(server=ServerSettings(loop=loop)))  # type: ignore[arg-type]
    assert (None if factory is None else factory.__module__.split(".")[0]) == expected


def test_missing_uvloop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServerError, match=r"server\.loop is uvloop, but uvloop is not installed"):
        loop_factory(Settings(server=ServerSettings(loop="uvloop")))


def test_the_container_healthcheck_asks_the_local_service(service: tuple[subprocess.Popen[str], str]) -> None:
    process, base_url = service
    wait_until_ready(process, base_url)
    port = base_url.rsplit(":", 1)[1]
    env = {**os.environ, f"{PREFIX}_SERVER_PORT": port}
    module = "{{ cookiecutter.package_name }}.healthcheck"
    command = [sys.executable, "-m", module, "/health/ready"]
    assert subprocess.run(command, env=env, check=False).returncode == 0
    env[f"{PREFIX}_SERVER_PORT"] = str(free_port())  # nothing listens there
    unhealthy = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert unhealthy.returncode == 1
    assert "unhealthy" in unhealthy.stderr


def test_an_unparsable_request_gets_a_problem(service: tuple[subprocess.Popen[str], str]) -> None:
    """Hypercorn answers what it cannot parse itself; the chassis makes that a problem, and never a 5xx."""
    process, base_url = service
    wait_until_ready(process, base_url)
    port = int(base_url.rsplit(":", 1)[1])
    garbage = {
        b"GET /items HTTP/1.1\r\n\r\n": 400,  # no Host
        b"POST /items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n": 400,  # h11 would say 501
        b"GET /items HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 40_000: 431,  # still arriving
    }
    for request, status in garbage.items():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, body = answer.split(b"\r\n\r\n", 1)
        assert head.startswith(f"HTTP/1.1 {status}".encode()), answer
        assert b"content-type: application/problem+json" in head
        assert b"x-content-type-options: nosniff" in head
        assert json.loads(body)["status"] == status


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(local_request(url), timeout=2) as response:  # noqa: S310 - local test server
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def test_with_a_management_port_each_endpoint_answers_on_its_own_port_only(
    service_env: dict[str, str],
) -> None:
    api_port, management_port = free_port(), free_port()
    env = {
        **service_env,
        f"{PREFIX}_SERVER_PORT": str(api_port),
        f"{PREFIX}_MANAGEMENT_PORT": str(management_port),
    }
    api, management = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{management_port}"
    with running(SERVICE_COMMAND, env) as process:
        wait_until_ready(process, management)
        assert status_of(f"{api}/items") == 200
        status, problem = get_json(f"{management}/items")
        assert (status, problem["status"]) == (404, 404), "the API is not on the management port"
        for path in MANAGEMENT_PATHS:
            assert status_of(f"{management}{path}") == 200, path
            status, problem = get_json(f"{api}{path}")
            assert (status, problem["status"]) == (404, 404), path
        healthcheck = [*HEALTHCHECK_COMMAND, "/health/ready"]
        assert subprocess.run(healthcheck, env=env, check=False).returncode == 0, "asks the management port"


def test_the_management_port_must_differ_from_the_api_s(service_env: dict[str, str]) -> None:
    env = {**service_env, f"{PREFIX}_SERVER_PORT": "8123", f"{PREFIX}_MANAGEMENT_PORT": "8123"}
    result = subprocess.run(SERVICE_COMMAND, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()  # one log line, JSON as the others would be
    record = json.loads(line)
    assert (record["level"], record["event"]) == (
        "error",
        "invalid setting management.port = 8123: expected a port other than server.port",
    )


def test_a_worker_listens_on_the_management_port_alone_when_there_is_one() -> None:
    one_port = Settings(server=ServerSettings(host="::", port=8000))
    two_ports = dataclasses.replace(one_port, management=ManagementSettings(port=9000))
    assert bind_addresses(one_port) == bind_addresses(one_port, api=False) == ["[::]:8000"]
    assert bind_addresses(two_ports) == ["[::]:8000", "[::]:9000"]
    assert bind_addresses(two_ports, api=False) == ["[::]:9000"]
