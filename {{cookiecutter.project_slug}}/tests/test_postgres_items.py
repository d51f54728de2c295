"""Items in PostgreSQL: the repository, and the API on top of it, against a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.chassis.database import Database
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import ItemNameTakenError, NewItem
from {{ cookiecutter.package_name }}.services.postgres_items import PostgresItemRepository
from {{ cookiecutter.package_name }}.settings import DatabaseSettings, Settings

from .apps import create_app_from

LAMP = NewItem(name="lamp", description="A desk lamp.", price_cents=1999)
CHAIR = NewItem(name="chair", description="", price_cents=4500)


@pytest.fixture
def items(database: Database) -> PostgresItemRepository:
    return PostgresItemRepository(database)


def postgres_services(settings: DatabaseSettings) -> Services:
    """Items in PostgreSQL and nothing else (no cache), as ``build_services`` makes them."""
    database = Database(settings)
    return Services(items=PostgresItemRepository(database), backing={"database": database})


@pytest.fixture
async def db_app(migrated_database_settings: DatabaseSettings) -> AsyncIterator[Quart]:
    """The app with its items in a fresh schema of the test database."""
    settings = Settings(database=migrated_database_settings)
    app = create_app_from(settings, services=postgres_services(migrated_database_settings))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        yield app


async def test_items_are_added_read_listed_replaced_and_removed(items: PostgresItemRepository) -> None:
    lamp = await items.add(LAMP)
    chair = await items.add(CHAIR)
    assert (lamp.name, lamp.price_cents, lamp.created_at.tzinfo is not None) == ("lamp", 1999, True)
    assert await items.get(lamp.id) == lamp
    assert await items.list(limit=1, offset=1) == ([chair], 2)

    replaced = await items.replace(lamp.id, NewItem(name="floor lamp", description="", price_cents=2999))
    assert replaced is not None
    assert (replaced.id, replaced.name, replaced.created_at) == (lamp.id, "floor lamp", lamp.created_at)
    assert await items.get(lamp.id) == replaced

    assert await items.remove(lamp.id) is True
    assert await items.get(lamp.id) is None
    assert await items.remove(lamp.id) is False
    assert await items.replace(lamp.id, LAMP) is None


async def test_names_are_unique(items: PostgresItemRepository) -> None:
    await items.add(LAMP)
    chair = await items.add(CHAIR)
    with pytest.raises(ItemNameTakenError):
        await items.add(LAMP)
    with pytest.raises(ItemNameTakenError):
        await items.replace(chair.id, LAMP)
    assert (await items.list(limit=10, offset=0))[1] == 2


async def test_items_outlive_the_connection_pool(migrated_database_settings: DatabaseSettings) -> None:
    first = Database(migrated_database_settings)
    await first.start()
    added = await PostgresItemRepository(first).add(LAMP)
    await first.stop()

    second = Database(migrated_database_settings)
    await second.start()
    try:
        assert await PostgresItemRepository(second).get(added.id) == added
    finally:
        await second.stop()


async def test_the_api_stores_items_in_postgresql(db_app: Quart) -> None:
    client: QuartClient = db_app.test_client()
    created = await client.post("/items", json={"name": "lamp", "price_cents": 1999})
    assert created.status_code == 201
    item_id = (await created.get_json())["id"]

    duplicate = await client.post("/items", json={"name": "lamp", "price_cents": 1})
    assert duplicate.status_code == 409
    assert duplicate.content_type == "application/problem+json"
    assert (await duplicate.get_json())["detail"] == "An item named 'lamp' already exists."

    replaced = await client.put(f"/items/{item_id}", json={"name": "lamp", "price_cents": 2999})
    assert (await replaced.get_json())["price_cents"] == 2999
    assert (await client.get("/items")).status_code == 200
    assert (await client.delete(f"/items/{item_id}")).status_code == 204
    assert (await client.get(f"/items/{item_id}")).status_code == 404
    ready = await (await client.get("/health/ready")).get_json()
    assert ready["checks"]["database.ping"]["status"] == "UP"
