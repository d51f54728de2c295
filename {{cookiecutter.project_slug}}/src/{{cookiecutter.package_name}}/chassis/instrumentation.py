"""Per-request instrumentation: request id, trace context, metrics and the access log.

Three Quart hooks do all of it, so the cost per request stays small and in one
place: ``before_request`` takes or makes the request id, starts the server span
and binds the ids to the request's log lines; ``after_request`` sets the
``X-Request-ID`` header, counts the request and writes the one access line;
``teardown_request`` always runs, so in-progress gauges and the trace context are
released even when a client goes away mid-request.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from contextvars import ContextVar

from quart import Quart, Response, request

from ..settings import LoggingSettings
from .logging import RequestFields, access_logger, bind_request_fields
from .metrics import UNMATCHED_ROUTE, HttpMetrics
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import HEADER_KEY as REQUEST_ID_KEY
from .request_id import request_id_from
from .tracing import ServerSpan, Tracing

PROBE_ROUTES = ("/health/live", "/health/ready", "/health/startup")
# Methods outside this set share one label value, so clients cannot add series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


@dataclasses.dataclass(slots=True)
class _InFlight:
    started_ns: int
    method: str
    route: str
    request_id: str
    span: ServerSpan


_in_flight: ContextVar[_InFlight | None] = ContextVar("in_flight", default=None)


def install_instrumentation(
    app: Quart, *, metrics: HttpMetrics, tracing: Tracing, logging: LoggingSettings, metrics_path: str
) -> None:
    """Register the hooks first, so they run before (and after) every other hook."""
    quiet_routes = frozenset(() if logging.access_log_probes else (*PROBE_ROUTES, metrics_path))
    access_log = access_logger() if logging.access_log else None

    async def begin_request() -> None:
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED_ROUTE
        method = request.method if request.method in KNOWN_METHODS else OTHER_METHOD
        request_id, traceparent, tracestate = _read_headers(request.scope["headers"])
        request_id = request_id_from(request_id)
        span = tracing.start_server_span(traceparent, tracestate, method, route)
        bind_request_fields(RequestFields(request_id, span.trace_id, span.span_id))
        metrics.in_progress_of(method).inc()
        _in_flight.set(_InFlight(time.perf_counter_ns(), method, route, request_id, span))

    async def finish_request(response: Response) -> Response:
        state = _in_flight.get()
        if state is None:  # a hook registered before ours answered first
            return response
        response.headers[REQUEST_ID_HEADER] = state.request_id
        seconds = (time.perf_counter_ns() - state.started_ns) / 1e9
        status = response.status_code
        metrics.observe(state.method, state.route, status, seconds)
        state.span.end(status)
        if access_log is not None and state.route not in quiet_routes:
            access_log.info(
                "request",
                method=request.method,
                path=request.path,
                route=state.route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                client=request.remote_addr,
            )
        return response

    async def release_request(_: BaseException | None) -> None:
        state = _in_flight.get()
        if state is None:
            return
        _in_flight.set(None)
        metrics.in_progress_of(state.method).dec()
        state.span.detach()

    app.before_request(begin_request)
    app.after_request(finish_request)
    app.teardown_request(release_request)


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
