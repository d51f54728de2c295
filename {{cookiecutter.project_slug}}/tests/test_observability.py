"""Request ids, JSON access logs, Prometheus metrics and trace propagation."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import values
from quart import Quart

from {{ cookiecutter.package_name }} import DISTRIBUTION_NAME
from {{ cookiecutter.package_name }}.chassis.info import PACKAGE_DIR, checkout_commit
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.logging import (
    Throttled,
    configure_logging,
    frequent_line,
    get_logger,
)
from {{ cookiecutter.package_name }}.chassis.metrics import (
    MULTIPROCESS_ENV_VAR,
    HttpMetrics,
)
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.chassis.tracing import (
    Tracing,
    current_span_context,
    headers_of_context,
    remote_parent,
)
from {{ cookiecutter.package_name }}.settings import (
    LogFormat,
    LoggingSettings,
    MetricsSettings,
    Settings,
    TracingSettings,
)

from .apps import create_test_app
{%- if cookiecutter.auth == "oidc" %}
from .identity_provider import shared_identity_provider
{%- endif %}

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
# Configures logging with the given settings and returns the buffer it writes to.
CaptureLogs = Callable[[LoggingSettings], io.StringIO]


async def thing(thing_id: str) -> dict[str, str]:
    return {"id": thing_id}


async def started_app(settings: Settings) -> Quart:
    app = create_test_app(settings)
    app.add_url_rule("/things/<thing_id>", "thing", thing)
    return app


@pytest.fixture
def capture_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureLogs]:
    """Configure logging with given settings into a buffer (the service's stdout); restore after."""

    def configure(settings: LoggingSettings) -> io.StringIO:
        stdout = io.StringIO()
        monkeypatch.setattr(sys, "stdout", stdout)
        configure_logging(settings, service=DISTRIBUTION_NAME, version="0")
        return stdout

    yield configure
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture
def json_logs(capture_logs: CaptureLogs) -> io.StringIO:
    """The service's stdout, as JSON lines in a buffer (``read_lines`` reads them)."""
    return capture_logs(LoggingSettings())


def read_lines(stdout: io.StringIO) -> list[dict[str, object]]:
    """The lines written since the last read."""
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    stdout.seek(0)
    stdout.truncate()
    return lines


@pytest.fixture
async def served(json_logs: io.StringIO) -> AsyncIterator[Quart]:
    app = await started_app(Settings())
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        yield app


async def test_request_id_is_kept_when_sane_and_replaced_otherwise(served: Quart) -> None:
    client = served.test_client()
    kept = await client.get("/info", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["X-Request-ID"] == "abc-123"
    for bad in ("a" * 129, "has space", 'quote"d', "semi;colon"):
        replaced = await client.get("/info", headers={"X-Request-ID": bad})
        assert replaced.headers["X-Request-ID"] != bad
        assert len(replaced.headers["X-Request-ID"]) == 32
    made = await client.get("/info")
    assert len(made.headers["X-Request-ID"]) == 32


async def test_one_json_access_line_per_request(served: Quart, json_logs: io.StringIO) -> None:
    client = served.test_client()
    await client.get("/things/42", headers={"X-Request-ID": "req-1", "traceparent": TRACEPARENT})
    await client.get("/health/ready")
    await client.get("/metrics")
    access = [line for line in read_lines(json_logs) if line.get("logger") == "access"]
    assert len(access) == 1, "probes and scrapes are not access-logged by default"
    line = access[0]
    assert line["event"] == "request"
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET",
        "/things/42",
        "/things/<thing_id>",
        200,
    )
    assert line["request_id"] == "req-1"
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] != PARENT_SPAN_ID
    assert len(str(line["span_id"])) == 16
    assert isinstance(line["duration_ms"], float)
    assert {"timestamp", "level", "service", "version", "client"} <= set(line)
    assert str(line["timestamp"]).endswith("Z")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_lone_surrogates_a_sender_chose_are_written_as_escapes_in_valid_utf8(
    monkeypatch: pytest.MonkeyPatch, log_format: LogFormat
) -> None:
    """JSON's \\ud800 decodes to text no UTF-8 stream takes: a write raised, or wrote a stray byte."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    try:
        configure_logging(LoggingSettings(format=log_format), service=DISTRIBUTION_NAME, version="0")
        get_logger("test").info("handled", reason="invalid data: x\ud800: Field required")
        handled_line = frequent_line("message handled", "test")
        assert handled_line is not None
        handled_line(reason="y\udc80")
        text = raw.getvalue().decode("utf-8")  # strict: raises on a stray byte
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "\\ud800" in text
    assert "\\udc80" in text
    if log_format == "json":
        reasons = [json.loads(line)["reason"] for line in text.splitlines()]
        assert reasons == ["invalid data: x\ud800: Field required", "y\udc80"]


async def test_access_log_can_include_probes_or_be_off(json_logs: io.StringIO) -> None:
    for access_log, probes, expected in ((True, True, 2), (False, True, 0)):
        settings = Settings(logging=LoggingSettings(access_log=access_log, access_log_probes=probes))
        app = await started_app(settings)
        async with app.test_app():
            await part_of(app, Lifecycle).wait_until_started()
            await app.test_client().get("/health/live")
            await app.test_client().get("/info")
        access = [line for line in read_lines(json_logs) if line.get("logger") == "access"]
        assert len(access) == expected


async def test_access_lines_follow_the_log_level(capture_logs: CaptureLogs) -> None:
    stdout = capture_logs(LoggingSettings(level="warning"))
    app = await started_app(Settings())
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await app.test_client().get("/info")
    assert stdout.getvalue() == "", "info lines (access lines included) are filtered out"


async def test_unhandled_error_is_logged_once_with_a_structured_traceback(json_logs: io.StringIO) -> None:
    app = await started_app(Settings())

    async def broken() -> str:
        secret = "s3cr3t-value"  # a local variable: tracebacks must not show it
        raise RuntimeError("boom " + secret[:0])

    app.add_url_rule("/broken", "broken", broken)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        response = await app.test_client().get("/broken")
    assert response.status_code == 500
    text = json_logs.getvalue()
    assert "s3cr3t-value" not in text
    errors = [line for line in read_lines(json_logs) if "exception" in line]
    assert len(errors) == 1
    frames = errors[0]["exception"][0]["frames"]  # type: ignore[index]
    assert frames[-1]["name"] == "broken"
    assert errors[0]["exception"][0]["exc_type"] == "RuntimeError"  # type: ignore[index]


async def test_the_row_values_a_database_error_quotes_stay_out_of_the_logs(json_logs: io.StringIO) -> None:
    """A database error's DETAIL line quotes the clients' data (``Key (name)=(...)``)."""
    app = await started_app(Settings())

    async def violating() -> str:
        raise RuntimeError("duplicate key value\nDETAIL:  Key (email)=(jane@example.com) already exists.")

    async def unsendable() -> str:  # the database driver's words for a value it cannot send
        raise RuntimeError("invalid input for query argument $2: 'joe@example.com' (str is too long)")

    app.add_url_rule("/violating", "violating", violating)
    app.add_url_rule("/unsendable", "unsendable", unsendable)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        assert (await app.test_client().get("/violating")).status_code == 500
        assert (await app.test_client().get("/unsendable")).status_code == 500
    assert "jane@example.com" not in json_logs.getvalue()
    assert "joe@example.com" not in json_logs.getvalue()
    assert "duplicate key value" in json_logs.getvalue()
    assert "invalid input for query argument $2: (left out of the logs)" in json_logs.getvalue()


async def test_console_format_is_for_humans(capture_logs: CaptureLogs) -> None:
    stdout = capture_logs(LoggingSettings(format="console"))
    app = await started_app(Settings())
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await app.test_client().get("/things/5")
    lines = stdout.getvalue().splitlines()
    access = [line for line in lines if "request" in line and "/things/5" in line]
    assert len(access) == 1
    assert not access[0].startswith("{"), "console lines are not JSON"
    assert re.fullmatch(
        r"\S+Z \[info     \] request GET /things/5 200 [\d.]+ ms \[access\] client=\S+ request_id=\w+",
        access[0],
    )
    assert "\x1b[" not in stdout.getvalue(), "no colours when stdout is not a terminal"


async def test_metrics_path_is_a_setting(json_logs: io.StringIO) -> None:
    app = await started_app(Settings(metrics=MetricsSettings(path="/internal/metrics")))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        assert (await app.test_client().get("/metrics")).status_code == 404
        response = await app.test_client().get("/internal/metrics")
        assert response.status_code == 200
        assert "http_server_request_duration_seconds" in await response.get_data(as_text=True)
    paths = [line["path"] for line in read_lines(json_logs) if line.get("logger") == "access"]
    assert paths == ["/metrics"], "scrapes of the configured path are not access-logged"


async def event_loop_lag(app: Quart) -> float:
    text = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    return float(re.search(r"^event_loop_lag_seconds (\S+)$", text, re.MULTILINE)[1])  # type: ignore[index]


async def test_a_blocked_event_loop_shows_as_lag(served: Quart) -> None:
    await asyncio.sleep(0.6)  # a measurement of the loop as it should be
    assert await event_loop_lag(served) < 0.1
    time.sleep(1.0)  # noqa: ASYNC251 - what a blocking call in a handler does to every request
    await asyncio.sleep(0.1)
    assert await event_loop_lag(served) > 0.4


def test_a_scrape_across_workers_skips_a_file_no_worker_has_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV_VAR, str(tmp_path))
    try:
        metrics = HttpMetrics(service="my-service", version="1", commit="abc")
        metrics.observe("GET", "/items", 200, 0.01, None)
        # What a worker leaves between creating its file and sizing it, or when killed then.
        (tmp_path / "counter_999999.db").touch()
        body, _ = metrics.exposition()
    finally:
        monkeypatch.delenv(MULTIPROCESS_ENV_VAR)
        values.ValueClass = values.get_value_class()  # back to one process's values
    count = 'http_server_request_duration_seconds_count{http_request_method="GET",'
    assert f'{count}http_response_status_code="200",http_route="/items"}} 1.0' in body.decode()


async def test_a_view_on_two_routes_is_counted_under_the_route_that_matched() -> None:
    app = await started_app(Settings())
    app.add_url_rule("/gadgets/<thing_id>", "thing_or_gadget", thing)
    app.add_url_rule("/widgets/<thing_id>", "thing_or_gadget", thing)
    client = app.test_client()
    for path in ("/gadgets/1", "/widgets/2", "/widgets/3"):
        await client.get(path)
    text = await (await client.get("/metrics")).get_data(as_text=True)
    count = 'http_server_request_duration_seconds_count{http_request_method="GET",'
    count += 'http_response_status_code="200",'
    assert f'{count}http_route="/gadgets/<thing_id>"}} 1.0' in text
    assert f'{count}http_route="/widgets/<thing_id>"}} 2.0' in text


async def test_metrics_use_route_templates_and_bounded_labels(served: Quart) -> None:
    client = served.test_client()
    for thing_id in ("1", "2", "3"):
        await client.get(f"/things/{thing_id}")
    await client.get("/no/such/path")
    await client.open("/", method="BREW", json=None)
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert (
        'http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",'
        'http_route="/things/<thing_id>"} 3.0'
    ) in text
    assert (
        'http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404",'
        'http_route="<unmatched>"} 1.0'
    ) in text
    assert 'http_request_method="_OTHER"' in text
    assert "/things/1" not in text
    assert "/no/such/path" not in text
    assert (
        'http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",'
        'http_route="/things/<thing_id>",le="0.005"}'
    ) in text
    assert 'http_server_active_requests{http_request_method="GET"}' in text
    commit = checkout_commit(PACKAGE_DIR)  # no build.commit: the checkout's, or "unknown"
    assert 'service_info{commit="' + commit + '",service="' + DISTRIBUTION_NAME + '"' in text
    assert "process_resident_memory_bytes" in text


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[tuple[str, list[bytes]]]:
    """A local OTLP/HTTP receiver on 127.0.0.1 that keeps every export request it gets."""
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", _Collector.received
    server.shutdown()
    server.server_close()
    thread.join()


def exported_spans(received: list[bytes]) -> list[Span]:
    """Every span in the OTLP export requests ``received``, decoded."""
    spans: list[Span] = []
    for body in received:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        spans += [span for r in export.resource_spans for scope in r.scope_spans for span in scope.spans]
    return spans


async def test_server_span_is_exported_as_a_child_of_the_caller(
    otlp_collector: tuple[str, list[bytes]], json_logs: io.StringIO
) -> None:
    endpoint, received = otlp_collector
    app = await started_app(Settings(tracing=TracingSettings(otlp_endpoint=endpoint)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await app.test_client().get("/things/7", headers={"traceparent": TRACEPARENT})
    # Leaving the app flushed the exporter.
    spans = exported_spans(received)
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "GET /things/<thing_id>"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_SPAN_ID


async def test_an_openmetrics_scrape_leads_from_a_bucket_to_a_trace(
    otlp_collector: tuple[str, list[bytes]], json_logs: io.StringIO
) -> None:
    endpoint, _ = otlp_collector
    app = await started_app(Settings(tracing=TracingSettings(otlp_endpoint=endpoint)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        client = app.test_client()
        await client.get("/things/4", headers={"traceparent": TRACEPARENT})
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        openmetrics = await client.get("/metrics", headers=accept)
        plain = await (await client.get("/metrics")).get_data(as_text=True)
    assert openmetrics.content_type.startswith("application/openmetrics-text")
    text = await openmetrics.get_data(as_text=True)
    bucket_with_exemplar = r'^http_server_request_duration_seconds_bucket\{.*\} 1\.0 # \{trace_id="(\w+)"\}'
    exemplars = re.findall(bucket_with_exemplar, text, re.M)
    assert exemplars == [TRACE_ID], "the request's bucket, not the larger ones"
    assert "trace_id" not in plain, "Prometheus's text format has no exemplars"


@pytest.mark.parametrize("trace_probes", [False, True])
async def test_probes_and_scrapes_are_traced_only_when_asked(
    otlp_collector: tuple[str, list[bytes]], json_logs: io.StringIO, trace_probes: bool
) -> None:
    """Every probe of every pod and every scrape would otherwise be a trace on the tracing bill."""
    endpoint, received = otlp_collector
    tracing = TracingSettings(otlp_endpoint=endpoint, trace_probes=trace_probes)
    app = await started_app(Settings(tracing=tracing))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        for path in ("/health/live", "/health/ready", "/health/startup", "/metrics", "/things/3"):
            await app.test_client().get(path, headers={"traceparent": TRACEPARENT})
    probes = ["GET /health/live", "GET /health/ready", "GET /health/startup", "GET /metrics"]
    expected = [*(probes if trace_probes else []), "GET /things/<thing_id>"]
    assert sorted(span.name for span in exported_spans(received)) == sorted(expected)


async def test_sample_ratio_applies_to_new_traces_only(
    otlp_collector: tuple[str, list[bytes]], json_logs: io.StringIO
) -> None:
    endpoint, received = otlp_collector
    app = await started_app(Settings(tracing=TracingSettings(otlp_endpoint=endpoint, sample_ratio=0.0)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await app.test_client().get("/things/1")  # a new trace: ratio 0 samples nothing
        await app.test_client().get("/things/2", headers={"traceparent": TRACEPARENT})  # caller sampled it
    assert [span.trace_id.hex() for span in exported_spans(received)] == [TRACE_ID]


{% if cookiecutter.auth == "oidc" -%}
def authorization() -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {shared_identity_provider().token()}".encode())]


{% endif -%}
async def test_a_client_that_leaves_before_its_answer_is_counted_as_499(json_logs: io.StringIO) -> None:
    """Not as a 500: no server error happened, and none was sent."""
    app = await started_app(Settings())
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": b'{"name": "x"', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        raise AssertionError(f"nothing is sent to a client that left: {message}")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/items", "raw_path": b"/items", "query_string": b"", "root_path": "",
{%- if cookiecutter.auth == "oidc" %}
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"), *authorization()],
{%- else %}
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
{%- endif %}
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        await app(scope, receive, send)  # type: ignore[arg-type]
        text = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    assert (
        'http_server_request_duration_seconds_count{http_request_method="POST",http_response_status_code="499",'
        'http_route="/items"} 1.0'
    ) in text
    assert 'http_response_status_code="500"' not in text
    access = [
        line for line in read_lines(json_logs) if line["logger"] == "access" and line["path"] == "/items"
    ]
    assert [line["status"] for line in access] == [499]


def test_a_recurring_failure_is_logged_once_per_interval_with_a_count() -> None:
    lines: list[tuple[str, dict[str, object]]] = []

    class Recorder:
        def warning(self, event: str, **fields: object) -> None:
            lines.append((event, fields))

    throttled = Throttled(Recorder(), interval=0.2)
    for _ in range(50):
        throttled.warning("cache call failed", key="get", operation="get")
    throttled.warning("cache call failed", key="set", operation="set")  # another key: its own line
    time.sleep(0.25)
    throttled.warning("cache call failed", key="get", operation="get")
    assert lines == [
        ("cache call failed", {"operation": "get"}),
        ("cache call failed", {"operation": "set"}),
        ("cache call failed", {"operation": "get", "repeated": 49}),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": TRACEPARENT},
        {"traceparent": TRACEPARENT.upper()},
        {"traceparent": "01" + TRACEPARENT[2:]},
        {"traceparent": f"00-{'0' * 32}-{PARENT_SPAN_ID}-01"},
        {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},
        {"traceparent": TRACEPARENT[:-1]},
        {"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
        {"traceparent": "garbage"},
    ],
)
def test_the_fast_traceparent_parser_agrees_with_opentelemetrys(headers: dict[str, str]) -> None:
    """Messages' trace context is read without the propagator when it can be; the result is the same."""
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    assert remote_parent(headers) == expected


def test_without_an_exporter_the_requests_span_is_local_yet_carried_on() -> None:
    """Nothing of OpenTelemetry's per request, but what the service sends carries the caller's trace."""
    tracing = Tracing(TracingSettings(), service="test", version="0")
    span = tracing.start_server_span(TRACEPARENT, "vendor=1", "GET")
    try:
        assert trace.get_current_span().get_span_context() == trace.INVALID_SPAN_CONTEXT
        assert (span.trace_id, span.exported) == (TRACE_ID, False)
        assert span.span_id != PARENT_SPAN_ID
        headers = headers_of_context(current_span_context())
        assert headers == {"traceparent": f"00-{TRACE_ID}-{span.span_id}-01", "tracestate": "vendor=1"}
        outbound = tracing.start_client_span("upstream", "GET").headers["traceparent"]
        assert outbound.startswith(f"00-{TRACE_ID}-")
    finally:
        span.detach()
    assert current_span_context() == trace.INVALID_SPAN_CONTEXT
    new_trace = tracing.start_server_span(None, None, "GET")
    new_trace.detach()
    assert len(new_trace.trace_id) == 32
    assert new_trace.trace_id != TRACE_ID
