"""Database migrations (Alembic), shipped inside the package so the image can run them.

``python -m {{ cookiecutter.package_name }} migrate`` upgrades to the latest one (``--sql``
prints the SQL instead); ``make migration MESSAGE="..."`` writes a new one into
``versions/`` from the difference between ``models.py`` and the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from ..settings import DatabaseSettings

HERE = Path(__file__).parent


def alembic_config(settings: DatabaseSettings) -> Config:
    """Alembic's configuration, with the database to migrate; no ``alembic.ini`` needed."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["database"] = settings
    return config


def upgrade(settings: DatabaseSettings, *, revision: str = "head", sql: bool = False) -> None:
    """Upgrade the database to ``revision``; with ``sql``, print the SQL and connect to nothing."""
    command.upgrade(alembic_config(settings), revision, sql=sql)


def downgrade(settings: DatabaseSettings, *, revision: str = "base") -> None:
    """Downgrade the database to ``revision`` (``base``: no tables at all)."""
    command.downgrade(alembic_config(settings), revision)
