"""The consumer runner: acknowledged after success, deduplicated, retried, dead-lettered, drained.

A fake delivery stands in for the broker's message; the broker tests use the real one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.chassis import consumers
from {{ cookiecutter.package_name }}.chassis.consumers import (
    CommandRejectedError,
    Consumer,
    ConsumerRunner,
    Delivery,
    RetryPolicy,
)
from {{ cookiecutter.package_name }}.chassis.events import CloudEvent
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.consumers import CONSUMERS
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository
from {{ cookiecutter.package_name }}.settings import TracingSettings

MAX_DELIVERIES = 3
MAX_MESSAGE_SIZE = 4096


class Greeting(BaseModel):
    name: str


@dataclasses.dataclass
class FakeDelivery:
    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    deliveries: int = 1
    outcome: str | None = None
    reason: str | None = None
    retry_delay: float | None = None

    async def ack(self) -> None:
        self.outcome = "ack"

    async def retry(self, delay: float) -> None:
        self.outcome, self.retry_delay = "retry", delay

    async def dead_letter(self, reason: str) -> None:
        self.outcome, self.reason = "dead_letter", reason


class FakeSource:
    def __init__(self) -> None:
        self.handle: Callable[[Delivery], Awaitable[None]] | None = None
        self.stopped = False

    async def consume(self, handle: Callable[[Delivery], Awaitable[None]]) -> None:
        self.handle = handle

    async def stop_consuming(self) -> None:
        self.stopped = True


class FakeInbox:
    """The inbox's contract: an event is new until a handling of it succeeded."""

    def __init__(self) -> None:
        self.handled: set[tuple[str, str, str]] = set()

    @asynccontextmanager
    async def once(self, consumer: str, source: str, event_id: str) -> AsyncIterator[bool]:
        key = (consumer, source, event_id)
        yield key not in self.handled
        self.handled.add(key)


def command(data: Any, *, type_: str = "greet", event_id: str = "cmd-1") -> bytes:
    return CloudEvent(type=type_, source="/test", data=data, id=event_id).to_json()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_runner(
    handle: Callable[[Greeting, Any], Awaitable[None]], registry: CollectorRegistry
) -> tuple[ConsumerRunner[Any], FakeSource]:
    source = FakeSource()
    runner = ConsumerRunner(
        source,
        [Consumer("greet", Greeting, handle, summary="Greet someone.")],
        services=None,
        inbox=FakeInbox(),
        retries=RetryPolicy(MAX_DELIVERIES, first_delay=0.5),
        max_message_size=MAX_MESSAGE_SIZE,
        metrics=MessageMetrics(registry),
        tracing=Tracing(TracingSettings(), service="test", version="0"),
    )
    return runner, source


def consumed(registry: CollectorRegistry, outcome: str, consumer: str = "greet") -> float:
    value = registry.get_sample_value("messages_consumed_total", {"consumer": consumer, "outcome": outcome})
    return value or 0.0


async def test_a_handled_command_is_acknowledged_once_even_when_delivered_again(
    registry: CollectorRegistry,
) -> None:
    greeted: list[str] = []

    async def greet(data: Greeting, _services: Any) -> None:
        greeted.append(data.name)

    runner, _ = make_runner(greet, registry)
    first, again = (
        FakeDelivery(command({"name": "Ada"})),
        FakeDelivery(command({"name": "Ada"}), deliveries=2),
    )
    await runner.handle(first)
    await runner.handle(again)
    assert (first.outcome, again.outcome) == ("ack", "ack")
    assert greeted == ["Ada"]
    assert (consumed(registry, "handled"), consumed(registry, "duplicate")) == (1, 1)


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(consumers, "report_error", lambda error, **tags: reported.append((str(error), tags)))

    async def fail(_data: Greeting, _services: Any) -> None:
        raise RuntimeError("the printer is on fire")

    runner, _ = make_runner(fail, registry)
    deliveries = [FakeDelivery(command({"name": "Ada"}), deliveries=n) for n in range(1, MAX_DELIVERIES + 1)]
    for delivery in deliveries:
        await runner.handle(delivery)
    assert [d.outcome for d in deliveries] == ["retry", "retry", "dead_letter"]
    assert [d.retry_delay for d in deliveries[:2]] == [0.5, 1.0]
    assert deliveries[-1].reason == "RuntimeError: the printer is on fire"
    assert consumed(registry, "retried") == 2
    [(error, tags)] = reported  # the last failure only, as error tracking should see it
    assert (error, tags["consumer"]) == ("the printer is on fire", "greet")


async def test_a_failed_handling_is_not_remembered_as_handled(registry: CollectorRegistry) -> None:
    calls: list[int] = []

    async def fail_once(_data: Greeting, _services: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("not yet")

    runner, _ = make_runner(fail_once, registry)
    await runner.handle(FakeDelivery(command({"name": "Ada"})))
    retried = FakeDelivery(command({"name": "Ada"}), deliveries=2)
    await runner.handle(retried)
    assert retried.outcome == "ack"
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00garbage", "not a CloudEvent: the body is not JSON"),
        (command({"name": "Ada"}, type_="dance"), "no consumer handles the type 'dance'"),
        (command({"name": 7}), "invalid data: name: Input should be a valid string"),
        (command(None), "invalid data: data: Input should be a valid dictionary"),
    ],
)
async def test_a_message_that_can_never_succeed_is_dead_lettered_at_once(
    registry: CollectorRegistry, body: bytes, reason: str
) -> None:
    async def greet(_data: Greeting, _services: Any) -> None:
        raise AssertionError("the handler must not run")

    runner, _ = make_runner(greet, registry)
    delivery = FakeDelivery(body)
    await runner.handle(delivery)
    assert delivery.outcome == "dead_letter"
    assert delivery.reason is not None
    assert delivery.reason.startswith(reason)


async def test_a_message_larger_than_the_limit_is_dead_lettered_unread(registry: CollectorRegistry) -> None:
    greeted: list[str] = []

    async def greet(data: Greeting, _services: Any) -> None:
        greeted.append(data.name)

    runner, _ = make_runner(greet, registry)
    at_the_limit = command({"name": "Ada"}).replace(b'"Ada"', b'"Ada' + b" " * 4096 + b'"')
    at_the_limit = at_the_limit.replace(b" " * (len(at_the_limit) - MAX_MESSAGE_SIZE), b"", 1)
    assert len(at_the_limit) == MAX_MESSAGE_SIZE
    fits, too_large = FakeDelivery(at_the_limit), FakeDelivery(at_the_limit + b" ")
    await runner.handle(fits)
    await runner.handle(too_large)
    assert (fits.outcome, len(greeted)) == ("ack", 1)
    assert (too_large.outcome, too_large.reason) == (
        "dead_letter",
        f"too large: {MAX_MESSAGE_SIZE + 1} bytes, more than broker.max_message_size (4096)",
    )
    assert consumed(registry, "dead_lettered", consumer="<unknown>") == 1


async def test_a_rejected_command_is_dead_lettered_without_retries(registry: CollectorRegistry) -> None:
    async def reject(_data: Greeting, _services: Any) -> None:
        raise CommandRejectedError("Ada is not here")

    runner, _ = make_runner(reject, registry)
    delivery = FakeDelivery(command({"name": "Ada"}))
    await runner.handle(delivery)
    assert (delivery.outcome, delivery.reason) == ("dead_letter", "Ada is not here")


async def test_a_message_delivered_too_often_without_an_outcome_is_dead_lettered_unrun(
    registry: CollectorRegistry,
) -> None:
    """The process died handling it each time (it never got to settle it): it must not run again."""

    async def greet(_data: Greeting, _services: Any) -> None:
        raise AssertionError("the handler must not run")

    runner, _ = make_runner(greet, registry)
    delivery = FakeDelivery(command({"name": "Ada"}), deliveries=MAX_DELIVERIES + 1)
    await runner.handle(delivery)
    assert delivery.outcome == "dead_letter"
    assert delivery.reason == f"delivered {MAX_DELIVERIES + 1} times without an outcome"


async def test_a_message_delivered_too_often_is_dead_lettered_before_it_is_read(
    registry: CollectorRegistry,
) -> None:
    """A message whose reading killed the processes must not be read again."""

    async def greet(_data: Greeting, _services: Any) -> None:
        raise AssertionError("the handler must not run")

    runner, _ = make_runner(greet, registry)
    delivery = FakeDelivery(b"[" * 2000 + b"]" * 2000, deliveries=MAX_DELIVERIES + 1)
    await runner.handle(delivery)
    assert (delivery.outcome, delivery.reason) == (
        "dead_letter",
        f"delivered {MAX_DELIVERIES + 1} times without an outcome",
    )


async def test_stopping_never_waits_for_a_message_whose_log_line_failed(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def greet(_data: Greeting, _services: Any) -> None:
        pass

    def unwritable(**_fields: Any) -> None:
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

    runner, _ = make_runner(greet, registry)
    monkeypatch.setattr(runner, "_handled_line", unwritable)
    with pytest.raises(UnicodeEncodeError):
        await runner.handle(FakeDelivery(command({"name": "Ada"})))
    await asyncio.wait_for(runner.stop(), timeout=1)


async def test_stopping_waits_for_the_messages_being_handled(registry: CollectorRegistry) -> None:
    release = asyncio.Event()

    async def slow(_data: Greeting, _services: Any) -> None:
        await release.wait()

    runner, source = make_runner(slow, registry)
    await runner.start()
    delivery = FakeDelivery(command({"name": "Ada"}))
    handling = asyncio.create_task(runner.handle(delivery))
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(runner.stop())
    await asyncio.sleep(0.05)
    assert source.stopped, "no new deliveries once stopping"
    assert not stopping.done(), "the handler is still running"
    release.set()
    await asyncio.wait_for(stopping, 5)
    await handling
    assert delivery.outcome == "ack"


async def test_the_items_create_command_creates_an_item() -> None:
    items = InMemoryItemRepository()
    (create,) = [consumer for consumer in CONSUMERS if consumer.command == "items.create"]
    data = create.data.model_validate({"name": "lamp", "price_cents": 1999})
    await create.handle(data, Services(items=items))
    (item,), _ = await items.list(limit=10, offset=0)
    assert (item.name, item.price_cents) == ("lamp", 1999)
    with pytest.raises(CommandRejectedError, match="already exists"):
        await create.handle(data, Services(items=items))
