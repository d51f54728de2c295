"""Redis as a cache: a redis-py asyncio client as a resource, and nothing more.

A cache may be lost at any moment, so it never fails a request: every call is
bounded by ``cache.timeout``, and a failed call is logged, counted in
``cache_errors_total{operation}`` and answered as a miss (``get``) or skipped
(``set``, ``delete``).  Readiness shows ``cache.ping``, not critical: without
Redis the service is slower, not broken, so it stays in the load balancer.
``cache_requests_total{result}`` counts hits and misses.  When tracing exports, each
call is a client span under the request's, named after its command (``GET``); the key
stays out of it, as it may hold what the service caches about a user.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar, cast

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from ..settings import CacheSettings
from .lifecycle import Resource, ResourceCheck
from .logging import Throttled, get_logger
from .tracing import Tracing

log = get_logger(__name__)
T = TypeVar("T")


class CacheMetrics:
    """Cache metrics, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cache_requests_total", "Cache lookups, by result (hit or miss).", ["result"], registry=registry
        )
        self.errors = Counter(
            "cache_errors_total",
            "Cache calls that failed and were skipped, by operation.",
            ["operation"],
            registry=registry,
        )
        self._hit, self._miss = self.requests.labels("hit"), self.requests.labels("miss")

    def looked_up(self, *, hit: bool) -> None:
        (self._hit if hit else self._miss).inc()


class Cache(Resource):
    def __init__(
        self, settings: CacheSettings, *, metrics: CacheMetrics, tracing: Tracing | None = None
    ) -> None:
        """``tracing``, when it exports, gets each call's span."""
        self._settings = settings
        self._failures = Throttled(log)
        self._metrics = metrics
        self._tracing = tracing if tracing is not None and tracing.exporting else None
        self._redis: Redis | None = None
        self._span_attributes: dict[str, str | int] = {}

    async def start(self) -> None:
        settings = self._settings
        pool = BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.max_connections,
            # Waiting for a free connection counts against the same budget as the call.
            timeout=settings.timeout,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
        )
        # from_pool: the client owns the pool, so closing the client closes its connections.
        self._redis = Redis.from_pool(pool)
        where = pool.connection_kwargs
        self._span_attributes = {
            "db.system.name": "redis",
            "db.namespace": str(where.get("db", 0)),
            "server.address": where.get("host", ""),
            "server.port": where.get("port", 6379),
        }
        # Not reachable is not a reason to refuse to start: the service works without its cache.
        if not await self.ping():
            log.warning("cache not reachable at start; serving without it until it is")

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("ping", self.ping, critical=False)]

    async def ping(self) -> bool:
        try:
            return bool(await self._client().ping())
        except (RedisError, OSError):
            return False

    async def get(self, key: str) -> bytes | None:
        """The cached value, or ``None`` when it is not cached or the cache failed."""
        try:
            # Values are bytes: the client is made without decode_responses.
            value = cast("bytes | None", await self._traced("GET", self._client().get(key)))
        except (RedisError, OSError) as error:
            self._failed("get", error)
            return None
        self._metrics.looked_up(hit=value is not None)
        return value

    async def set(self, key: str, value: bytes, *, ttl: int) -> None:
        """Cache ``value`` for ``ttl`` seconds (best effort)."""
        try:
            await self._traced("SET", self._client().set(key, value, ex=ttl))
        except (RedisError, OSError) as error:
            self._failed("set", error)

    async def delete(self, key: str) -> None:
        """Forget ``key`` (best effort; its TTL bounds how long a failed delete leaves it stale)."""
        try:
            await self._traced("DEL", self._client().delete(key))
        except (RedisError, OSError) as error:
            self._failed("delete", error)

    async def _traced(self, command: str, call: Awaitable[T]) -> T:
        """``call``, a client span of the current span when tracing exports; otherwise just ``call``."""
        if self._tracing is None:
            return await call
        span = self._tracing.start_span(command, trace.SpanKind.CLIENT)
        span.set_attributes({**self._span_attributes, "db.operation.name": command})
        try:
            return await call
        except BaseException as error:
            span.set_status(trace.StatusCode.ERROR, type(error).__name__)
            raise
        finally:
            span.end()

    def _client(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("the cache is not started")
        return self._redis

    def _failed(self, operation: str, error: Exception) -> None:
        self._metrics.errors.labels(operation).inc()
        self._failures.warning(
            "cache call failed; carrying on without it", key=operation, operation=operation, error=repr(error)
        )
