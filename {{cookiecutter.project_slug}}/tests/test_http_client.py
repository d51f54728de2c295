"""Outbound calls against a real local upstream that can be made slow, failing or down."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from prometheus_client import CollectorRegistry
from quart import Quart, current_app

from {{ cookiecutter.package_name }}.chassis.circuit_breaker import (
    CircuitOpenError,
    CircuitState,
)
from {{ cookiecutter.package_name }}.chassis.config import section
from {{ cookiecutter.package_name }}.chassis.http_client import (
    HttpClient,
    HttpClientMetrics,
    UpstreamError,
    Upstreams,
    UpstreamTimeoutError,
)
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    Settings,
    TracingSettings,
    UpstreamSettings,
    UpstreamsSettings,
    dump_settings,
    load_settings,
)
from {{ cookiecutter.package_name }}.settings import upstream as declare_upstream

from .apps import create_test_app
from .test_serve import free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Upstream(ThreadingHTTPServer):
    """A real HTTP server on 127.0.0.1 that answers with the statuses queued in ``script``.

    ``script`` holds what the next requests get: a status code, or ``"slow"`` (2 s, then
    200); when it is empty, 200.  Every request is recorded in ``seen``.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.script: list[int | str] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        with self.server.lock:
            self.server.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            step = self.server.script.pop(0) if self.server.script else 200
        if step == "slow":
            time.sleep(2)
            step = 200
        body = b'{"ok": true}'
        self.send_response(int(step))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def settings_for(url: str, **overrides: Any) -> UpstreamSettings:
    defaults: dict[str, Any] = {"connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 10.0}
    return UpstreamSettings(base_url=url, **{**defaults, **overrides})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def make_client(registry: CollectorRegistry) -> AsyncIterator[Any]:
    """Builds started clients for a URL (with setting overrides); stops them after the test."""
    clients: list[HttpClient] = []
    metrics = HttpClientMetrics(registry)
    tracing = Tracing(TracingSettings(), service="test", version="0")

    async def make(url: str, **overrides: Any) -> HttpClient:
        client = HttpClient("catalog", settings_for(url, **overrides), metrics=metrics, tracing=tracing)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


def state_of(client: HttpClient) -> CircuitState:
    return client.breaker.state


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"upstream": "catalog", **labels}) or 0.0


async def test_idempotent_calls_are_retried_on_try_again_answers(
    make_client: Any, upstream: Upstream
) -> None:
    upstream.script = [503, 502]
    client = await make_client(upstream.url, retries=2)
    response = await client.get("/products/1")
    assert response.status_code == 200
    assert [seen.path for seen in upstream.seen] == ["/products/1"] * 3


async def test_a_post_that_reached_the_upstream_is_never_sent_twice(
    make_client: Any, upstream: Upstream, registry: CollectorRegistry
) -> None:
    upstream.script = [503, "slow"]
    client = await make_client(upstream.url, retries=3, read_timeout=0.2)
    assert (await client.post("/orders", json={"id": 1})).status_code == 503
    with pytest.raises(UpstreamError, match="ReadTimeout"):
        await client.post("/orders", json={"id": 2})
    assert len(upstream.seen) == 2
    assert sample(registry, "http_client_requests_total", method="POST", status="503") == 1
    assert sample(registry, "http_client_requests_total", method="POST", status="error") == 1


async def test_a_get_is_retried_after_a_read_timeout(make_client: Any, upstream: Upstream) -> None:
    upstream.script = ["slow"]
    client = await make_client(upstream.url, retries=1, read_timeout=0.2)
    assert (await client.get("/products/1")).status_code == 200
    assert len(upstream.seen) == 2


async def test_connection_failures_are_retried_for_every_method(
    make_client: Any, registry: CollectorRegistry
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = await make_client(down, retries=2)
    with pytest.raises(UpstreamError, match="ConnectError"):
        await client.post("/orders", json={})
    assert sample(registry, "http_client_requests_total", method="POST", status="error") == 3


async def test_the_total_timeout_bounds_the_whole_call(make_client: Any, upstream: Upstream) -> None:
    upstream.script = ["slow", "slow"]
    client = await make_client(upstream.url, retries=5, read_timeout=10, total_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await client.get("/products/1")
    assert time.monotonic() - started < 1.5


async def test_the_circuit_opens_fails_fast_and_closes_after_a_good_trial(
    make_client: Any, upstream: Upstream, registry: CollectorRegistry
) -> None:
    upstream.script = [500, 500, 500]
    client = await make_client(upstream.url, retries=0, breaker_failures=2, breaker_cooldown=0.3)
    for _ in range(2):
        assert (await client.get("/products/1")).status_code == 500
    assert state_of(client) is CircuitState.OPEN
    assert sample(registry, "http_client_circuit_state") == CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        await client.get("/products/1")
    assert len(upstream.seen) == 2, "an open circuit does not call the upstream"

    await asyncio.sleep(0.35)
    assert state_of(client) is CircuitState.HALF_OPEN
    assert (await client.get("/products/1")).status_code == 500  # the trial fails: open again
    assert state_of(client) is CircuitState.OPEN

    await asyncio.sleep(0.35)
    assert (await client.get("/products/1")).status_code == 200  # the trial succeeds: closed
    assert state_of(client) is CircuitState.CLOSED
    assert sample(registry, "http_client_circuit_state") == CircuitState.CLOSED


@section
class CatalogUpstreams(UpstreamsSettings):
    catalog: UpstreamSettings = declare_upstream("http://catalog.invalid")


@dataclasses.dataclass(frozen=True)
class SettingsWithCatalog(Settings):
    upstreams: CatalogUpstreams = dataclasses.field(default_factory=CatalogUpstreams)


def test_upstreams_are_settings_like_any_other(tmp_path: Path) -> None:
    config = tmp_path / "settings.yml"
    config.write_text("upstreams:\n  catalog:\n    retries: 4\n", encoding="utf-8")
    environ = {**os.environ, f"{ENV_PREFIX}_UPSTREAMS_CATALOG_BASE_URL": "http://catalog:8080"}
    loaded = load_settings(environ=environ, config_file=config, root=SettingsWithCatalog)
    catalog = cast(CatalogUpstreams, loaded.settings.upstreams).catalog
    assert (catalog.base_url, catalog.retries, catalog.read_timeout) == ("http://catalog:8080", 4, 10.0)
    assert loaded.sources["upstreams.catalog.retries"] == "file"
    shown = dump_settings(loaded)
    assert "upstreams:\n  catalog:\n    base_url: http://catalog:8080  # env\n" in shown
    assert yaml.safe_load(shown)["upstreams"]["catalog"]["retries"] == 4


@pytest.fixture
async def app_calling(upstream: Upstream) -> AsyncIterator[Quart]:
    """The app with an upstream named catalog at ``upstream``, and a route that calls it."""
    catalog = settings_for(upstream.url, retries=0, breaker_failures=1, breaker_cooldown=60)
    app = create_test_app(SettingsWithCatalog(upstreams=CatalogUpstreams(catalog=catalog)))

    async def product() -> dict[str, Any]:
        response = await part_of(current_app, Upstreams)["catalog"].get("/products/1")
        return {"status": response.status_code}

    app.add_url_rule("/product", "product", product)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        yield app


async def test_calls_carry_the_request_id_and_trace_context(app_calling: Quart, upstream: Upstream) -> None:
    headers = {"X-Request-ID": "order-42", "traceparent": TRACEPARENT}
    response = await app_calling.test_client().get("/product", headers=headers)
    assert await response.get_json() == {"status": 200}
    sent = {name.lower(): value for name, value in upstream.seen[0].headers.items()}
    assert sent["x-request-id"] == "order-42"
    version, trace_id, span_id, _flags = sent["traceparent"].split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    assert span_id not in TRACEPARENT, "the call is a span of its own"


async def test_upstream_failures_are_503_problems_and_counted(app_calling: Quart, upstream: Upstream) -> None:
    client = app_calling.test_client()
    upstream.script = [500]
    assert await (await client.get("/product")).get_json() == {"status": 500}
    response = await client.get("/product")  # the circuit is open now
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert "catalog" in (await response.get_json())["detail"]
    metrics = (await (await client.get("/metrics")).get_data(as_text=True)).splitlines()
    assert 'http_client_requests_total{method="GET",status="500",upstream="catalog"} 1.0' in metrics
    assert 'http_client_circuit_state{upstream="catalog"} 2.0' in metrics
    ready = await (await client.get("/health/ready")).get_json()
    assert ready["status"] == "UP", "an upstream's trouble does not make this service unready"
    assert ready["checks"]["upstream.catalog.circuit"]["status"] == "DOWN"
