"""The service's own resources, built from settings in one place and reached through the app.

Handlers get them with ``services_of(current_app)``; tests pass their own
``Services`` to ``create_app`` to substitute any of them.  (Clients of other
services are the chassis' part: ``upstreams_of(current_app)``.)
"""

from __future__ import annotations

import dataclasses
{% if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" -%}
from collections.abc import Mapping

from prometheus_client import CollectorRegistry
from quart import Quart

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
{% endif -%}
{% else %}
from quart import Quart

from .items import InMemoryItemRepository, ItemRepository
{% endif %}
EXTENSION_KEY = "services"


@dataclasses.dataclass(frozen=True)
class Services:
    items: ItemRepository
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" %}
    # What the repositories are built on (connection pools), by name: started before them.
    backing: Mapping[str, Resource] = dataclasses.field(default_factory=dict)
{%- endif %}

{% if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" %}
def build_services(settings: Settings, *, registry: CollectorRegistry) -> Services:
{%- if cookiecutter.database == "postgresql" %}
    database = Database(settings.database)
    items: ItemRepository = PostgresItemRepository(database)
{%- else %}
    items: ItemRepository = InMemoryItemRepository()
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache = Cache(settings.cache, metrics=CacheMetrics(registry))
    items = CachedItemRepository(items, cache, ttl=settings.cache.ttl, key_prefix=settings.cache.key_prefix)
{%- endif %}
{%- if cookiecutter.database == "postgresql" and cookiecutter.cache == "redis" %}
    return Services(items=items, backing={"database": database, "cache": cache})
{%- elif cookiecutter.database == "postgresql" %}
    return Services(items=items, backing={"database": database})
{%- else %}
    return Services(items=items, backing={"cache": cache})
{%- endif %}
{%- else %}
def build_services() -> Services:
    return Services(items=InMemoryItemRepository())
{%- endif %}


def services_of(app: Quart) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    return services
