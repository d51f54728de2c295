"""A bare RabbitMQ client for the tests: it watches the service's events, sends it commands,
reads its dead letters, and removes what the test's namespace created.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from {{ cookiecutter.package_name }}.chassis.events import CONTENT_TYPE, CloudEvent
from {{ cookiecutter.package_name }}.settings import BrokerSettings

Message = tuple[bytes, dict[str, Any]]
# Seconds to wait for a message the test expects.
WAIT = 10.0


class BrokerProbe:
    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        namespace = settings.namespace
        self._exchange = f"{namespace}.events"
        self._commands = f"{namespace}.commands"
        self._dead_letters = f"{namespace}.commands.dlq"
        self._watcher = f"{namespace}.test-watcher"
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._events: asyncio.Queue[Message] = asyncio.Queue()

    async def start(self) -> None:
        self._connection = await aio_pika.connect(self._settings.url, timeout=5)
        self._channel = await self._connection.channel()

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("the probe is not started")
        return self._channel

    async def watch_events(self) -> None:
        """From now on, receive every event the service publishes (a queue bound to all of them)."""
        exchange = await self.channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await self.channel.declare_queue(self._watcher, durable=False)
        await queue.bind(exchange, routing_key="#")

        async def received(message: AbstractIncomingMessage) -> None:
            await self._events.put((message.body, dict(message.headers)))
            await message.ack()

        await queue.consume(received)

    async def next_event(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The next event published, as its JSON document, and its message's headers."""
        body, headers = await asyncio.wait_for(self._events.get(), WAIT)
        return json.loads(body), headers

    async def send_command(self, command: CloudEvent) -> None:
        await self.send_raw(command.to_json(), command.type, headers=dict(command.headers))

    async def send_raw(self, body: bytes, command_type: str, headers: dict[str, Any] | None = None) -> None:
        """Send ``body`` as a command of ``command_type`` (``body`` need not be a CloudEvent)."""
        message = aio_pika.Message(body, content_type=CONTENT_TYPE, headers=headers or {})
        await self.channel.default_exchange.publish(message, routing_key=self._commands)

    async def next_dead_letter(self) -> Message:
        """The next dead letter's body and headers (the reason among them)."""
        queue = await self.channel.declare_queue(self._dead_letters, passive=True)
        return await _next_message(queue)

    async def delete_everything(self) -> None:
        """Remove the exchange and queues of the test's namespace."""
        for queue in (self._watcher, self._commands, self._dead_letters):
            await self.channel.queue_delete(queue)
        await self.channel.exchange_delete(self._exchange)


async def _next_message(queue: AbstractQueue) -> Message:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        message = await queue.get(fail=False)
        if message is not None:
            await message.ack()
            return message.body, dict(message.headers)
        if loop.time() > deadline:
            raise TimeoutError(f"no message on {queue.name} within {WAIT:g} s")
        await asyncio.sleep(0.05)
