"""The generated docker-compose.yml of each variant (fast tier), checked without a container engine.

check-jsonschema validates it against its vendored compose-spec schema (offline); the service's
own ``config check`` validates the environment each of its containers gets; the rest is what
the file promises: backing services on this machine's loopback alone and healthy before the
service starts, a worker beside the API with a broker, and a top comment naming what to start
for development on the host.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from helpers import DEFAULT_PACKAGE, DEFAULT_SLUG, clean_env, free_port, get_json, render, wait_for_status

PREFIX = DEFAULT_PACKAGE.upper()
VARIANTS = {
    "plain": {},
    "backed": {"database": "postgresql", "cache": "redis"},
    "rabbitmq": {"database": "postgresql", "cache": "redis", "broker": "rabbitmq"},
    "nats": {"broker": "nats"},
    "oidc": {"auth": "oidc", "broker": "nats"},
}
# The compose service of each backing service the answers can choose.
BACKING = {("database", "postgresql"): "postgres", ("cache", "redis"): "redis",
           ("broker", "rabbitmq"): "rabbitmq", ("broker", "nats"): "nats"}  # fmt: skip


@pytest.fixture(scope="module", params=list(VARIANTS))
def project(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[str, Path]:
    result = render(tmp_path_factory.mktemp(request.param), VARIANTS[request.param])
    assert result.returncode == 0, result.stderr
    return request.param, result.project()


def services_of(project: Path) -> dict[str, Any]:
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose) == {"services"}
    return compose["services"]


def backing_services(variant: str) -> list[str]:
    return [service for answer, service in BACKING.items() if answer in VARIANTS[variant].items()]


def test_compose_file_matches_the_compose_spec(project: tuple[str, Path]) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema", "vendor.compose-spec",
         str(project[1] / "docker-compose.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_backing_services_are_on_loopback_only_and_healthy_before_the_service(project: tuple[str, Path]) -> None:
    """Their development credentials (or none) must not be reachable from the network."""
    variant, path = project
    services = services_of(path)
    backing = backing_services(variant)
    expected = {DEFAULT_SLUG, *backing}
    if "postgres" in backing:
        expected.add("migrate")
    if "broker" in VARIANTS[variant]:
        expected.add("worker")
    if "auth" in VARIANTS[variant]:
        expected.add("identity-provider")
    assert set(services) == expected
    for name in backing:
        assert services[name]["ports"], name
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), services[name]["ports"]
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # PostgreSQL through migrate, which waits for it to be healthy.
    waits_for = {name: {"condition": "service_healthy"} for name in backing if name != "postgres"}
    if "postgres" in backing:
        waits_for["migrate"] = {"condition": "service_completed_successfully"}
    if "auth" in VARIANTS[variant]:
        waits_for["identity-provider"] = {"condition": "service_healthy"}
    assert services[DEFAULT_SLUG].get("depends_on", {}) == waits_for


def test_the_top_comment_starts_what_the_host_needs(project: tuple[str, Path]) -> None:
    variant, path = project
    text = (path / "docker-compose.yml").read_text(encoding="utf-8")
    commands = [match.split() for match in re.findall(r"^# `docker compose up -d --wait ([\w -]+)`", text, re.M)]
    backing = backing_services(variant)
    assert commands == ([backing] if backing else [])


def test_with_a_broker_a_worker_runs_beside_the_api(project: tuple[str, Path]) -> None:
    variant, path = project
    services = services_of(path)
    broker = VARIANTS[variant].get("broker")
    if broker is None:
        assert "worker" not in services
        return
    api, worker = services[DEFAULT_SLUG], services["worker"]
    assert worker["image"] == api["image"]
    assert worker["command"] == ["worker"]
    assert "ports" not in worker, "it serves only probes, /info and metrics"
    assert "build" not in worker, "one build, of the API's service"
    assert api["environment"].pop(f"{PREFIX}_BROKER_CONSUME") == "false", "the worker consumes, as in production"
    assert worker["environment"] == api["environment"]
    url = urlsplit(worker["environment"][f"{PREFIX}_BROKER_URL"])
    assert (url.scheme, url.hostname) == ({"rabbitmq": "amqp", "nats": "nats"}[broker], broker)
    for key in ("depends_on", "read_only", "tmpfs", "healthcheck", "stop_grace_period"):
        assert worker[key] == api[key], key


def test_each_container_of_the_service_gets_a_valid_configuration(project: tuple[str, Path]) -> None:
    _, path = project
    services = services_of(path)
    for name in (DEFAULT_SLUG, "worker", "migrate"):
        if name not in services:
            continue
        environment = services[name]["environment"]
        assert all(isinstance(value, str) for value in environment.values()), name
        check = subprocess.run(
            [sys.executable, "-m", DEFAULT_PACKAGE, "config", "check"], cwd=path,
            env=clean_env(PYTHONPATH=str(path / "src"), **environment), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"


def test_with_oidc_the_identity_provider_for_development_runs_and_the_service_trusts_it(
    project: tuple[str, Path],
) -> None:
    """Its container's command, run here: the token it gives passes the service's own checks."""
    variant, path = project
    services = services_of(path)
    if "auth" not in VARIANTS[variant]:
        assert "identity-provider" not in services
        return
    provider, api = services["identity-provider"], services[DEFAULT_SLUG]
    assert provider["image"] == api["image"] and "build" not in provider
    assert provider["ports"] == ["127.0.0.1:9400:9400"], "it gives any token: loopback only"
    assert provider["healthcheck"]["test"][0] == "CMD"
    (volume,) = provider["volumes"]
    source, target, mode = volume.split(":")
    assert mode == "ro" and (path / source).is_file()
    command = [target if part == target else part for part in provider["entrypoint"] + provider["command"]]
    assert command[:2] == ["python3", target]
    # The container's command on this machine: the script from the project, a free port of 127.0.0.1.
    port = free_port()
    command = [sys.executable, str(path / source), *command[2:], "--port", str(port)]
    command[command.index("0.0.0.0")] = "127.0.0.1"
    environment = {**api["environment"], f"{PREFIX}_SERVER_PORT": str(free_port())}
    issuer = environment[f"{PREFIX}_AUTH_ISSUER"]
    env = clean_env(PYTHONPATH=str(path / "src"))
    with subprocess.Popen(command, cwd=path, env=env, stdout=subprocess.PIPE, text=True) as idp:
        try:
            assert idp.stdout is not None and issuer in idp.stdout.readline()
            _, discovery = get_json(f"http://127.0.0.1:{port}/.well-known/openid-configuration")
            assert discovery["issuer"] == issuer
            token = subprocess.run(
                [sys.executable, str(path / source), "token", "--port", str(port)],
                cwd=path, env=env, capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip()  # fmt: skip
            # The service as compose configures it, but finding the keys on this machine's port.
            environment[f"{PREFIX}_AUTH_JWKS_URL"] = f"http://127.0.0.1:{port}/jwks"
            environment[f"{PREFIX}_BROKER_CONSUME"] = "false"
            environment.pop(f"{PREFIX}_BROKER_URL", None)
            service = subprocess.Popen(
                [sys.executable, "-m", DEFAULT_PACKAGE, "serve"], cwd=path, env={**env, **environment},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{environment[f'{PREFIX}_SERVER_PORT']}"
                wait_for_status(service, f"{base}/health/live")
                for headers, status in (({}, 401), ({"Authorization": f"Bearer {token}"}, 404)):
                    request = urllib.request.Request(f"{base}/items/1", headers=headers)
                    with pytest.raises(urllib.error.HTTPError) as error:
                        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - 127.0.0.1
                    assert error.value.code == status, "with the token, past the check: no item 1 yet"
            finally:
                service.terminate()
                service.wait(timeout=30)
            # How compose stops a container: SIGTERM to PID 1, which has no default handler.
            idp.send_signal(signal.SIGTERM)
            assert idp.wait(timeout=10) == 0
        finally:
            idp.kill()
