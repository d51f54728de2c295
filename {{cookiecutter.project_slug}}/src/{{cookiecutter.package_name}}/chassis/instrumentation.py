"""Per-request instrumentation: request id, trace context, metrics and the access log.

It is the ASGI middleware around the Quart app (only trusted proxies add one, outside
it), so each request pays for one wrapper call rather than Quart hooks, and every
request is counted, even one that fails before Quart's own hooks run.  Before the app
runs it takes or makes the request id, starts the server span and binds both to the
request's log lines, and asks the request guard (``request_guard.py``) whether the
request may reach the app at all; it adds ``X-Request-ID`` and the security headers
(and ``Connection: close`` while draining) to the response as it is sent; afterwards
it counts the request, the guard's refusals too, and writes the one access line.  A
URL value preprocessor records the matched route template: the metric label and the
access line use the template (``/items/<id>``), never the raw path.  A request the guard
refuses never reaches the app, so its route is matched here, and a shed one (503 past
the concurrency limit, or at the end of the shutdown grace period: ``mark_shed``) is
counted as shed too: on the dashboard it is load shedding on ``/items``, not an error on
a route that does not exist.

A client that goes away before it is answered is counted and logged with status 499
(nginx's "client closed request"), not as a server error: no 500 was sent.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, ASGISendEvent, Scope
from quart import Quart, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

from ..settings import LoggingSettings
from .logging import AccessLog, RequestFields, access_log, bind_request_fields
from .metrics import UNMATCHED_ROUTE, HttpMetrics
from .request_guard import CONNECTION_CLOSE, RequestGuard, refuse_websocket, send_refusal
from .request_id import HEADER_KEY as REQUEST_ID_KEY
from .request_id import request_id_from
from .security import SECURITY_HEADERS
from .tracing import Tracing

PROBE_ROUTES = ("/health/live", "/health/ready", "/health/startup")
# Methods outside this set share one label value, so clients cannot add series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "_OTHER"  # as OpenTelemetry names it
CLIENT_CLOSED = 499


@dataclasses.dataclass(slots=True)
class _InFlight:
    """The request being handled; the route hook fills in ``route`` from inside the app, and
    ``mark_shed`` why the app shed it, if it did."""

    route: str = UNMATCHED_ROUTE
    shed: str | None = None


# Set by the middleware before the app runs; Quart's handler task inherits it.
_in_flight: ContextVar[_InFlight | None] = ContextVar("in_flight", default=None)


def mark_shed(reason: str) -> None:
    """Count the request being handled as shed for ``reason`` (a ``metrics.SHED_REASONS``),
    once it is answered: called from inside the app, which refuses it to protect the service."""
    state = _in_flight.get()
    if state is not None:
        state.shed = reason


def install_instrumentation(
    app: Quart,
    *,
    guard: RequestGuard,
    metrics: HttpMetrics,
    tracing: Tracing,
    logging: LoggingSettings,
    metrics_path: str,
) -> None:
    """Wrap ``app``'s ASGI callable, and record each request's route template."""
    routes = _RouteTemplates(app)

    def record_route(endpoint: str | None, _values: dict[str, Any] | None) -> None:
        state = _in_flight.get()
        if state is not None and endpoint is not None:
            state.route = routes.of(endpoint)

    # A URL value preprocessor, not a ``before_request`` hook: Quart runs those before any
    # hook that could answer the request, and calls them directly (a hook costs an await).
    app.url_value_preprocessor(record_route)
    quiet_routes = frozenset(() if logging.access_log_probes else (*PROBE_ROUTES, metrics_path))
    untraced_paths = frozenset(() if tracing.trace_probes else (*PROBE_ROUTES, metrics_path))
    app.asgi_app = _InstrumentationMiddleware(  # type: ignore[method-assign] # Quart's way to add middleware
        app.asgi_app,
        routes=routes,
        guard=guard,
        metrics=metrics,
        tracing=tracing,
        write_access_line=access_log() if logging.access_log else None,
        quiet_routes=quiet_routes,
        untraced_paths=untraced_paths,
    )


class _RouteTemplates:
    """The route template of each endpoint, looked up once (``request.url_rule`` costs a
    context lookup per request); an endpoint with several routes asks which one matched."""

    def __init__(self, app: Quart) -> None:
        self._url_map = app.url_map
        self._of_endpoint: dict[str, str] = {}
        self._adapter: MapAdapter | None = None

    def of(self, endpoint: str) -> str:
        route = self._of_endpoint.get(endpoint)
        if route is not None:
            return route
        rules = list(self._url_map.iter_rules(endpoint))
        if len(rules) == 1:
            route = self._of_endpoint[endpoint] = rules[0].rule
            return route
        rule = request.url_rule
        return UNMATCHED_ROUTE if rule is None else rule.rule

    def matching(self, method: str, path: str) -> str:
        """The template of the route ``path`` matches, found without the app (a few microseconds):
        for a request refused before it."""
        if self._adapter is None:  # bound on first use: every route is registered by then
            self._adapter = self._url_map.bind("localhost")
        try:
            rule, _ = self._adapter.match(path, method, return_rule=True)
        except HTTPException:  # no route, another method's, or a redirect (the app would answer so)
            return UNMATCHED_ROUTE
        return str(rule.rule)


class _InstrumentationMiddleware:
    def __init__(
        self,
        app: Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]],
        *,
        routes: _RouteTemplates,
        guard: RequestGuard,
        metrics: HttpMetrics,
        tracing: Tracing,
        write_access_line: AccessLog | None,
        quiet_routes: frozenset[str],
        untraced_paths: frozenset[str],
    ) -> None:
        self._app = app
        self._routes = routes
        self._guard = guard
        self._metrics = metrics
        self._tracing = tracing
        self._write_access_line = write_access_line
        self._quiet_routes = quiet_routes
        self._untraced_paths = untraced_paths

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await refuse_websocket(scope, receive, send)
            else:
                await self._app(scope, receive, send)
            return
        started_ns = time.perf_counter_ns()
        method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
        raw_request_id, traceparent, tracestate = _read_headers(scope["headers"])
        request_id = request_id_from(raw_request_id)
        state = _InFlight()
        export = scope["path"] not in self._untraced_paths
        span = self._tracing.start_server_span(traceparent, tracestate, method, export=export)
        bind_request_fields(RequestFields(request_id, span.trace_id, span.span_id))
        _in_flight.set(state)
        in_progress = self._metrics.in_progress_of(method)
        in_progress.inc()
        request_id_header = (REQUEST_ID_KEY, request_id.encode("latin-1"))
        guard = self._guard
        refusal = guard.refusal(scope)
        admitted = refusal is None and guard.admit(scope)
        if refusal is not None:
            state.route = self._routes.matching(scope["method"], scope["path"])
        status = 500  # what the client sees if the app fails before answering
        answered = client_gone = False

        async def receive_noting_disconnect() -> ASGIReceiveEvent:
            nonlocal client_gone
            message = await receive()
            client_gone = client_gone or message["type"] == "http.disconnect"
            return message

        async def send_with_request_id(message: ASGISendEvent) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                headers = [*message["headers"], request_id_header, *SECURITY_HEADERS]
                if guard.closes_connection(scope):
                    headers.append(CONNECTION_CLOSE)
                message["headers"] = headers
            await send(message)

        try:
            if refusal is None:
                await self._app(scope, receive_noting_disconnect, send_with_request_id)
            else:
                await send_refusal(scope, send_with_request_id, refusal)
        finally:
            guard.release(admitted)
            if client_gone and not answered:
                status = CLIENT_CLOSED
            seconds = (time.perf_counter_ns() - started_ns) / 1e9
            in_progress.dec()
            exemplar = span.trace_id if span.exported else None
            self._metrics.observe(method, state.route, status, seconds, exemplar)
            shed = state.shed if refusal is None else refusal.shed
            if shed is not None:
                self._metrics.count_shed(method, state.route, shed)
            span.end(state.route, status)
            span.detach()
            if self._write_access_line is not None and state.route not in self._quiet_routes:
                client = scope.get("client")
                self._write_access_line(
                    method=scope["method"],
                    path=scope["path"],
                    route=state.route,
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    client=client[0] if client else None,
                )


def _read_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    """``X-Request-ID``, ``traceparent`` and ``tracestate`` from the raw ASGI headers, in one pass.

    (Looking up absent headers through werkzeug raises and catches an exception each time,
    which cost more than everything else here.)
    """
    request_id = traceparent = tracestate = None
    for name, value in headers:
        if name == REQUEST_ID_KEY:
            request_id = value.decode("latin-1")
        elif name == b"traceparent":
            traceparent = value.decode("latin-1")
        elif name == b"tracestate":
            tracestate = value.decode("latin-1")
    return request_id, traceparent, tracestate
