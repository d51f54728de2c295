"""Messages through the broker: the chassis against FastStream and a bare client, part of ``make bench``.

Four rows, the same messages through the same broker, their rounds alternating in one run
(bare, FastStream, FastStream lean, chassis, bare...) so machine noise hits them alike.  Each
round publishes ``--messages`` messages of ``--size`` bytes from ``--publishers`` concurrent
tasks, each waiting for its message's confirmation, at most ``--window`` of them not yet
handled, and consumes them with ``--prefetch`` messages in flight:
{%- if cookiecutter.broker == "rabbitmq" %}

- bare: aio-pika alone, through a topic exchange and quorum queue of the same kind as the
  chassis': the same messages (bodies and headers) published persistent with confirms, each
  decoded and acknowledged in a task of its own, as aio-pika runs its consumers;
- faststream: FastStream (``faststream[rabbit]``, on aio-pika too) with its defaults: the
  handler takes a pydantic model, which fast-depends validates, a "Received" and a
  "Processed" log line per message (to /dev/null), acknowledged after the handler returned
  (its default ``AckPolicy.REJECT_ON_ERROR``);
- faststream-lean: FastStream at its best: no log lines (``logger=None``) and no
  validation (``apply_types=False``, the handler takes the decoded JSON);
- chassis: ``Broker.publish`` (a CloudEvent) -> the events exchange -> the commands queue
  (bound to it for the bench) -> ``ConsumerRunner``, as production runs it: the CloudEvent
  parsed and its data validated, a consumer span (no exporter), one JSON log line per
  message (to /dev/null), metrics, the inbox, acknowledged after the handler succeeded.
{%- else %}

- bare: nats-py alone, through a work-queue stream of the same kind as the chassis': the same
  messages (bodies and headers) published with JetStream acknowledgements, pulled, each
  decoded and acknowledged in a task of its own (as the chassis, it handles a pull at once);
- faststream: FastStream (``faststream[nats]``, on nats-py too) with its defaults, pulling
  as the others do: the handler takes a pydantic model, which fast-depends validates, a
  "Received" and a "Processed" log line per message (to /dev/null), acknowledged after the
  handler returned (its default ``AckPolicy.REJECT_ON_ERROR``);
- faststream-lean: FastStream at its best: no log lines (``logger=None``) and no
  validation (``apply_types=False``, the handler takes the decoded JSON);
- chassis: ``Broker.publish`` (a CloudEvent, to the commands' subjects for the bench) -> the
  commands stream -> ``ConsumerRunner``, as production runs it: the CloudEvent parsed and
  its data validated, a consumer span (no exporter), one JSON log line per message (to
  /dev/null), metrics, the inbox, acknowledged after the handler succeeded.
{%- endif %}

The messages are the same on the wire (FastStream's say ``application/json``, the content
type it decodes), so the broker and the client library do the same work on every row: what
differs is the code around the handler.  Two handlers, each a column of the table:

- no-op: does nothing; the chassis checks its inbox (in memory), the others none;
{%- if cookiecutter.database == "postgresql" %}
- real: what ``consumers/items_create.py`` does: one PostgreSQL transaction that claims the
  event in the inbox, inserts the item and its event's outbox row.  Every row runs this same
  code (the project's repositories and inbox), in a schema of its own (``bench_<hex>`` in
  ``--database-url``), dropped at the end; ``--no-real`` leaves it out.
{%- else %}
- real: absent, as this project has no database (the example's transaction needs one).
{%- endif %}

Each round gives messages/s from the first publish to the last acknowledgement, the p50 and
p99 of each message's time from publish to handled, and this process's CPU time per message
(publishing and consuming).  The medians make the table; the ratios follow, with the targets
the chassis is held to (no-op: at least FastStream's default throughput, within 10% of
FastStream lean's; real: at least 0.90 of the bare client's), but nothing fails on them: a
shared machine's figures vary.  Last, where the chassis' CPU over the bare client goes, part by
part, each part measured on its own, in this process, on one message.

It connects to ``--broker-url``, by default the variable
``{{ cookiecutter.package_name | upper }}_BROKER_URL``
or else the setting's default, and creates everything in a namespace of its own,
``bench-<hex>``, deleted at the end, also when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

{% if cookiecutter.broker == "rabbitmq" -%}
import aio_pika
from faststream.rabbit import Channel, ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
{% else -%}
import nats
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
{% endif -%}
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, create_model
{%- if cookiecutter.database == "postgresql" %}
from sqlalchemy import text
{%- endif %}

from {{ cookiecutter.package_name }}.chassis.broker import Broker
from {{ cookiecutter.package_name }}.chassis.consumers import (
    Consumer,
    ConsumerRunner,
    Delivery,
    Inbox,
    RetryPolicy,
)
{%- if cookiecutter.database == "postgresql" %}
from {{ cookiecutter.package_name }}.chassis.database import Database, create_engine
{%- endif %}
from {{ cookiecutter.package_name }}.chassis.events import (
    CONTENT_TYPE,
    CloudEvent,
    parse_event,
)
{%- if cookiecutter.database == "postgresql" %}
from {{ cookiecutter.package_name }}.chassis.inbox import DatabaseInbox
{%- endif %}
from {{ cookiecutter.package_name }}.chassis.logging import (
    RequestFields,
    bind_request_fields,
    configure_logging,
    frequent_line,
)
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
{%- if cookiecutter.database == "postgresql" %}
from {{ cookiecutter.package_name }}.chassis.outbox import Outbox
{%- endif %}
from {{ cookiecutter.package_name }}.chassis.server import loop_factory
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
{%- if cookiecutter.database == "postgresql" %}
from {{ cookiecutter.package_name }}.consumers import items_create
from {{ cookiecutter.package_name }}.models import Base
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import NewItem
from {{ cookiecutter.package_name }}.services.outbox_items import OutboxItemRepository
from {{ cookiecutter.package_name }}.services.postgres_items import PostgresItemRepository
{%- endif %}
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    BrokerSettings,
{%- if cookiecutter.database == "postgresql" %}
    DatabaseSettings,
{%- endif %}
    LoggingSettings,
    Settings,
    TracingSettings,
)

PACKAGE = "{{ cookiecutter.package_name }}"
BROKER = "{{ 'RabbitMQ' if cookiecutter.broker == 'rabbitmq' else 'NATS' }}"
DEFAULT_PORT = {{ 5672 if cookiecutter.broker == "rabbitmq" else 4222 }}
COMMAND = "bench.noop"
SOURCE = "/bench"
# Each message's number in its round, a header of every row's messages.
SEQ_HEADER = "x-bench-seq"
# The trace context the chassis' messages carry, which the other rows' carry too (the same bytes).
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The content type FastStream's messages say: the one its decoder reads as JSON.
FASTSTREAM_CONTENT_TYPE = "application/json"
# Seconds a round, or a connection, may take before the run fails.
ROUND_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
# What the chassis is held to (printed beside the ratios, never a pass/fail of the run).
NOOP_VS_FASTSTREAM = 1.0  # at least FastStream's default throughput
NOOP_VS_FASTSTREAM_LEAN = 0.90  # within 10% of FastStream lean's
REAL_VS_BARE = 0.90  # the same transaction: at least 0.90 of the bare client's
# Times each part of the chassis' handling is repeated when measured on its own.
PART_REPEATS = 2000


class Payload(BaseModel):
    seq: int
    text: str


async def do_nothing(data: Payload, services: None) -> None:
    """The chassis' no-op handler: the bench measures everything around it."""


NOOP = Consumer(command=COMMAND, data=Payload, handle=do_nothing, summary="Does nothing (bench).")


@dataclasses.dataclass(frozen=True)
class Work:
    """What the handler does, the same on every row: a column of the table."""

    name: str
    # What the chassis runs: the consumer, with its services and the inbox the runner checks.
    consumer: Consumer[Any, Any]
    services: Any
    inbox: Inbox
    # The same work for the other rows, given the event's id and its data (checking the inbox
    # when the work has one: the chassis' runner checks it for the chassis).
    handle: Callable[[str, Mapping[str, Any]], Awaitable[None]]
    # The data of message ``seq`` of a round (``token`` is the round's own), padded with ``text``.
    data: Callable[[str, int, str], dict[str, Any]]


async def nothing(event_id: str, data: Mapping[str, Any]) -> None:
    """The other rows' no-op handler."""


def payload_data(token: str, seq: int, text: str) -> dict[str, Any]:
    return {"seq": seq, "text": text}


def noop_work() -> Work:
    return Work("no-op", NOOP, None, MemoryInbox(), nothing, payload_data)


@dataclasses.dataclass(frozen=True)
class Figures:
    messages_per_second: float
    p50_ms: float
    p99_ms: float
    # This process's CPU time per message (publishing and consuming): what a row adds shows here first.
    cpu_us: float


@dataclasses.dataclass(frozen=True)
class Workload:
    """What a round sends, and how."""

    work: Work
    events: Sequence[CloudEvent]
    publishers: int
    # At most this many messages published and not yet handled: the backlog, hence the latency,
    # does not grow with the number of messages.
    window: int
    # Where the log lines go (/dev/null): the chassis' go there from the start, FastStream's are
    # sent there in its rounds.
    logs: TextIO


class Tally:
    """When each message of a round was published and handled; ``done`` once all were handled."""

    def __init__(self, workload: Workload) -> None:
        messages = len(workload.events)
        self.sent = [0.0] * messages
        self.handled = [0.0] * messages
        # FastStream's handlers see the event, not the message's headers: they note it by its id.
        self.seq_of = {event.id: seq for seq, event in enumerate(workload.events)}
        self._left = messages
        self.done = asyncio.Event()
        self.window = asyncio.Semaphore(workload.window)
        self.cpu_started = self.cpu_seconds = 0.0

    def mark_handled(self, seq: int) -> None:
        if not self.handled[seq]:  # a redelivery counts once
            self.handled[seq] = time.perf_counter()
            self.window.release()
            self._left -= 1
            if not self._left:
                self.done.set()

    async def wait(self) -> None:
        """Until every message was handled: the round's CPU time is counted up to here."""
        try:
            await asyncio.wait_for(self.done.wait(), ROUND_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(
                f"only {len(self.handled) - self._left} of {len(self.handled)} messages were handled "
                f"within {ROUND_TIMEOUT:g} s"
            ) from None
        self.cpu_seconds = time.process_time() - self.cpu_started

    def figures(self) -> Figures:
        latencies = [handled - sent for sent, handled in zip(self.sent, self.handled, strict=True)]
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        seconds = max(self.handled) - min(self.sent)
        cpu_us = self.cpu_seconds / len(latencies) * 1e6
        return Figures(len(latencies) / seconds, cuts[49] * 1000, cuts[98] * 1000, cpu_us)


def make_events(work: Work, messages: int, size: int) -> list[CloudEvent]:
    """A round's messages: CloudEvents of the work's command whose JSON is about ``size`` bytes."""
    token = uuid.uuid4().hex[:8]
    events = []
    for seq in range(messages):
        data = work.data(token, seq, "")
        event = CloudEvent(type=work.consumer.command, source=SOURCE, data=data, headers={})
        padding = "x" * max(size - len(event.to_json()), 0)
        data = work.data(token, seq, padding)
        events.append(dataclasses.replace(event, data=data, headers={SEQ_HEADER: str(seq)}))
    return events


Publish = Callable[[CloudEvent], Awaitable[None]]


async def publish_all(workload: Workload, publish: Publish, tally: Tally) -> None:
    """Publish every event, from tasks that each wait for one confirmation at a time, within the window."""
    numbers = iter(range(len(workload.events)))
    tally.cpu_started = time.process_time()

    async def publisher() -> None:
        for seq in numbers:  # shared: each number is taken by one task
            await tally.window.acquire()
            tally.sent[seq] = time.perf_counter()
            await publish(workload.events[seq])

    async with asyncio.TaskGroup() as group:
        for _ in range(workload.publishers):
            group.create_task(publisher())


class MemoryInbox:
    """The inbox's contract, in memory (the chassis' own exists only in services without a database)."""

    def __init__(self) -> None:
        self._handled: set[tuple[str, str, str]] = set()

    @contextlib.asynccontextmanager
    async def once(self, consumer: str, source: str, event_id: str) -> AsyncIterator[bool]:
        key = (consumer, source, event_id)
        if key in self._handled:
            yield False
            return
        yield True
        self._handled.add(key)
{%- if cookiecutter.database == "postgresql" %}


def item_data(token: str, seq: int, text: str) -> dict[str, Any]:
    """An ``items.create`` command's data: a new item, named uniquely, described with ``text``."""
    return {"name": f"bench-{token}-{seq}", "description": text, "price_cents": seq}


@contextlib.asynccontextmanager
async def real_work(settings: DatabaseSettings) -> AsyncIterator[Work]:
    """The example's consumer and its work, on the tables of a schema of the bench's own, dropped after."""
    admin = create_engine(dataclasses.replace(settings, schema=None))
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{settings.schema}"'))
    database = Database(settings)
    try:
        await database.start()
        async with database.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        items = OutboxItemRepository(PostgresItemRepository(database), database, Outbox())
        inbox = DatabaseInbox(database)

        async def create_item(event_id: str, data: Mapping[str, Any]) -> None:
            """What the consumer does, and the runner's inbox check around it: one transaction."""
            async with inbox.once(items_create.consumer.name, SOURCE, event_id) as first_time:
                if first_time:
                    await items.add(NewItem(data["name"], data["description"], data["price_cents"]))

        yield Work("real", items_create.consumer, Services(items=items), inbox, create_item, item_data)
    finally:
        await database.stop()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.schema}" CASCADE'))
        await admin.dispose()
{%- endif %}


class TimedSource:
    """The broker as the runner's command source, noting when the runner is done with each message."""

    def __init__(self, broker: Broker, tally: Tally) -> None:
        self._broker = broker
        self._tally = tally

    async def consume(self, handle: Callable[[Delivery], Awaitable[None]]) -> None:
        async def handle_and_note(delivery: Delivery) -> None:
            await handle(delivery)  # settled (acknowledged), logged and counted when it returns
            self._tally.mark_handled(int(delivery.headers[SEQ_HEADER]))

        await self._broker.consume(handle_and_note)

    async def stop_consuming(self) -> None:
        await self._broker.stop_consuming()


def runner_of(
    work: Work,
    source: TimedSource | None,
    settings: BrokerSettings,
    metrics: MessageMetrics,
    tracing: Tracing,
) -> ConsumerRunner[Any]:
    return ConsumerRunner(
        source,  # type: ignore[arg-type]  # None: only handle() is called (the parts' measure)
        [work.consumer],
        work.services,
        inbox=work.inbox,
        retries=RetryPolicy(settings.max_deliveries, settings.retry_delay),
        max_message_size=settings.max_message_size,
        metrics=metrics,
        tracing=tracing,
    )


async def chassis_round(settings: BrokerSettings, workload: Workload) -> Figures:
    registry = CollectorRegistry()
    metrics = MessageMetrics(registry)
    tracing = Tracing(TracingSettings(), service=PACKAGE, version="bench")
    broker = Broker(settings, metrics=metrics, tracing=tracing)
    tally = Tally(workload)
    runner = runner_of(workload.work, TimedSource(broker, tally), settings, metrics, tracing)
    await asyncio.wait_for(broker.start(), CONNECT_TIMEOUT)
    try:
        await route_events_to_commands(broker, settings)
        await runner.start()
        await publish_all(workload, broker.publish, tally)
        await tally.wait()
        await runner.stop()
    finally:
        await broker.stop()
    outcome = {"consumer": workload.work.consumer.name, "outcome": "handled"}
    handled = registry.get_sample_value("messages_consumed_total", outcome)
    if handled != len(workload.events):
        raise RuntimeError(f"the consumer runner handled {handled} of {len(workload.events)} messages")
    return tally.figures()


def faststream_options(*, lean: bool) -> dict[str, Any]:
    """FastStream's broker options: its defaults, or no log lines and no validation (its best case)."""
    return {"logger": None, "apply_types": False} if lean else {}


def faststream_handler(work: Work, tally: Tally, *, lean: bool) -> Callable[..., Awaitable[None]]:
    """The handler a FastStream user writes: it takes the decoded JSON (lean), or a pydantic model."""
    if lean:

        async def handle_json(body: dict[str, Any]) -> None:
            await work.handle(body["id"], body["data"])
            tally.mark_handled(tally.seq_of[body["id"]])

        return handle_json

    async def handle(event: Any) -> None:
        await work.handle(event.id, dict(event.data))
        tally.mark_handled(tally.seq_of[event.id])

    # The model of the CloudEvent (its id and the command's data model): what fast-depends validates.
    handle.__annotations__["event"] = create_model("Command", id=(str, ...), data=(work.consumer.data, ...))
    return handle
{% if cookiecutter.broker == "rabbitmq" %}

# RabbitMQ: the chassis declares <ns>.events (topic exchange), <ns>.commands and
# <ns>.commands.dlq (quorum queues); the bare client <ns>.bare and FastStream <ns>.faststream
# (both kinds each).


async def connect(settings: BrokerSettings) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(settings.url, timeout=CONNECT_TIMEOUT)


async def route_events_to_commands(broker: Broker, settings: BrokerSettings) -> None:
    """Bench only: bind the commands queue to the events exchange, so what is published is consumed."""
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.commands_queue)
        await queue.bind(broker.events_exchange, routing_key="#")


def bare_publisher(exchange: aio_pika.abc.AbstractExchange) -> Publish:
    async def publish(event: CloudEvent) -> None:
        message = aio_pika.Message(
            event.to_json(),
            content_type=CONTENT_TYPE,
            message_id=event.id,
            headers={**event.headers, "traceparent": TRACEPARENT},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key=event.type)

    return publish


@contextlib.asynccontextmanager
async def bare_publishing(settings: BrokerSettings) -> AsyncIterator[Publish]:
    """The bare client's publishing alone, to its exchange (made by its rounds)."""
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{settings.namespace}.bare")
        yield bare_publisher(exchange)


async def bare_round(settings: BrokerSettings, workload: Workload) -> Figures:
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.prefetch)
        name = f"{settings.namespace}.bare"
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key="#")
        tally = Tally(workload)

        async def received(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            document = json.loads(message.body)  # what any consumer does first
            await workload.work.handle(document["id"], document["data"])
            await message.ack()
            tally.mark_handled(int(str(message.headers[SEQ_HEADER])))

        consumer_tag = await queue.consume(received)
        await publish_all(workload, bare_publisher(exchange), tally)
        await tally.wait()
        await queue.cancel(consumer_tag)
    return tally.figures()


async def faststream_round(settings: BrokerSettings, workload: Workload, *, lean: bool) -> Figures:
    broker = RabbitBroker(settings.url, timeout=CONNECT_TIMEOUT, **faststream_options(lean=lean))
    name = f"{settings.namespace}.faststream"
    exchange = RabbitExchange(name, type=ExchangeType.TOPIC, durable=True)
    queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, routing_key="#")
    tally = Tally(workload)
    subscriber = broker.subscriber(queue, exchange, channel=Channel(prefetch_count=settings.prefetch))
    subscriber(faststream_handler(workload.work, tally, lean=lean))

    async def publish(event: CloudEvent) -> None:
        await broker.publish(
            event.to_json(),
            exchange=exchange,
            routing_key=event.type,
            persist=True,
            message_id=event.id,
            headers={**event.headers, "traceparent": TRACEPARENT},
            content_type=FASTSTREAM_CONTENT_TYPE,
        )

    # FastStream's log lines go to the stdout of when it first logs: /dev/null, as the chassis' go.
    with contextlib.redirect_stdout(workload.logs):
        async with broker:
            await asyncio.wait_for(broker.start(), CONNECT_TIMEOUT)
            await publish_all(workload, publish, tally)
            await tally.wait()
    return tally.figures()


async def delete_namespace(settings: BrokerSettings) -> list[str]:
    """Delete what the run created; returns what could not be deleted."""
    namespace = settings.namespace
    queues = [f"{namespace}.{name}" for name in ("commands", "commands.dlq", "bare", "faststream")]
    exchanges = [f"{namespace}.{name}" for name in ("events", "bare", "faststream")]
    left: list[str] = []
    connection = await connect(settings)
    async with connection:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                try:  # a channel of its own each: an error closes the channel
                    channel = await connection.channel()
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                    await channel.close()
                except Exception as error:
                    left.append(f"{kind} {name} ({error!r})")
    return left
{% else %}

# NATS: the chassis declares the streams <ns>-events, <ns>-commands (with its consumer) and
# <ns>-dead; the bare client <ns>-bare and FastStream <ns>-faststream (each with a consumer).


async def connect(settings: BrokerSettings) -> Client:
    """A connection that gives up after two attempts (nats-py retries the first one 60 times)."""
    return await nats.connect(
        settings.url,
        connect_timeout=int(CONNECT_TIMEOUT),
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=1,
    )


async def route_events_to_commands(broker: Broker, settings: BrokerSettings) -> None:
    """Bench only: the broker publishes its events to the commands' subjects, so they are consumed.

    Set after ``start()``, which declared the streams with their own subjects.
    """
    broker.events_subject = broker.commands_subject


def work_queue(name: str, subject: str) -> StreamConfig:
    """A stream of the kind the chassis declares for its commands."""
    return StreamConfig(
        name=name, subjects=[f"{subject}.>"], retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE
    )


def bare_publisher(jetstream: JetStreamContext, subject: str) -> Publish:
    async def publish(event: CloudEvent) -> None:
        headers = {
            **event.headers,
            "traceparent": TRACEPARENT,
            "content-type": CONTENT_TYPE,
            "Nats-Msg-Id": event.id,
        }
        await jetstream.publish(f"{subject}.{event.type}", event.to_json(), headers=headers)

    return publish


@contextlib.asynccontextmanager
async def bare_publishing(settings: BrokerSettings) -> AsyncIterator[Publish]:
    """The bare client's publishing alone, to its stream (made by its rounds)."""
    connection = await connect(settings)
    try:
        jetstream = connection.jetstream(timeout=settings.publish_timeout)
        yield bare_publisher(jetstream, f"{settings.namespace}.bare")
    finally:
        await connection.close()


async def bare_round(settings: BrokerSettings, workload: Workload) -> Figures:
    connection = await connect(settings)
    try:
        jetstream = connection.jetstream(timeout=settings.publish_timeout)
        name, subject = f"{settings.namespace}-bare", f"{settings.namespace}.bare"
        await jetstream.add_stream(work_queue(name, subject))
        await jetstream.add_consumer(name, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT))
        subscription = await jetstream.pull_subscribe_bind(name, stream=name)
        tally = Tally(workload)

        async def received(message: Msg) -> None:
            document = json.loads(message.data)  # what any consumer does first
            await workload.work.handle(document["id"], document["data"])
            await message.ack()
            tally.mark_handled(int((message.headers or {})[SEQ_HEADER]))

        async def fetch() -> None:
            while not tally.done.is_set():
                try:
                    messages = await subscription.fetch(settings.prefetch, timeout=1.0)
                except TimeoutError:
                    continue
                async with asyncio.TaskGroup() as handling:
                    for message in messages:
                        handling.create_task(received(message))

        fetching = asyncio.create_task(fetch())
        try:
            await publish_all(workload, bare_publisher(jetstream, subject), tally)
            await tally.wait()
        finally:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
    finally:
        await connection.close()
    return tally.figures()


async def faststream_round(settings: BrokerSettings, workload: Workload, *, lean: bool) -> Figures:
    broker = NatsBroker(settings.url, connect_timeout=int(CONNECT_TIMEOUT), **faststream_options(lean=lean))
    name, subject = f"{settings.namespace}-faststream", f"{settings.namespace}.faststream"
    config = work_queue(name, subject)
    stream = JStream(name, subjects=config.subjects, retention=config.retention, storage=config.storage)
    tally = Tally(workload)
    # Pulling up to prefetch messages at once and handling them concurrently, as the others do.
    pull = PullSub(batch_size=settings.prefetch, timeout=1.0)
    subscriber = broker.subscriber(f"{subject}.>", stream=stream, durable=name, pull_sub=pull)
    subscriber(faststream_handler(workload.work, tally, lean=lean))

    async def publish(event: CloudEvent) -> None:
        headers = {
            **event.headers,
            "traceparent": TRACEPARENT,
            "content-type": FASTSTREAM_CONTENT_TYPE,
            "Nats-Msg-Id": event.id,
        }
        await broker.publish(event.to_json(), f"{subject}.{event.type}", headers=headers, stream=name)

    # FastStream's log lines go to the stdout of when it first logs: /dev/null, as the chassis' go.
    with contextlib.redirect_stdout(workload.logs):
        async with broker:
            await asyncio.wait_for(broker.start(), CONNECT_TIMEOUT)
            await publish_all(workload, publish, tally)
            await tally.wait()
    return tally.figures()


async def delete_namespace(settings: BrokerSettings) -> list[str]:
    """Delete what the run created; returns what could not be deleted."""
    namespace = settings.namespace
    streams = [f"{namespace}-{name}" for name in ("events", "commands", "dead", "bare", "faststream")]
    left: list[str] = []
    connection = await connect(settings)
    try:
        jetstream = connection.jetstream()
        for name in streams:
            try:
                await jetstream.delete_stream(name)
            except NotFoundError:
                pass
            except Exception as error:
                left.append(f"stream {name} ({error!r})")
    finally:
        await connection.close()
    return left
{% endif %}

ROWS: dict[str, Callable[[BrokerSettings, Workload], Awaitable[Figures]]] = {
    "bare": bare_round,
    "faststream": functools.partial(faststream_round, lean=False),
    "faststream-lean": functools.partial(faststream_round, lean=True),
    "chassis": chassis_round,
}
# Results by (work, row): each round's figures.
Results = dict[tuple[str, str], list[Figures]]


@contextlib.asynccontextmanager
async def works(args: argparse.Namespace) -> AsyncIterator[list[Work]]:
    """The handlers the rows run: the no-op{% if cookiecutter.database == "postgresql" %} and the real one (unless ``--no-real``){% endif %}."""
{%- if cookiecutter.database == "postgresql" %}
    if args.no_real:
        yield [noop_work()]
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    async with real_work(DatabaseSettings(url=args.database_url, schema=schema)) as real:
        yield [noop_work(), real]
{%- else %}
    yield [noop_work()]
{%- endif %}


async def run(settings: BrokerSettings, args: argparse.Namespace, logs: TextIO) -> tuple[Results, Parts]:
    """The interleaved rounds, then the parts' costs; what they made is deleted after, even on failure."""
    results: Results = {}
    try:
        async with works(args) as handlers:
            for number in range(1, args.rounds + 1):
                for work in handlers:
                    # Every other round in reverse: a load that grows or fades over a round (the machine
                    # is shared) favours no row.
                    rows = list(ROWS.items()) if number % 2 else list(reversed(ROWS.items()))
                    for row, round_ in rows:
                        events = make_events(work, args.messages, args.size)
                        workload = Workload(work, events, args.publishers, args.window, logs)
                        figures = await round_(settings, workload)
                        results.setdefault((work.name, row), []).append(figures)
                        print(
                            f"{number:>5}  {work.name:<7}{row:<17}{figures.messages_per_second:>12,.0f}"
                            f"{figures.p50_ms:>9.2f}{figures.p99_ms:>9.2f}{figures.cpu_us:>12.0f}",
                            flush=True,
                        )
        parts = await cost_of_parts(settings, args.size)
        parts[PUBLISHING] = await publishing_cost(settings, args, logs)
    finally:
        try:
            left = await asyncio.shield(delete_namespace(settings))
        except Exception as error:  # out of reach (for the rounds too, most likely)
            left = [f"whatever was made ({error!r})"]
        if left:
            print(f"could not delete, of {settings.namespace}: {', '.join(left)}", file=sys.stderr)
    return results, parts


# ---- Where the chassis' CPU goes: each part of ConsumerRunner.handle on its own, repeated on one
# message in this process, then the whole of handle() (the runner's own steps are the difference);
# and Broker.publish against the bare client's publishing, measured live (its span, the publish
# timeout, the robust connection).  Less the JSON decoding the bare client does too, they should
# come to roughly the chassis' CPU per message over the bare client's in the rounds; the rest is
# what no part isolates: the broker's delivery adapter, acknowledging through it, consuming.

Parts = dict[str, float]
PARSE = "parse, validate (CloudEvent, data model)"
CONSUME_SPAN = "span of the handling (context, log ids)"
LOG_LINE = "log line"
METRICS = "metrics"
INBOX = "inbox (in memory)"
WHOLE = "handle() whole"
PUBLISHING = "publishing over the bare client's (live)"
BARE_DECODE = "the bare client's json.loads"


class StillDelivery:
    """One message handed to the runner again and again; settling it does nothing."""

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.body, self.headers, self.deliveries = body, headers, 1

    async def ack(self) -> None:
        pass

    async def retry(self, delay: float) -> None:
        raise AssertionError("the bench's message is never retried")

    async def dead_letter(self, reason: str) -> None:
        raise AssertionError(f"the bench's message was dead-lettered: {reason}")


async def microseconds(step: Callable[[], object]) -> float:
    """µs one call of ``step`` takes (awaited when it returns an awaitable): the best of five runs."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(PART_REPEATS):
            result = step()
            if isinstance(result, Awaitable):
                await result
        best = min(best, (time.perf_counter() - started) / PART_REPEATS * 1e6)
    return best


async def cost_of_parts(settings: BrokerSettings, size: int) -> Parts:
    """µs per message of each part of the chassis' handling of a no-op message, and of the whole."""
    work = noop_work()
    event = make_events(work, 1, size)[0]
    body, headers = event.to_json(), {**event.headers, "traceparent": TRACEPARENT}
    metrics = MessageMetrics(CollectorRegistry())
    tracing = Tracing(TracingSettings(), service=PACKAGE, version="bench")
    line = frequent_line("message handled", "bench")
    inbox = MemoryInbox()
    ids = iter(range(10**9))

    def parse_and_validate() -> None:
        Payload.model_validate(parse_event(body, headers).data)

    def consume_span() -> None:
        """The runner's span: a child of the message's, made current, its ids on the log lines, ended."""
        span = tracing.start_span("process", trace.SpanKind.CONSUMER, parent=headers)
        token = otel_context.attach(trace.set_span_in_context(span))
        context = span.get_span_context()
        trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
        bind_request_fields(RequestFields("", trace_id, span_id))
        otel_context.detach(token)
        span.end()

    def log_line() -> None:
        if line is not None:
            fields = {"message_id": event.id, "type": COMMAND}
            line(consumer=COMMAND, outcome="handled", deliveries=1, duration_ms=0.25, **fields)

    async def check_inbox() -> None:
        async with inbox.once(COMMAND, SOURCE, str(next(ids))):
            pass

    runner = runner_of(work, None, settings, metrics, tracing)
    delivery = StillDelivery(body, headers)
    return {
        # The parts of ConsumerRunner.handle, then the whole of it (with its own steps).
        PARSE: await microseconds(parse_and_validate),
        CONSUME_SPAN: await microseconds(consume_span),
        LOG_LINE: await microseconds(log_line),
        METRICS: await microseconds(lambda: metrics.consumed_message(COMMAND, "handled", 0.00025)),
        INBOX: await microseconds(check_inbox),
        WHOLE: await microseconds(lambda: runner.handle(delivery)),
        # Beside it: what the bare client does too.
        BARE_DECODE: await microseconds(lambda: json.loads(body)),
    }


@contextlib.asynccontextmanager
async def chassis_publishing(settings: BrokerSettings) -> AsyncIterator[Publish]:
    """``Broker.publish`` alone, to the events{% if cookiecutter.broker == "rabbitmq" %} exchange{% else %} stream{% endif %}."""
    tracing = Tracing(TracingSettings(), service=PACKAGE, version="bench")
    broker = Broker(settings, metrics=MessageMetrics(CollectorRegistry()), tracing=tracing)
    await asyncio.wait_for(broker.start(), CONNECT_TIMEOUT)
    try:
        yield broker.publish
    finally:
        await broker.stop()


async def publishing_cost(settings: BrokerSettings, args: argparse.Namespace, logs: TextIO) -> float:
    """µs of CPU per message the chassis' publishing takes over the bare client's: measured live,
    publishing alone as the rounds publish, in alternate turns (the median of three each)."""
    cpu: dict[str, list[float]] = {"bare": [], "chassis": []}
    for _ in range(3):
        for name, publishing in (("bare", bare_publishing), ("chassis", chassis_publishing)):
            events = make_events(noop_work(), min(args.messages, 1000), args.size)
            workload = Workload(noop_work(), events, args.publishers, len(events), logs)
            tally = Tally(workload)
            async with publishing(settings) as publish:
                await publish_all(workload, publish, tally)
                cpu[name].append((time.process_time() - tally.cpu_started) / len(events) * 1e6)
    return statistics.median(cpu["chassis"]) - statistics.median(cpu["bare"])


# ---- The report.


def median(rounds: Sequence[Figures]) -> Figures:
    return Figures(
        statistics.median(figures.messages_per_second for figures in rounds),
        statistics.median(figures.p50_ms for figures in rounds),
        statistics.median(figures.p99_ms for figures in rounds),
        statistics.median(figures.cpu_us for figures in rounds),
    )


def table(results: Results) -> list[str]:
    """The medians, a Markdown table (the README shows one): a row per library, the works' columns."""
    medians = {key: median(rounds) for key, rounds in results.items()}
    work_names = list(dict.fromkeys(work for work, _ in results))
{%- if cookiecutter.database == "postgresql" %}
    absent = "real: left out (--no-real)"
{%- else %}
    absent = "real: none (no database in this project)"
{%- endif %}
    header = "| row |" + "".join(f" {work} msgs/s | p99 ms | CPU us/msg |" for work in work_names)
    if "real" not in work_names:
        header += f" {absent} |"
    rule = "|---|" + "---:|---:|---:|" * len(work_names) + ("---|" if "real" not in work_names else "")
    lines = [header, rule]
    for row in ROWS:
        cells = ""
        for work in work_names:
            figures = medians[work, row]
            cells += f" {figures.messages_per_second:,.0f} | {figures.p99_ms:.1f} | {figures.cpu_us:.0f} |"
        lines.append(f"| {row} |{cells}" + (" - |" if "real" not in work_names else ""))
    return lines


def ratios(results: Results) -> list[str]:
    """The chassis against the others, with the targets it is held to.

    Each ratio is the median of the rounds' own: the rows of one round ran seconds apart, under
    the same load, which a shared machine's changes from round to round would otherwise blur.
    """

    def against(work: str, row: str, target: float) -> str:
        rounds = zip(results[work, "chassis"], results[work, row], strict=True)
        ratio = statistics.median(a.messages_per_second / b.messages_per_second for a, b in rounds)
        return f"{ratio:.2f} of {row}'s (target >= {target:.2f}: {'met' if ratio >= target else 'NOT met'})"

    lines = [
        "no-op: the chassis handles "
        + against("no-op", "faststream", NOOP_VS_FASTSTREAM)
        + "; "
        + against("no-op", "faststream-lean", NOOP_VS_FASTSTREAM_LEAN)
    ]
    if ("real", "chassis") in results:
        lines.append("real: the chassis handles " + against("real", "bare", REAL_VS_BARE))
    return lines


def breakdown(results: Results, parts: Parts) -> list[str]:
    """The chassis' CPU per message over the bare client's (no-op), and the parts it is spent on."""
    pairs = zip(results["no-op", "chassis"], results["no-op", "bare"], strict=True)
    extra = statistics.median(chassis.cpu_us - bare.cpu_us for chassis, bare in pairs)  # as ratios() pair
    handle_parts = [PARSE, CONSUME_SPAN, LOG_LINE, METRICS, INBOX]
    steps = parts[WHOLE] - sum(parts[name] for name in handle_parts)
    explained = parts[WHOLE] + parts[PUBLISHING] - parts[BARE_DECODE]
    rows = [(name, parts[name]) for name in handle_parts]
    rows += [
        ("the runner's own steps (handle() less those)", steps),
        (PUBLISHING, parts[PUBLISHING]),
        (f"less {BARE_DECODE} (it decodes too)", -parts[BARE_DECODE]),
        ("together", explained),
        ("the rest: delivery adapter, ack, consuming", extra - explained),
    ]
    return [
        f"chassis CPU over the bare client, no-op: {extra:.0f} us per message (the rounds' median); where",
        "it goes, each part measured on its own in this process, on one message:",
        *(f"  {name:<46}{us:>7.1f} us" for name, us in rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    defaults = BrokerSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--broker-url",
        default=os.environ.get(f"{ENV_PREFIX}_BROKER_URL") or defaults.url,
        help=f"the broker (default: {ENV_PREFIX}_BROKER_URL, else {defaults.url})",
    )
{%- if cookiecutter.database == "postgresql" %}
    parser.add_argument(
        "--database-url",
        default=os.environ.get(f"{ENV_PREFIX}_DATABASE_URL") or DatabaseSettings().url,
        help=f"the real handler's PostgreSQL (default: {ENV_PREFIX}_DATABASE_URL, else the setting's)",
    )
    parser.add_argument("--no-real", action="store_true", help="the no-op handler only (needs no PostgreSQL)")
{%- endif %}
    parser.add_argument("--messages", type=int, default=2000, help="messages per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each row and handler (default 3)")
    parser.add_argument("--size", type=int, default=512, help="bytes of each message's body (default 512)")
    parser.add_argument("--publishers", type=int, default=16, help="concurrent publishing tasks (default 16)")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=defaults.prefetch,
        help=f"messages being handled at once (default: the setting's, {defaults.prefetch})",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="messages published and not yet handled, at most (default: 4 x prefetch)",
    )
    args = parser.parse_args(argv)
    args.window = args.window or 4 * args.prefetch
    if args.messages < 2 or min(args.rounds, args.publishers, args.prefetch, args.window) < 1:
        parser.error("--messages must be 2 or more; --rounds, --publishers, --prefetch, --window 1 or more")

    settings = dataclasses.replace(
        defaults, url=args.broker_url, namespace=f"bench-{uuid.uuid4().hex[:12]}", prefetch=args.prefetch
    )
    url = urlsplit(settings.url)
    print(
        f"messages through {BROKER} at {url.hostname}:{url.port or DEFAULT_PORT} in {settings.namespace}: "
        f"{args.rounds} interleaved rounds of {args.messages:,} messages of ~{args.size} bytes; "
        f"{args.publishers} publishers, at most {args.window} in flight, prefetch {args.prefetch}"
    )
    print(f"{'round':>5}  {'work':<7}{'row':<17}{'messages/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'CPU us':>12}")
    # Every log line goes where production's go, but to /dev/null (the stream is taken now).
    with open(os.devnull, "w", encoding="utf-8") as logs:
        with contextlib.redirect_stdout(logs):
            configure_logging(LoggingSettings(), service=PACKAGE, version="bench")
        try:
            with asyncio.Runner(loop_factory=loop_factory(Settings())) as runner:
                results, parts = runner.run(run(settings, args, logs))
        except Exception as error:
            print(f"error: {error!r}", file=sys.stderr)
            return 1
    print()
    print("\n".join(table(results)))
    print()
    print("\n".join(ratios(results)))
    print("\n".join(breakdown(results, parts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
