"""RabbitMQ (aio-pika): publishes the service's events and delivers its commands, as a resource.

Names (``broker.namespace`` is ``ns``):

- events go to the durable topic exchange ``ns.events``, the routing key being the event's type
  (``items.created``): whoever wants them binds a queue of their own;
- commands arrive on the durable quorum queue ``ns.commands`` (sent to it through the default
  exchange), and the ones that cannot be handled go to ``ns.commands.dlq``.  A quorum queue
  counts deliveries (``x-delivery-count``), also of messages whose consumer died.

``start()`` connects, retrying with backoff until ``resources.start_timeout``, and declares
them.  The connection is robust: when the broker goes away aio-pika reconnects (and
consumes again) by itself, readiness (``broker.connection``) fails meanwhile, and
publishing fails fast with ``BrokerUnavailableError`` (503), so no request hangs.
Every publish waits for the broker's confirm, within ``broker.publish_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from aio_pika.exceptions import AMQPConnectionError
from opentelemetry import trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from ..settings import BrokerSettings
from .consumers import Delivery
from .events import CONTENT_TYPE, CloudEvent
from .lifecycle import Resource, ResourceCheck, ResourceUnavailableError
from .logging import Throttled, get_logger
from .message_metrics import MessageMetrics
from .tracing import Tracing, headers_of

FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0
# Seconds between reconnection attempts once connected (aio-pika's robust connection).
RECONNECT_INTERVAL = 1.0
DEAD_LETTER_REASON_HEADER = "x-dead-letter-reason"
# How many times a command was retried (sent again after its handler failed).
RETRIES_HEADER = "x-retries"

log = get_logger(__name__)

T = TypeVar("T")


class BrokerUnavailableError(ResourceUnavailableError):
    """The broker could not be reached, or did not confirm in time."""

    resource = "broker"


class Broker(Resource):
    def __init__(
        self, settings: BrokerSettings, *, metrics: MessageMetrics, tracing: Tracing, critical: bool = True
    ) -> None:
        # Whether readiness fails without the broker: not when events wait in an outbox meanwhile.
        self._critical = critical
        self._settings = settings
        self._metrics = metrics
        self._tracing = tracing
        self._failures = Throttled(log)
        namespace = settings.namespace
        self.events_exchange = f"{namespace}.events"
        self.commands_queue = f"{namespace}.commands"
        self.dead_letter_queue = f"{namespace}.commands.dlq"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._events: AbstractRobustExchange | None = None
        self._commands: AbstractRobustQueue | None = None
        self._consumer_tag: str | None = None
        self._stopping = asyncio.Event()

    def asyncapi_server(self) -> dict[str, Any]:
        """The broker as the AsyncAPI document names it (never with its credentials)."""
        url = urlsplit(self._settings.url)
        return {
            "host": f"{url.hostname}:{url.port or 5672}",
            "protocol": url.scheme,
            "pathname": url.path or "/",
        }

    def event_channel(self, event_type: str) -> dict[str, Any]:
        """Where events of ``event_type`` go: the events exchange, with the type as routing key."""
        exchange = {"name": self.events_exchange, "type": "topic", "durable": True, "autoDelete": False}
        binding = {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}
        return {"address": event_type, "bindings": {"amqp": binding}}

    def command_channel(self, command: str) -> dict[str, Any]:
        """Where commands of type ``command`` come from: the commands queue."""
        queue = {"name": self.commands_queue, "durable": True, "exclusive": False, "autoDelete": False}
        binding = {"is": "queue", "queue": queue, "bindingVersion": "0.3.0"}
        return {
            "address": self.commands_queue,
            "description": f"Commands of type {command}, sent to the queue through the default exchange.",
            "bindings": {"amqp": binding},
        }

    async def start(self) -> None:
        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=FIRST_BACKOFF, max=MAX_BACKOFF),
            retry=retry_if_exception_type((OSError, TimeoutError, AMQPConnectionError)),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:  # resources.start_timeout bounds the whole start
            with attempt:
                self._connection = await aio_pika.connect_robust(
                    self._settings.url,
                    timeout=self._settings.connect_timeout,
                    reconnect_interval=RECONNECT_INTERVAL,
                    client_properties={"connection_name": self._settings.namespace},
                )
        channel = self._channel = await _started(self._connection).channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        self._events = await channel.declare_exchange(
            self.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        quorum = {"x-queue-type": "quorum"}  # counts deliveries, replicates
        await channel.declare_queue(self.dead_letter_queue, durable=True, arguments=quorum)
        self._commands = await channel.declare_queue(self.commands_queue, durable=True, arguments=quorum)
        log.info("broker connected", exchange=self.events_exchange, queue=self.commands_queue)

    async def stop(self) -> None:
        self._stopping.set()
        if self._connection is not None:
            await self._connection.close()

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("connection", self.check_connection, critical=self._critical)]

    async def check_connection(self) -> None:
        if self._connection is None or not self._connection.connected.is_set():
            raise BrokerUnavailableError("not connected to RabbitMQ")

    async def publish(self, event: CloudEvent) -> None:
        """Publish ``event`` and wait for the broker's confirm; ``BrokerUnavailableError`` if none came."""
        span = self._tracing.start_span(f"send {event.type}", trace.SpanKind.PRODUCER, parent=event.headers)
        try:
            await self.check_connection()
            message = aio_pika.Message(
                event.to_json(),
                content_type=CONTENT_TYPE,
                message_id=event.id,
                headers={**event.headers, **headers_of(span)},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await _started(self._events).publish(
                message, routing_key=event.type, mandatory=False, timeout=self._settings.publish_timeout
            )
        except Exception as error:
            self._metrics.published_event(event.type, confirmed=False)
            span.set_status(trace.StatusCode.ERROR)
            self._failures.warning(
                "publishing failed", key=event.type, event_type=event.type, error=repr(error)
            )
            raise BrokerUnavailableError(f"publishing {event.type} failed: {error!r}") from error
        finally:
            span.end()
        self._metrics.published_event(event.type, confirmed=True)

    async def consume(self, handle: Callable[[Delivery], Awaitable[None]]) -> None:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await handle(_RabbitDelivery(message, self))

        self._consumer_tag = await _started(self._commands).consume(on_message)

    async def stop_consuming(self) -> None:
        self._stopping.set()
        if self._commands is not None and self._consumer_tag is not None:
            try:
                await self._commands.cancel(self._consumer_tag, timeout=self._settings.connect_timeout)
            except Exception as error:  # the connection is gone: nothing more is delivered anyway
                log.warning("could not cancel the consumer", error=repr(error))
            self._consumer_tag = None

    async def send_copy(
        self, message: AbstractIncomingMessage, queue: str, headers: Mapping[str, str]
    ) -> None:
        """Publish a copy of ``message`` to ``queue``, ``headers`` added, and wait for the confirm."""
        copy = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            message_id=message.message_id,
            headers={**message.headers, **headers},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await _started(self._channel).default_exchange.publish(
            copy, routing_key=queue, mandatory=False, timeout=self._settings.publish_timeout
        )

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if consuming stops meanwhile: then return ``True``."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True


class _RabbitDelivery:
    def __init__(self, message: AbstractIncomingMessage, broker: Broker) -> None:
        self._message = message
        self._broker = broker
        self.body = message.body
        self.headers: Mapping[str, str] = {
            name: value for name, value in message.headers.items() if isinstance(value, str)
        }
        # Retries are sent again as copies that count them; deliveries of one copy whose
        # consumer died are counted by the quorum queue.
        self._retries = _count(message.headers, RETRIES_HEADER)
        self.deliveries = self._retries + _count(message.headers, "x-delivery-count") + 1

    async def ack(self) -> None:
        await self._message.ack()

    async def retry(self, delay: float) -> None:
        # RabbitMQ has no delayed delivery: the message keeps its prefetch slot meanwhile.
        if await self._broker.pause(delay):
            await self._message.nack(requeue=True)  # stopping: another replica takes it now
            return
        retries = str(self._retries + 1)
        await self._broker.send_copy(self._message, self._broker.commands_queue, {RETRIES_HEADER: retries})
        await self._message.ack()

    async def dead_letter(self, reason: str) -> None:
        headers = {DEAD_LETTER_REASON_HEADER: reason[:1000]}
        await self._broker.send_copy(self._message, self._broker.dead_letter_queue, headers)
        await self._message.ack()


def _count(headers: Mapping[str, object], name: str) -> int:
    value = headers.get(name, 0)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def _started(value: T | None) -> T:
    if value is None:
        raise RuntimeError("the broker is not started")
    return value


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "broker not reachable yet; retrying",
        error=repr(error),
        attempt=state.attempt_number,
        retry_in=round(wait, 2),
    )
