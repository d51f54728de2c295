"""The service's own resources, built from settings in one place and reached through the app.

Handlers get them with ``part_of(current_app, Services)``; tests pass their own
``Services`` to ``create_app`` to substitute any of them.  (Clients of other
services are the chassis' part: ``part_of(current_app, Upstreams)``.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

{% if cookiecutter.broker != "none" -%}
from ..chassis.broker import Broker
{% endif -%}
{% if cookiecutter.cache == "redis" -%}
from ..chassis.cache import Cache, CacheMetrics
{% endif -%}
{% if cookiecutter.broker != "none" -%}
from ..chassis.consumers import ConsumerRunner, RetryPolicy
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from ..chassis.database import Database
{% endif -%}
{% if cookiecutter.broker != "none" and cookiecutter.database == "postgresql" -%}
from ..chassis.inbox import DatabaseInbox
{% endif -%}
from ..chassis.lifecycle import Resource
{% if cookiecutter.broker != "none" and cookiecutter.database == "none" -%}
from ..chassis.memory_inbox import MemoryInbox
{% endif -%}
{% if cookiecutter.broker != "none" -%}
from ..chassis.message_metrics import MessageMetrics
{% endif -%}
{% if cookiecutter.broker != "none" and cookiecutter.database == "postgresql" -%}
from ..chassis.outbox import Outbox, OutboxMetrics, OutboxRelay
{% endif -%}
from ..chassis.tracing import Tracing
from ..settings import Settings
{% if cookiecutter.cache == "redis" -%}
from .cached_items import CachedItemRepository
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from .items import ItemRepository
from .postgres_items import PostgresItemRepository
{% else -%}
from .items import InMemoryItemRepository, ItemRepository
{% endif -%}
{% if cookiecutter.broker != "none" and cookiecutter.database == "none" -%}
from .published_items import PublishingItemRepository
{% endif %}

@dataclasses.dataclass(frozen=True)
class Services:
    items: ItemRepository
    # What the repositories are built on (connection pools), by name: started before them.
    backing: Mapping[str, Resource] = dataclasses.field(default_factory=dict)
    # Work beside the requests (message consumers, relays), by name: started after the
    # repositories, stopped before them.
    background: dict[str, Resource] = dataclasses.field(default_factory=dict)


def build_services(settings: Settings, *, registry: CollectorRegistry, tracing: Tracing) -> Services:
    """The resources ``settings`` describe; ``registry`` takes their metrics, ``tracing`` their spans."""
    backing: dict[str, Resource] = {}
{%- if cookiecutter.database == "postgresql" %}
    database = backing["database"] = Database(settings.database)
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    messages = MessageMetrics(registry)
    broker = backing["broker"] = Broker(settings.broker, metrics=messages, tracing=tracing)
{%- endif %}
{%- if cookiecutter.database == "postgresql" and cookiecutter.broker != "none" %}
    outbox = Outbox()
    items: ItemRepository = PostgresItemRepository(database, outbox)
{%- elif cookiecutter.database == "postgresql" %}
    items: ItemRepository = PostgresItemRepository(database)
{%- else %}
    items: ItemRepository = InMemoryItemRepository()
{%- endif %}
{%- if cookiecutter.database == "none" and cookiecutter.broker != "none" %}
    items = PublishingItemRepository(items, broker)
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache = backing["cache"] = Cache(settings.cache, metrics=CacheMetrics(registry))
    items = CachedItemRepository(items, cache, ttl=settings.cache.ttl, key_prefix=settings.cache.key_prefix)
{%- endif %}
{%- if cookiecutter.broker == "none" %}
    return Services(items=items, backing=backing)
{%- else %}
    services = Services(items=items, backing=backing)
{%- if cookiecutter.database == "postgresql" %}
    services.background["outbox relay"] = OutboxRelay(
        database, outbox, broker, interval=settings.broker.relay_interval, metrics=OutboxMetrics(registry)
    )
{%- endif %}
    if settings.broker.consume:
        from ..consumers import CONSUMERS  # here: the consumers need Services, defined above

        services.background["consumers"] = ConsumerRunner(
            broker,
            CONSUMERS,
            services,
{%- if cookiecutter.database == "postgresql" %}
            inbox=DatabaseInbox(database),
{%- else %}
            inbox=MemoryInbox(),
{%- endif %}
            retries=RetryPolicy(settings.broker.max_deliveries, settings.broker.retry_delay),
            metrics=messages,
            tracing=tracing,
        )
    return services
{%- endif %}
