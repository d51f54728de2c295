"""The generated docker-compose.yml of each variant (fast tier), checked without a container engine.

check-jsonschema validates it against its vendored compose-spec schema (offline); the service's
own ``config check`` validates the environment each of its containers gets; the rest is what
the file promises: backing services on this machine's loopback alone and healthy before the
service starts, a worker beside the API with a broker, and a top comment naming what to start
for development on the host.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from helpers import DEFAULT_PACKAGE, DEFAULT_SLUG, clean_env, render

PREFIX = DEFAULT_PACKAGE.upper()
VARIANTS = {
    "plain": {},
    "backed": {"database": "postgresql", "cache": "redis"},
    "rabbitmq": {"database": "postgresql", "cache": "redis", "broker": "rabbitmq"},
    "nats": {"broker": "nats"},
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
    assert set(services) == expected
    for name in backing:
        assert services[name]["ports"], name
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), services[name]["ports"]
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # PostgreSQL through migrate, which waits for it to be healthy.
    waits_for = {name: {"condition": "service_healthy"} for name in backing if name != "postgres"}
    if "postgres" in backing:
        waits_for["migrate"] = {"condition": "service_completed_successfully"}
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
