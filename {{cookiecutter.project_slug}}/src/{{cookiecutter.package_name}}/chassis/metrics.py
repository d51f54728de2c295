"""Prometheus metrics: RED metrics per route template, and the ``/metrics`` endpoint.

The HTTP metrics are OpenTelemetry's HTTP server metrics as Prometheus names them:
``http_server_request_duration_seconds`` (its ``_count`` counts the requests) by
``http_request_method``, ``http_route`` and ``http_response_status_code``, and
``http_server_active_requests`` by method.  Labels are bounded: ``http_route`` is the
matched route template (``/items/<id>``), never the raw path, and requests that match no
route share one label value, so no client can grow the number of series.  A request shed
(503 past the concurrency limit, before the app runs, see ``request_guard.py``; or when the
shutdown grace period ends, see ``limits.py``) is counted as any other, with the route it was
for, and also in ``http_server_requests_shed_total`` by method, route and reason, so a
dashboard can tell load shedding from the service's own errors.  When the
scraper asks for OpenMetrics, the duration's buckets carry exemplars: the trace id of a
request that was exported as a span, so a slow bucket leads to a trace.  With more than one worker process,
prometheus-client's multiprocess mode aggregates what every worker counted.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from quart import Quart, Response, request

from .parts import attach

MULTIPROCESS_ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
OPENMETRICS_CONTENT_TYPE = openmetrics_exposition.CONTENT_TYPE_LATEST
UNMATCHED_ROUTE = "<unmatched>"
# Why a request was shed: more than http.max_concurrent_requests were running; or the shutdown
# grace period ended before it was answered.
SHED_CONCURRENCY_LIMIT = "concurrency_limit"
SHED_SHUTDOWN = "shutdown"
SHED_REASONS = (SHED_CONCURRENCY_LIMIT, SHED_SHUTDOWN)
# A worker's metrics file starts with how many of its bytes are used, then padding.
HEADER_BYTES = 8
# Suited to a web service: 5 ms to 10 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class HttpMetrics:
    """The service's metrics, in a registry of their own (no global state)."""

    def __init__(self, *, service: str, version: str, commit: str) -> None:
        self.multiprocess = MULTIPROCESS_ENV_VAR in os.environ
        # prometheus-client chooses how values are stored when it is imported; choose again
        # now, at run time, when it is known whether this process is one of several workers.
        values.ValueClass = values.get_value_class()
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status code.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.shed = Counter(
            "http_server_requests_shed",
            "HTTP server requests refused to protect the service (answered 503), by method, route "
            "template and reason; they are counted in http_server_request_duration_seconds too.",
            ["http_request_method", "http_route", "reason"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "http_server_active_requests",
            "HTTP server requests being handled now, by method.",
            ["http_request_method"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # An info metric as a gauge: prometheus-client's Info does not work across processes.
        service_info = Gauge(
            "service_info",
            "The service's name, version and git commit (always 1).",
            ["service", "version", "commit"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        service_info.labels(service, version, commit).set(1)
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

        # ``labels()`` is slow; the label values are bounded, so keep each child once found.
        self._duration_children: dict[tuple[str, str, int], Any] = {}
        self._shed_children: dict[tuple[str, str, str], Any] = {}
        self._in_progress_children: dict[str, Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float, trace_id: str | None) -> None:
        """Count one request; ``trace_id``, of an exported span, becomes its bucket's exemplar."""
        key = (method, route, status)
        histogram = self._duration_children.get(key)
        if histogram is None:
            histogram = self._duration_children[key] = self.duration.labels(method, route, str(status))
            self._start_shed_counts(method, route)
        if trace_id is None or self.multiprocess:  # worker processes' files keep no exemplars
            histogram.observe(seconds)
        else:
            histogram.observe(seconds, exemplar={"trace_id": trace_id})

    def count_shed(self, method: str, route: str, reason: str) -> None:
        """Count one request refused for ``reason`` (one of ``SHED_REASONS``); ``observe`` it too."""
        self._start_shed_counts(method, route)
        self._shed_children[(method, route, reason)].inc()

    def _start_shed_counts(self, method: str, route: str) -> None:
        """Show the route's shed counts at 0 from its first request on: ``rate()`` then sees the
        first shed request too, and ``errors - shed`` has both sides for every route with errors."""
        for reason in SHED_REASONS:
            key = (method, route, reason)
            if key not in self._shed_children:
                self._shed_children[key] = self.shed.labels(method, route, reason)

    def in_progress_of(self, method: str) -> Any:
        """The in-progress gauge for ``method`` (call ``inc``/``dec`` on it)."""
        gauge = self._in_progress_children.get(method)
        if gauge is None:
            gauge = self._in_progress_children[method] = self.in_progress.labels(method)
        return gauge

    def exposition(self, *, openmetrics: bool = False) -> tuple[bytes, str]:
        """The current metrics and their content type: Prometheus's text format, or OpenMetrics."""
        registry = self.registry
        if self.multiprocess:
            # Aggregate what every worker wrote; this worker's own registry is not read.
            registry = CollectorRegistry()
            WorkerFilesCollector(registry, os.environ[MULTIPROCESS_ENV_VAR])
        if openmetrics:
            return openmetrics_exposition.generate_latest(registry), OPENMETRICS_CONTENT_TYPE
        return generate_latest(registry), CONTENT_TYPE_LATEST


class WorkerFilesCollector(Collector):
    """prometheus-client's multiprocess aggregation, minus the files no worker has written yet.

    A worker creates each of its files empty and sizes it a moment later; a scrape that
    reads one in between, or the file of a worker killed in between, would fail the whole
    scrape in ``MultiProcessCollector`` (prometheus/client_python#1199).  Such a file holds
    no samples, so skip it.
    """

    def __init__(self, registry: CollectorRegistry, folder: str) -> None:
        self._folder = folder
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(os.path.join(self._folder, "*.db"))
        written = [path for path in files if _holds_a_header(path)]
        metrics: Iterable[Metric] = multiprocess.MultiProcessCollector.merge(written, accumulate=True)
        return metrics


def _holds_a_header(path: str) -> bool:
    try:
        return os.path.getsize(path) >= HEADER_BYTES
    except FileNotFoundError:  # a stopped worker's file, removed meanwhile
        return False


def install_metrics(app: Quart, metrics: HttpMetrics, path: str) -> None:
    """Serve ``metrics`` at ``path`` on ``app``."""
    attach(app, metrics)

    async def serve_metrics() -> Response:
        openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
        body, content_type = metrics.exposition(openmetrics=openmetrics)
        return Response(body, content_type=content_type)

    app.add_url_rule(path, "metrics", serve_metrics, methods=["GET"])


def prepare_multiprocess_dir(root: str) -> Path:
    """Make a fresh, private folder for this run's worker metrics and point the workers at it."""
    folder = Path(tempfile.mkdtemp(prefix="metrics-", dir=root))
    os.environ[MULTIPROCESS_ENV_VAR] = str(folder)
    return folder


def remove_multiprocess_dir(folder: Path) -> None:
    os.environ.pop(MULTIPROCESS_ENV_VAR, None)
    shutil.rmtree(folder, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (``livesum``) from the aggregate."""
    if MULTIPROCESS_ENV_VAR in os.environ:
        multiprocess.mark_process_dead(pid)
