"""Slow tier: projects with PostgreSQL and/or Redis, against the real servers on this machine.

Each variant is generated with verification, which finds the servers answering at the URLs the
generated README gives for local development, so it runs every test against them, none skipped.
The variant with both is then run as a process: items outlive a restart, and readiness follows
the database going away and coming back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import (
    DEFAULT_PACKAGE,
    Render,
    TcpProxy,
    clean_env,
    free_port,
    get_json,
    render,
    wait_for_status,
)
from servers import POSTGRES_HOST, POSTGRES_PORT, REDIS_URL, psql, throwaway_database

pytestmark = pytest.mark.slow

PREFIX = DEFAULT_PACKAGE.upper()
# PostgreSQL alone is generated with verification in the broker tier (with a broker) and on
# the newest Python in the pythons tier; here it comes with Redis.
VARIANTS = {
    "redis": {"cache": "redis"},
    "both": {"database": "postgresql", "cache": "redis"},
}


@pytest.fixture(scope="module")
def test_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    project: Path
    generation: Render


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Variant:
    result = render(tmp_path_factory.mktemp(request.param), VARIANTS[request.param], skip_lock=False)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n[figures] {request.param}: generation with verification took {result.seconds:.1f} s")
    return Variant(request.param, result.project(), result)


def python_of(project: Path) -> str:
    return str(project / ".venv" / "bin" / "python")


def test_verification_ran_every_test_against_the_servers_the_readme_names(variant: Variant) -> None:
    summary = next(line for line in variant.generation.stdout.splitlines() if "created " in line)
    assert "skipped" not in summary, summary
    if variant.name in ("postgresql", "both"):
        assert "postgresql://postgres:dev@localhost/postgres" in summary, summary
    if variant.name in ("redis", "both"):
        assert "redis://localhost:6379/0" in summary, summary
    print(f"\n[figures] {variant.name}: {summary.removeprefix('[pychassis] ')}")


def test_without_servers_make_test_says_how_many_were_skipped_and_why(variant: Variant) -> None:
    name, project = variant.name, variant.project
    result = subprocess.run(
        ["make", "test", "ARGS=-q -p no:cacheprovider"],
        cwd=project, env=clean_env(), capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    if name in ("postgresql", "both"):
        assert re.search(r"\d+ tests skipped: needs PostgreSQL: .*TEST_DATABASE_URL=", result.stdout), result.stdout
    if name in ("redis", "both"):
        assert re.search(r"\d+ tests skipped: needs Redis: .*TEST_CACHE_URL=", result.stdout), result.stdout


def test_compose_publishes_the_backing_services_on_loopback_only(variant: Variant) -> None:
    """Their development passwords (or none, for Redis) must not be reachable from the network."""
    services = yaml.safe_load((variant.project / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    backing = {"postgresql": ["postgres"], "redis": ["redis"], "both": ["postgres", "redis"]}[variant.name]
    for name in backing:
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), services[name]["ports"]


def test_the_unchosen_service_leaves_no_trace(variant: Variant) -> None:
    name, project = variant.name, variant.project
    unchosen = {"postgresql": r"redis", "redis": r"postgres|sqlalchemy|alembic|asyncpg|migrat", "both": None}[name]
    if unchosen is None:
        return
    for path in project.rglob("*"):
        if path.is_file() and not {".venv", ".git"} & set(path.parts) and path.suffix != ".lock":
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not re.search(unchosen, text, re.IGNORECASE), f"{path.relative_to(project)} mentions {unchosen}"


@contextlib.contextmanager
def serving(project: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    environment = clean_env(
        **{f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port), f"{PREFIX}_SHUTDOWN_DELAY": "0.1"},
        **env,
    )
    process = subprocess.Popen(
        [python_of(project), "-m", DEFAULT_PACKAGE], cwd=project, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=60)


def post_json(url: str, body: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local service
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("variant", ["both"], indirect=True)
def test_the_service_keeps_items_across_restarts_and_follows_the_database(
    variant: Variant, test_database: str, tmp_path: Path
) -> None:
    """The database URL comes from a file, as a Kubernetes Secret mounted with the chart's secretFiles."""
    project = variant.project
    schema = f"service_{uuid.uuid4().hex[:12]}"
    database = test_database.rsplit("/", 1)[1]
    psql(f"CREATE SCHEMA {schema}", database)
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    proxy.open()
    url_file = tmp_path / "database-url"
    url_file.write_text(test_database.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/") + "\n", encoding="utf-8")
    env = {
        f"{PREFIX}_DATABASE_URL_FILE": str(url_file),
        f"{PREFIX}_DATABASE_SCHEMA": schema,
        f"{PREFIX}_CACHE_URL": REDIS_URL,
        f"{PREFIX}_CACHE_KEY_PREFIX": schema,
    }
    try:
        migrate = subprocess.run(
            [python_of(project), "-m", DEFAULT_PACKAGE, "migrate"], cwd=project, env=clean_env(**env),
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr

        with serving(project, env) as (process, base):
            wait_for_status(process, f"{base}/health/ready")
            assert post_json(f"{base}/items", '{"name": "lamp", "price_cents": 1999}') == 201
            assert post_json(f"{base}/items", '{"name": "lamp", "price_cents": 1}') == 409

        with serving(project, env) as (process, base):
            wait_for_status(process, f"{base}/health/ready")
            status, item = get_json(f"{base}/items/1")
            assert (status, item["name"]) == (200, "lamp"), "the item outlived the restart"

            proxy.close()
            seconds_down = wait_for_status(process, f"{base}/health/ready", 503, timeout=10)
            status, body = get_json(f"{base}/health/ready")
            assert body["checks"]["database.ping"]["status"] == "DOWN"
            assert get_json(f"{base}/items")[0] == 503

            proxy.open()
            seconds_up = wait_for_status(process, f"{base}/health/ready", 200, timeout=10)
            assert get_json(f"{base}/items")[0] == 200
            print(f"\n[figures] readiness: 503 {seconds_down:.2f} s after PostgreSQL went away, "
                  f"200 {seconds_up:.2f} s after it came back (no restart)")
    finally:
        proxy.close()
        psql(f"DROP SCHEMA {schema} CASCADE", database)


@pytest.mark.parametrize("variant", ["both"], indirect=True)
def test_a_bad_database_url_is_refused_without_echoing_the_password(variant: Variant) -> None:
    project = variant.project
    env = clean_env(**{f"{PREFIX}_DATABASE_URL": "mysql://app:hunter2-secret@db.example.com/app"})
    result = subprocess.run(
        [python_of(project), "-m", DEFAULT_PACKAGE, "config", "check"],
        cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "database.url" in lines[0]
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("variant", ["both"], indirect=True)
def test_a_missing_secret_file_stops_the_service_naming_the_setting_and_the_file(
    variant: Variant, tmp_path: Path
) -> None:
    missing = tmp_path / "database-url"
    result = subprocess.run(
        [python_of(variant.project), "-m", DEFAULT_PACKAGE],
        cwd=variant.project, env=clean_env(**{f"{PREFIX}_DATABASE_URL_FILE": str(missing)}),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: setting database.url: the file {missing} named by {PREFIX}_DATABASE_URL_FILE cannot be read "
        "(No such file or directory)"
    ]
