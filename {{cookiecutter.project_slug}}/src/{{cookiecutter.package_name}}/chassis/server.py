"""Serve the app with Hypercorn: configuration from settings, stop signals, worker processes.

The listening socket is bound before the app starts, so a port that is taken is
reported at once.  With one worker the service runs in this process; with more,
this process supervises spawned workers that share the socket.  SIGTERM and
SIGINT stop serving gracefully: new connections are refused and in-flight
requests get ``shutdown.grace_period`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from quart import Quart

from ..settings import Settings
from .lifecycle import Lifecycle, lifecycle_of
from .logging import get_logger
from .metrics import mark_worker_dead, prepare_multiprocess_dir, remove_multiprocess_dir

AppFactory = Callable[[Settings], Quart]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = get_logger(__name__)


class ServerError(Exception):
    """The server cannot start; the message is one line for the operator."""


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.server.host
    config.bind = [f"[{host}]:{settings.server.port}" if ":" in host else f"{host}:{settings.server.port}"]
    config.graceful_timeout = settings.shutdown.grace_period
    # The chassis writes its own access log; Hypercorn's errors go through our logging.
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def serve(app_factory: AppFactory, settings: Settings) -> int:
    """Serve until a stop signal; return the process exit code."""
    config = hypercorn_config(settings)
    try:
        sockets = config.create_sockets()
    except OSError as error:
        where = ", ".join(config.bind)
        raise ServerError(
            f"cannot listen on {where} (settings server.host/server.port): {error.strerror}"
        ) from None
    if settings.server.workers == 1:
        return run_worker(app_factory, settings, sockets)
    metrics_dir = prepare_multiprocess_dir(settings.metrics.multiprocess_root)
    try:
        return _supervise(app_factory, settings, sockets)
    finally:
        remove_multiprocess_dir(metrics_dir)


def run_worker(app_factory: AppFactory, settings: Settings, sockets: Sockets) -> int:
    """Build the app and serve it on ``sockets`` until SIGTERM or SIGINT; return the exit code."""
    app = app_factory(settings)
    lifecycle = lifecycle_of(app)
    asyncio.run(_serve_until_signalled(app, lifecycle, hypercorn_config(settings), sockets))
    return 1 if lifecycle.failed else 0


async def _serve_until_signalled(app: Quart, lifecycle: Lifecycle, config: Config, sockets: Sockets) -> None:
    stop = asyncio.Event()
    lifecycle.request_stop = stop.set
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_stop_signal, stop, signum)
    asgi_app = wrap_app(app, config.wsgi_max_body_size, "asgi")
    await worker_serve(asgi_app, config, sockets=sockets, shutdown_trigger=stop.wait)
    log.info("server stopped")


def _on_stop_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("stop signal received; shutting down gracefully", signal=signal.Signals(signum).name)
    stop.set()


def _supervise(app_factory: AppFactory, settings: Settings, sockets: Sockets) -> int:
    """Run ``server.workers`` worker processes; stop them all on a signal or when one dies."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(app_factory, settings, sockets), name=f"worker-{index}")
        for index in range(settings.server.workers)
    ]
    signalled = False

    def forward_signal(signum: int, _frame: object) -> None:
        nonlocal signalled
        signalled = True
        _signal_workers(workers, signum)

    for worker in workers:
        worker.start()
    for signum in STOP_SIGNALS:
        signal.signal(signum, forward_signal)
    log.info("workers started", workers=len(workers))

    wait([worker.sentinel for worker in workers])
    if not signalled:
        died = [worker.name for worker in workers if not worker.is_alive()]
        log.error("a worker exited unexpectedly; stopping the others", workers=died)
        _signal_workers(workers, signal.SIGTERM)
    deadline = settings.shutdown.grace_period + 5
    for worker in workers:
        worker.join(deadline)
        if worker.is_alive():
            log.error("worker did not stop in time; killing it", worker=worker.name)
            worker.kill()
            worker.join()
        if worker.pid is not None:
            mark_worker_dead(worker.pid)
    clean = signalled and all(worker.exitcode == 0 for worker in workers)
    return 0 if clean else 1


def _signal_workers(workers: Sequence[BaseProcess], signum: int) -> None:
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            # It may exit between the check and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)
