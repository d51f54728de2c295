"""Consumers: handlers of the commands the service accepts, run at least once and never lost.

A ``Consumer`` declares the command it handles (a CloudEvents ``type``), the model of the
command's ``data`` and the handler.  For each message the broker delivers, the runner:

1. refuses what is larger than ``broker.max_message_size`` or was delivered more often than
   ``broker.max_deliveries`` without an outcome (the processes handling it died), before
   reading it; then parses the CloudEvent (nested at most 32 deep; id, source and type
   bounded and printable), finds the consumer of its type and validates its data.  A
   message that fails any of these can never succeed, so it is dead-lettered at once, with
   the reason logged;
2. acknowledges, without running the handler again, an event this consumer has handled
   already (the inbox remembers handled events by source and id: a redelivery is not a new
   command);
3. runs the handler in a consumer span (a child of the publisher's, through the message's
   ``traceparent``), with the message's request id in every log line;
4. acknowledges after the handler succeeded.  A handler that raises ``CommandRejectedError`` has its
   message dead-lettered at once; any other error is retried after a backoff
   (``broker.retry_delay``, doubled each time) until ``broker.max_deliveries``, then
   dead-lettered.

One log line per message says what happened.  A stop signal stops new deliveries at once
(``drain``); the running handlers finish (within ``resources.stop_timeout``) and
acknowledge; whatever was not acknowledged is delivered again, to this service's other
replicas or after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from .error_reporting import report_error
from .events import REQUEST_ID_HEADER, CloudEvent, InvalidEventError, parse_event
from .lifecycle import Resource
from .logging import RequestFields, bind_request_fields, frequent_line, get_logger
from .message_metrics import UNKNOWN, MessageMetrics
from .tracing import Tracing

# Longest wait before a failed message is delivered again, however many attempts it had.
MAX_RETRY_DELAY = 60.0

log = get_logger(__name__)

DataT = TypeVar("DataT", bound=BaseModel)
ServicesT = TypeVar("ServicesT")


class CommandRejectedError(Exception):
    """The command can never succeed (it asks for what cannot be done): dead-letter it now.

    The message says why, for the log and the dead letter; it must not quote private data.
    """


@dataclasses.dataclass(frozen=True)
class Consumer(Generic[DataT, ServicesT]):
    """The handler of one command: ``handle(data, services)``, run at least once per command."""

    command: str
    data: type[DataT]
    handle: Callable[[DataT, ServicesT], Awaitable[None]]
    summary: str

    @property
    def name(self) -> str:
        return self.command


class Delivery(Protocol):
    """A message as the broker delivered it, and the three ways to settle it."""

    body: bytes
    headers: Mapping[str, str]
    # How many times the broker has delivered it, this time included (1 the first time).
    deliveries: int

    async def ack(self) -> None: ...

    async def retry(self, delay: float) -> None:
        """Have the broker deliver it again, not before ``delay`` seconds."""

    async def dead_letter(self, reason: str) -> None:
        """Move it to the dead-letter destination, with ``reason``, and settle it."""


class CommandSource(Protocol):
    """The broker, as the runner sees it."""

    async def consume(self, handle: Callable[[Delivery], Awaitable[None]]) -> None:
        """Start delivering commands to ``handle``, at most ``broker.prefetch`` at once."""

    async def stop_consuming(self) -> None:
        """Stop delivering; messages delivered and not yet settled are delivered again later."""


class Inbox(Protocol):
    """Which events each consumer has handled already."""

    def once(self, consumer: str, source: str, event_id: str) -> AbstractAsyncContextManager[bool]:
        """A block that runs the handling: ``True`` if the event is new to ``consumer``.

        An event is its ``source`` and ``id`` (CloudEvents makes only the pair unique): two
        senders may use the same id for different events.

        The event counts as handled only when the block ends without raising.
        """


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    max_deliveries: int
    first_delay: float

    def delay(self, deliveries: int) -> float:
        """Seconds to wait before delivery number ``deliveries + 1``."""
        return float(min(self.first_delay * 2 ** (deliveries - 1), MAX_RETRY_DELAY))


class ConsumerRunner(Resource, Generic[ServicesT]):
    """Runs the consumers on the commands ``source`` delivers (a resource: it starts and drains)."""

    def __init__(
        self,
        source: CommandSource,
        consumers: Sequence[Consumer[Any, ServicesT]],
        services: ServicesT,
        *,
        inbox: Inbox,
        retries: RetryPolicy,
        max_message_size: int,
        metrics: MessageMetrics,
        tracing: Tracing,
    ) -> None:
        self._source = source
        self._consumers = {consumer.command: consumer for consumer in consumers}
        if len(self._consumers) != len(consumers):
            raise ValueError("two consumers handle the same command")
        self._services = services
        self._inbox = inbox
        self._retries = retries
        self._max_message_size = max_message_size
        self._metrics = metrics
        self._tracing = tracing
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # One line per message: written as the access lines are, not through structlog's chain.
        self._handled_line = frequent_line("message handled", __name__)

    async def start(self) -> None:
        await self._source.consume(self.handle)

    async def drain(self) -> None:
        """Take no more messages (a stop signal came); the ones being handled go on."""
        await self._source.stop_consuming()

    async def stop(self) -> None:
        """Take no more messages; wait for the ones being handled (``resources.stop_timeout`` bounds it)."""
        await self._source.stop_consuming()
        if self._in_flight:
            log.info("waiting for messages being handled", messages=self._in_flight)
        await self._idle.wait()

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery and settle it: acknowledged, retried or dead-lettered."""
        self._in_flight += 1
        if self._in_flight == 1:
            self._idle.clear()
        try:
            await self._handle_and_record(delivery)
        finally:
            # Whatever failed on the way (even writing the log line), stopping must not wait for it.
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _handle_and_record(self, delivery: Delivery) -> None:
        """Handle ``delivery`` in a consumer span, then count it and write its log line."""
        started = time.perf_counter()
        span = self._tracing.start_span("process", trace.SpanKind.CONSUMER, parent=delivery.headers)
        context = trace.set_span_in_context(span)
        token = otel_context.attach(context)
        span_context = span.get_span_context()
        bind_request_fields(
            RequestFields(
                request_id=delivery.headers.get(REQUEST_ID_HEADER, ""),
                trace_id=format(span_context.trace_id, "032x"),
                span_id=format(span_context.span_id, "016x"),
            )
        )
        consumer_name, outcome, fields = UNKNOWN, "dead_lettered", dict[str, Any]()
        try:
            consumer_name, outcome, fields = await self._handle(delivery, span)
        except Exception as error:  # settling failed: the broker went away, and delivers it again
            outcome, fields = "unsettled", {"error": repr(error)}
        finally:
            otel_context.detach(token)
            span.end()
            seconds = time.perf_counter() - started
            self._metrics.consumed_message(consumer_name, outcome, seconds)
            if self._handled_line is not None:
                self._handled_line(
                    consumer=consumer_name,
                    outcome=outcome,
                    deliveries=delivery.deliveries,
                    duration_ms=round(seconds * 1000, 2),
                    **fields,
                )

    async def _handle(self, delivery: Delivery, span: trace.Span) -> tuple[str, str, dict[str, Any]]:
        """Handle ``delivery``; returns the consumer's name, the outcome and what to log.

        What can never succeed is dead-lettered as soon as it is known, cheapest check first:
        a sender must not be able to make a message cost more than a refusal.
        """
        size, limit = len(delivery.body), self._max_message_size
        if size > limit:
            reason = f"too large: {size} bytes, more than broker.max_message_size ({limit})"
            return await _dead_letter(delivery, UNKNOWN, reason, {})
        if delivery.deliveries > self._retries.max_deliveries:
            reason = f"delivered {delivery.deliveries} times without an outcome"
            return await _dead_letter(delivery, UNKNOWN, reason, {})
        try:
            event = parse_event(delivery.body, delivery.headers)
        except InvalidEventError as error:
            return await _dead_letter(delivery, UNKNOWN, f"not a CloudEvent: {error}", {})
        fields: dict[str, Any] = {"message_id": event.id, "type": event.type}
        consumer = self._consumers.get(event.type)
        if consumer is None:
            reason = f"no consumer handles the type {event.type!r}"
            return await _dead_letter(delivery, UNKNOWN, reason, fields)
        if span.is_recording():
            span.update_name(f"process {consumer.name}")
        try:
            data = consumer.data.model_validate(event.data)
        except ValidationError as error:
            return await _dead_letter(delivery, consumer.name, f"invalid data: {_first_error(error)}", fields)
        return consumer.name, *await self._run(consumer, event, data, delivery, fields)

    async def _run(
        self,
        consumer: Consumer[Any, ServicesT],
        event: CloudEvent,
        data: BaseModel,
        delivery: Delivery,
        fields: dict[str, Any],
    ) -> tuple[str, dict[str, Any]]:
        try:
            async with self._inbox.once(consumer.name, event.source, event.id) as first_time:
                if first_time:
                    await consumer.handle(data, self._services)
        except CommandRejectedError as error:
            await delivery.dead_letter(str(error))
            return "dead_lettered", {**fields, "reason": str(error)}
        except Exception as error:
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            if delivery.deliveries >= self._retries.max_deliveries:
                log.exception("message failed for the last time", **fields)
                report_error(error, consumer=consumer.name, event_id=event.id)
                await delivery.dead_letter(reason)
                return "dead_lettered", {**fields, "reason": reason}
            log.warning("message failed; it will be retried", error=reason, **fields)
            await delivery.retry(self._retries.delay(delivery.deliveries))
            return "retried", {**fields, "reason": reason}
        await delivery.ack()
        return ("handled" if first_time else "duplicate"), fields


async def _dead_letter(
    delivery: Delivery, consumer: str, reason: str, fields: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    await delivery.dead_letter(reason)
    return consumer, "dead_lettered", {**fields, "reason": reason}


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "data"
    return f"{location}: {first['msg']} ({error.error_count()} error(s))"
