"""Bare clients of this machine's RabbitMQ and NATS, for the slow tier's broker tests.

Each call connects, does one thing and disconnects (``asyncio.run``), so the tests stay
plain synchronous code beside the service processes they drive.  Everything lives under a
namespace of the test's own, which ``delete`` removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

import aio_pika
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

RABBITMQ = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)
Message = tuple[bytes, dict[str, Any]]


def url_of(broker: str, host: str, port: int) -> str:
    return f"amqp://guest:guest@{host}:{port}/" if broker == "rabbitmq" else f"nats://{host}:{port}"


def server_of(broker: str) -> tuple[str, int]:
    return RABBITMQ if broker == "rabbitmq" else NATS


def command(data: dict[str, Any], *, command_type: str = "items.create") -> bytes:
    """A CloudEvent in structured mode, as another service would send it."""
    return json.dumps(
        {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/test", "type": command_type, "data": data}
    ).encode()


class BareBroker:
    """What a test needs of the broker, in the names the service gives its namespace."""

    def __init__(self, broker: str, namespace: str) -> None:
        self.broker = broker
        self.namespace = namespace
        self.url = url_of(broker, *server_of(broker))

    def watch_events(self) -> None:
        """From now on, keep every event the service publishes (call it once the service is ready)."""
        asyncio.run(self._rabbitmq_watch() if self.broker == "rabbitmq" else self._nats_watch())

    def events(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The events kept since ``watch_events`` and not read yet, oldest first."""
        if self.broker == "rabbitmq":
            read = self._rabbitmq_read(f"{self.namespace}.test-events")
        else:
            read = self._nats_read(f"{self.namespace}-events", f"{self.namespace}.events.>", "test-events")
        return [(json.loads(body), headers) for body, headers in asyncio.run(read)]

    def send(self, *bodies: bytes, command_type: str = "items.create") -> None:
        """Send each of ``bodies`` as a command of ``command_type``, confirmed by the broker."""
        if self.broker == "rabbitmq":
            asyncio.run(self._rabbitmq_send(bodies))
        else:
            asyncio.run(self._nats_send(bodies, command_type))

    def dead_letters(self) -> list[Message]:
        if self.broker == "rabbitmq":
            read = self._rabbitmq_read(f"{self.namespace}.commands.dlq")
        else:
            read = self._nats_read(f"{self.namespace}-dead", f"{self.namespace}.dead.>", "test-dead")
        return asyncio.run(read)

    def delete(self) -> None:
        asyncio.run(self._rabbitmq_delete() if self.broker == "rabbitmq" else self._nats_delete())

    # RabbitMQ: the events exchange, the commands queue, its dead-letter queue.

    async def _rabbitmq_watch(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                f"{self.namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(f"{self.namespace}.test-events", durable=True)
            await queue.bind(exchange, routing_key="#")

    async def _rabbitmq_read(self, queue_name: str) -> list[Message]:
        connection = await aio_pika.connect(self.url, timeout=5)
        read: list[Message] = []
        async with connection:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(queue_name, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return read
            while (message := await queue.get(fail=False)) is not None:
                await message.ack()
                read.append((message.body, dict(message.headers)))
        return read

    async def _rabbitmq_send(self, bodies: tuple[bytes, ...]) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await asyncio.gather(*(
                channel.default_exchange.publish(
                    aio_pika.Message(body, content_type="application/cloudevents+json"),
                    routing_key=f"{self.namespace}.commands",
                )
                for body in bodies
            ))

    async def _rabbitmq_delete(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=5)
        async with connection:
            channel = await connection.channel()
            for queue in ("test-events", "commands", "commands.dlq"):
                await channel.queue_delete(f"{self.namespace}.{queue}")
            await channel.exchange_delete(f"{self.namespace}.events")

    # NATS JetStream: the events, commands and dead-letter streams.

    async def _nats_watch(self) -> None:
        connection = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        try:
            await connection.jetstream().add_consumer(
                f"{self.namespace}-events",
                ConsumerConfig(
                    durable_name="test-events",
                    deliver_policy=DeliverPolicy.NEW,
                    filter_subject=f"{self.namespace}.events.>",
                ),
            )
        finally:
            await connection.close()

    async def _nats_read(self, stream: str, subject: str, durable: str) -> list[Message]:
        connection = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        read: list[Message] = []
        try:
            js = connection.jetstream()
            try:
                subscription = await js.pull_subscribe(subject, durable=durable, stream=stream)
            except NotFoundError:
                return read
            while True:
                try:
                    messages = await subscription.fetch(100, timeout=0.5)
                except TimeoutError:
                    return read
                for message in messages:
                    await message.ack()
                    read.append((message.data, dict(message.headers or {})))
        finally:
            await connection.close()

    async def _nats_send(self, bodies: tuple[bytes, ...], command_type: str) -> None:
        connection = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        try:
            js = connection.jetstream()
            subject = f"{self.namespace}.commands.{command_type}"
            await asyncio.gather(*(js.publish(subject, body, timeout=10) for body in bodies))
        finally:
            await connection.close()

    async def _nats_delete(self) -> None:
        connection = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=1)
        try:
            js = connection.jetstream()
            for stream in ("events", "commands", "dead"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(f"{self.namespace}-{stream}")
        finally:
            await connection.close()
