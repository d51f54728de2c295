"""Cache fixtures (a pytest plugin, see ``conftest.py``).

Cache tests run against the Redis named by ``<PREFIX>_TEST_CACHE_URL``, each under
keys of its own; without it they are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from {{ cookiecutter.package_name }}.chassis.cache import Cache, CacheMetrics
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, CacheSettings

from .backing_servers import NEEDS_SERVER, server_url

TEST_CACHE_URL = f"{ENV_PREFIX}_TEST_CACHE_URL"
NEEDS_SERVER[TEST_CACHE_URL] = (
    f"needs Redis: run `docker compose up -d --wait redis`, then "
    f"`make test` with {TEST_CACHE_URL}=redis://localhost:6379/0"
)


@pytest.fixture(scope="session")
def test_cache_url() -> str:
    return server_url(TEST_CACHE_URL)


@pytest.fixture
def cache_key_prefix() -> str:
    """A key prefix of the test's own, so tests sharing a Redis never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def cache(test_cache_url: str) -> AsyncIterator[Cache]:
    cache = Cache(CacheSettings(url=test_cache_url), metrics=CacheMetrics(CollectorRegistry()))
    await cache.start()
    yield cache
    await cache.stop()
