"""Events and commands through a real broker: the app publishes, consumes, retries and dead-letters.

Run against the broker named by ``<PREFIX>_TEST_BROKER_URL``{% if cookiecutter.database == "postgresql" %} (and the PostgreSQL of
``<PREFIX>_TEST_DATABASE_URL``: events leave through the outbox){% endif %}; skipped without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from quart import Quart

from {{ cookiecutter.package_name }}.chassis.broker import Broker
from {{ cookiecutter.package_name }}.chassis.consumers import (
    Consumer,
    ConsumerRunner,
    RetryPolicy,
)
from {{ cookiecutter.package_name }}.chassis.events import CloudEvent
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
{%- if cookiecutter.database == "postgresql" %}
from {{ cookiecutter.package_name }}.settings import (
    BrokerSettings,
    DatabaseSettings,
    Settings,
    TracingSettings,
)
{%- else %}
from {{ cookiecutter.package_name }}.settings import (
    BrokerSettings,
    Settings,
    TracingSettings,
)
{%- endif %}

from .apps import create_app_from
from .broker_probe import BrokerProbe

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
LAMP = {"name": "lamp", "description": "A desk lamp.", "price_cents": 1999}
# Valid JSON whose id is not valid Unicode: it once broke the runner's log line and its count.
LONE_SURROGATE_ID = b'{"specversion": "1.0", "id": "x\\ud800", "source": "/t", "type": "items.create"}'


@pytest.fixture
{%- if cookiecutter.database == "postgresql" %}
async def broker_app(
    broker_settings: BrokerSettings, migrated_database_settings: DatabaseSettings, probe: BrokerProbe
) -> AsyncIterator[Quart]:
    """The app as it runs: items in PostgreSQL, events through the outbox, consumers on."""
    settings = Settings(broker=broker_settings, database=migrated_database_settings)
{%- else %}
async def broker_app(broker_settings: BrokerSettings, probe: BrokerProbe) -> AsyncIterator[Quart]:
    """The app as it runs: items in memory, events published after each change, consumers on."""
    settings = Settings(broker=broker_settings)
{%- endif %}
    app = create_app_from(settings)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await probe.watch_events()
        yield app


async def test_changes_are_published_as_cloudevents_with_the_trace_and_request_id(
    broker_app: Quart, probe: BrokerProbe
) -> None:
    client = broker_app.test_client()
    headers = {"X-Request-ID": "order-42", "traceparent": TRACEPARENT}
    created = await client.post("/items", json=LAMP, headers=headers)
    assert created.status_code == 201
    item_id = (await created.get_json())["id"]
    assert (await client.put(f"/items/{item_id}", json={**LAMP, "price_cents": 2500})).status_code == 200
    assert (await client.delete(f"/items/{item_id}")).status_code == 204

    events = [await probe.next_event() for _ in range(3)]
    assert [event["type"] for event, _ in events] == ["items.created", "items.updated", "items.deleted"]
    (created_event, created_headers), (updated_event, _), (deleted_event, _) = events
    assert created_event["specversion"] == "1.0"
    assert created_event["datacontenttype"] == "application/json"
    assert {key: created_event["data"][key] for key in LAMP} == LAMP
    assert updated_event["data"]["price_cents"] == 2500
    assert deleted_event["data"] == {"id": item_id}
    assert len({event["id"] for event, _ in events}) == 3
    assert created_headers["x-request-id"] == "order-42"
    # The publisher's span is in the caller's trace.
    assert created_headers["traceparent"].split("-")[1] == TRACE_ID


async def test_a_command_creates_an_item_once_however_often_it_is_delivered(
    broker_app: Quart, probe: BrokerProbe
) -> None:
    command = CloudEvent(type="items.create", source="/test", data=LAMP)
    await probe.send_command(command)
    await probe.send_command(command)  # delivered twice: the same command, the same id
    event, headers = await probe.next_event()
    assert (event["type"], event["data"]["name"]) == ("items.created", "lamp")
    assert "x-request-id" not in headers, "the command came without a request id: no empty header"
    await asyncio.sleep(0.5)
    page = await (await broker_app.test_client().get("/items")).get_json()
    assert page["total"] == 1


async def test_commands_with_one_id_from_two_sources_are_two_commands(
    broker_app: Quart, probe: BrokerProbe
) -> None:
    """CloudEvents makes the source and the id unique together: another sender may use the same id."""
    await probe.send_command(CloudEvent(type="items.create", source="/orders", data=LAMP, id="cmd-1"))
    chair = {**LAMP, "name": "chair"}
    await probe.send_command(CloudEvent(type="items.create", source="/returns", data=chair, id="cmd-1"))
    names = [(await probe.next_event())[0]["data"]["name"] for _ in range(2)]
    assert sorted(names) == ["chair", "lamp"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not a CloudEvent", "not a CloudEvent: the body is not JSON"),
        (CloudEvent(type="items.create", source="/t", data={"name": ""}).to_json(), "invalid data: name:"),
        (CloudEvent(type="items.explode", source="/t", data={}).to_json(), "no consumer handles the type"),
        (b"[" * (BrokerSettings().max_message_size + 1), "too large: 262145 bytes"),
        (b"[" * 1100 + b"]" * 1100, "not a CloudEvent: it nests deeper than 32 levels"),
        (LONE_SURROGATE_ID, "not a CloudEvent: its id holds control characters or invalid Unicode"),
    ],
    ids=["not-json", "invalid-data", "unknown-type", "too-large", "too-deep", "lone-surrogate"],
)
async def test_a_poison_message_is_dead_lettered_with_its_reason(
    broker_app: Quart, probe: BrokerProbe, body: bytes, reason: str
) -> None:
    await probe.send_raw(body, "items.create")
    dead_body, headers = await probe.next_dead_letter()
    assert dead_body == body
    assert str(headers["x-dead-letter-reason"]).startswith(reason)


async def test_a_command_that_cannot_succeed_is_dead_lettered_at_once(
    broker_app: Quart, probe: BrokerProbe
) -> None:
    assert (await broker_app.test_client().post("/items", json=LAMP)).status_code == 201
    await probe.send_command(CloudEvent(type="items.create", source="/test", data=LAMP))
    _, headers = await probe.next_dead_letter()
    assert headers["x-dead-letter-reason"] == "an item named 'lamp' already exists"


async def test_readiness_checks_the_broker(broker_app: Quart) -> None:
    response = await broker_app.test_client().get("/health/ready")
    assert response.status_code == 200
    assert (await response.get_json())["checks"]["broker.connection"]["status"] == "UP"


class Attempt(BaseModel):
    n: int


async def test_a_failing_handler_is_delivered_max_deliveries_times_then_dead_lettered(
    broker: Broker, broker_settings: BrokerSettings, probe: BrokerProbe
) -> None:
    attempts: list[int] = []
    failed = asyncio.Event()

    async def fail(_data: Attempt, _services: Any) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == broker_settings.max_deliveries:
            failed.set()
        raise RuntimeError("the printer is on fire")

    runner = ConsumerRunner(
        broker,
        [Consumer("items.create", Attempt, fail, summary="Fails.")],
        None,
        inbox=_NoInbox(),
        retries=RetryPolicy(broker_settings.max_deliveries, broker_settings.retry_delay),
        max_message_size=broker_settings.max_message_size,
        metrics=MessageMetrics(CollectorRegistry()),
        tracing=Tracing(TracingSettings(), service="test", version="0"),
    )
    await runner.start()
    try:
        await probe.send_command(CloudEvent(type="items.create", source="/test", data={"n": 1}))
        _, headers = await probe.next_dead_letter()
    finally:
        await runner.stop()
    assert attempts == list(range(1, broker_settings.max_deliveries + 1))
    assert headers["x-dead-letter-reason"] == "RuntimeError: the printer is on fire"


class _NoInbox:
    """Every delivery is new: this test counts deliveries, not handlings."""

    def once(self, consumer: str, source: str, event_id: str) -> contextlib.nullcontext[bool]:
        return contextlib.nullcontext(True)
