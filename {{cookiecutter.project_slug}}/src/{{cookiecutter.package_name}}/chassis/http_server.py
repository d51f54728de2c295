"""The HTTP server, Hypercorn (HTTP/1.1 and HTTP/2), serving the app on sockets bound beforehand.

It stops when ``stop`` is set, writes no access log of its own (the chassis writes one
line per request), logs through the service's logging and sends no version banner.
Signals are handled by ``server.py``, never by Hypercorn.

Slow and oversized clients are bounded here, before a request reaches the app: a
connection that takes longer than ``http.keep_alive_timeout`` to send a request's
headers (or that stays idle that long between requests) is closed, and a request head
larger than ``http.max_header_size`` gets 431.  The shutdown grace period is ended by
the chassis (``limits.py``); Hypercorn's own graceful timeout is a little longer, so
the chassis' answers to the requests it cuts off are sent before Hypercorn drops a
connection.

Requests Hypercorn cannot parse never reach the app: it answers them itself, with an
empty body (and 501 for an unknown Transfer-Encoding, a server error for a client's
mistake).  ``answer_unparsable_requests_with_problems`` makes those answers problems
like every other error: see there for the one Hypercorn internal the chassis relies on.

A client that breaks HTTP/2 (a rapid reset: thousands of streams opened and cancelled)
ends its own connection with an error Hypercorn does not catch; asyncio would log each
such connection as an error with a traceback, so anyone could fill the logs and fire
error alerts.  It is a warning without a traceback, at most one per minute per kind.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h2.exceptions
import h11
import hypercorn.asyncio
from hypercorn.config import Config, Sockets
from hypercorn.protocol.h11 import H11Protocol
from priority.priority import PriorityError
from quart import Quart

from ..settings import Settings
from .connection_cap import cap_api_connections
from .errors import CONTENT_TYPE, problem_document
from .logging import Throttled, get_logger
from .security import SECURITY_HEADERS

log = get_logger(__name__)

# Seconds Hypercorn's own graceful timeout adds to ``shutdown.grace_period``.
ENGINE_GRACE_MARGIN = 1.0
# Connections the kernel queues before they are accepted (it caps this at net.core.somaxconn).
BACKLOG = 2048
# What a client's own protocol violations raise in the connection's task.
CLIENT_PROTOCOL_ERRORS = (h2.exceptions.ProtocolError, PriorityError, h11.RemoteProtocolError)
UNPARSABLE_DETAIL = {
    400: "The request is not valid HTTP.",
    431: "The request's headers are too large (setting http.max_header_size).",
}


def bind_addresses(settings: Settings, *, api: bool = True) -> list[str]:
    """The API's port (``server.port``), then the management port if set; a worker (no ``api``) only that."""
    host = f"[{settings.server.host}]" if ":" in settings.server.host else settings.server.host
    management = settings.management.port
    ports = [settings.server.port] if management is None else [settings.server.port, management]
    if not api and management is not None:
        ports = [management]
    return [f"{host}:{port}" for port in ports]


def hypercorn_config(settings: Settings, *, api: bool = True) -> Config:
    config = Config()
    config.bind = bind_addresses(settings, api=api)
    config.backlog = BACKLOG
    config.graceful_timeout = settings.shutdown.grace_period + ENGINE_GRACE_MARGIN
    # One timer in Hypercorn bounds both the wait for a request's headers and an idle keep-alive.
    config.keep_alive_timeout = settings.http.keep_alive_timeout
    config.h11_max_incomplete_size = settings.http.max_header_size
    config.h2_max_header_list_size = settings.http.max_header_size
    config.include_server_header = False  # no version banner
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_http(app: Quart, settings: Settings, sockets: Sockets, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``sockets`` until ``stop`` is set and in-flight requests are done."""
    answer_unparsable_requests_with_problems()
    log_client_protocol_errors_as_warnings(asyncio.get_running_loop())
    cap_api_connections(settings.server.port)
    config = hypercorn_config(settings)
    # Hypercorn's public serve() binds by itself: "fd://" hands it the sockets bound
    # beforehand, which it then owns.
    config.bind = [f"fd://{sock.detach()}" for sock in sockets.insecure_sockets]  # one per port
    await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait, mode="asgi")


def log_client_protocol_errors_as_warnings(loop: asyncio.AbstractEventLoop) -> None:
    """Log a connection a client's protocol violation ended as a throttled warning, not an error."""
    client_errors = Throttled(log)
    other_errors = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if error is not None and caused_by_the_client(error):
            kinds = sorted({type(inner).__name__ for inner in _leaves(error)})
            client_errors.warning(
                "a client broke the protocol; its connection was closed", key=",".join(kinds), errors=kinds
            )
        elif other_errors is not None:
            other_errors(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def caused_by_the_client(error: BaseException) -> bool:
    """Whether ``error`` (or every error of a group) is a client's protocol violation."""
    return all(isinstance(inner, CLIENT_PROTOCOL_ERRORS) for inner in _leaves(error))


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def answer_unparsable_requests_with_problems() -> None:
    """Make Hypercorn's own answers to unparsable HTTP/1.1 requests problems, never 5xx.

    Hypercorn offers no hook for them, so this replaces the private method that sends
    them, ``H11Protocol._send_error_response(status_code)``, and uses its private
    ``_send_h11_event`` (Hypercorn 0.17 and 0.18).  If either is renamed, this raises
    at start-up, and ``test_an_unparsable_request_gets_a_problem`` fails.
    """
    if getattr(H11Protocol, "_sends_problems", False):
        return
    if not callable(getattr(H11Protocol, "_send_error_response", None)) or not callable(
        getattr(H11Protocol, "_send_h11_event", None)
    ):
        raise RuntimeError("Hypercorn's H11Protocol changed: see answer_unparsable_requests_with_problems")
    H11Protocol._send_error_response = _send_problem  # type: ignore[method-assign,assignment]
    H11Protocol._sends_problems = True  # type: ignore[attr-defined]


async def _send_problem(protocol: H11Protocol, status_code: int) -> None:
    # h11 hints 501 for a Transfer-Encoding it does not know: that is the client's mistake.
    status = status_code if 400 <= status_code < 500 else 400
    body = json.dumps(problem_document(status, UNPARSABLE_DETAIL.get(status))).encode()
    headers = [
        (b"content-type", CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
        *protocol.config.response_headers("h11"),
    ]
    await protocol._send_h11_event(h11.Response(status_code=status, headers=headers))
    await protocol._send_h11_event(h11.Data(data=body))
    await protocol._send_h11_event(h11.EndOfMessage())
