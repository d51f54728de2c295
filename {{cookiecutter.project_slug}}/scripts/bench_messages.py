"""Messages through the broker, the chassis against a bare client: part of ``make bench``.

Rounds alternate in one run (bare, chassis, bare, chassis...), so machine noise hits both
alike.  Each round publishes ``--messages`` messages of ``--size`` bytes from ``--publishers``
concurrent tasks, each waiting for its message's confirmation, at most ``--window`` of them
not yet handled, and consumes them with ``--prefetch`` messages in flight:
{%- if cookiecutter.broker == "rabbitmq" %}

- chassis: ``Broker.publish`` (a CloudEvent) -> the events exchange -> the commands queue
  (bound to it for the bench) -> ``ConsumerRunner``, which runs a no-op consumer and
  acknowledges, as production runs it: a JSON log line per message (to /dev/null), metrics,
  trace context without exporter, an inbox (in memory);
- bare: aio-pika alone, through a topic exchange and quorum queue of the same kind: the same
  messages (bodies and headers) published persistent with confirms, each decoded and
  acknowledged in a task of its own, as aio-pika runs its consumers.
{%- else %}

- chassis: ``Broker.publish`` (a CloudEvent, to the commands' subjects for the bench) -> the
  commands stream -> ``ConsumerRunner``, which runs a no-op consumer and acknowledges, as
  production runs it: a JSON log line per message (to /dev/null), metrics, trace context
  without exporter, an inbox (in memory);
- bare: nats-py alone, through a work-queue stream of the same kind: the same messages
  (bodies and headers) published with JetStream acknowledgements, pulled, each decoded and
  acknowledged in a task of its own (as the chassis, it handles a pull's messages at once).
{%- endif %}

The messages are the same on the wire, so the broker and the library do the same work on
both paths: what differs is the chassis' own code.

Each round gives messages/s from the first publish to the last acknowledgement, the p50 and
p99 of each message's time from publish to handled (acknowledged), and this process's CPU
time per message.  The medians are compared: the chassis may cost at most 20% of the bare
throughput.

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
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

{% if cookiecutter.broker == "rabbitmq" -%}
import aio_pika
{% else -%}
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
{% endif -%}
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.chassis.broker import Broker
from {{ cookiecutter.package_name }}.chassis.consumers import (
    Consumer,
    ConsumerRunner,
    Delivery,
    RetryPolicy,
)
from {{ cookiecutter.package_name }}.chassis.events import CONTENT_TYPE, CloudEvent
from {{ cookiecutter.package_name }}.chassis.logging import configure_logging
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
from {{ cookiecutter.package_name }}.chassis.server import loop_factory
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    BrokerSettings,
    LoggingSettings,
    Settings,
    TracingSettings,
)

PACKAGE = "{{ cookiecutter.package_name }}"
BROKER = "{{ 'RabbitMQ' if cookiecutter.broker == 'rabbitmq' else 'NATS' }}"
DEFAULT_PORT = {{ 5672 if cookiecutter.broker == "rabbitmq" else 4222 }}
COMMAND = "bench.noop"
SOURCE = "/bench"
# Each message's number in its round, a header of both paths' messages.
SEQ_HEADER = "x-bench-seq"
# The trace context the chassis' messages carry, which the bare client's carry too (the same bytes).
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Seconds a round, or a connection, may take before the run fails.
ROUND_TIMEOUT = 60.0
CONNECT_TIMEOUT = 10.0
# The chassis may cost at most this share of the bare throughput.
BUDGET = 0.20


class Payload(BaseModel):
    seq: int
    text: str


async def do_nothing(data: Payload, services: None) -> None:
    """The consumer's handler: the bench measures everything around it."""


NOOP = Consumer(command=COMMAND, data=Payload, handle=do_nothing, summary="Does nothing (bench).")


@dataclasses.dataclass(frozen=True)
class Figures:
    messages_per_second: float
    p50_ms: float
    p99_ms: float
    # This process's CPU time per message (publishing and consuming): what the chassis adds shows here first.
    cpu_us: float


@dataclasses.dataclass(frozen=True)
class Workload:
    """What a round sends, and how."""

    events: Sequence[CloudEvent]
    publishers: int
    # At most this many messages published and not yet handled: the backlog, hence the latency,
    # does not grow with the number of messages.
    window: int


class Tally:
    """When each message of a round was published and handled; ``done`` once all were handled."""

    def __init__(self, workload: Workload) -> None:
        messages = len(workload.events)
        self.sent = [0.0] * messages
        self.handled = [0.0] * messages
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


def make_events(messages: int, size: int) -> list[CloudEvent]:
    """A round's messages: CloudEvents of ``COMMAND`` whose JSON is about ``size`` bytes."""
    events = []
    for seq in range(messages):
        event = CloudEvent(type=COMMAND, source=SOURCE, data={"seq": seq, "text": ""}, headers={})
        padding = "x" * max(size - len(event.to_json()), 0)
        data = {"seq": seq, "text": padding}
        events.append(dataclasses.replace(event, data=data, headers={SEQ_HEADER: str(seq)}))
    return events


async def publish_all(
    workload: Workload, publish: Callable[[CloudEvent], Awaitable[None]], tally: Tally
) -> None:
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
        self._handled: set[tuple[str, str]] = set()

    @contextlib.asynccontextmanager
    async def once(self, consumer: str, event_id: str) -> AsyncIterator[bool]:
        key = (consumer, event_id)
        if key in self._handled:
            yield False
            return
        yield True
        self._handled.add(key)


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


async def chassis_round(settings: BrokerSettings, workload: Workload) -> Figures:
    registry = CollectorRegistry()
    metrics = MessageMetrics(registry)
    tracing = Tracing(TracingSettings(), service=PACKAGE, version="bench")
    broker = Broker(settings, metrics=metrics, tracing=tracing)
    tally = Tally(workload)
    runner = ConsumerRunner(
        TimedSource(broker, tally),
        [NOOP],
        None,
        inbox=MemoryInbox(),
        retries=RetryPolicy(settings.max_deliveries, settings.retry_delay),
        max_message_size=settings.max_message_size,
        metrics=metrics,
        tracing=tracing,
    )
    await asyncio.wait_for(broker.start(), CONNECT_TIMEOUT)
    try:
        await route_events_to_commands(broker, settings)
        await runner.start()
        await publish_all(workload, broker.publish, tally)
        await tally.wait()
        await runner.stop()
    finally:
        await broker.stop()
    outcome = {"consumer": COMMAND, "outcome": "handled"}
    handled = registry.get_sample_value("messages_consumed_total", outcome)
    if handled != len(workload.events):
        raise RuntimeError(f"the consumer runner handled {handled} of {len(workload.events)} messages")
    return tally.figures()
{% if cookiecutter.broker == "rabbitmq" %}

# RabbitMQ: the chassis declares <ns>.events (topic exchange), <ns>.commands and
# <ns>.commands.dlq (quorum queues); the bare client <ns>.bare (both kinds).


async def connect(settings: BrokerSettings) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(settings.url, timeout=CONNECT_TIMEOUT)


async def route_events_to_commands(broker: Broker, settings: BrokerSettings) -> None:
    """Bench only: bind the commands queue to the events exchange, so what is published is consumed."""
    connection = await connect(settings)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(broker.commands_queue)
        await queue.bind(broker.events_exchange, routing_key="#")


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
            json.loads(message.body)  # what any consumer does first
            await message.ack()
            tally.mark_handled(int(str(message.headers[SEQ_HEADER])))

        async def publish(event: CloudEvent) -> None:
            message = aio_pika.Message(
                event.to_json(),
                content_type=CONTENT_TYPE,
                message_id=event.id,
                headers={**event.headers, "traceparent": TRACEPARENT},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=event.type)

        consumer_tag = await queue.consume(received)
        await publish_all(workload, publish, tally)
        await tally.wait()
        await queue.cancel(consumer_tag)
    return tally.figures()


async def delete_namespace(settings: BrokerSettings) -> list[str]:
    """Delete what the run created; returns what could not be deleted."""
    namespace = settings.namespace
    queues = [f"{namespace}.commands", f"{namespace}.commands.dlq", f"{namespace}.bare"]
    exchanges = [f"{namespace}.events", f"{namespace}.bare"]
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
# <ns>-dead; the bare client <ns>-bare.


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


async def bare_round(settings: BrokerSettings, workload: Workload) -> Figures:
    connection = await connect(settings)
    try:
        jetstream = connection.jetstream(timeout=settings.publish_timeout)
        name, subject = f"{settings.namespace}-bare", f"{settings.namespace}.bare"
        await jetstream.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"{subject}.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )
        await jetstream.add_consumer(name, ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT))
        subscription = await jetstream.pull_subscribe_bind(name, stream=name)
        tally = Tally(workload)

        async def received(message: Msg) -> None:
            json.loads(message.data)  # what any consumer does first
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

        async def publish(event: CloudEvent) -> None:
            headers = {
                **event.headers,
                "traceparent": TRACEPARENT,
                "content-type": CONTENT_TYPE,
                "Nats-Msg-Id": event.id,
            }
            await jetstream.publish(f"{subject}.{event.type}", event.to_json(), headers=headers)

        fetching = asyncio.create_task(fetch())
        try:
            await publish_all(workload, publish, tally)
            await tally.wait()
        finally:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
    finally:
        await connection.close()
    return tally.figures()


async def delete_namespace(settings: BrokerSettings) -> list[str]:
    """Delete what the run created; returns what could not be deleted."""
    namespace = settings.namespace
    streams = [f"{namespace}-events", f"{namespace}-commands", f"{namespace}-dead", f"{namespace}-bare"]
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

ROUNDS: dict[str, Callable[[BrokerSettings, Workload], Awaitable[Figures]]] = {
    "bare": bare_round,
    "chassis": chassis_round,
}


async def run(settings: BrokerSettings, args: argparse.Namespace) -> dict[str, list[Figures]]:
    """The interleaved rounds; everything of the namespace is deleted at the end, even on failure."""
    results: dict[str, list[Figures]] = {path: [] for path in ROUNDS}
    try:
        for number in range(1, args.rounds + 1):
            for path, round_ in ROUNDS.items():
                workload = Workload(make_events(args.messages, args.size), args.publishers, args.window)
                figures = await round_(settings, workload)
                results[path].append(figures)
                print(
                    f"{number:>5}  {path:<9}{figures.messages_per_second:>12,.0f}"
                    f"{figures.p50_ms:>9.2f}{figures.p99_ms:>9.2f}{figures.cpu_us:>12.0f}"
                )
    finally:
        try:
            left = await asyncio.shield(delete_namespace(settings))
        except Exception as error:  # out of reach (for the rounds too, most likely)
            left = [f"whatever was made ({error!r})"]
        if left:
            print(f"could not delete, of {settings.namespace}: {', '.join(left)}", file=sys.stderr)
    return results


def median(rounds: Sequence[Figures]) -> Figures:
    return Figures(
        statistics.median(figures.messages_per_second for figures in rounds),
        statistics.median(figures.p50_ms for figures in rounds),
        statistics.median(figures.p99_ms for figures in rounds),
        statistics.median(figures.cpu_us for figures in rounds),
    )


def main(argv: Sequence[str] | None = None) -> int:
    defaults = BrokerSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--broker-url",
        default=os.environ.get(f"{ENV_PREFIX}_BROKER_URL") or defaults.url,
        help=f"the broker (default: {ENV_PREFIX}_BROKER_URL, else {defaults.url})",
    )
    parser.add_argument("--messages", type=int, default=2000, help="messages per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each path (default 3)")
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
    print(f"{'round':>5}  {'path':<9}{'messages/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/msg':>12}")
    # Every log line goes where production's go, but to /dev/null (the stream is taken now).
    with open(os.devnull, "w", encoding="utf-8") as logs:
        with contextlib.redirect_stdout(logs):
            configure_logging(LoggingSettings(), service=PACKAGE, version="bench")
        try:
            with asyncio.Runner(loop_factory=loop_factory(Settings())) as runner:
                results = runner.run(run(settings, args))
        except Exception as error:
            print(f"error: {error!r}", file=sys.stderr)
            return 1
    bare, chassis = median(results["bare"]), median(results["chassis"])
    ratio = chassis.messages_per_second / bare.messages_per_second
    print(
        f"messages: chassis {chassis.messages_per_second:,.0f}/s vs bare {bare.messages_per_second:,.0f}/s "
        f"({ratio:.2f}); p99 handling {chassis.p99_ms:.1f} ms vs {bare.p99_ms:.1f} ms; "
        f"CPU {chassis.cpu_us:.0f} us vs {bare.cpu_us:.0f} us per message"
    )
    verdict = "within" if ratio >= 1 - BUDGET else "OVER"
    print(f"the chassis keeps {ratio:.0%} of the bare throughput: {verdict} its budget ({1 - BUDGET:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
