"""Database fixtures (a pytest plugin, see ``conftest.py``).

Database tests run against the PostgreSQL named by ``<PREFIX>_TEST_DATABASE_URL``,
each in a fresh schema dropped afterwards; without it they are skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from {{ cookiecutter.package_name }}.chassis.database import Database, create_engine
from {{ cookiecutter.package_name }}.migrations import upgrade
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, DatabaseSettings

from .backing_servers import NEEDS_SERVER, server_url

TEST_DATABASE_URL = f"{ENV_PREFIX}_TEST_DATABASE_URL"
NEEDS_SERVER[TEST_DATABASE_URL] = (
    f"needs PostgreSQL: run `docker compose up -d --wait postgres`, then "
    f"`make test` with {TEST_DATABASE_URL}=postgresql://postgres:dev@localhost/postgres"
)


@pytest.fixture(scope="session")
def test_database_url() -> str:
    return server_url(TEST_DATABASE_URL)


@pytest.fixture
async def database_settings(test_database_url: str) -> AsyncIterator[DatabaseSettings]:
    """Settings for a fresh, empty schema in the test database; dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(DatabaseSettings(url=test_database_url))
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield DatabaseSettings(url=test_database_url, schema=schema)
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@pytest.fixture
async def migrated_database_settings(database_settings: DatabaseSettings) -> DatabaseSettings:
    """A fresh schema, migrated to the latest migration."""
    await asyncio.to_thread(upgrade, database_settings)
    return database_settings


@pytest.fixture
async def database(migrated_database_settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = Database(migrated_database_settings)
    await database.start()
    yield database
    await database.stop()


@pytest.fixture
def database_env(migrated_database_settings: DatabaseSettings) -> dict[str, str]:
    """Environment variables that point a service process at a fresh, migrated schema."""
    return {
        f"{ENV_PREFIX}_DATABASE_URL": migrated_database_settings.url,
        f"{ENV_PREFIX}_DATABASE_SCHEMA": migrated_database_settings.schema or "",
    }
