"""PostgreSQL: a connection pool (SQLAlchemy 2, asyncio, asyncpg) as a resource.

- ``start()`` opens the pool and connects, retrying with backoff while the database
  is not there yet (it may come up seconds after the service), until
  ``resources.start_timeout`` gives up; each failed attempt is logged.  A database that
  does not exist, or a role the server refuses, fails the start at once
  (``DatabaseSetupError``), in one line that says what to do: no retry would mend it.
- ``stop()`` closes the pool.
- Readiness runs ``SELECT 1`` (``database.ping``), bounded by the check's timeout,
  so the service leaves the load balancer while PostgreSQL is unreachable and
  comes back, without a restart, when it is reachable again.
- ``session()`` gives a session in a transaction, committed when the block ends;
  a database that cannot be reached becomes ``DatabaseUnavailableError`` (503).
- ``transaction()`` makes one transaction of a block: every ``session()`` opened in
  it (by any repository) joins it, so their changes commit, or roll back, together.

Every connection gets ``statement_timeout`` and, when ``database.schema`` is set,
``search_path``, so migrations and queries find the service's tables there.

The pool is measured under OpenTelemetry's names for database client connections, read
at each scrape: ``db_client_connection_count{state="used"|"idle"}``,
``db_client_connection_max`` (``pool_size`` + ``max_overflow``),
``db_client_connection_overflow`` (the connections opened beyond ``pool_size``), and
``db_client_connection_wait_time_seconds``, a histogram of the time each session waited
for a usable connection (checked out and pinged).

When tracing exports, every statement is a client span under the request's span, named
after its first keyword, with the statement's text (its parameters are never in it) and
the server, as OpenTelemetry's conventions name them.  When it does not, no listener is
registered and statements cost nothing more.  (OpenTelemetry's SQLAlchemy instrumentation
would do the same, but it refuses SQLAlchemy 2.1.)
"""

from __future__ import annotations

import shlex
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import sqlalchemy
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import QueuePool
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from ..settings import DatabaseSettings, iter_specs
from .lifecycle import Resource, ResourceCheck, ResourceUnavailableError
from .logging import get_logger
from .metrics import LATENCY_BUCKETS
from .tracing import Tracing

DRIVER = "postgresql+asyncpg"
# SQLSTATE classes that mean "not reachable now", not "this statement is wrong":
# 08 connection exception, 53 insufficient resources, 57 operator intervention
# (statement timeout, server shutting down or starting up).
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
# SQLSTATEs that no retry mends: the database does not exist (3D000); the server refuses
# the role or its password, or has no pg_hba.conf entry for it (class 28).
MISSING_DATABASE_SQLSTATE = "3D000"
REFUSED_ROLE_SQLSTATE_CLASS = "28"
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 5.0

log = get_logger(__name__)


class DatabaseUnavailableError(ResourceUnavailableError):
    """The database could not be reached, or did not answer in time."""

    resource = "database"


class DatabaseSetupError(Exception):
    """The database is not set up for the service: it does not exist, or refuses the role.

    No retry mends it; the message (one line, never the password) says what to do.
    """


def setup_problem(error: BaseException, url: URL) -> str | None:
    """What to do, in one line, when ``error`` says the database at ``url`` is missing or refuses the role."""
    if not isinstance(error, DBAPIError):
        return None
    sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
    host, port = url.host or "localhost", url.port or 5432
    server = f"{host}:{port}"
    url_setting = next(spec for spec in iter_specs() if spec.key == "database.url")
    setting = f"{url_setting.key} ({url_setting.env_var})"
    if sqlstate == MISSING_DATABASE_SQLSTATE:
        command = ["createdb", "-h", host, "-p", str(port)]
        if url.username:
            command += ["-U", url.username]
        command.append(url.database or "")
        return (
            f'database "{url.database}" does not exist on {server}: create it with '
            f"`{shlex.join(command)}`, or point {setting} at one that exists"
        )
    if sqlstate.startswith(REFUSED_ROLE_SQLSTATE_CLASS):
        return (
            f'PostgreSQL on {server} refused role "{url.username}" ({first_line(error).partition(": ")[2]}): '
            f"set the role and password in {setting}"
        )
    return None


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is out of reach (rather than a bug or bad data)."""
    if isinstance(error, OSError | TimeoutError | PoolTimeoutError):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        return error.connection_invalidated or sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
    return False


def first_line(error: BaseException) -> str:
    """The error's type and the first line of its message: what a log line or an operator needs.

    SQLAlchemy's messages go on with the statement; PostgreSQL's with a DETAIL line that
    can quote the row's values, which are the clients' data.
    """
    cause = getattr(error, "orig", None) or error
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[0]}" if message else type(cause).__name__


def database_url(settings: DatabaseSettings) -> URL:
    """The URL with the asyncpg driver, whichever ``postgresql`` spelling the setting used.

    Its options become asyncpg's arguments: ``sslmode`` (libpq's name, which managed
    PostgreSQL services document) is asyncpg's ``ssl``, which takes the same words.
    """
    url = make_url(settings.url).set(drivername=DRIVER)
    if "sslmode" in url.query:
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    return url


def create_engine(settings: DatabaseSettings, *, statement_timeout: float | None = None) -> AsyncEngine:
    """An engine (pool) for ``settings``; ``statement_timeout`` overrides the setting (0: none)."""
    timeout = settings.statement_timeout if statement_timeout is None else statement_timeout
    server_settings = {"statement_timeout": str(round(timeout * 1000))}
    if settings.schema:
        server_settings["search_path"] = settings.schema
    return create_async_engine(
        database_url(settings),
        # Errors and logs show the SQL but never its parameters, which carry request data.
        hide_parameters=True,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        # A connection that died while idle (a failover, a restart) is replaced, not used.
        pool_pre_ping=True,
        connect_args={"timeout": settings.connect_timeout, "server_settings": server_settings},
    )


class _PoolCollector(Collector):
    """The pool's connections, read when Prometheus scrapes (nothing is counted per request)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        pool = self._database.pool
        if pool is None:
            return
        used, idle = pool.checkedout(), pool.checkedin()
        count = GaugeMetricFamily(
            "db_client_connection_count", "Open connections of the pool, by state.", labels=["state"]
        )
        count.add_metric(["used"], used)
        count.add_metric(["idle"], idle)
        yield count
        maximum = self._database.max_connections
        yield GaugeMetricFamily("db_client_connection_max", "Most connections the pool opens.", value=maximum)
        overflow = max(0, used + idle - pool.size())
        yield GaugeMetricFamily(
            "db_client_connection_overflow", "Connections open beyond the pool's size.", value=overflow
        )


class Database(Resource):
    def __init__(
        self,
        settings: DatabaseSettings,
        *,
        registry: CollectorRegistry | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``registry`` takes the pool's metrics (none are exposed without one: migrations, tests);
        ``tracing``, when it exports, the statements' spans."""
        self._settings = settings
        self._tracing = tracing
        self._engine: AsyncEngine | None = None
        registry = registry or CollectorRegistry()
        registry.register(_PoolCollector(self))
        self._wait_time = Histogram(
            "db_client_connection_wait_time_seconds",
            "Time a session waited for a usable connection from the pool.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        # The session of the transaction() block the current task is in, if any.
        self._current: ContextVar[AsyncSession | None] = ContextVar("database_session", default=None)

    @property
    def pool(self) -> QueuePool | None:
        """The pool, once started."""
        if self._engine is None:
            return None
        pool = self._engine.sync_engine.pool
        return pool if isinstance(pool, QueuePool) else None

    @property
    def max_connections(self) -> int:
        return self._settings.pool_size + self._settings.max_overflow

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database is not started")
        return self._engine

    async def start(self) -> None:
        self._engine = create_engine(self._settings)
        if self._tracing is not None and self._tracing.exporting:
            _trace_statements(self._engine, self._tracing)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=FIRST_BACKOFF, max=MAX_BACKOFF),
            retry=retry_if_exception(is_unavailable),
            before_sleep=_log_retry,
            reraise=True,
        )
        # No attempt limit: resources.start_timeout bounds the whole start.
        try:
            async for attempt in retrying:
                with attempt:
                    await self.ping()
        except DBAPIError as error:
            problem = setup_problem(error, self._engine.url)
            if problem is None:
                raise
            raise DatabaseSetupError(problem) from None
        url = self._engine.url
        log.info("database connected", host=url.host, port=url.port, database=url.database)

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    def health_checks(self) -> list[ResourceCheck]:
        return [ResourceCheck("ping", self.ping)]

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(sqlalchemy.text("SELECT 1"))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed when the block ends, rolled back if it raises.

        Inside a ``transaction()`` block, that block's session: it commits when the block ends.
        """
        current = self._current.get()
        if current is not None:
            yield current
            return
        if self._sessions is None:
            raise RuntimeError("the database is not started")
        try:
            async with self._sessions.begin() as session:
                waiting = time.perf_counter()
                await session.connection()
                self._wait_time.observe(time.perf_counter() - waiting)
                yield session
        except Exception as error:
            if is_unavailable(error):
                raise DatabaseUnavailableError(first_line(error)) from error
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction for the whole block, which every ``session()`` in it joins."""
        async with self.session() as session:
            token = self._current.set(session)
            try:
                yield session
            finally:
                self._current.reset(token)


def _trace_statements(engine: AsyncEngine, tracing: Tracing) -> None:
    """Make every statement on ``engine`` a client span of the current span (when tracing exports)."""
    url = engine.url
    server: dict[str, str | int] = {
        "db.system.name": "postgresql",
        "db.namespace": url.database or "",
        "server.address": url.host or "",
        "server.port": url.port or 5432,
    }

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def start_span(*arguments: Any) -> None:
        _connection, _cursor, statement, _parameters, context, _many = arguments
        operation = statement.split(None, 1)[0].upper() if statement.strip() else "STATEMENT"
        span = tracing.start_span(operation, trace.SpanKind.CLIENT)
        span.set_attributes({**server, "db.operation.name": operation, "db.query.text": statement})
        context.span = span

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def end_span(*arguments: Any) -> None:
        context = arguments[4]
        context.span.end()

    @event.listens_for(engine.sync_engine, "handle_error")
    def end_failed_span(failure: ExceptionContext) -> None:
        span = getattr(failure.execution_context, "span", None)
        if span is not None:
            span.set_status(trace.StatusCode.ERROR, type(failure.original_exception).__name__)
            span.end()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "database not reachable yet; retrying",
        error=first_line(error) if error is not None else None,
        attempt=state.attempt_number,
        retry_in=round(wait, 2),
    )
