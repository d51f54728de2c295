"""Projects with PostgreSQL and/or Redis, as rendered: each has what it chose and nothing else.

Fast: rendered without locking. Their suites run against this machine's servers elsewhere:
verified in the broker tier (PostgreSQL, Redis and RabbitMQ; PostgreSQL and NATS), where the
service also runs as a process, and on the newest Python in the pythons tier.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import render

VARIANTS = {
    "postgresql": {"database": "postgresql"},
    "redis": {"cache": "redis"},
    "both": {"database": "postgresql", "cache": "redis"},
}
BACKING = {"postgresql": ["postgres"], "redis": ["redis"], "both": ["postgres", "redis"]}
UNCHOSEN = {"postgresql": r"redis", "redis": r"postgres|sqlalchemy|alembic|asyncpg|migrat"}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    result = render(tmp_path_factory.mktemp(request.param), VARIANTS[request.param])
    assert result.returncode == 0, result.stdout + result.stderr
    return request.param, result.project()


def test_compose_publishes_the_backing_services_on_loopback_only(variant: tuple[str, Path]) -> None:
    """Their development passwords (or none, for Redis) must not be reachable from the network."""
    name, project = variant
    services = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    for backing in BACKING[name]:
        assert all(port.startswith("127.0.0.1:") for port in services[backing]["ports"]), services[backing]["ports"]


def test_the_unchosen_service_leaves_no_trace(variant: tuple[str, Path]) -> None:
    name, project = variant
    unchosen = UNCHOSEN.get(name)
    if unchosen is None:
        return
    for path in project.rglob("*"):
        if path.is_file() and not {".venv", ".git"} & set(path.parts):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not re.search(unchosen, text, re.IGNORECASE), f"{path.relative_to(project)} mentions {unchosen}"
