"""The service's own resources, built from settings in one place and reached through the app.

Handlers get them with ``services_of(current_app)``; tests pass their own
``Services`` to ``create_app`` to substitute any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from quart import Quart

from ..chassis.http_client import HttpClient
from .items import InMemoryItemRepository, ItemRepository

EXTENSION_KEY = "services"


@dataclasses.dataclass(frozen=True)
class Services:
    items: ItemRepository
    # One client per upstream declared in settings.upstreams, by name.
    upstreams: Mapping[str, HttpClient] = dataclasses.field(default_factory=dict)


def build_services(upstreams: Mapping[str, HttpClient]) -> Services:
    return Services(items=InMemoryItemRepository(), upstreams=upstreams)


def services_of(app: Quart) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    return services
