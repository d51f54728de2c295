from __future__ import annotations

from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }} import DISTRIBUTION_NAME, __version__
from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.settings import Settings


async def test_index_names_the_service(client: QuartClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert await response.get_json() == {"name": DISTRIBUTION_NAME, "version": __version__}


async def test_liveness_is_up(client: QuartClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "UP"}


async def test_readiness_is_up_once_serving(client: QuartClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "UP"}


async def test_readiness_is_starting_before_serving() -> None:
    app = create_app(Settings())
    response = await app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert await response.get_json() == {"status": "STARTING"}


async def test_readiness_is_draining_after_serving() -> None:
    app = create_app(Settings())
    async with app.test_app():
        pass
    response = await app.test_client().get("/health/ready")
    assert response.status_code == 503
    assert await response.get_json() == {"status": "DRAINING"}
