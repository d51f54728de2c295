"""The service's API: one blueprint per module, registered in this order.

To add endpoints, create a module with a ``blueprint`` and add it to ``BLUEPRINTS``;
they are documented in ``/openapi.json`` (the chassis' own endpoints are not).
"""

from quart import Blueprint

from . import items

BLUEPRINTS: list[Blueprint] = [
    items.blueprint,
]
