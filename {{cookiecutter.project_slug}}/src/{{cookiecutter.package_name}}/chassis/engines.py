"""The HTTP server engines: Hypercorn (default; HTTP/1.1 and HTTP/2) and uvicorn (faster).

Both serve the same app on sockets bound beforehand, stop when ``stop`` is set,
write no access log of their own (the chassis writes one line per request) and log
through the service's logging.  Signals are handled by ``server.py``, never by the
engine.  The shutdown grace period is ended by the chassis (``limits.py``); each
engine's own grace timeout is a little longer, so the chassis' answers to requests it
cuts off are sent before an engine drops a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterator

import hypercorn.asyncio
from hypercorn.config import Config, Sockets
from quart import Quart

from ..settings import Settings

# Seconds the engines' own grace timeouts add to ``shutdown.grace_period``.
ENGINE_GRACE_MARGIN = 1.0


def bind_address(settings: Settings) -> str:
    host, port = settings.server.host, settings.server.port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [bind_address(settings)]
    config.graceful_timeout = settings.shutdown.grace_period + ENGINE_GRACE_MARGIN
    config.include_server_header = False  # no version banner
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_hypercorn(app: Quart, settings: Settings, sockets: Sockets, stop: asyncio.Event) -> None:
    config = hypercorn_config(settings)
    # Hypercorn's public serve() binds by itself: "fd://" hands it the sockets bound
    # beforehand, which it then owns.
    config.bind = [f"fd://{sock.detach()}" for sock in sockets.insecure_sockets]
    await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait, mode="asgi")


async def serve_uvicorn(app: Quart, settings: Settings, sockets: Sockets, stop: asyncio.Event) -> None:
    import uvicorn  # only imported when chosen, to keep start-up fast

    class _UvicornServer(uvicorn.Server):
        """uvicorn without its own signal handling (it would re-raise SIGTERM after shutdown).

        ``capture_signals`` is uvicorn's internal hook (0.29 and later), the one internal the
        engines rely on: if it is renamed, uvicorn takes the signals back and
        ``test_serves_and_stops_on_signal`` (test_serve.py) fails on uvicorn: the exit code is not 0.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown.grace_period + ENGINE_GRACE_MARGIN),
    )
    server = _UvicornServer(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=list(sockets.insecure_sockets))
    finally:
        watcher.cancel()
