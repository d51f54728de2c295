"""What only JetStream needs: a command handled for longer than the ack wait is not delivered again.

Run against the NATS server named by ``<PREFIX>_TEST_BROKER_URL``; skipped without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.chassis import broker as broker_module
from {{ cookiecutter.package_name }}.chassis.broker import Broker
from {{ cookiecutter.package_name }}.chassis.consumers import (
    Consumer,
    ConsumerRunner,
    RetryPolicy,
)
from {{ cookiecutter.package_name }}.chassis.events import CloudEvent
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.settings import (
    BrokerSettings,
    TracingSettings,
)

from .broker_probe import BrokerProbe

# Seconds: the server delivers a command again when it is not acknowledged within ACK_WAIT.
ACK_WAIT = 1.0
HANDLING = 2.5


class Job(BaseModel):
    n: int


async def test_a_command_handled_longer_than_the_ack_wait_is_kept_alive_not_delivered_again(
    broker_settings: BrokerSettings, probe: BrokerProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "ACK_WAIT", ACK_WAIT)  # the consumer is declared with it
    monkeypatch.setattr(broker_module, "KEEP_ALIVE_INTERVAL", ACK_WAIT / 3)
    started: list[int] = []
    finished = asyncio.Event()

    async def slow(data: Job, _services: Any) -> None:
        started.append(data.n)
        await asyncio.sleep(HANDLING)
        finished.set()

    registry = CollectorRegistry()
    metrics = MessageMetrics(registry)
    tracing = Tracing(TracingSettings(), service="test", version="0")
    broker = Broker(broker_settings, metrics=metrics, tracing=tracing)
    runner = ConsumerRunner(
        broker,
        [Consumer("items.create", Job, slow, summary="Takes its time.")],
        None,
        inbox=_NoInbox(),  # a delivery again would run the handler again
        retries=RetryPolicy(broker_settings.max_deliveries, broker_settings.retry_delay),
        max_message_size=broker_settings.max_message_size,
        metrics=metrics,
        tracing=tracing,
    )
    await broker.start()
    try:
        await runner.start()
        await probe.send_command(CloudEvent(type="items.create", source="/test", data={"n": 1}))
        await asyncio.wait_for(finished.wait(), HANDLING + 5)
        await asyncio.sleep(ACK_WAIT)  # a delivery the acknowledgement came too late for would be here
        await runner.stop()
    finally:
        await broker.stop()
    assert started == [1]
    outcome = {"consumer": "items.create", "outcome": "handled"}
    assert registry.get_sample_value("messages_consumed_total", outcome) == 1


class _NoInbox:
    """Every delivery is new: this test counts deliveries, not handlings."""

    def once(self, consumer: str, source: str, event_id: str) -> contextlib.nullcontext[bool]:
        return contextlib.nullcontext(True)
