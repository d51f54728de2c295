"""Who may call the API: the holders of a bearer token the identity provider issued.

``create_app`` calls ``install_api_access`` for the API's blueprints; a route grants what
``@requires_scopes`` and ``@public`` beside it say (``chassis/auth.py``), and the identity
provider is ``settings.auth``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from quart import Blueprint, Quart

from .chassis.auth import install_auth
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
    """Require a valid token on every route of ``blueprints`` but the public ones."""
    install_auth(app, settings.auth, lifecycle, blueprints, registry=registry)
