"""This machine's PostgreSQL and Redis, as the generated projects' tests use them.

They are shared: tests never stop or reconfigure them, and everything a test creates has a
name of its own and is removed afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator

from helpers import DEFAULT_PACKAGE

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
REDIS_URL = "redis://127.0.0.1:6379/0"
PREFIX = DEFAULT_PACKAGE.upper()


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", "-h", POSTGRES_HOST, "-p", str(POSTGRES_PORT), "-U", "postgres", "-d", database,
         "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        check=True, capture_output=True, text=True, timeout=60,
    )


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL, dropped at the end; yields its URL."""
    name = f"pychassis_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    finally:
        psql(f"DROP DATABASE {name} WITH (FORCE)")


def server_test_env(database_url: str) -> dict[str, str]:
    """The variables that point a generated project's tests at the real servers."""
    return {f"{PREFIX}_TEST_DATABASE_URL": database_url, f"{PREFIX}_TEST_CACHE_URL": REDIS_URL}
