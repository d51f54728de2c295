"""Fixtures: the app is built from test settings, never from the environment.
{%- if cookiecutter.database == "postgresql" %}

Database tests run against the PostgreSQL named by ``<PREFIX>_TEST_DATABASE_URL``,
each in a fresh schema dropped afterwards; without it they are skipped.
{%- endif %}
{%- if cookiecutter.cache == "redis" %}

Cache tests run against the Redis named by ``<PREFIX>_TEST_CACHE_URL``, each
under keys of its own; without it they are skipped.
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" %}
{% endif %}"""

from __future__ import annotations

{% if cookiecutter.database == "postgresql" -%}
import asyncio
{% endif -%}
import os
{% if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" -%}
import uuid
{% endif -%}
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
{% if cookiecutter.cache == "redis" -%}
from prometheus_client import CollectorRegistry
{% endif -%}
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient
{% if cookiecutter.database == "postgresql" -%}
from sqlalchemy import text
{% endif %}
{% if cookiecutter.cache == "redis" -%}
from {{ cookiecutter.package_name }}.chassis.cache import Cache, CacheMetrics
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from {{ cookiecutter.package_name }}.chassis.database import Database, create_engine
{% endif -%}
from {{ cookiecutter.package_name }}.chassis.lifecycle import lifecycle_of
{% if cookiecutter.database == "postgresql" -%}
from {{ cookiecutter.package_name }}.migrations import upgrade
{% endif -%}
{% if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" -%}
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
{%- if cookiecutter.cache == "redis" %}
    CacheSettings,
{%- endif %}
{%- if cookiecutter.database == "postgresql" %}
    DatabaseSettings,
{%- endif %}
    Settings,
)
{% else -%}
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings
{% endif %}
from .apps import create_test_app


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty folder with none of the service's variables set."""
    for name in list(os.environ):
        if name.startswith(f"{ENV_PREFIX}_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    """The app (items in memory), started as a server would start it (startup and shutdown hooks run)."""
    app = create_test_app(settings)
    async with app.test_app():
        await lifecycle_of(app).wait_until_started()
        yield app


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" %}


# Tests that need a server are skipped without one; the summary says how many and why.
NEEDS_SERVER: dict[str, str] = {}
{%- endif %}
{%- if cookiecutter.database == "postgresql" %}

TEST_DATABASE_URL = f"{ENV_PREFIX}_TEST_DATABASE_URL"
NEEDS_SERVER[TEST_DATABASE_URL] = (
    f"needs PostgreSQL: run `docker compose up -d --wait postgres`, then "
    f"`make test` with {TEST_DATABASE_URL}=postgresql://postgres:dev@localhost/postgres"
)


@pytest.fixture(scope="session")
def test_database_url() -> str:
    return server_url(TEST_DATABASE_URL)


@pytest.fixture
async def database_settings(test_database_url: str) -> AsyncIterator[DatabaseSettings]:
    """Settings for a fresh, empty schema in the test database; dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(DatabaseSettings(url=test_database_url))
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield DatabaseSettings(url=test_database_url, schema=schema)
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture
async def migrated_database_settings(database_settings: DatabaseSettings) -> DatabaseSettings:
    """A fresh schema, migrated to the latest migration."""
    await asyncio.to_thread(upgrade, database_settings)
    return database_settings


@pytest.fixture
async def database(migrated_database_settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = Database(migrated_database_settings)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
def database_env(migrated_database_settings: DatabaseSettings) -> dict[str, str]:
    """Environment variables that point a service process at a fresh, migrated schema."""
    return {
        f"{ENV_PREFIX}_DATABASE_URL": migrated_database_settings.url,
        f"{ENV_PREFIX}_DATABASE_SCHEMA": migrated_database_settings.schema or "",
    }
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
{%- if cookiecutter.database == "postgresql" %}
{{ "" }}
{%- endif %}

TEST_CACHE_URL = f"{ENV_PREFIX}_TEST_CACHE_URL"
NEEDS_SERVER[TEST_CACHE_URL] = (
    f"needs Redis: run `docker compose up -d --wait redis`, then "
    f"`make test` with {TEST_CACHE_URL}=redis://localhost:6379/0"
)


@pytest.fixture(scope="session")
def test_cache_url() -> str:
    return server_url(TEST_CACHE_URL)


@pytest.fixture
def cache_key_prefix() -> str:
    """A key prefix of the test's own, so tests sharing a Redis never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def cache(test_cache_url: str) -> AsyncIterator[Cache]:
    cache = Cache(CacheSettings(url=test_cache_url), metrics=CacheMetrics(CollectorRegistry()))
    await cache.start()
    yield cache
    await cache.stop()
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" %}


def server_url(variable: str) -> str:
    """The test server's URL from ``variable``; without it, skip saying how to run the test."""
    url = os.environ.get(variable)
    if not url:
        pytest.skip(NEEDS_SERVER[variable])
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    for variable, reason in NEEDS_SERVER.items():
        count = sum(1 for report in skipped if variable in str(report.longrepr))
        if count:
            terminalreporter.write_line(f"{count} tests skipped: {reason}", yellow=True, bold=True)
{%- endif %}
