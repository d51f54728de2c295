"""A database outage on demand, for ``make dashboard-picture``.

The service reaches PostgreSQL through a TCP proxy on 127.0.0.1 (the tests' ``TcpProxy``)
which ``cut()`` closes, open connections too, and ``restore()`` opens again: to the service
the database has gone away and come back, as in a failover or a network partition.

The database is the one the settings name (``database.url`` in ``settings.yml``, or its
environment variable), as for ``make run``; the service gets a throwaway schema in it,
migrated, and dropped afterwards, so the picture's load leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import make_url

from {{ cookiecutter.package_name }}.chassis.database import create_engine
from {{ cookiecutter.package_name }}.migrations import upgrade
from {{ cookiecutter.package_name }}.settings import DatabaseSettings, load_settings

if TYPE_CHECKING:
    from tests.tcp_proxy import TcpProxy

PROJECT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class DatabaseOutage:
    """The service's way to its database, which can be cut and restored."""

    name = "database"

    def __init__(self, proxy: TcpProxy, loop: asyncio.AbstractEventLoop, schema: str, url: str) -> None:
        self._proxy = proxy
        self._loop = loop
        self.service_args = ["--database-url", url, "--database-schema", schema]

    def cut(self) -> None:
        self._run(self._proxy.close())

    def restore(self) -> None:
        self._run(self._proxy.open())

    def _run(self, step: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(step, self._loop).result(timeout=10)


@contextlib.contextmanager
def database_outage() -> Iterator[DatabaseOutage]:
    """A throwaway schema in the configured database, reached through a proxy that can be cut."""
    with contextlib.chdir(PROJECT):  # where the service starts, and reads settings.yml
        url = make_url(load_settings().settings.database.url)
    with throwaway_schema(url.render_as_string(hide_password=False)) as schema, running_loop() as loop:
        sys.path.insert(0, str(PROJECT))  # the proxy is the tests' own
        from tests.tcp_proxy import TcpProxy

        proxy = TcpProxy(url.host or "localhost", url.port or 5432)
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        outage = DatabaseOutage(proxy, loop, schema, proxied)
        outage.restore()
        try:
            yield outage
        finally:
            outage.cut()


@contextlib.contextmanager
def throwaway_schema(url: str) -> Iterator[str]:
    """A fresh schema in the database at ``url``, migrated to the latest migration; dropped after."""
    schema = f"dashboard_picture_{uuid.uuid4().hex[:12]}"
    asyncio.run(execute(url, f'CREATE SCHEMA "{schema}"'))
    try:
        upgrade(DatabaseSettings(url=url, schema=schema))
        yield schema
    finally:
        asyncio.run(execute(url, f'DROP SCHEMA "{schema}" CASCADE'))


async def execute(url: str, statement: str) -> None:
    engine = create_engine(DatabaseSettings(url=url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.contextmanager
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread of its own: the proxy's, while the script goes on."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="database-proxy", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
