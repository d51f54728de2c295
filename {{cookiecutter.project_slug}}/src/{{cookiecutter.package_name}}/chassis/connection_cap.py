"""A cap on the API's open connections, below what the process may open, so its probes still get in.

Every connection is an open file.  When clients hold every file the process may open (slow
or idle ones, a thousand of them where the hard limit is 1,024), accepting fails, asyncio
stops accepting for a second at a time, and the kubelet's probes are refused with everyone
else: a healthy pod is restarted.  So the API's port keeps at most the process's open-file
limit less a reserve (a quarter of it, at least 256): a connection beyond that is closed as
soon as it is accepted, which frees its file at once, and a line says so, once a minute.  The
reserve is for the management port (the probes and the scrapes, when ``management.port`` is
set), the outbound pools, the logs and the event loop.  The limit is read after
``server.raise_open_file_limit`` raised it to the hard one, so the cap matters only where
the hard limit is low.

Hypercorn has no such cap: this wraps its per-connection ``TCPServer.run`` (Hypercorn 0.17
and 0.18); if that is renamed, ``cap_api_connections`` raises at start-up.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Coroutine
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer

from .logging import Throttled, get_logger

MIN_RESERVED_FILES = 256

log = get_logger(__name__)


class ConnectionCap:
    """At most ``limit`` open connections to ``port``; the other ports are not counted."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.open = 0
        self._refusals = Throttled(log)

    def admit(self, port: int) -> bool:
        if port != self.port:
            return True
        if self.open >= self.limit:
            self._refusals.warning(
                "the API's open connections reached their cap; closing new ones at once",
                cap=self.limit,
            )
            return False
        self.open += 1
        return True

    def release(self, port: int) -> None:
        if port == self.port:
            self.open -= 1


def api_connection_limit() -> int:
    """The process's open-file limit less the reserve for everything but the API's clients."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000_000
    return soft - max(MIN_RESERVED_FILES, soft // 4)


_cap: ConnectionCap | None = None


def cap_api_connections(api_port: int) -> ConnectionCap:
    """Cap the connections to ``api_port`` (see the module's text) in this process from now on."""
    global _cap  # one server per process; the wrapper below reads the current cap
    _cap = ConnectionCap(api_port, max(1, api_connection_limit()))
    if not getattr(TCPServer, "_capped", False):
        run = getattr(TCPServer, "run", None)
        if not callable(run):
            raise RuntimeError("Hypercorn's TCPServer changed: see cap_api_connections")
        TCPServer.run = _capped(run)  # type: ignore[method-assign,assignment]
        TCPServer._capped = True  # type: ignore[attr-defined]
    return _cap


ConnectionRun = Callable[[TCPServer], Coroutine[Any, Any, None]]


def _capped(run: ConnectionRun) -> ConnectionRun:
    async def capped_run(server: TCPServer) -> None:
        cap = _cap
        if cap is None:
            await run(server)
            return
        sockname = server.writer.get_extra_info("sockname")
        port = sockname[1] if isinstance(sockname, tuple) else -1
        if not cap.admit(port):
            server.writer.transport.abort()  # frees the file now; the client sees a reset
            return
        try:
            await run(server)
        finally:
            cap.release(port)

    return capped_run
