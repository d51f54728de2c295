"""The PostgreSQL resource: connects with retries, pings for readiness, maps outages to 503."""

# ruff: noqa: F811 - test_observability's collector, imported, is a test argument here

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from click.testing import CliRunner
from opentelemetry import trace
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.chassis.database import (
    Database,
    DatabaseSetupError,
    DatabaseUnavailableError,
)
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.chassis.tracing import Tracing
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    DatabaseSettings,
    Settings,
    TracingSettings,
)

from .apps import create_app_from
from .tcp_proxy import TcpProxy
from .test_observability import exported_spans, otlp_collector  # noqa: F401 - a fixture used here
from .test_postgres_items import postgres_services

PASSWORD = "s3cret-Pa55"


def through(proxy: TcpProxy, settings: DatabaseSettings) -> DatabaseSettings:
    """``settings`` with the database reached through ``proxy``."""
    url = make_url(settings.url).set(host="127.0.0.1", port=proxy.port)
    return dataclasses.replace(settings, url=url.render_as_string(hide_password=False))


def proxy_to(settings: DatabaseSettings) -> TcpProxy:
    url = make_url(settings.url)
    return TcpProxy(url.host or "localhost", url.port or 5432)


async def test_every_connection_gets_the_schema_and_statement_timeout(database: Database) -> None:
    async with database.session() as session:
        search_path = await session.scalar(text("SHOW search_path"))
        timeout = await session.scalar(text("SHOW statement_timeout"))
    assert search_path is not None
    assert search_path.startswith("test_")
    assert timeout == "10s"
    assert [check.name for check in database.health_checks()] == ["ping"]


async def test_the_pool_is_measured_at_each_scrape(migrated_database_settings: DatabaseSettings) -> None:
    registry = CollectorRegistry()
    settings = dataclasses.replace(migrated_database_settings, pool_size=2, max_overflow=1)
    database = Database(settings, registry=registry)
    await database.start()
    try:
        async with database.session(), database.session(), database.session():
            assert registry.get_sample_value("db_client_connection_count", {"state": "used"}) == 3
            assert registry.get_sample_value("db_client_connection_overflow") == 1
        assert registry.get_sample_value("db_client_connection_count", {"state": "used"}) == 0
        assert registry.get_sample_value("db_client_connection_max") == 3
        assert registry.get_sample_value("db_client_connection_wait_time_seconds_count") == 3
    finally:
        await database.stop()


async def test_statements_are_client_spans_of_the_request_only_when_tracing_exports(
    migrated_database_settings: DatabaseSettings, otlp_collector: tuple[str, list[bytes]]
) -> None:
    endpoint, received = otlp_collector
    tracing = Tracing(TracingSettings(otlp_endpoint=endpoint), service="test", version="0")
    database = Database(migrated_database_settings, tracing=tracing)
    await database.start()
    try:
        request_span = tracing.start_span("GET /items/<item_id>", trace.SpanKind.SERVER)
        with trace.use_span(request_span, end_on_exit=True):
            async with database.session() as session:
                await session.execute(text("SELECT 1"))
    finally:
        await database.stop()
        await tracing.stop()  # exports what is left
    spans = exported_spans(received)
    request = next(span for span in spans if span.name == "GET /items/<item_id>")
    # The ping at start is a trace of its own; the request's statements are in the request's.
    statements = [
        span for span in spans if span.kind == span.SPAN_KIND_CLIENT and span.trace_id == request.trace_id
    ]
    assert "SELECT" in [span.name for span in statements]
    assert all(span.parent_span_id == request.span_id for span in statements), "under the request's span"

    not_exporting = Tracing(TracingSettings(), service="test", version="0")
    untraced = Database(migrated_database_settings, tracing=not_exporting)
    await untraced.start()
    try:
        assert not untraced.engine.sync_engine.dispatch.before_cursor_execute, "no listener: no cost"
    finally:
        await untraced.stop()


async def test_a_statement_past_its_timeout_means_unavailable(
    migrated_database_settings: DatabaseSettings,
) -> None:
    database = Database(dataclasses.replace(migrated_database_settings, statement_timeout=0.05))
    await database.start()
    try:
        with pytest.raises(DatabaseUnavailableError, match="statement timeout"):
            async with database.session() as session:
                await session.execute(text("SELECT pg_sleep(2)"))
    finally:
        await database.stop()


async def test_start_waits_for_a_database_that_comes_up_later(
    migrated_database_settings: DatabaseSettings,
) -> None:
    proxy = proxy_to(migrated_database_settings)
    database = Database(through(proxy, migrated_database_settings))
    starting = asyncio.create_task(database.start())
    await asyncio.sleep(1.0)
    assert not starting.done(), "start gave up while the database was down"
    await proxy.open()
    try:
        await asyncio.wait_for(starting, timeout=15)
        await database.ping()
    finally:
        await database.stop()
        await proxy.close()


async def test_a_missing_database_fails_the_start_at_once_saying_how_to_create_it(
    test_database_url: str,
) -> None:
    """No retries until resources.start_timeout: waiting does not create a database."""
    name = f"missing_{uuid.uuid4().hex[:12]}"  # never created
    url = make_url(test_database_url).set(database=name).render_as_string(hide_password=False)
    database = Database(DatabaseSettings(url=url))
    try:
        with pytest.raises(DatabaseSetupError, match=f'database "{name}" does not exist on .*`createdb -h '):
            async with asyncio.timeout(10):
                await database.start()
    finally:
        await database.stop()


async def test_an_outage_is_503_and_not_ready_until_the_database_is_back(
    migrated_database_settings: DatabaseSettings,
) -> None:
    proxy = proxy_to(migrated_database_settings)
    await proxy.open()
    settings = through(proxy, migrated_database_settings)
    app = create_app_from(Settings(database=settings), services=postgres_services(settings))
    client = app.test_client()
    try:
        async with app.test_app():
            await part_of(app, Lifecycle).wait_until_started()
            assert (await client.post("/items", json={"name": "lamp", "price_cents": 1})).status_code == 201
            assert (await client.get("/health/ready")).status_code == 200

            await proxy.close()
            response = await client.get("/items/1")
            assert response.status_code == 503
            assert response.content_type == "application/problem+json"
            assert response.headers["Retry-After"] == "1"
            ready = await client.get("/health/ready")
            body = await ready.get_json()
            assert ready.status_code == 503
            assert (body["status"], body["checks"]["database.ping"]["status"]) == ("DOWN", "DOWN")

            await proxy.open()
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.get("/items/1")).status_code == 200
    finally:
        await proxy.close()


def test_a_bad_database_url_is_refused_without_echoing_it() -> None:
    url = f"mysql://app:{PASSWORD}@db.example.com/app"
    result = CliRunner().invoke(main, ["config", "check"], env={f"{ENV_PREFIX}_DATABASE_URL": url})
    assert result.exit_code == 2
    assert "database.url" in result.output
    assert "a PostgreSQL URL" in result.output
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output


def test_the_database_url_is_redacted_in_config_show() -> None:
    url = f"postgresql://app:{PASSWORD}@db.example.com:5432/app"
    result = CliRunner().invoke(main, ["config", "show"], env={f"{ENV_PREFIX}_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "url: '***'  # env" in result.output
    assert PASSWORD not in result.output


async def test_sslmode_in_the_url_is_understood(database_settings: DatabaseSettings) -> None:
    """Managed PostgreSQL services document ``?sslmode=...``; asyncpg calls it ``ssl``."""
    url = make_url(database_settings.url).update_query_dict({"sslmode": "prefer"})
    database = Database(dataclasses.replace(database_settings, url=url.render_as_string(hide_password=False)))
    await database.start()
    try:
        await database.ping()
    finally:
        await database.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@db.example.com:notaport/app", "cannot be parsed"),
        ("postgresql://app@db.example.com:99999/app", "cannot be parsed"),
        ("postgresql://app@[::1/app", "cannot be parsed"),
        ("postgresql://app@db.example.com/app?sslmode=sometimes", "sslmode is 'sometimes'"),
        ("postgresql://app@db.example.com/app?connect_timeout=3", "the one option supported is sslmode"),
    ],
)
def test_a_database_url_that_would_fail_at_start_fails_at_config_check(url: str, expected: str) -> None:
    result = CliRunner().invoke(main, ["config", "check"], env={f"{ENV_PREFIX}_DATABASE_URL": url})
    assert result.exit_code == 2
    assert expected in result.output
    assert result.output.count("\n") == 1
