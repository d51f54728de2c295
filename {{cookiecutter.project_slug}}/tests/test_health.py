"""Health probes: the readiness state machine, registered checks and startup."""

from __future__ import annotations

import asyncio

from quart import Quart

from {{ cookiecutter.package_name }}.chassis.health import Health
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle, Resource
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import HealthSettings, Settings

from .apps import create_test_app


async def probe(app: Quart, path: str) -> tuple[int, dict[str, object]]:
    response = await app.test_client().get(path)
    return response.status_code, await response.get_json()


async def test_liveness_is_up_even_while_starting() -> None:
    app = create_test_app(Settings())
    assert await probe(app, "/health/live") == (200, {"status": "UP"})


async def test_readiness_follows_startup_serving_and_draining() -> None:
    app = create_test_app(Settings())
    gate = asyncio.Event()

    class SlowToStart(Resource):
        async def start(self) -> None:
            await gate.wait()

    part_of(app, Lifecycle).add("slow", SlowToStart())
    assert await readiness(app) == (503, "STARTING")
    async with app.test_app():
        assert (await probe(app, "/health/ready"))[0] == 503
        assert await probe(app, "/health/startup") == (503, {"status": "STARTING"})
        gate.set()
        await part_of(app, Lifecycle).wait_until_started()
        assert await readiness(app) == (200, "UP")
        assert await probe(app, "/health/startup") == (200, {"status": "STARTED"})
    assert await readiness(app) == (503, "DRAINING")


async def readiness(app: Quart) -> tuple[int, str]:
    """Readiness's status code and status; every check that has run is up."""
    status, body = await probe(app, "/health/ready")
    checks = body.get("checks", {})
    assert isinstance(checks, dict)
    assert all(check["status"] == "UP" for check in checks.values()), body
    return status, str(body["status"])


async def test_critical_check_failure_makes_the_service_down(app: Quart) -> None:
    healthy = True

    async def flaky() -> bool:
        return healthy

    async def optional() -> None:
        raise ConnectionError("cache unreachable")

    part_of(app, Health).add_check("database", flaky)
    part_of(app, Health).add_check("cache", optional, critical=False)
    status, body = await probe(app, "/health/ready")
    assert status == 200
    assert body["status"] == "UP"
    assert body["checks"]["database"]["status"] == "UP"  # type: ignore[index]
    assert body["checks"]["cache"]["status"] == "DOWN"  # type: ignore[index]

    healthy = False
    status, body = await probe(app, "/health/ready")
    assert (status, body["status"]) == (503, "DOWN")
    text = await metrics_of(app)
    assert "health_ready 0.0" in text
    assert 'health_check_up{check="database"} 0.0' in text
    healthy = True
    assert (await probe(app, "/health/ready"))[0] == 200
    text = await metrics_of(app)
    assert "health_ready 1.0" in text
    assert 'health_check_up{check="database"} 1.0' in text
    assert 'health_check_up{check="cache"} 0.0' in text, "a check that is not critical shows too"
    assert "health_readiness_changes_total 3.0" in text, "up when started, down, up again"


async def metrics_of(app: Quart) -> str:
    text: str = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    return text


async def test_hanging_check_is_cut_off_by_its_timeout(app: Quart) -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    part_of(app, Health).add_check("upstream", hangs, timeout=0.05)
    status, body = await asyncio.wait_for(probe(app, "/health/ready"), timeout=5)
    assert (status, body["status"]) == (503, "DOWN")
    assert body["checks"]["upstream"]["duration_ms"] < 1000  # type: ignore[index]


async def test_details_can_be_hidden() -> None:
    app = create_test_app(Settings(health=HealthSettings(show_details=False)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        assert await probe(app, "/health/ready") == (200, {"status": "UP"})
