"""NATS JetStream (nats-py): publishes the service's events and delivers its commands, as a resource.

Names (``broker.namespace`` is ``ns``):

- events go to the subject ``ns.events.<type>`` (``ns.events.items.created``), kept in the
  stream ``ns-events`` for ``EVENTS_MAX_AGE``: whoever wants them makes a consumer of their own;
- commands are sent to ``ns.commands.<type>`` and kept in the work-queue stream
  ``ns-commands`` until handled; the replicas share its durable pull consumer ``ns-commands``,
  which counts deliveries (also of messages whose consumer died, after ``ACK_WAIT``).  The
  ones that cannot be handled are copied to ``ns.dead.<their subject>``, in the stream ``ns-dead``.

``start()`` connects (nats-py retries the first connection every ``RECONNECT_INTERVAL``
until ``resources.start_timeout``) and declares the streams and the consumer, retrying with
backoff while JetStream is not ready.  A stream that exists with another configuration (an
operator's replicas or limits) is kept as it is, as long as it holds the subjects.  When the
server goes away nats-py reconnects by itself, forever, and the declarations are made
again; readiness (``broker.connection``) fails meanwhile, publishing fails fast with
``BrokerUnavailableError`` (503), so no request hangs, and consuming waits.  Every publish
waits for JetStream's acknowledgement, within ``broker.publish_timeout``; an event carries
its CloudEvents id as ``Nats-Msg-Id``, so the stream drops it when it is published again
within ``DUPLICATE_WINDOW`` (the outbox republishes after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, ServiceUnavailableError
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
# Seconds between connection attempts (the first connection's, and after a disconnect).
RECONNECT_INTERVAL = 1
# Seconds between pings, and pings left unanswered before the connection counts as dead.
PING_INTERVAL = 10
MAX_OUTSTANDING_PINGS = 3
# Seconds a delivered command may go unacknowledged before it is delivered again; for a
# handler that runs longer the server is told it is still being handled, every third of it.
ACK_WAIT = 30.0
KEEP_ALIVE_INTERVAL = ACK_WAIT / 3
# Seconds each pull waits for commands: ``stop_consuming`` returns within about this long.
FETCH_WAIT = 1.0
# Commands delivered and unacknowledged at once, all replicas together (each takes at most
# ``broker.prefetch``); commands waiting for a retry count too.
MAX_ACK_PENDING = 10_000
# How long events are kept, and how long the events stream remembers an id to drop a republished event.
EVENTS_MAX_AGE = 7 * 24 * 3600.0
DUPLICATE_WINDOW = 300.0
DEAD_LETTER_REASON_HEADER = "x-dead-letter-reason"
MSG_ID_HEADER = "Nats-Msg-Id"
# JetStream's error code for "stream name already in use with a different configuration".
STREAM_EXISTS = 10058

log = get_logger(__name__)

T = TypeVar("T")


class BrokerUnavailableError(ResourceUnavailableError):
    """The broker could not be reached, or did not acknowledge in time."""

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
        self.events_subject = f"{namespace}.events"
        self.commands_subject = f"{namespace}.commands"
        self.dead_letter_subject = f"{namespace}.dead"
        self.events_stream = f"{namespace}-events"
        self.commands_stream = self.commands_consumer = f"{namespace}-commands"
        self.dead_letter_stream = f"{namespace}-dead"
        self._connection: Client | None = None
        self._jetstream: JetStreamContext | None = None
        self._connected_once = False
        self._closing = False
        self._declaring: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._handling: set[asyncio.Task[None]] = set()
        # Pull again once half the slots are free, as nats.go's Consume refills: fewer, larger pulls.
        self._refill_at = max(settings.prefetch // 2, 1)
        # The commands being handled, for one task to keep them alive (not one task each: cheaper).
        self._unsettled: set[_NatsDelivery] = set()
        self._keeping_alive: asyncio.Task[None] | None = None
        self._stop_fetching = asyncio.Event()
        # Set when fetching may go on: a handler finished (a slot is free), or stop was asked.
        self._wake = asyncio.Event()

    def asyncapi_server(self) -> dict[str, Any]:
        """The broker as the AsyncAPI document names it (never with its credentials)."""
        url = urlsplit(self._settings.url)
        return {"host": f"{url.hostname}:{url.port or 4222}", "protocol": "nats"}

    def event_channel(self, event_type: str) -> dict[str, Any]:
        """Where events of ``event_type`` go: their subject, in the events stream."""
        return {"address": f"{self.events_subject}.{event_type}"}

    def command_channel(self, command: str) -> dict[str, Any]:
        """Where commands of type ``command`` come from: their subject, in the commands stream."""
        return {
            "address": f"{self.commands_subject}.{command}",
            "description": f"Commands of type {command}, kept in the work-queue stream "
            f"{self.commands_stream} until handled.",
        }

    async def start(self) -> None:
        connection = self._connection = Client()
        try:
            await connection.connect(
                servers=[self._settings.url],
                name=self._settings.namespace,
                # nats-py annotates it as int, but takes seconds as a float (asyncio.wait_for).
                connect_timeout=cast(int, self._settings.connect_timeout),
                # -1: retry the first connection until start_timeout cancels it, and reconnect forever.
                max_reconnect_attempts=-1,
                reconnect_time_wait=RECONNECT_INTERVAL,
                ping_interval=PING_INTERVAL,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
            self._connected_once = True
            self._jetstream = connection.jetstream(timeout=self._settings.connect_timeout)
            await self._declare()  # resources.start_timeout bounds the whole start
        except BaseException:
            self._closing = True
            await connection.close()
            raise
        log.info("broker connected", events=self.events_stream, commands=self.commands_stream)

    async def stop(self) -> None:
        self._closing = True
        await self.stop_consuming()
        for task in (self._declaring, self._keeping_alive):
            if task is not None:
                task.cancel()
        if self._connection is not None:
            await self._connection.close()  # sends what is buffered (acknowledgements) first

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("connection", self.check_connection, critical=self._critical)]

    async def check_connection(self) -> None:
        if self._connection is None or not self._connection.is_connected:
            raise BrokerUnavailableError("not connected to NATS")

    async def publish(self, event: CloudEvent) -> None:
        """Publish ``event`` and wait for JetStream's ack; ``BrokerUnavailableError`` if none came."""
        span = self._tracing.start_span(f"send {event.type}", trace.SpanKind.PRODUCER, parent=event.headers)
        try:
            # While reconnecting nats-py would buffer the message: fail now instead.
            if not _started(self._connection).is_connected:
                raise BrokerUnavailableError("not connected to NATS")
            headers = {
                **event.headers,
                **headers_of(span),
                "content-type": CONTENT_TYPE,
                MSG_ID_HEADER: event.id,
            }
            await _started(self._jetstream).publish(
                f"{self.events_subject}.{event.type}",
                event.to_json(),
                timeout=self._settings.publish_timeout,
                headers=headers,
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
        subscription = await _started(self._jetstream).pull_subscribe_bind(
            self.commands_consumer, stream=self.commands_stream
        )
        self._stop_fetching.clear()
        self._fetching = asyncio.create_task(self._fetch(subscription, handle), name="fetch commands")
        if self._keeping_alive is None:
            self._keeping_alive = asyncio.create_task(self._keep_alive(), name="commands in progress")

    async def stop_consuming(self) -> None:
        """Stop fetching; returns once the last pull has ended (the handlers of what it brought run on)."""
        self._stop_fetching.set()
        self._wake.set()
        if self._fetching is not None:
            await asyncio.shield(self._fetching)
            self._fetching = None

    async def send_dead_letter(self, message: Msg, reason: str) -> None:
        """Publish a copy of ``message`` to the dead letters, with ``reason``, and wait for the ack."""
        metadata = message.metadata
        headers = {
            name: value
            for name, value in (message.headers or {}).items()
            if not name.lower().startswith("nats-")  # JetStream's own (expectations, ids) would apply again
        }
        # A header is one line; the id makes dead-lettering again (the term was lost) a no-op.
        headers[DEAD_LETTER_REASON_HEADER] = " ".join(reason[:1000].splitlines())
        headers[MSG_ID_HEADER] = f"{metadata.stream}:{metadata.sequence.stream}"
        await _started(self._jetstream).publish(
            f"{self.dead_letter_subject}.{message.subject}",
            message.data,
            timeout=self._settings.publish_timeout,
            headers=headers,
        )

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription, handle: Callable[[Delivery], Awaitable[None]]
    ) -> None:
        """Pull commands into the free slots, once half of them are free; handle each in a task of its own.

        Never cancelled: a pull cut short could leave commands it brought unhandled.
        """
        backoff = FIRST_BACKOFF
        while not self._stop_fetching.is_set():
            self._wake.clear()
            free = self._settings.prefetch - len(self._handling)
            if free < self._refill_at:
                await self._wake.wait()
                continue
            if not _started(self._connection).is_connected:  # a pull now would be buffered
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_fetching.wait(), RECONNECT_INTERVAL)
                continue
            try:
                messages = await subscription.fetch(free, timeout=FETCH_WAIT)
            except TimeoutError:  # no command came (nats-py's TimeoutError is one)
                continue
            except Exception as error:
                self._failures.warning("fetching commands failed; retrying", error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_fetching.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = FIRST_BACKOFF
            for message in messages:
                task = asyncio.create_task(self._handle(message, handle), name="handle command")
                self._handling.add(task)
                task.add_done_callback(self._handled)

    async def _handle(self, message: Msg, handle: Callable[[Delivery], Awaitable[None]]) -> None:
        delivery = _NatsDelivery(message, self)
        self._unsettled.add(delivery)
        try:
            await handle(delivery)
        except Exception:
            log.exception("handling a command failed", subject=message.subject)
        finally:
            self._unsettled.discard(delivery)

    async def _keep_alive(self) -> None:
        """Tell the server which commands are still being handled, so it does not deliver them again."""
        while True:
            await asyncio.sleep(KEEP_ALIVE_INTERVAL)
            # Those received since the last round have time enough until the next one.
            due = time.monotonic() - KEEP_ALIVE_INTERVAL
            for delivery in [delivery for delivery in self._unsettled if delivery.received <= due]:
                await delivery.keep_alive()

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._handling.discard(task)
        if self._settings.prefetch - len(self._handling) >= self._refill_at:
            self._wake.set()  # enough slots are free

    async def _declare(self) -> None:
        """Declare the streams and the consumer, retrying with backoff while JetStream is not ready."""
        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=FIRST_BACKOFF, max=MAX_BACKOFF),
            retry=retry_if_exception_type((TimeoutError, NoRespondersError, ServiceUnavailableError)),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._declare_once()

    async def _declare_once(self) -> None:
        jetstream = _started(self._jetstream)
        await self._declare_stream(
            StreamConfig(
                name=self.events_stream,
                subjects=[f"{self.events_subject}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                max_age=EVENTS_MAX_AGE,
                duplicate_window=DUPLICATE_WINDOW,
            )
        )
        await self._declare_stream(
            StreamConfig(
                name=self.commands_stream,
                subjects=[f"{self.commands_subject}.>"],
                retention=RetentionPolicy.WORK_QUEUE,  # a command is removed once handled
                storage=StorageType.FILE,
            )
        )
        await self._declare_stream(
            StreamConfig(
                name=self.dead_letter_stream,
                subjects=[f"{self.dead_letter_subject}.>"],
                retention=RetentionPolicy.LIMITS,  # kept until someone deals with them
                storage=StorageType.FILE,
            )
        )
        # Created, or updated to this configuration.
        await jetstream.add_consumer(
            self.commands_stream,
            ConsumerConfig(
                name=self.commands_consumer,
                durable_name=self.commands_consumer,
                filter_subject=f"{self.commands_subject}.>",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                # The consumer runner dead-letters a message at broker.max_deliveries, or one more
                # delivery if the processes handling it died; should it never settle one, the
                # server still stops delivering it here, rather than again every ack_wait forever.
                max_deliver=self._settings.max_deliveries + 1,
                max_ack_pending=max(MAX_ACK_PENDING, self._settings.prefetch),
            ),
        )

    async def _declare_stream(self, config: StreamConfig) -> None:
        """Create the stream; one that exists is kept as it is (an operator may have tuned it)."""
        jetstream = _started(self._jetstream)
        try:
            await jetstream.add_stream(config)
        except BadRequestError as error:
            if error.err_code != STREAM_EXISTS:
                raise
            name, subjects = str(config.name), config.subjects or []
            existing = (await jetstream.stream_info(name)).config
            missing = [subject for subject in subjects if subject not in (existing.subjects or [])]
            if missing:
                raise RuntimeError(f"the stream {name} exists without the subjects {missing}") from error
            log.info("stream exists with another configuration; kept as it is", stream=name)

    async def _redeclare(self) -> None:
        try:
            await self._declare()
        except Exception as error:
            log.warning("declaring the streams again failed", error=repr(error))

    async def _on_error(self, error: Exception) -> None:
        if not self._connected_once:
            self._failures.warning(
                "broker not reachable yet; retrying", error=repr(error), retry_in=RECONNECT_INTERVAL
            )
        elif not self._closing:
            self._failures.warning("broker connection error", key=type(error).__name__, error=repr(error))

    async def _on_disconnected(self) -> None:
        if self._connected_once and not self._closing:
            log.warning("broker disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("broker reconnected")
        # The server may have come back without them (a new one, a lost disk); stop() cancels it.
        if self._declaring is None or self._declaring.done():
            self._declaring = asyncio.create_task(self._redeclare(), name="declare streams")


class _NatsDelivery:
    def __init__(self, message: Msg, broker: Broker) -> None:
        self._message = message
        self._broker = broker
        self._settled = False
        self.received = time.monotonic()
        self.body = message.data
        self.headers: Mapping[str, str] = message.headers or {}
        # Counted by the consumer, including deliveries whose handler died or was too slow.
        self.deliveries = message.metadata.num_delivered

    async def ack(self) -> None:
        self._settled = True
        await self._message.ack()

    async def retry(self, delay: float) -> None:
        # The server delivers it again after ``delay``: no slot is held meanwhile.
        self._settled = True
        await self._message.nak(delay=delay)

    async def dead_letter(self, reason: str) -> None:
        await self._broker.send_dead_letter(self._message, reason)
        self._settled = True
        await self._message.term()  # removes it from the work queue, never delivered again

    async def keep_alive(self) -> None:
        """Unless it is settled, tell the server the command is still being handled (no redelivery yet)."""
        if not self._settled:
            with contextlib.suppress(Exception):  # the connection is gone: it is delivered again anyway
                await self._message.in_progress()


def _started(value: T | None) -> T:
    if value is None:
        raise RuntimeError("the broker is not started")
    return value


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "JetStream not ready yet; retrying",
        error=repr(error),
        attempt=state.attempt_number,
        retry_in=round(wait, 2),
    )
