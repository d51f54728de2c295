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
from ..settings import Settings
{% if cookiecutter.cache == "redis" -%}
from .cached_items import CachedItemRepository
{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
from .items import ItemRepository
from .postgres_items import PostgresItemRepository
{% else -%}
from .items import InMemoryItemRepository, ItemRepository
{% endif %}

@dataclasses.dataclass(frozen=True)
class Services:
    items: ItemRepository
    # What the repositories are built on (connection pools), by name: started before them.
    backing: Mapping[str, Resource] = dataclasses.field(default_factory=dict)


def build_services(settings: Settings, *, registry: CollectorRegistry) -> Services:
    """The resources ``settings`` describe; ``registry`` takes their metrics."""
    backing: dict[str, Resource] = {}
{%- if cookiecutter.database == "postgresql" %}
    database = backing["database"] = Database(settings.database)
    items: ItemRepository = PostgresItemRepository(database)
{%- else %}
    items: ItemRepository = InMemoryItemRepository()
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache = backing["cache"] = Cache(settings.cache, metrics=CacheMetrics(registry))
    items = CachedItemRepository(items, cache, ttl=settings.cache.ttl, key_prefix=settings.cache.key_prefix)
{%- endif %}
    return Services(items=items, backing=backing)
