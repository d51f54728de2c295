"""Resources and their lifecycle: start in dependency order, stop in reverse.

A resource is anything with async ``start()`` and ``stop()`` (an HTTP client, a
database pool, a consumer), optionally with health checks.  Resources are added
with the names of the resources they depend on, which must have been added
before them (so there can be no cycle).  Once the server is listening, the
resources start in the background, so probes answer ``STARTING`` meanwhile:
independent ones concurrently, each after the ones it depends on, each within
``resources.start_timeout``.  When all have started the service is ready (and what
starting made is frozen out of the garbage collector's way, ``startup_heap.py``).  If one
fails, the ones already started are stopped, the failure is logged, and the
process exits 1: it never serves half-started.  When a stop signal comes, each started
resource is told to take no new work (``drain``: a consumer stops fetching messages)
while requests finish; when serving stops, they stop in the reverse order of starting,
each within ``resources.stop_timeout``.
"""

from __future__ import annotations

import asyncio
import dataclasses

from quart import Quart

from .health import Check, Health
from .logging import get_logger
from .parts import attach
from .startup_heap import freeze_startup_heap

log = get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class ResourceCheck:
    """A health check a resource offers; registered as ``<resource>.<name>``."""

    name: str
    check: Check
    critical: bool = True


class Resource:
    """Base class of resources; override what the resource needs (all do nothing by default)."""

    async def start(self) -> None:
        """Open connections, warm pools: whatever must be done before serving."""

    async def drain(self) -> None:
        """Take no new work: a stop signal came, and ``stop`` follows once requests have finished."""

    async def stop(self) -> None:
        """Release what ``start`` acquired."""

    def health_checks(self) -> list[ResourceCheck]:
        """Checks that feed readiness once the resource has started."""
        return []


class ResourceError(Exception):
    """A resource failed to start or stop; the message names it."""


class ResourceUnavailableError(Exception):
    """A resource cannot serve a request now (out of reach, or too slow): the client gets 503.

    Each resource raises its own subclass, naming itself in ``resource``; the message is
    for the log (one line, no data of the request).
    """

    resource = "resource"


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    resource: Resource
    depends_on: tuple[str, ...]


class Lifecycle:
    def __init__(self, health: Health, *, start_timeout: float, stop_timeout: float) -> None:
        self._health = health
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._entries: dict[str, _Entry] = {}
        self._started: list[_Entry] = []
        self._startup_task: asyncio.Task[None] | None = None
        self._draining: list[asyncio.Task[None]] = []
        self.failed = False
        self._failure: Exception | None = None
        # Set by the server: how a failed start stops it (the test client has no server).
        self.request_stop: asyncio.Event | None = None

    def add(self, name: str, resource: Resource, *, depends_on: tuple[str, ...] = ()) -> None:
        """Manage ``resource``; it starts after, and stops before, the resources in ``depends_on``."""
        if name in self._entries:
            raise ValueError(f"a resource named {name!r} is already added")
        unknown = [dependency for dependency in depends_on if dependency not in self._entries]
        if unknown:
            raise ValueError(f"resource {name!r} depends on {unknown}, which must be added before it")
        self._entries[name] = _Entry(name, resource, depends_on)
        for check in resource.health_checks():
            self._health.add_check(f"{name}.{check.name}", check.check, critical=check.critical)

    async def begin(self) -> None:
        """Called when serving starts: start the resources without holding up the server."""
        self._startup_task = asyncio.create_task(self._start_all(), name="start resources")

    async def wait_until_started(self) -> None:
        """Wait until every resource has started (after serving began); raises if one failed."""
        if self._startup_task is None:
            raise RuntimeError("serving has not started")
        await asyncio.shield(self._startup_task)
        if self.failed:
            # The cause in the message too: a test's one-line summary then names it.
            raise RuntimeError(f"startup failed: {self._failure}") from self._failure

    def drain(self) -> None:
        """Called when a stop signal comes: readiness fails, and the started resources take no new work."""
        self._health.mark_draining()
        self._draining = [
            asyncio.create_task(entry.resource.drain(), name=f"drain {entry.name}") for entry in self._started
        ]

    async def end(self) -> None:
        """Called when serving stops: cancel unfinished starts, then stop what started, in reverse."""
        self._health.mark_draining()
        if self._startup_task is not None and not self._startup_task.done():
            self._startup_task.cancel()
            await asyncio.gather(self._startup_task, return_exceptions=True)
        for drained in await asyncio.gather(*self._draining, return_exceptions=True):
            if isinstance(drained, Exception):
                log.error("a resource failed to drain", error=repr(drained))
        await self._stop_started()

    async def _start_all(self) -> None:
        starting: dict[str, asyncio.Task[None]] = {}

        async def start_after_dependencies(entry: _Entry) -> None:
            await asyncio.gather(*(starting[name] for name in entry.depends_on))
            await self._start(entry)

        for entry in self._entries.values():  # dependencies come first: they were added first
            starting[entry.name] = asyncio.create_task(start_after_dependencies(entry), name=entry.name)
        try:
            await asyncio.gather(*starting.values())
        except Exception as error:
            for task in starting.values():
                task.cancel()
            await asyncio.gather(*starting.values(), return_exceptions=True)
            self.failed = True
            self._failure = error
            log.error("startup failed; stopping the service", error=str(error))
            await self._stop_started()
            if self.request_stop is not None:
                self.request_stop.set()
            return
        self._health.mark_started()
        freeze_startup_heap()  # all that starting made lives as long as the process
        log.info("service ready", resources=len(self._started))

    async def _start(self, entry: _Entry) -> None:
        try:
            async with asyncio.timeout(self._start_timeout):
                await entry.resource.start()
        except TimeoutError:
            raise ResourceError(
                f"resource {entry.name!r} did not start within {self._start_timeout:g} s "
                "(setting resources.start_timeout)"
            ) from None
        except Exception as error:
            log.exception("resource failed to start", resource=entry.name)
            raise ResourceError(f"resource {entry.name!r} failed to start: {error!r}") from error
        self._started.append(entry)
        log.debug("resource started", resource=entry.name)

    async def _stop_started(self) -> None:
        while self._started:
            entry = self._started.pop()
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await entry.resource.stop()
            except TimeoutError:
                log.error("resource did not stop in time", resource=entry.name, timeout=self._stop_timeout)
            except Exception:
                log.exception("resource failed to stop", resource=entry.name)


def install_lifecycle(app: Quart, lifecycle: Lifecycle) -> None:
    attach(app, lifecycle)
    app.before_serving(lifecycle.begin)
    app.after_serving(lifecycle.end)
