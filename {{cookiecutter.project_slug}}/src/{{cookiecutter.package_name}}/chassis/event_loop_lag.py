"""Event-loop lag: how late the loop runs what is due, the first sign of work that blocks it.

A task asks to sleep ``INTERVAL`` seconds and measures how much later it woke:
``event_loop_lag_seconds`` is the latest measurement.  CPU-bound work or a blocking call in
a handler shows here before it shows as slow requests everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Gauge

from .lifecycle import Resource

INTERVAL = 0.5


class EventLoopLag(Resource):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._lag = Gauge(
            "event_loop_lag_seconds",
            "How much later than due the event loop last ran a timer.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._measure(), name="event-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + INTERVAL
            await asyncio.sleep(INTERVAL)
            self._lag.set(max(0.0, loop.time() - due))
