"""The service's endpoints: one blueprint per module, registered in this order.

To add endpoints, create a module with a ``blueprint`` and add it to ``BLUEPRINTS``.
"""

from quart import Blueprint

from . import home

BLUEPRINTS: list[Blueprint] = [
    home.blueprint,
]
