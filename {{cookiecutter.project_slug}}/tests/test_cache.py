"""The Redis cache: a real one when the tests have it, and one that is down, which never fails a call."""

# ruff: noqa: F811 - test_observability's collector, imported, is a test argument here

from __future__ import annotations

import socket

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from {{ cookiecutter.package_name }}.chassis.cache import Cache, CacheMetrics
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.settings import CacheSettings, TracingSettings

from .test_observability import exported_spans, otlp_collector  # noqa: F401 - a fixture used here


def unreachable_cache_url() -> str:
    """A Redis URL on a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_values_are_cached_for_their_ttl_and_deleted(cache: Cache, cache_key_prefix: str) -> None:
    key = f"{cache_key_prefix}:greeting"
    assert await cache.get(key) is None
    await cache.set(key, b"hello", ttl=30)
    assert await cache.get(key) == b"hello"
    await cache.delete(key)
    assert await cache.get(key) is None
    assert await cache.ping() is True
    assert [(check.name, check.critical) for check in cache.health_checks()] == [("ping", False)]


async def test_hits_and_misses_are_counted(test_cache_url: str, cache_key_prefix: str) -> None:
    registry = CollectorRegistry()
    cache = Cache(CacheSettings(url=test_cache_url), metrics=CacheMetrics(registry))
    await cache.start()
    try:
        await cache.get(f"{cache_key_prefix}:absent")
        await cache.set(f"{cache_key_prefix}:present", b"1", ttl=30)
        await cache.get(f"{cache_key_prefix}:present")
        await cache.delete(f"{cache_key_prefix}:present")
    finally:
        await cache.stop()
    assert sample(registry, "cache_requests_total", result="hit") == 1
    assert sample(registry, "cache_requests_total", result="miss") == 1


async def test_a_cache_that_is_down_is_skipped_counted_and_logged(capsys: pytest.CaptureFixture[str]) -> None:
    registry = CollectorRegistry()
    cache = Cache(CacheSettings(url=unreachable_cache_url(), timeout=0.2), metrics=CacheMetrics(registry))
    await cache.start()  # starts anyway: the service works without its cache
    try:
        assert await cache.get("key") is None
        await cache.set("key", b"value", ttl=30)
        await cache.delete("key")
        assert await cache.ping() is False
    finally:
        await cache.stop()
    for operation in ("get", "set", "delete"):
        assert sample(registry, "cache_errors_total", operation=operation) == 1
    assert capsys.readouterr().out.count("cache call failed; carrying on without it") == 3


async def test_calls_are_client_spans_of_the_request_only_when_tracing_exports(
    test_cache_url: str, cache_key_prefix: str, otlp_collector: tuple[str, list[bytes]]
) -> None:
    endpoint, received = otlp_collector
    tracing = Tracing(TracingSettings(otlp_endpoint=endpoint), service="test", version="0")
    metrics = CacheMetrics(CollectorRegistry())
    cache = Cache(CacheSettings(url=test_cache_url), metrics=metrics, tracing=tracing)
    key = f"{cache_key_prefix}:traced"
    await cache.start()
    try:
        request_span = tracing.start_span("GET /items/<item_id>", trace.SpanKind.SERVER)
        with trace.use_span(request_span, end_on_exit=True):
            await cache.get(key)
            await cache.set(key, b"1", ttl=30)
            await cache.delete(key)
    finally:
        await cache.stop()
        await tracing.stop()  # exports what is left
    spans = exported_spans(received)
    request = next(span for span in spans if span.name == "GET /items/<item_id>")
    calls = [span for span in spans if span.kind == span.SPAN_KIND_CLIENT]
    assert [span.name for span in calls] == ["GET", "SET", "DEL"]
    assert all(span.parent_span_id == request.span_id for span in calls), "under the request's span"
    attributes = {item.key: item.value for item in calls[0].attributes}
    assert attributes["db.system.name"].string_value == "redis"
    assert attributes["db.operation.name"].string_value == "GET"
    assert key.encode() not in b"".join(received), "keys may be private: they stay out of spans"


async def test_calls_make_no_span_when_tracing_does_not_export(
    test_cache_url: str, cache_key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_exporting = Tracing(TracingSettings(), service="test", version="0")

    def no_span(*_: object, **__: object) -> None:
        raise AssertionError("a span was started")

    monkeypatch.setattr(not_exporting, "start_span", no_span)
    metrics = CacheMetrics(CollectorRegistry())
    cache = Cache(CacheSettings(url=test_cache_url), metrics=metrics, tracing=not_exporting)
    await cache.start()
    try:
        await cache.set(f"{cache_key_prefix}:untraced", b"1", ttl=30)
        assert await cache.get(f"{cache_key_prefix}:untraced") == b"1"
    finally:
        await cache.stop()
