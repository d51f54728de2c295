"""Fixtures: the app is built from test settings, never from the environment.

The fixtures of optional parts (a database, a cache, a broker) live in plugin modules of their own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings

from .apps import create_test_app
{%- if cookiecutter.auth == "oidc" %}
from .identity_provider import shared_identity_provider
{%- endif %}
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" or cookiecutter.broker != "none" %}

# The fixtures of the optional parts, and the skipping of tests whose server is missing.
pytest_plugins = [
    "tests.backing_servers",
{%- if cookiecutter.database == "postgresql" %}
    "tests.database_fixtures",
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    "tests.cache_fixtures",
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    "tests.broker_fixtures",
{%- endif %}
]
{%- endif %}


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
{%- if cookiecutter.auth == "oidc" %}
    """Run each test in an empty folder with none of the service's variables set but the two with no default.

    Those name an identity provider (it is not asked: apps the tests build trust their own).
    """
    for name in list(os.environ):
        if name.startswith(f"{ENV_PREFIX}_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(f"{ENV_PREFIX}_AUTH_ISSUER", "https://idp.example.test")
    monkeypatch.setenv(f"{ENV_PREFIX}_AUTH_AUDIENCE", "https://api.example.test")
{%- else %}
    """Run each test in an empty folder with none of the service's variables set."""
    for name in list(os.environ):
        if name.startswith(f"{ENV_PREFIX}_"):
            monkeypatch.delenv(name)
{%- endif %}
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings() -> Settings:
{%- if cookiecutter.auth == "oidc" %}
    return Settings(auth=shared_identity_provider().settings())
{%- else %}
    return Settings()
{%- endif %}


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Quart]:
    """The app (items in memory), started as a server would start it (startup and shutdown hooks run)."""
    app = create_test_app(settings)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        yield app


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()
