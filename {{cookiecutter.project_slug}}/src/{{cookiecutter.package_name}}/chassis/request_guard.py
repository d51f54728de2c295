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
  Such a refusal is *shed* load, counted as such (``http_server_requests_shed_total``)
  under the route the request was for, not as a route that does not exist.
- **Connections close between requests while draining.** From the stop signal on,
  every HTTP/1 response says ``Connection: close``, so clients open their next request
  elsewhere rather than send it on a connection that is about to be closed.
"""

from __future__ import annotations

import dataclasses
import json

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, WebsocketScope

from ..settings import HttpSettings
from .errors import CONTENT_TYPE, problem_document
from .health import Health
from .metrics import SHED_CONCURRENCY_LIMIT
from .security import SECURITY_HEADERS

CONNECTION_CLOSE = (b"connection", b"close")
HTTP1 = frozenset({"1.0", "1.1"})


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A request's answer given here, before the app: a problem document and its extra headers;
    ``shed`` names why a sound request was refused to protect the service (None: a bad request)."""

    status: int
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    shed: str | None = None


class RequestGuard:
    """What the instrumentation asks before and while a request runs (one ASGI layer serves both:
    each layer costs every request an extra call and an extra wrapper around ``send``)."""

    def __init__(self, health: Health, settings: HttpSettings, *, always_admitted: frozenset[str]) -> None:
        self._health = health
        self._max_concurrent = settings.max_concurrent_requests
        self._max_header_size = settings.max_header_size
        self._always_admitted = always_admitted
        self._running = 0

    def refusal(self, scope: HTTPScope) -> Refusal | None:
        """Why the request must not reach the app, if it must not; ``admit`` it otherwise."""
        malformed = self._malformed(scope)
        if malformed is not None:
            return malformed
        if self._running >= self._max_concurrent and scope["path"] not in self._always_admitted:
            detail = (
                f"The service is handling its limit of {self._max_concurrent} requests at once "
                "(setting http.max_concurrent_requests); try again shortly."
            )
            return Refusal(503, detail, ((b"retry-after", b"1"),), shed=SHED_CONCURRENCY_LIMIT)
        return None

    def admit(self, scope: HTTPScope) -> bool:
        """Count the request among those running (probes and scrapes are not); ``release`` it after."""
        counted = scope["path"] not in self._always_admitted
        self._running += counted
        return counted

    def release(self, counted: bool) -> None:
        self._running -= counted

    def closes_connection(self, scope: HTTPScope) -> bool:
        """Whether the response must say ``Connection: close`` (asked as it is sent)."""
        # HTTP/2 ends connections with GOAWAY, not a header.
        return self._health.draining and scope["http_version"] in HTTP1

    def _malformed(self, scope: HTTPScope) -> Refusal | None:
        size = len(scope["raw_path"]) + len(scope["query_string"])
        hosts = content_length = transfer_encoding = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            hosts += name == b"host"
            content_length += name == b"content-length"
            transfer_encoding += name == b"transfer-encoding"
        if size > self._max_header_size:
            return Refusal(431, "The request's headers are too large (setting http.max_header_size).")
        # Ambiguous framing: the connection closes, so nothing sent after it on it is served.
        if content_length and transfer_encoding:
            detail = "The request has both Content-Length and Transfer-Encoding; send one."
            return Refusal(400, detail, (CONNECTION_CLOSE,))
        if hosts > 1:
            return Refusal(400, "The request has more than one Host header.", (CONNECTION_CLOSE,))
        return None


async def send_refusal(scope: HTTPScope, send: ASGISendCallable, refusal: Refusal) -> None:
    """A problem answered here, before Quart: the same shape its error handlers give."""
    body = json.dumps(problem_document(refusal.status, refusal.detail, instance=scope["path"])).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *refusal.headers,
            ],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def refuse_websocket(
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
