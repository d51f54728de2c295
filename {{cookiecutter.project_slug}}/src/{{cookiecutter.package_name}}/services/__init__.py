"""The service's own resources, built from settings in one place and reached through the app.

Handlers get them with ``part_of(current_app, Services)``; tests pass their own
``Services`` to ``create_app`` to substitute any of them.  (Clients of other
services are the chassis' part: ``part_of(current_app, Upstreams)``.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

{% if cookiecutter.cache == "redis" -%}
from ..chassis.cache import Cache, CacheMetrics
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from ..chassis.database import Database
{% endif -%}
from ..chassis.lifecycle import Resource
from ..chassis.tracing import Tracing
from ..settings import Settings
{% if cookiecutter.cache == "redis" -%}
from .cached_items import CachedItemRepository
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from .items import ItemRepository
{% else -%}
from .items import InMemoryItemRepository, ItemRepository
{% endif -%}
{% if cookiecutter.broker != "none" -%}
from .messaging import Messaging
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from .postgres_items import PostgresItemRepository
{% endif %}

@dataclasses.dataclass(frozen=True)
class Services:
    items: ItemRepository
    # What the repositories are built on (connection pools), by name: started before them.
    backing: Mapping[str, Resource] = dataclasses.field(default_factory=dict)
    # Work beside the requests (background tasks), by name: started after the repositories,
    # stopped before them.
    background: dict[str, Resource] = dataclasses.field(default_factory=dict)


def build_services(settings: Settings, *, registry: CollectorRegistry, tracing: Tracing) -> Services:
    """The resources ``settings`` describe; ``registry`` takes their metrics, ``tracing`` their spans."""
    backing: dict[str, Resource] = {}
{%- if cookiecutter.database == "postgresql" %}
    database = backing["database"] = Database(settings.database, registry=registry, tracing=tracing)
    items: ItemRepository = PostgresItemRepository(database)
{%- else %}
    items: ItemRepository = InMemoryItemRepository()
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    messaging = Messaging(settings.broker, {% if cookiecutter.database == "postgresql" %}database, {% endif %}registry=registry, tracing=tracing)
    backing["broker"] = messaging.broker
    items = messaging.published(items)
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache = backing["cache"] = Cache(settings.cache, metrics=CacheMetrics(registry), tracing=tracing)
    items = CachedItemRepository(items, cache, ttl=settings.cache.ttl, key_prefix=settings.cache.key_prefix)
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    services = Services(items=items, backing=backing)
    services.background.update(messaging.background(services))
    return services
{%- else %}
    return Services(items=items, backing=backing)
{%- endif %}
