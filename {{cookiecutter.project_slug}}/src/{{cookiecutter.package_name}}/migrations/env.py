"""How Alembic runs the migrations: on the service's own engine, so ``database.*`` applies.

The database comes from the settings of the ``migrate`` command or, when the
``alembic`` command runs this, from the settings file and the environment.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from {{ cookiecutter.package_name }}.chassis.database import create_engine, database_url
from {{ cookiecutter.package_name }}.models import Base
from {{ cookiecutter.package_name }}.settings import DatabaseSettings, load_settings

config = context.config


def database_settings() -> DatabaseSettings:
    settings: DatabaseSettings | None = config.attributes.get("database")
    return settings if settings is not None else load_settings(serves="nothing").settings.database


def run_offline(settings: DatabaseSettings) -> None:
    """Print the SQL (``--sql``) without connecting."""
    context.configure(url=database_url(settings), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_online(settings: DatabaseSettings) -> None:
    # Migrations may rewrite big tables: no statement timeout for them.
    engine = create_engine(settings, statement_timeout=0)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline(database_settings())
else:
    asyncio.run(run_online(database_settings()))
