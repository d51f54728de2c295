"""Liveness and readiness probes.

Liveness only says the process can answer; it never depends on other systems.
Readiness is ``STARTING`` (503) until serving has started, ``UP`` (200) while
serving, and ``DRAINING`` (503) once shutdown begins, so a load balancer stops
sending traffic before the process goes away.
"""

from __future__ import annotations

import enum
from typing import Any

from quart import Blueprint, Quart, current_app

blueprint = Blueprint("health", __name__, url_prefix="/health")

EXTENSION_KEY = "health"


class Readiness(enum.Enum):
    STARTING = "STARTING"
    UP = "UP"
    DRAINING = "DRAINING"


class HealthState:
    """The service's readiness; changed by the lifecycle, read by the probe."""

    def __init__(self) -> None:
        self.readiness = Readiness.STARTING

    def mark_up(self) -> None:
        self.readiness = Readiness.UP

    def mark_draining(self) -> None:
        self.readiness = Readiness.DRAINING


def install_health(app: Quart) -> HealthState:
    """Attach the health state and probes to ``app``; serving start and stop drive readiness."""
    state = HealthState()
    app.extensions[EXTENSION_KEY] = state
    app.before_serving(_mark_up)
    app.after_serving(_mark_draining)
    app.register_blueprint(blueprint)
    return state


def health_state(app: Quart) -> HealthState:
    state: HealthState = app.extensions[EXTENSION_KEY]
    return state


async def _mark_up() -> None:
    health_state(current_app).mark_up()


async def _mark_draining() -> None:
    health_state(current_app).mark_draining()


@blueprint.get("/live")
async def live() -> dict[str, Any]:
    return {"status": "UP"}


@blueprint.get("/ready")
async def ready() -> tuple[dict[str, Any], int]:
    readiness = health_state(current_app).readiness
    status = 200 if readiness is Readiness.UP else 503
    return {"status": readiness.value}, status
