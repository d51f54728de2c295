"""Cache-aside for items: reads by id come from Redis when they can, writes invalidate."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from quart.typing import TestClientProtocol as QuartClient
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.chassis.cache import Cache, CacheMetrics
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.cached_items import CachedItemRepository
from {{ cookiecutter.package_name }}.services.items import (
    InMemoryItemRepository,
    Item,
    NewItem,
)
from {{ cookiecutter.package_name }}.settings import CacheSettings, Settings

from .apps import create_app_from
from .test_cache import unreachable_cache_url

LAMP = NewItem(name="lamp", description="A desk lamp.", price_cents=1999)
TTL = 60


class CountingRepository(InMemoryItemRepository):
    """Items in memory, counting the reads that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, item_id: int) -> Item | None:
        self.reads += 1
        return await super().get(item_id)


@pytest.fixture
def behind() -> CountingRepository:
    return CountingRepository()


@pytest.fixture
def items(behind: CountingRepository, cache: Cache, cache_key_prefix: str) -> CachedItemRepository:
    return CachedItemRepository(behind, cache, ttl=TTL, key_prefix=cache_key_prefix)


@pytest.fixture
async def redis(test_cache_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(test_cache_url)
    yield client
    await client.aclose()


async def test_a_read_is_cached_with_its_ttl(
    items: CachedItemRepository, behind: CountingRepository, redis: Redis, cache_key_prefix: str
) -> None:
    lamp = await items.add(LAMP)
    assert await items.get(lamp.id) == lamp
    assert await items.get(lamp.id) == lamp
    assert behind.reads == 1
    assert 0 < await redis.ttl(f"{cache_key_prefix}:item:{lamp.id}") <= TTL


async def test_writes_invalidate_the_cached_copy(
    items: CachedItemRepository, behind: CountingRepository
) -> None:
    lamp = await items.add(LAMP)
    await items.get(lamp.id)
    replaced = await items.replace(lamp.id, dataclasses.replace(LAMP, price_cents=2999))
    assert await items.get(lamp.id) == replaced
    assert await items.remove(lamp.id) is True
    assert await items.get(lamp.id) is None
    assert behind.reads == 3


async def test_a_value_this_version_cannot_read_is_a_miss(
    items: CachedItemRepository, behind: CountingRepository, redis: Redis, cache_key_prefix: str
) -> None:
    lamp = await items.add(LAMP)
    await redis.set(f"{cache_key_prefix}:item:{lamp.id}", b'{"shape": "old"}', ex=TTL)
    assert await items.get(lamp.id) == lamp
    assert behind.reads == 1


async def test_reads_go_to_the_repository_while_the_cache_is_down(behind: CountingRepository) -> None:
    registry = CollectorRegistry()
    settings = CacheSettings(url=unreachable_cache_url(), timeout=0.2)
    cache = Cache(settings, metrics=CacheMetrics(registry))
    items = CachedItemRepository(behind, cache, ttl=TTL, key_prefix="test")
    app = create_app_from(Settings(cache=settings), services=Services(items=items, backing={"cache": cache}))
    client: QuartClient = app.test_client()
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        created = await client.post("/items", json={"name": "lamp", "price_cents": 1999})
        item_id = (await created.get_json())["id"]
        assert (await client.get(f"/items/{item_id}")).status_code == 200
        assert (
            await client.put(f"/items/{item_id}", json={"name": "lamp", "price_cents": 1})
        ).status_code == 200
        ready = await client.get("/health/ready")
        body = await ready.get_json()
    assert ready.status_code == 200, "a cache outage must not take the service out of the load balancer"
    assert body["checks"]["cache.ping"]["status"] == "DOWN"
    assert behind.reads == 1
    assert registry.get_sample_value("cache_errors_total", {"operation": "get"}) == 1
