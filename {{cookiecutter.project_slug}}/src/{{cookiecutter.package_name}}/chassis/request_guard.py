"""The door: what happens to a request before the app sees it.

- **Ambiguous framing is refused.** A request with both ``Content-Length`` and
  ``Transfer-Encoding`` (the shape of request smuggling), or with more than one ``Host``,
  gets 400 and its connection is closed, so nothing sent after it on that connection
  is served (RFC 9112 sections 6.1 and 3.2).  A request head larger than
  ``http.max_header_size`` gets 431 (Hypercorn bounds only heads that arrive in pieces).
- **WebSocket handshakes are refused** with 400: the service has no WebSocket endpoint.
- **Load is shed, probes never.** At most ``http.max_concurrent_requests`` requests run
  at once; one more gets 503 with ``Retry-After`` at once instead of queueing, so slow
  clients cannot pile up work.  Health probes and metrics scrapes are always let in.
- **Connections close between requests while draining.** From the stop signal on,
  every HTTP/1 response says ``Connection: close``, so clients open their next request
  elsewhere rather than send it on a connection that is about to be closed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
    WebsocketScope,
)
from quart import Quart

from ..settings import HttpSettings
from .errors import CONTENT_TYPE, problem_document
from .health import Health
from .security import SECURITY_HEADERS

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]
CONNECTION_CLOSE = (b"connection", b"close")
HTTP1 = frozenset({"1.0", "1.1"})


def install_request_guard(
    app: Quart, health: Health, settings: HttpSettings, *, always_admitted: frozenset[str]
) -> None:
    """Put the guard in front of the app (inside the instrumentation, which counts what it refuses)."""
    app.asgi_app = RequestGuard(  # type: ignore[method-assign] # Quart's way to add middleware
        app.asgi_app,
        health=health,
        max_concurrent=settings.max_concurrent_requests,
        max_header_size=settings.max_header_size,
        always_admitted=always_admitted,
    )


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        health: Health,
        max_concurrent: int,
        max_header_size: int,
        always_admitted: frozenset[str],
    ) -> None:
        self._app = app
        self._health = health
        self._max_concurrent = max_concurrent
        self._max_header_size = max_header_size
        self._always_admitted = always_admitted
        self._running = 0

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        refusal = self._malformed(scope)
        if refusal is not None:
            await _send_problem(scope, send, *refusal, close=True)
            return
        counted = scope["path"] not in self._always_admitted
        if counted and self._running >= self._max_concurrent:
            detail = (
                f"The service is handling its limit of {self._max_concurrent} requests at once "
                "(setting http.max_concurrent_requests); try again shortly."
            )
            await _send_problem(scope, send, 503, detail, headers=[(b"retry-after", b"1")])
            return
        self._running += counted
        try:
            await self._app(scope, receive, self._closing_while_draining(scope, send))
        finally:
            self._running -= counted

    def _closing_while_draining(self, scope: HTTPScope, send: ASGISendCallable) -> ASGISendCallable:
        if scope["http_version"] not in HTTP1:
            return send  # HTTP/2 ends connections with GOAWAY, not a header

        async def send_closing(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and self._health.draining:
                message["headers"] = [*message["headers"], CONNECTION_CLOSE]
            await send(message)

        return send_closing

    def _malformed(self, scope: HTTPScope) -> tuple[int, str] | None:
        """The status and detail for a request that must not reach the app; None for the others."""
        size = len(scope["raw_path"]) + len(scope["query_string"])
        hosts = content_length = transfer_encoding = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            hosts += name == b"host"
            content_length += name == b"content-length"
            transfer_encoding += name == b"transfer-encoding"
        if size > self._max_header_size:
            return 431, "The request's headers are too large (setting http.max_header_size)."
        if content_length and transfer_encoding:
            return 400, "The request has both Content-Length and Transfer-Encoding; send one."
        if hosts > 1:
            return 400, "The request has more than one Host header."
        return None


async def _send_problem(
    scope: HTTPScope,
    send: ASGISendCallable,
    status: int,
    detail: str,
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem answered here, before Quart: the same shape its error handlers give."""
    body = json.dumps(problem_document(status, detail, instance=scope["path"])).encode()
    extra = [*(headers or []), *([CONNECTION_CLOSE] if close else [])]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _refuse_websocket(
    scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})  # the server answers 403
        return
    document = problem_document(400, "The service has no WebSocket endpoints.", instance=scope["path"])
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        CONNECTION_CLOSE,
        *SECURITY_HEADERS,
    ]
    await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
