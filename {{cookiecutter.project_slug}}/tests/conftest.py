"""Fixtures: the app is built from test settings, never from the environment."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.chassis.lifecycle import lifecycle_of
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings


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
    """The app, started as a server would start it (startup and shutdown hooks run)."""
    app = create_app(settings)
    async with app.test_app():
        await lifecycle_of(app).wait_until_started()
        yield app


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()
