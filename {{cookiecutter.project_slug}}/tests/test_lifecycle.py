"""Resources: started in dependency order (independent ones together), stopped in reverse."""

from __future__ import annotations

import asyncio
import gc

import pytest
from quart import Quart

from {{ cookiecutter.package_name }}.chassis.health import Health
from {{ cookiecutter.package_name }}.chassis.lifecycle import (
    Lifecycle,
    Resource,
    ResourceCheck,
)
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import ResourcesSettings, Settings

from .apps import create_test_app


class Recorder(Resource):
    """Appends ``start <name>``/``stop <name>`` to ``events``; can be slow, fail or hang."""

    def __init__(
        self, name: str, events: list[str], *, delay: float = 0, fails: bool = False, healthy: bool = True
    ) -> None:
        self.name = name
        self.events = events
        self.delay = delay
        self.fails = fails
        self.healthy = healthy

    async def start(self) -> None:
        self.events.append(f"begin {self.name}")
        await asyncio.sleep(self.delay)
        if self.fails:
            raise ConnectionError(f"{self.name} is unreachable")
        self.events.append(f"start {self.name}")

    async def drain(self) -> None:
        self.events.append(f"drain {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("ping", self.ping)]

    async def ping(self) -> bool:
        return self.healthy


def app_with(*resources: tuple[Recorder, tuple[str, ...]], start_timeout: float = 5) -> Quart:
    app = create_test_app(Settings(resources=ResourcesSettings(start_timeout=start_timeout)))
    for resource, depends_on in resources:
        part_of(app, Lifecycle).add(resource.name, resource, depends_on=depends_on)
    return app


async def test_dependencies_start_first_and_stop_last() -> None:
    events: list[str] = []
    app = app_with(
        (Recorder("database", events, delay=0.05), ()),
        (Recorder("cache", events, delay=0.05), ()),
        (Recorder("repository", events), ("database", "cache")),
    )
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        # The two independent ones start together; the dependent one waits for both.
        assert events[:2] == ["begin database", "begin cache"]
        assert events.index("begin repository") > max(
            events.index("start database"), events.index("start cache")
        )
        events.clear()
    assert events == ["stop repository", "stop cache", "stop database"]


async def test_once_ready_what_starting_made_is_kept_out_of_garbage_collections() -> None:
    app = app_with((Recorder("database", []), ()))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        # In no generation the collector walks (the process's first app froze them: tests start many).
        assert gc.get_freeze_count() > 0


async def test_a_failed_start_stops_what_started_and_stops_the_service() -> None:
    events: list[str] = []
    app = app_with(
        (Recorder("database", events), ()),
        (Recorder("broker", events, delay=0.05, fails=True), ()),
        (Recorder("repository", events), ("database", "broker")),
    )
    lifecycle = part_of(app, Lifecycle)
    lifecycle.request_stop = asyncio.Event()
    async with app.test_app():
        await asyncio.gather(lifecycle.wait_until_started(), return_exceptions=True)
        assert lifecycle.failed
        assert lifecycle.request_stop.is_set()
        assert "begin repository" not in events, "a resource never starts after its dependency failed"
        assert events[-1] == "stop database"
        response = await app.test_client().get("/health/ready")
        assert response.status_code == 503


async def test_a_start_is_bounded_by_the_start_timeout() -> None:
    events: list[str] = []
    app = app_with((Recorder("slow", events, delay=60), ()), start_timeout=0.05)
    lifecycle = part_of(app, Lifecycle)
    async with app.test_app():
        await asyncio.wait_for(asyncio.gather(lifecycle.wait_until_started(), return_exceptions=True), 5)
        assert lifecycle.failed


async def test_resource_checks_feed_readiness() -> None:
    events: list[str] = []
    database = Recorder("database", events)
    app = app_with((database, ()))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        client = app.test_client()
        assert (await client.get("/health/ready")).status_code == 200
        database.healthy = False
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert (await response.get_json())["checks"]["database.ping"]["status"] == "DOWN"


def test_dependencies_must_be_added_first() -> None:
    lifecycle = Lifecycle(part_of(create_test_app(Settings()), Health), start_timeout=1, stop_timeout=1)
    with pytest.raises(ValueError, match="must be added before it"):
        lifecycle.add("repository", Recorder("repository", []), depends_on=("database",))
    lifecycle.add("database", Recorder("database", []))
    with pytest.raises(ValueError, match="already added"):
        lifecycle.add("database", Recorder("database", []))


async def test_a_stop_signal_drains_the_started_resources_before_they_stop() -> None:
    events: list[str] = []
    app = app_with((Recorder("consumer", events), ()))
    async with app.test_app():
        lifecycle = part_of(app, Lifecycle)
        await lifecycle.wait_until_started()
        lifecycle.drain()  # what the server does on SIGTERM, while requests still finish
        await asyncio.sleep(0)
        assert events[-1] == "drain consumer"
        assert (await app.test_client().get("/health/ready")).status_code == 503
    assert events[-2:] == ["drain consumer", "stop consumer"]
