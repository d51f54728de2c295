from __future__ import annotations

import platform

from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }} import (
    DISTRIBUTION_NAME,
    TEMPLATE_VERSION,
    __version__,
)
from {{ cookiecutter.package_name }}.settings import BuildSettings, Settings

from .apps import create_test_app


async def test_info_defaults_to_unknown_build(client: QuartClient) -> None:
    response = await client.get("/info")
    assert response.status_code == 200
    assert await response.get_json() == {
        "name": DISTRIBUTION_NAME,
        "version": __version__,
        "commit": "unknown",
        "build_time": "unknown",
        "python": platform.python_version(),
        "template_version": TEMPLATE_VERSION,
    }


async def test_info_shows_build_settings() -> None:
    app: Quart = create_test_app(Settings(build=BuildSettings(commit="abc1234", time="2026-01-02T03:04:05Z")))
    body = await (await app.test_client().get("/info")).get_json()
    assert (body["commit"], body["build_time"]) == ("abc1234", "2026-01-02T03:04:05Z")
