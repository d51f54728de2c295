"""The pythons tier, part 2: the variants with PostgreSQL and Redis on the lowest and the newest CPython.

Each variant is locked once; on each of the two interpreters its own ``make test`` installs it
into an environment of that Python and runs its whole suite against this machine's PostgreSQL
and Redis, with none of its tests skipped, and its ``make lint`` passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from interpreters import LOWEST, NEWEST
from pythons import generate, interpreter, make_lint, make_test
from servers import server_test_env, throwaway_database

pytestmark = [pytest.mark.slow, pytest.mark.pythons]

# PostgreSQL alone is left out: "both" runs every line of it (and the broker tier runs it, with a broker).
VARIANTS = {
    "redis": {"cache": "redis"},
    "both": {"database": "postgresql", "cache": "redis"},
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


@pytest.mark.parametrize("version", sorted({LOWEST, NEWEST}))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_backing_service_variants_pass_their_suites_and_lint_on(
    variant: str, version: str, work: Path, variant_projects: dict[str, Path], test_database: str
) -> None:
    python = interpreter(version, work)
    summary, seconds = make_test(python, variant_projects[variant], env=server_test_env(test_database))
    assert "skipped" not in summary and "failed" not in summary, summary
    lint_seconds = make_lint(python, variant_projects[variant])
    print(f"\n[figures] Python {version}, {variant}: make test against PostgreSQL and Redis: {summary}, "
          f"{seconds:.0f} s; make lint {lint_seconds:.0f} s")
