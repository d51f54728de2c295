"""A bare NATS client for the tests: it watches the service's events, sends it commands,
reads its dead letters, and removes what the test's namespace created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from {{ cookiecutter.package_name }}.chassis.events import CONTENT_TYPE, CloudEvent
from {{ cookiecutter.package_name }}.settings import BrokerSettings

Message = tuple[bytes, dict[str, Any]]
# Seconds to wait for a message the test expects.
WAIT = 10.0


class BrokerProbe:
    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        namespace = settings.namespace
        self._events_subject = f"{namespace}.events.>"
        self._commands_subject = f"{namespace}.commands"
        self._dead_letters_subject = f"{namespace}.dead.>"
        self._events_stream = f"{namespace}-events"
        self._commands_stream = f"{namespace}-commands"
        self._dead_letters_stream = f"{namespace}-dead"
        self._reader = f"{namespace}-test-reader"
        self._connection: Client | None = None
        self._jetstream: JetStreamContext | None = None
        self._dead_letters: JetStreamContext.PullSubscription | None = None
        self._events: asyncio.Queue[Message] = asyncio.Queue()

    async def start(self) -> None:
        # One reconnection attempt at most: a test fails fast when the server is not there.
        self._connection = await nats.connect(self._settings.url, connect_timeout=5, max_reconnect_attempts=1)
        self._jetstream = self._connection.jetstream(timeout=5)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def jetstream(self) -> JetStreamContext:
        if self._jetstream is None:
            raise RuntimeError("the probe is not started")
        return self._jetstream

    async def watch_events(self) -> None:
        """From now on, receive every event the service publishes (a consumer of the events stream)."""

        async def received(message: Msg) -> None:
            await self._events.put((message.data, dict(message.headers or {})))

        await self.jetstream.subscribe(
            self._events_subject,
            stream=self._events_stream,
            cb=received,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

    async def next_event(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The next event published, as its JSON document, and its message's headers."""
        body, headers = await asyncio.wait_for(self._events.get(), WAIT)
        return json.loads(body), headers

    async def send_command(self, command: CloudEvent) -> None:
        await self.send_raw(command.to_json(), command.type, headers=dict(command.headers))

    async def send_raw(self, body: bytes, command_type: str, headers: dict[str, Any] | None = None) -> None:
        """Send ``body`` as a command of ``command_type`` (``body`` need not be a CloudEvent)."""
        strings = {name: str(value) for name, value in (headers or {}).items()}
        subject = f"{self._commands_subject}.{command_type}"
        await self.jetstream.publish(subject, body, headers={"content-type": CONTENT_TYPE, **strings})

    async def next_dead_letter(self) -> Message:
        """The next dead letter's body and headers (the reason among them)."""
        if self._dead_letters is None:
            self._dead_letters = await self.jetstream.pull_subscribe(
                self._dead_letters_subject, durable=self._reader, stream=self._dead_letters_stream
            )
        try:
            [message] = await self._dead_letters.fetch(1, timeout=WAIT)
        except TimeoutError:
            raise TimeoutError(f"no message in {self._dead_letters_stream} within {WAIT:g} s") from None
        await message.ack()
        return message.data, dict(message.headers or {})

    async def delete_everything(self) -> None:
        """Remove the streams of the test's namespace (their consumers with them)."""
        for stream in (self._events_stream, self._commands_stream, self._dead_letters_stream):
            with contextlib.suppress(NotFoundError):  # the service never started
                await self.jetstream.delete_stream(stream)
