"""Who may call the API: anyone; the service was generated without authentication (auth = none).

``create_app`` calls ``install_api_access`` for the API's blueprints.  Put the checks here
that decide who may call them (a service generated with auth = oidc has bearer tokens here).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from quart import Blueprint, Quart

from .chassis.lifecycle import Lifecycle
from .settings import Settings


def install_api_access(
    app: Quart,
    settings: Settings,
    lifecycle: Lifecycle,
    blueprints: Iterable[Blueprint],
    *,
    registry: CollectorRegistry,
) -> None:
    """Anyone may call every route of ``blueprints``: nothing to install."""
