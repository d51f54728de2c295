"""Slow tier: every "How do I…" answer of the generated README, followed as written, in a fresh project.

The project has PostgreSQL and Redis (so every answer applies). Each answer's own words are
checked to be in the README, then carried out: an endpoint, a setting (then `make docs`), an
upstream, a resource with a health check, a migration (`make migrate`, `make migration`,
`make migrate`). Then `make lint` and `make test` must pass, with tests for what was added.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DEFAULT_PACKAGE, clean_env, render
from servers import server_test_env, throwaway_database

pytestmark = pytest.mark.slow

PREFIX = DEFAULT_PACKAGE.upper()
BOTH = {"database": "postgresql", "cache": "redis", "verify": "false"}

GREETINGS_VIEW = '''"""``/greetings``: hello, with a setting and a call to another service."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app

from ..chassis.http_client import Upstreams
from ..chassis.parts import part_of
from ..settings import Settings

blueprint = Blueprint("greetings", __name__, url_prefix="/greetings")


@blueprint.get("")
async def greet() -> dict[str, Any]:
    return {"text": "hello", "page_size": part_of(current_app, Settings).http.page_size}


@blueprint.get("/product")
async def product() -> dict[str, Any]:
    response = await part_of(current_app, Upstreams)["catalog"].get("/products/1")
    return {"status": response.status_code}
'''

GREETINGS_TEST = '''"""The endpoint added as the README says."""

from __future__ import annotations

from quart.typing import TestClientProtocol as QuartClient


async def test_greets_with_the_page_size(client: QuartClient) -> None:
    response = await client.get("/greetings")
    assert response.status_code == 200
    assert await response.get_json() == {"text": "hello", "page_size": 50}
    document = await (await client.get("/openapi.json")).get_json()
    assert "/greetings" in document["paths"]
'''

CATALOG_TEST = '''"""The upstream declared as the README says: unreachable here, so a 503 problem."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as QuartClient

from {package}.settings import Settings, UpstreamSettings, UpstreamsSettings


@pytest.fixture
def settings() -> Settings:
    catalog = UpstreamSettings(base_url="http://127.0.0.1:9", retries=0, connect_timeout=0.5)
    return Settings(upstreams=UpstreamsSettings(catalog=catalog))


async def test_a_call_to_the_catalog_that_fails_is_a_503_problem(client: QuartClient) -> None:
    response = await client.get("/greetings/product")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "catalog" in (await response.get_json())["detail"]
'''

SEARCH_RESOURCE = '''"""A resource added as the README says."""

from __future__ import annotations

from ..chassis.lifecycle import Resource, ResourceCheck


class Search(Resource):
    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("ping", self.ping)]

    async def ping(self) -> None:
        if not self.started:
            raise RuntimeError("search is not started")
'''

SEARCH_TEST = '''"""The resource is built with the services, and readiness reports its check."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from {package}.app import create_app
from {package}.chassis.lifecycle import Lifecycle
from {package}.chassis.parts import part_of
from {package}.chassis.tracing import Tracing
from {package}.services import Services, build_services
from {package}.services.items import InMemoryItemRepository
from {package}.services.search import Search
from {package}.settings import Settings, TracingSettings


def test_the_services_have_the_search() -> None:
    tracing = Tracing(TracingSettings(), service="test", version="0")
    services = build_services(Settings(), registry=CollectorRegistry(), tracing=tracing)
    assert isinstance(services.backing["search"], Search)


async def test_readiness_reports_the_search_check() -> None:
    services = Services(items=InMemoryItemRepository(), backing={{"search": Search()}})
    app = create_app(Settings(), services=services)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        body = await (await app.test_client().get("/health/ready")).get_json()
    assert body["checks"]["search.ping"]["status"] == "UP"
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = render(tmp_path_factory.mktemp("answers"), BOTH, skip_lock=False)
    assert result.returncode == 0, result.stdout + result.stderr
    project = result.project()
    make(project, "install")
    return project


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


def make(project: Path, *arguments: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=project, env=clean_env(**(env or {})), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"make {' '.join(arguments)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def answer(readme: str, question: str) -> str:
    """The README's answer to "…<question>?", one paragraph, line breaks as spaces."""
    match = re.search(rf"^\*\*…{re.escape(question)}\?\*\* (.+?)(?:\n\n|\Z)", readme, re.M | re.S)
    assert match, question
    return " ".join(match.group(1).split())


def replace(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} in {path}"
    path.write_text(source.replace(old, new), encoding="utf-8")


def edit(path: Path, after: str, text: str) -> None:
    """Insert ``text`` right after ``after``, which occurs once in ``path``."""
    replace(path, after, after + text)


def test_every_how_do_i_answer_works_when_followed(project: Path, database: str) -> None:
    readme = (project / "README.md").read_text(encoding="utf-8")
    package = project / "src" / DEFAULT_PACKAGE

    # …add an endpoint?
    endpoint = answer(readme, "add an endpoint")
    assert f"Create `src/{DEFAULT_PACKAGE}/views/<name>.py` with `blueprint = Blueprint(\"<name>\", __name__)`" in endpoint
    assert "add `<name>.blueprint` to `BLUEPRINTS` in `views/__init__.py`" in endpoint
    (package / "views" / "greetings.py").write_text(GREETINGS_VIEW, encoding="utf-8")
    replace(package / "views" / "__init__.py", "from . import items\n", "from . import greetings, items\n")
    edit(package / "views" / "__init__.py", "    items.blueprint,\n", "    greetings.blueprint,\n")
    (project / "tests" / "test_greetings.py").write_text(GREETINGS_TEST, encoding="utf-8")

    # …add a setting?
    setting = answer(readme, "add a setting")
    field = 'page_size: int = setting(default=50, help="Items per page.", minimum=1, maximum=500)'
    assert f"`{field}` in `HttpSettings`, then run `make docs`" in setting
    assert "`part_of(current_app, Settings).http.page_size`" in setting
    edit(package / "settings.py", "class HttpSettings:\n", f"    {field}\n")

    # …call another service?
    upstream = answer(readme, "call another service")
    declaration = 'catalog: UpstreamSettings = upstream("http://catalog:8080")'
    assert f"Declare it in `UpstreamsSettings` in `settings.py`: `{declaration}`" in upstream
    assert '`await part_of(current_app, Upstreams)["catalog"].get("/products/1")`' in upstream
    for line in ("from quart import current_app", "from ..chassis.http_client import Upstreams", "from ..chassis.parts import part_of"):
        assert f"`{line}`" in upstream
    edit(package / "settings.py", "``upstreams.catalog.retries`` and so on.\n    \"\"\"\n", f"\n    {declaration}\n")
    (project / "tests" / "test_catalog.py").write_text(CATALOG_TEST.format(package=DEFAULT_PACKAGE), encoding="utf-8")
    make(project, "docs")

    # …add a resource with a health check?
    resource = answer(readme, "add a resource with a health check")
    assert '`[ResourceCheck("ping", self.ping)]`' in resource
    assert 'put it in `backing` under its name: `backing["search"] = Search()`' in resource
    assert "readiness reports `search.ping`" in resource
    (package / "services" / "search.py").write_text(SEARCH_RESOURCE, encoding="utf-8")
    edit(package / "services" / "__init__.py", "from .postgres_items import PostgresItemRepository\n", "from .search import Search\n")
    edit(package / "services" / "__init__.py", "    backing: dict[str, Resource] = {}\n", '    backing["search"] = Search()\n')
    (project / "tests" / "test_search.py").write_text(SEARCH_TEST.format(package=DEFAULT_PACKAGE), encoding="utf-8")

    # …add a migration?
    migration = answer(readme, "add a migration")
    assert 'Change the models in `models.py`, run `make migration MESSAGE="add colour to items"`' in migration
    assert "against a database at the latest migration" in migration and "then `make migrate`" in migration
    service_db = {f"{PREFIX}_DATABASE_URL": database}
    make(project, "migrate", env=service_db)
    edit(
        package / "models.py",
        "    price_cents: Mapped[int] = mapped_column(BigInteger)\n",
        "    colour: Mapped[str | None] = mapped_column(String(30))\n",
    )
    make(project, "migration", "MESSAGE=add colour to items", env=service_db)
    [written] = (package / "migrations" / "versions").glob("*_add_colour_to_items.py")
    assert "op.add_column" in written.read_text(encoding="utf-8") and "colour" in written.read_text(encoding="utf-8")
    make(project, "migrate", env=service_db)

    make(project, "lint")
    output = make(project, "test", "ARGS=-p no:cacheprovider -v", env=server_test_env(database))
    for test in ("test_greets_with_the_page_size", "test_a_call_to_the_catalog_that_fails_is_a_503_problem",
                 "test_readiness_reports_the_search_check", "test_the_migrations_build_what_the_models_describe"):
        assert re.search(rf"{test} PASSED", output), test
    assert "skipped" not in output.splitlines()[-1], output.splitlines()[-1]
