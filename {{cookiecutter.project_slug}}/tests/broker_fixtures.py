"""Broker fixtures (a pytest plugin, see ``conftest.py``).

Broker tests run against the {% if cookiecutter.broker == "rabbitmq" %}RabbitMQ{% else %}NATS server (with JetStream){% endif %} named by ``<PREFIX>_TEST_BROKER_URL``,
each in a namespace of its own whose {% if cookiecutter.broker == "rabbitmq" %}exchange and queues{% else %}streams{% endif %} are deleted afterwards; without it
they are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from {{ cookiecutter.package_name }}.chassis.broker import Broker
from {{ cookiecutter.package_name }}.chassis.message_metrics import MessageMetrics
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    BrokerSettings,
    TracingSettings,
)

from .backing_servers import NEEDS_SERVER, server_url
from .broker_probe import BrokerProbe

TEST_BROKER_URL = f"{ENV_PREFIX}_TEST_BROKER_URL"
NEEDS_SERVER[TEST_BROKER_URL] = (
{%- if cookiecutter.broker == "rabbitmq" %}
    f"needs RabbitMQ: run `docker compose up -d --wait rabbitmq`, then "
    f"`make test` with {TEST_BROKER_URL}=amqp://guest:guest@localhost:5672/"
{%- else %}
    f"needs NATS: run `docker compose up -d --wait nats`, then "
    f"`make test` with {TEST_BROKER_URL}=nats://localhost:4222"
{%- endif %}
)


@pytest.fixture(scope="session")
def test_broker_url() -> str:
    return server_url(TEST_BROKER_URL)


@pytest.fixture
async def broker_settings(test_broker_url: str) -> AsyncIterator[BrokerSettings]:
    """Settings for a namespace of the test's own; what it created is deleted after the test."""
    settings = BrokerSettings(
        url=test_broker_url, namespace=f"test-{uuid.uuid4().hex[:16]}", retry_delay=0.05, max_deliveries=3
    )
    yield settings
    probe = BrokerProbe(settings)
    await probe.start()
    try:
        await probe.delete_everything()
    finally:
        await probe.stop()


@pytest.fixture
def broker_env(broker_settings: BrokerSettings) -> dict[str, str]:
    """Environment variables that point a service process at the test namespace."""
    return {
        f"{ENV_PREFIX}_BROKER_URL": broker_settings.url,
        f"{ENV_PREFIX}_BROKER_NAMESPACE": broker_settings.namespace,
    }


@pytest.fixture
async def probe(broker_settings: BrokerSettings) -> AsyncIterator[BrokerProbe]:
    """A bare client of the broker, watching the test namespace's events."""
    probe = BrokerProbe(broker_settings)
    await probe.start()
    yield probe
    await probe.stop()


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    broker = Broker(
        broker_settings,
        metrics=MessageMetrics(CollectorRegistry()),
        tracing=Tracing(TracingSettings(), service="test", version="0"),
    )
    await broker.start()
    yield broker
    await broker.stop()
