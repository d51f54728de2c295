"""Startup and shutdown work of the service.

Startup work runs once the server is listening, in the background, so probes can
answer ``STARTING`` meanwhile; when it is all done the service is ready.  If any
of it fails, the failure is logged, the service stops and the process exits 1:
it never serves half-started.  Shutdown work runs in reverse order when serving
stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from quart import Quart

from .health import Health
from .logging import get_logger

EXTENSION_KEY = "lifecycle"

Work = Callable[[], Awaitable[None]]
log = get_logger(__name__)


class Lifecycle:
    def __init__(self, health: Health) -> None:
        self._health = health
        self._startup: list[Work] = []
        self._shutdown: list[Work] = []
        self._startup_task: asyncio.Task[None] | None = None
        self.failed = False
        # Set by the server: how startup failure stops it (the test client has no server).
        self.request_stop: Callable[[], None] | None = None

    def on_startup(self, work: Work) -> None:
        self._startup.append(work)

    def on_shutdown(self, work: Work) -> None:
        self._shutdown.append(work)

    async def begin(self) -> None:
        """Called when serving starts: run the startup work without holding up the server."""
        self._startup_task = asyncio.create_task(self._run_startup(), name="startup")

    async def wait_until_started(self) -> None:
        """Wait for the startup work (after serving began); raises if it failed."""
        if self._startup_task is None:
            raise RuntimeError("serving has not started")
        await asyncio.shield(self._startup_task)
        if self.failed:
            raise RuntimeError("startup failed")

    async def end(self) -> None:
        """Called when serving stops: cancel unfinished startup work, then run shutdown work."""
        self._health.mark_draining()
        if self._startup_task is not None and not self._startup_task.done():
            self._startup_task.cancel()
            await asyncio.gather(self._startup_task, return_exceptions=True)
        for work in reversed(self._shutdown):
            try:
                await work()
            except Exception:
                log.exception("shutdown work failed", work=getattr(work, "__qualname__", repr(work)))

    async def _run_startup(self) -> None:
        try:
            for work in self._startup:
                await work()
        except Exception:
            self.failed = True
            log.exception("startup failed; stopping the service")
            if self.request_stop is not None:
                self.request_stop()
            return
        self._health.mark_started()
        log.info("service ready")


def install_lifecycle(app: Quart, lifecycle: Lifecycle) -> None:
    app.extensions[EXTENSION_KEY] = lifecycle
    app.before_serving(lifecycle.begin)
    app.after_serving(lifecycle.end)


def lifecycle_of(app: Quart) -> Lifecycle:
    lifecycle: Lifecycle = app.extensions[EXTENSION_KEY]
    return lifecycle
