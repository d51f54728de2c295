"""Run the service: bind the socket, pick the event loop, serve, handle stop signals.

The listening socket is bound before the app starts, so a port that is taken is
reported at once.  With one worker the service runs in this process (no
supervisor: less memory, faster start); with more, this process supervises
spawned workers that share the socket.

SIGTERM and SIGINT stop serving gracefully: readiness turns ``DRAINING`` (503) at
once; ``shutdown.delay`` seconds later, when load balancers have noticed, the
port is closed (new connections are refused; idle keep-alive connections are
closed) and in-flight requests get ``shutdown.grace_period`` seconds to finish;
handlers still running then are cancelled and answer 503.  Then the resources stop
and the process exits 0.  A second signal exits at once, with code 1.

With several workers, the supervisor asks them to stop by closing a pipe each one
watches, not by passing the signal on: a signal sent to the whole process group (Ctrl+C
in a terminal, systemd's default ``KillMode=control-group``) then reaches each worker
once, so it drains exactly as when only the supervisor is signalled.  A worker whose
supervisor dies sees the pipe close too, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import multiprocessing
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import NoReturn

from hypercorn.config import Sockets

from ..settings import Settings
from .http_server import hypercorn_config, serve_http
from .lifecycle import Lifecycle
from .limits import TimeLimitedQuart
from .logging import get_logger
from .metrics import mark_worker_dead, prepare_multiprocess_dir, remove_multiprocess_dir
from .parts import part_of

AppFactory = Callable[[Settings], TimeLimitedQuart]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_FORCED = 1
# How long the process outlives the end of the grace period when it cut requests off (see
# _GracefulShutdown.let_cut_off_clients_read), as nginx's lingering close waits for a client.
CUT_OFF_LINGER = 0.5

log = get_logger(__name__)


class ServerError(Exception):
    """The server cannot start; the message is one line for the operator."""


def serve_or_exit(app_factory: AppFactory, settings: Settings, *, api: bool = True) -> NoReturn:
    """Serve (see ``serve``), then exit with its code; a server that cannot start exits 1, in one line."""
    try:
        exit_code = serve(app_factory, settings, api=api)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(exit_code)


def serve(app_factory: AppFactory, settings: Settings, *, api: bool = True) -> int:
    """Serve until a stop signal; return the process exit code.

    Without ``api`` (a worker) only the management port is bound, when there is one.
    """
    loop_factory(settings)  # fail before binding when the chosen loop is missing
    raise_open_file_limit()
    config = hypercorn_config(settings, api=api)
    try:
        sockets = config.create_sockets()
    except OSError as error:
        where = ", ".join(config.bind)
        raise ServerError(
            f"cannot listen on {where} (settings server.host/server.port/management.port): {error.strerror}"
        ) from None
    if settings.server.workers == 1:
        return run_worker(app_factory, settings, sockets)
    metrics_dir = prepare_multiprocess_dir(settings.metrics.multiprocess_root)
    try:
        return _supervise(app_factory, settings, sockets)
    finally:
        remove_multiprocess_dir(metrics_dir)


def raise_open_file_limit() -> None:
    """Let the process open as many files as its hard limit allows, as Go's runtime does.

    Every connection is an open file, and a soft limit of 1024 (common) lets a thousand
    idle or slow clients stop the service from accepting its health probes.  The event
    loops use epoll, which has no limit of its own on descriptor numbers.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.debug("raised the open-file limit", soft=soft, to=hard)


def loop_factory(settings: Settings) -> LoopFactory | None:
    """uvloop when chosen (or, with ``auto``, when installed); ``None`` for asyncio's own loop."""
    choice = settings.server.loop
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not has_uvloop:
        raise ServerError("setting server.loop is uvloop, but uvloop is not installed")
    if choice == "asyncio" or not has_uvloop:
        return None
    import uvloop

    return uvloop.new_event_loop


def run_worker(
    app_factory: AppFactory, settings: Settings, sockets: Sockets, supervisor: Connection | None = None
) -> int:
    """Build the app and serve it on ``sockets`` until SIGTERM or SIGINT; return the exit code.

    ``supervisor`` is the read end of the supervisor's stop pipe, when there is one.
    """
    # A stop signal may come while the app is still being built: remember it, stop at once later.
    early_signals: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: early_signals.append(received))
    app = app_factory(settings)
    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        runner.run(_serve_until_signalled(app, settings, sockets, early_signals, supervisor))
    return 1 if part_of(app, Lifecycle).failed else 0


def _worker_process(
    app_factory: AppFactory, settings: Settings, sockets: Sockets, supervisor: Connection
) -> None:
    """Entry point of a spawned worker process: its exit code is the worker's."""
    sys.exit(run_worker(app_factory, settings, sockets, supervisor))


async def _serve_until_signalled(
    app: TimeLimitedQuart,
    settings: Settings,
    sockets: Sockets,
    early_signals: list[int],
    supervisor: Connection | None,
) -> None:
    stop = asyncio.Event()
    part_of(app, Lifecycle).request_stop = stop
    shutdown = _GracefulShutdown(app, settings, stop)
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, shutdown.on_signal, signum)
    if supervisor is not None:
        # Readable only once the supervisor closes its end: that is its request to stop.
        loop.add_reader(supervisor.fileno(), shutdown.on_supervisor_request, supervisor.fileno())
    for received in early_signals:
        shutdown.on_signal(received)
    await serve_http(app, settings, sockets, stop)
    await shutdown.let_cut_off_clients_read()
    log.info("server stopped")


class _GracefulShutdown:
    """What a stop signal does: drain first, close the port after the delay, end the grace
    period after that; a second signal exits."""

    def __init__(self, app: TimeLimitedQuart, settings: Settings, stop: asyncio.Event) -> None:
        self._app = app
        self._delay = settings.shutdown.delay
        self._grace_period = settings.shutdown.grace_period
        self._stop = stop
        self._signalled = False
        self._stopping = False
        self._cut_off_at: float | None = None

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            log.warning("second stop signal; exiting without draining", signal=name)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FORCED)  # skip everything: this is what the operator asked for
        self._signalled = True
        if not self._stopping:  # the supervisor may have asked first, for the same signal
            log.info("stop signal received; draining", signal=name, delay=self._delay)
            self._begin()

    def on_supervisor_request(self, fd: int) -> None:
        """The supervisor asks this worker to stop; the same signal may reach it directly too."""
        asyncio.get_running_loop().remove_reader(fd)
        if not self._stopping:
            log.info("stop requested by the supervisor; draining", delay=self._delay)
            self._begin()

    def _begin(self) -> None:
        self._stopping = True
        part_of(self._app, Lifecycle).drain()
        asyncio.get_running_loop().call_later(self._delay, self._close)

    def _close(self) -> None:
        log.info("closing the port; waiting for in-flight requests", grace_period=self._grace_period)
        self._stop.set()
        asyncio.get_running_loop().call_later(self._grace_period, self._end_grace_period)

    def _end_grace_period(self) -> None:
        cut_off = self._app.end_grace_period()
        if cut_off:
            self._cut_off_at = asyncio.get_running_loop().time()
            log.warning("grace period over; requests still running are answered 503", requests=cut_off)

    async def let_cut_off_clients_read(self) -> None:
        """Give the clients whose requests were cut off time to read their 503 before the process exits.

        Such a client may still be sending its body.  Its socket, closed at exit with those
        bytes unread, is reset, and a reset can destroy the 503 before the client reads it
        (which the process's quick exit made common).  The wait overlaps the resources' stop.
        """
        if self._cut_off_at is not None:
            elapsed = asyncio.get_running_loop().time() - self._cut_off_at
            await asyncio.sleep(max(0.0, CUT_OFF_LINGER - elapsed))


def _supervise(app_factory: AppFactory, settings: Settings, sockets: Sockets) -> int:
    """Run ``server.workers`` worker processes; stop them all on a signal or when one dies."""
    context = multiprocessing.get_context("spawn")
    stop_requests, request_stop = context.Pipe(duplex=False)
    workers = [
        context.Process(
            target=_worker_process,
            args=(app_factory, settings, sockets, stop_requests),
            name=f"worker-{index}",
        )
        for index in range(settings.server.workers)
    ]
    signalled = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal signalled
        if signalled:
            log.warning("second stop signal; killing the workers", signal=signal.Signals(signum).name)
            _signal_workers(workers, signal.SIGKILL)
            return
        signalled = True
        request_stop.close()  # every worker sees its end close, whenever it starts watching

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    for worker in workers:
        worker.start()
    stop_requests.close()  # the workers hold their own copies
    log.info("workers started", workers=len(workers))

    wait([worker.sentinel for worker in workers])
    if not signalled:
        died = [worker.name for worker in workers if not worker.is_alive()]
        log.error("a worker exited unexpectedly; stopping the others", workers=died)
        request_stop.close()
    shutdown = settings.shutdown
    deadline = shutdown.delay + shutdown.grace_period + settings.resources.stop_timeout + 5
    for worker in workers:
        worker.join(deadline)
        if worker.is_alive():
            log.error("worker did not stop in time; killing it", worker=worker.name)
            worker.kill()
            worker.join()
        if worker.pid is not None:
            mark_worker_dead(worker.pid)
    # A worker that the forwarded signal ended before it could handle it (still importing)
    # had nothing in flight: that is a clean stop too.
    stopped_cleanly = {0, -signal.SIGTERM, -signal.SIGINT}
    clean = signalled and all(worker.exitcode in stopped_cleanly for worker in workers)
    return 0 if clean else 1


def _signal_workers(workers: Sequence[BaseProcess], signum: int) -> None:
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            # It may exit between the check and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)
