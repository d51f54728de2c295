"""Trace context: W3C ``traceparent``/``tracestate`` in, ids in every log line, spans out.

Without an exporter (``tracing.otlp_endpoint`` empty) nothing is recorded: each request
gets a ``LocalSpan``, the caller's trace (or a new one) with a span id of this
service's own, kept in a context variable of its own rather than in OpenTelemetry's
context, so logs, outbound calls and messages sent still carry the ids at almost no
cost (``current_span_context`` is where they read them).  With an exporter, one SDK
server span per request is created, sampled by ``tracing.sample_ratio``
(parent-based), and exported over OTLP/HTTP in batches; health probes and metrics
scrapes get ids but no exported span unless ``tracing.trace_probes``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..settings import TracingSettings
from .lifecycle import Resource

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_PROPAGATOR = TraceContextTextMapPropagator()
# A W3C traceparent of version 00: trace id, parent span id, flags.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ROOT_CONTEXT = otel_context.Context()


class RequestSpan(Protocol):
    """This service's span for one request, as the instrumentation uses it."""

    trace_id: str  # hex, as logs and W3C headers write it
    span_id: str
    exported: bool  # whether it reaches the tracing backend (so its trace id can be looked up there)

    def end(self, route: str, status: int) -> None: ...

    def detach(self) -> None: ...


class LocalSpan:
    """A request's span when nothing is exported: its ids, and nothing of OpenTelemetry's.

    An SDK-less OpenTelemetry span made current (a span context, a context, attach and
    detach) cost about 32k CPU instructions a request, an eighth of what the chassis added;
    this is a few integers in a context variable (about 7k), turned into a span context
    only when something asks for one.
    """

    __slots__ = ("_parent", "_span_id", "_token", "_trace_id", "span_id", "trace_id")
    exported = False

    def __init__(self, parent: trace.SpanContext) -> None:
        self._parent = parent
        self._trace_id = parent.trace_id if parent.is_valid else random.getrandbits(128) or 1
        self._span_id = random.getrandbits(64) or 1
        self.trace_id = f"{self._trace_id:032x}"
        self.span_id = f"{self._span_id:016x}"
        self._token: Token[LocalSpan | None] = _local_span.set(self)

    def span_context(self) -> trace.SpanContext:
        parent = self._parent
        if not parent.is_valid:
            return trace.SpanContext(self._trace_id, self._span_id, is_remote=False)
        return trace.SpanContext(
            self._trace_id,
            self._span_id,
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )

    def end(self, route: str, status: int) -> None:
        """Nothing to record."""

    def detach(self) -> None:
        _local_span.reset(self._token)


# The local span of the request being handled, when nothing is exported.
_local_span: ContextVar[LocalSpan | None] = ContextVar("local_span", default=None)


def current_span_context() -> trace.SpanContext:
    """The context of the current span: OpenTelemetry's current one, else the request's local span.

    (Invalid outside any span.)  What the service sends (trace headers of outbound calls and
    messages) and the spans it makes without an exporter take their parent here.
    """
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return span_context
    local = _local_span.get()
    return trace.INVALID_SPAN_CONTEXT if local is None else local.span_context()


class ServerSpan:
    """This service's span for one request, when exporting: its ids, and the context made current for it."""

    __slots__ = ("_method", "_span", "_token", "exported", "span_id", "trace_id")

    def __init__(self, span: trace.Span, parent: otel_context.Context, method: str) -> None:
        self._span = span
        self._method = method
        span_context = span.get_span_context()
        self.trace_id = format(span_context.trace_id, "032x")
        self.span_id = format(span_context.span_id, "016x")
        # Whether the span reaches the tracing backend (so its trace id can be looked up there).
        self.exported = span.is_recording() and span_context.trace_flags.sampled
        self._token = otel_context.attach(trace.set_span_in_context(span, parent))

    def end(self, route: str, status: int) -> None:
        """Name the span after the matched route, record the status (when recording), end it."""
        if self._span.is_recording():
            self._span.update_name(f"{self._method} {route}")
            self._span.set_attribute("http.route", route)
            self._span.set_attribute("http.response.status_code", status)
            if status >= 500:
                self._span.set_status(trace.StatusCode.ERROR)
            self._span.end()

    def detach(self) -> None:
        otel_context.detach(self._token)


def headers_of(span: trace.Span) -> dict[str, str]:
    """The W3C headers that make the receiver's spans children of ``span`` (what the propagator writes)."""
    return headers_of_context(span.get_span_context())


def headers_of_context(context: trace.SpanContext) -> dict[str, str]:
    """The W3C headers that carry ``context`` (none for an invalid one)."""
    if not context.is_valid:
        return {}
    headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


def remote_parent(headers: Mapping[str, str]) -> trace.SpanContext:
    """The span context the W3C headers carry (invalid if none); a fast path for version 00 alone."""
    traceparent = headers.get("traceparent")
    if traceparent is None:
        return trace.INVALID_SPAN_CONTEXT
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None or "tracestate" in headers:  # the propagator handles the rest
        return trace.get_current_span(_PROPAGATOR.extract(dict(headers))).get_span_context()
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return trace.INVALID_SPAN_CONTEXT
    flags = trace.TraceFlags(int(match[3], 16))
    return trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


class ClientSpan:
    """A span for one outbound call: the headers that carry it, and its end."""

    __slots__ = ("_span", "headers")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self.headers = headers_of(span)

    def end(self, status: int | None) -> None:
        """Record the status (``None``: no response) and end the span (when recording)."""
        if self._span.is_recording():
            if status is not None:
                self._span.set_attribute("http.response.status_code", status)
            if status is None or status >= 500:
                self._span.set_status(trace.StatusCode.ERROR)
            self._span.end()


class Tracing(Resource):
    """Creates each request's spans; owns the exporter when one is configured (a resource: it stops)."""

    def __init__(self, settings: TracingSettings, *, service: str, version: str) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        self.trace_probes = settings.trace_probes
        if settings.otlp_endpoint:
            # Imported only when exporting: the SDK and exporter take half a second to import.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

            resource = Resource.create({"service.name": service, "service.version": version})
            sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
            self._provider = TracerProvider(resource=resource, sampler=sampler)
            exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
            self._tracer = self._provider.get_tracer(__name__, version)

    @property
    def exporting(self) -> bool:
        return self._tracer is not None

    def start_server_span(
        self, traceparent: str | None, tracestate: str | None, method: str, *, export: bool = True
    ) -> RequestSpan:
        """Start this request's span as a child of the caller's (W3C headers), if any.

        Without ``export`` (a probe, a scrape) the span has ids for the logs but is never exported.
        """
        if self._tracer is None:
            if traceparent is None:  # the common case: new ids, nothing to parse
                return LocalSpan(trace.INVALID_SPAN_CONTEXT)
            carried = {"traceparent": traceparent}
            if tracestate is not None:
                carried["tracestate"] = tracestate
            return LocalSpan(remote_parent(carried))
        tracer = self._tracer if export else None
        if traceparent is None and tracer is None:
            return ServerSpan(
                trace.NonRecordingSpan(_child_of(trace.INVALID_SPAN_CONTEXT)), _ROOT_CONTEXT, method
            )
        carrier = {"traceparent": traceparent or ""}
        if tracestate is not None:
            carrier["tracestate"] = tracestate
        parent = _PROPAGATOR.extract(carrier)
        if tracer is not None:
            # Named after the route once it is known (``ServerSpan.end``).
            span = tracer.start_span(
                method, context=parent, kind=trace.SpanKind.SERVER, attributes={"http.request.method": method}
            )
        else:
            span = trace.NonRecordingSpan(_child_of(trace.get_current_span(parent).get_span_context()))
        return ServerSpan(span, parent, method)

    def start_client_span(self, upstream: str, method: str) -> ClientSpan:
        """Start a span for a call to ``upstream``, a child of the current request's span."""
        if self._tracer is None:
            return ClientSpan(trace.NonRecordingSpan(_child_of(current_span_context())))
        span = self._tracer.start_span(
            f"{method} {upstream}",
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": method, "peer.service": upstream},
        )
        return ClientSpan(span)

    def start_span(
        self, name: str, kind: trace.SpanKind, *, parent: Mapping[str, str] | None = None
    ) -> trace.Span:
        """A span of this service's own work (a message sent or handled, a job), ended by the caller.

        It is a child of the trace context in the ``parent`` headers when given, else of the
        current span.  Without an exporter it records nothing but still has ids of its own.
        """
        if self._tracer is None:
            if parent is None:
                return trace.NonRecordingSpan(_child_of(current_span_context()))
            return trace.NonRecordingSpan(_child_of(remote_parent(parent)))
        context = None if parent is None else _PROPAGATOR.extract(dict(parent))
        return self._tracer.start_span(name, context=context, kind=kind)

    async def stop(self) -> None:
        """Export what is still buffered, then stop the exporter (off the event loop: it blocks)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)


def _child_of(parent: trace.SpanContext) -> trace.SpanContext:
    """A non-recording span context: the caller's trace (or a new one) with a span id of our own."""
    # Ids need to be unique, not unpredictable (the OpenTelemetry SDK makes them the same way).
    span_id = random.getrandbits(64) or 1
    if parent.is_valid:
        return trace.SpanContext(
            parent.trace_id,
            span_id,
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
    return trace.SpanContext(random.getrandbits(128) or 1, span_id, is_remote=False)
