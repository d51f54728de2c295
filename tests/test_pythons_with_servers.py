"""The pythons tier, part 2: the variants with backing services and brokers on the newest CPython.

Each variant is locked once; on the newest interpreter its own ``make test`` installs it into
an environment of that Python and runs its whole suite against this machine's PostgreSQL,
Redis, RabbitMQ and NATS, with none of its tests skipped, and its ``make lint`` passes. (On
the lowest, the one the template runs on, the broker tier's verified generations run the same
suites against the same servers.) Together the two variants hold every optional part: the
database, the cache, the outbox with RabbitMQ, direct publishing with NATS, bearer tokens
(auth = oidc, whose own 3.11 run is test_auth's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import server_of, url_of
from interpreters import NEWEST
from pythons import generate, interpreter, make_lint, make_test
from servers import PREFIX, server_test_env, throwaway_database

pytestmark = [pytest.mark.slow, pytest.mark.pythons]

VARIANTS = {
    "postgresql-redis-rabbitmq-oidc": {
        "database": "postgresql", "cache": "redis", "broker": "rabbitmq", "auth": "oidc",
    },
    "redis-nats": {"cache": "redis", "broker": "nats"},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pythons-with-servers")


@pytest.fixture(scope="module")
def variant_projects(work: Path) -> dict[str, Path]:
    return {name: generate(work, answers, folder=name) for name, answers in VARIANTS.items()}


@pytest.fixture(scope="module")
def test_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_variants_pass_their_suites_against_the_servers_and_lint_on_the_newest(
    variant: str, work: Path, variant_projects: dict[str, Path], test_database: str
) -> None:
    python = interpreter(NEWEST, work)
    broker = VARIANTS[variant]["broker"]
    env = {**server_test_env(test_database), f"{PREFIX}_TEST_BROKER_URL": url_of(broker, *server_of(broker))}
    summary, seconds = make_test(python, variant_projects[variant], env=env)
    assert "skipped" not in summary and "failed" not in summary, summary
    lint_seconds = make_lint(python, variant_projects[variant])
    print(f"\n[figures] Python {NEWEST}, {variant}: make test against the servers: {summary}, "
          f"{seconds:.0f} s; make lint {lint_seconds:.0f} s")
