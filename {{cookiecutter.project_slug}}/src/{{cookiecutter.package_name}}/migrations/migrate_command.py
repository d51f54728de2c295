"""The ``migrate`` command: upgrade the database before a new version serves.

Registered as an entry point of the entrypoint's commands in ``pyproject.toml``, so the
entrypoint has it exactly when the service has a database.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import DISTRIBUTION_NAME, __version__
from ..chassis.commands import EXIT_BAD_CONFIG, SettingsCommand, load_or_exit, settings_options
from ..chassis.logging import configure_logging


@click.command("migrate", cls=SettingsCommand)
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (connects to nothing).")
@settings_options
def migrate_command(config_file: Path | None, sql: bool, **flags: Any) -> None:
    """Upgrade the database to the latest migration; run it before a new version serves."""
    loaded = load_or_exit(config_file, flags, serves="nothing", logs=True)
    configure_logging(loaded.settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    # Imported here: only this command needs Alembic, and the entrypoint starts faster without it.
    from ..chassis.database import database_url, first_line, is_unavailable, setup_problem
    from . import upgrade

    try:
        upgrade(loaded.settings.database, sql=sql)
    except Exception as error:  # one line for the operator, whatever went wrong
        problem = setup_problem(error, database_url(loaded.settings.database))
        if problem is not None:  # the operator's to set up: as a bad setting, exit 2
            click.echo(f"error: cannot migrate: {problem}", err=True)
            sys.exit(EXIT_BAD_CONFIG)
        what = "cannot reach the database to migrate" if is_unavailable(error) else "the migration failed"
        click.echo(f"error: {what}: {first_line(error)}", err=True)
        sys.exit(1)
