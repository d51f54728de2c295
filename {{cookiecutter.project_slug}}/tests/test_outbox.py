"""The transactional outbox and its relay, against a real PostgreSQL (a fake broker).

Events exist exactly when their change committed; the relay publishes them once the
broker took them, keeps them when it did not, and replicas never publish a row twice
at once (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from {{ cookiecutter.package_name }}.chassis.database import Database
from {{ cookiecutter.package_name }}.chassis.events import CloudEvent
from {{ cookiecutter.package_name }}.chassis.outbox import (
    Outbox,
    OutboxMetrics,
    OutboxRelay,
)
from {{ cookiecutter.package_name }}.models import OutboxRow
from {{ cookiecutter.package_name }}.services.items import ItemNameTakenError, NewItem
from {{ cookiecutter.package_name }}.services.outbox_items import OutboxItemRepository
from {{ cookiecutter.package_name }}.services.postgres_items import PostgresItemRepository

LAMP = NewItem(name="lamp", description="A desk lamp.", price_cents=1999)


class FakeBroker:
    """Takes events (after ``delay`` seconds), or refuses them while ``down``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.published: list[CloudEvent] = []
        self.took_one = asyncio.Event()
        self.down = False
        self.delay = delay

    async def publish(self, event: CloudEvent) -> None:
        await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionError("the broker is away")
        self.published.append(event)
        self.took_one.set()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def items(database: Database, outbox: Outbox) -> OutboxItemRepository:
    return OutboxItemRepository(PostgresItemRepository(database), database, outbox)


async def waiting(database: Database) -> list[OutboxRow]:
    async with database.session() as session:
        return list((await session.scalars(select(OutboxRow).order_by(OutboxRow.id))).all())


def relay_of(
    database: Database, outbox: Outbox, broker: FakeBroker, registry: CollectorRegistry
) -> OutboxRelay:
    return OutboxRelay(database, outbox, broker, interval=0.05, metrics=OutboxMetrics(registry))


async def test_each_change_writes_its_event_in_its_own_transaction(
    items: OutboxItemRepository, database: Database
) -> None:
    lamp = await items.add(LAMP)
    await items.replace(lamp.id, NewItem(name="lamp", description="", price_cents=1))
    await items.remove(lamp.id)
    assert not await items.remove(lamp.id), "no change, no event"
    assert [row.type for row in await waiting(database)] == [
        "items.created",
        "items.updated",
        "items.deleted",
    ]


async def test_a_change_that_fails_writes_no_event(items: OutboxItemRepository, database: Database) -> None:
    await items.add(LAMP)
    with pytest.raises(ItemNameTakenError):
        await items.add(LAMP)
    assert len(await waiting(database)) == 1


async def test_a_rolled_back_transaction_leaves_no_event(
    items: OutboxItemRepository, database: Database
) -> None:
    async def add_then_fail() -> None:
        async with database.transaction():
            await items.add(LAMP)
            raise RuntimeError("the rest of the work failed")

    with pytest.raises(RuntimeError):
        await add_then_fail()
    assert await waiting(database) == []
    assert (await items.list(limit=10, offset=0))[1] == 0


async def test_the_relay_publishes_in_order_keeps_ids_and_empties_the_outbox(
    items: OutboxItemRepository, database: Database, outbox: Outbox
) -> None:
    broker, registry = FakeBroker(), CollectorRegistry()
    lamp = await items.add(LAMP)
    await items.remove(lamp.id)
    event_ids = [row.event_id for row in await waiting(database)]
    relay = relay_of(database, outbox, broker, registry)
    assert await relay.relay() == 2
    assert [event.id for event in broker.published] == event_ids
    assert [event.type for event in broker.published] == ["items.created", "items.deleted"]
    assert broker.published[0].data["name"] == "lamp"
    assert await waiting(database) == []


async def test_events_wait_in_the_outbox_while_the_broker_is_away(
    items: OutboxItemRepository, database: Database, outbox: Outbox
) -> None:
    broker, registry = FakeBroker(), CollectorRegistry()
    relay = relay_of(database, outbox, broker, registry)
    broker.down = True
    await items.add(LAMP)
    with pytest.raises(ConnectionError):
        await relay.relay()
    await relay.measure()
    assert registry.get_sample_value("outbox_backlog") == 1
    assert (registry.get_sample_value("outbox_oldest_age_seconds") or 0) >= 0
    broker.down = False
    assert await relay.relay() == 1
    await relay.measure()
    assert registry.get_sample_value("outbox_backlog") == 0


async def test_a_running_relay_publishes_what_is_written_without_waiting_for_its_interval(
    items: OutboxItemRepository, database: Database, outbox: Outbox
) -> None:
    broker = FakeBroker()
    relay = OutboxRelay(database, outbox, broker, interval=30, metrics=OutboxMetrics(CollectorRegistry()))
    await relay.start()
    try:
        await items.add(LAMP)
        await asyncio.wait_for(broker.took_one.wait(), 5)
    finally:
        await relay.stop()
    assert [event.type for event in broker.published] == ["items.created"]


@pytest.fixture
async def second_database(database: Database) -> AsyncIterator[Database]:
    """Another pool on the same schema: another replica of the service."""
    other = Database(database._settings)
    await other.start()
    yield other
    await other.stop()


async def test_replicas_relay_each_event_once(
    items: OutboxItemRepository, database: Database, second_database: Database, outbox: Outbox
) -> None:
    for number in range(20):
        await items.add(NewItem(name=f"item {number}", description="", price_cents=number))
    slow = FakeBroker(delay=0.01)
    relays = [
        relay_of(database, outbox, slow, CollectorRegistry()),
        relay_of(second_database, Outbox(), slow, CollectorRegistry()),
    ]
    while await waiting(database):
        await asyncio.gather(*(relay.relay() for relay in relays))
    ids = [event.id for event in slow.published]
    assert len(ids) == 20
    assert len(set(ids)) == 20, "no event was published by both replicas"
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 0
