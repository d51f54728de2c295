"""Health probes: liveness, readiness and startup.

- ``/health/live`` is 200 while the process can answer; it never asks other systems.
- ``/health/ready`` is a state machine: ``STARTING`` (503) until all startup work
  is done, ``UP`` (200), ``DOWN`` (503) while a critical registered check fails,
  and ``DRAINING`` (503) once shutdown begins.
- ``/health/startup`` is 503 until startup work is done, then 200 (for Kubernetes
  startup probes).

What each readiness probe found is a metric: ``health_ready`` (1 when it was ``UP``) and
``health_readiness_changes_total`` (each change between ``UP`` and not), so readiness that
flaps shows between two scrapes too.

Checks are registered by the resources they watch: a name, an async callable that
returns ``False`` or raises when unhealthy, whether it is critical and a timeout.
Each probe runs the checks concurrently, each bounded by its timeout, so a slow
or hanging check counts as ``DOWN`` and never hangs the probe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from quart import Blueprint, Quart, current_app

from .logging import Throttled, get_logger
from .parts import attach, part_of

DEFAULT_CHECK_TIMEOUT = 2.0

blueprint = Blueprint("health", __name__, url_prefix="/health")
log = get_logger(__name__)

Check = Callable[[], Awaitable[object]]


class Readiness(enum.Enum):
    STARTING = "STARTING"
    UP = "UP"
    DOWN = "DOWN"
    DRAINING = "DRAINING"


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    name: str
    check: Check
    critical: bool
    timeout: float


@dataclasses.dataclass(frozen=True)
class CheckResult:
    up: bool
    duration_ms: float


class Health:
    """The service's health: its lifecycle phase and the registered checks."""

    def __init__(self, *, show_details: bool, registry: CollectorRegistry) -> None:
        self.show_details = show_details
        self._started = False
        self._draining = False
        self._checks: dict[str, HealthCheck] = {}
        self._failures = Throttled(log)  # every probe would log a failing check again
        self._ready = Gauge(
            "health_ready",
            "1 when the last readiness probe was answered UP, else 0.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._changes = Counter(
            "health_readiness_changes_total",
            "Changes of readiness between UP and not UP, as the probes found it.",
            registry=registry,
        )
        # The state of each dependency's connection, as its check last found it.
        self._check_up = Gauge(
            "health_check_up",
            "1 when the named health check last passed, else 0 (a dependency's connection state).",
            ["check"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._last_up = False

    @property
    def started(self) -> bool:
        return self._started

    @property
    def draining(self) -> bool:
        """Whether shutdown has begun."""
        return self._draining

    def add_check(
        self, name: str, check: Check, *, critical: bool = True, timeout: float = DEFAULT_CHECK_TIMEOUT
    ) -> None:
        """Register ``check``; a critical check that fails makes the service ``DOWN``."""
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} is already registered")
        self._checks[name] = HealthCheck(name, check, critical, timeout)

    def mark_started(self) -> None:
        self._started = True

    def mark_draining(self) -> None:
        self._draining = True

    async def readiness(self) -> tuple[Readiness, dict[str, CheckResult]]:
        """What a readiness probe answers (and the metrics record)."""
        readiness, results = await self._readiness()
        up = readiness is Readiness.UP
        if up != self._last_up:
            self._changes.inc()
            self._last_up = up
        self._ready.set(1 if up else 0)
        return readiness, results

    async def _readiness(self) -> tuple[Readiness, dict[str, CheckResult]]:
        if self._draining:
            return Readiness.DRAINING, {}
        if not self._started:
            return Readiness.STARTING, {}
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        results = dict(zip(names, outcomes, strict=True))
        for name, result in results.items():
            self._check_up.labels(name).set(1 if result.up else 0)
        failing = any(not results[name].up and self._checks[name].critical for name in names)
        return (Readiness.DOWN if failing else Readiness.UP), results

    async def _run(self, check: HealthCheck) -> CheckResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout):
                up = await check.check() is not False
        except TimeoutError:
            self._failures.warning(
                "health check timed out", key=check.name, check=check.name, timeout=check.timeout
            )
            up = False
        except Exception as error:  # any failure of a check means DOWN, never a 500
            self._failures.warning(
                "health check failed", key=check.name, check=check.name, error=type(error).__name__
            )
            up = False
        return CheckResult(up, round((time.perf_counter() - started) * 1000, 3))


def install_health(app: Quart, health: Health) -> None:
    attach(app, health)
    app.register_blueprint(blueprint)


@blueprint.get("/live")
async def live() -> dict[str, Any]:
    return {"status": "UP"}


@blueprint.get("/ready")
async def ready() -> tuple[dict[str, Any], int]:
    health = part_of(current_app, Health)
    readiness, results = await health.readiness()
    body: dict[str, Any] = {"status": readiness.value}
    if health.show_details:
        body["checks"] = {
            name: {"status": "UP" if result.up else "DOWN", "duration_ms": result.duration_ms}
            for name, result in results.items()
        }
    return body, 200 if readiness is Readiness.UP else 503


@blueprint.get("/startup")
async def startup() -> tuple[dict[str, Any], int]:
    started = part_of(current_app, Health).started
    return {"status": "STARTED" if started else "STARTING"}, 200 if started else 503
