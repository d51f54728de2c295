"""The service's one entrypoint, run as either of:

    {{ cookiecutter.project_slug }}
    python -m {{ cookiecutter.package_name }}

Commands: ``serve`` (the default when no command is named), ``config check``,
``config show``, ``openapi``, and those the service's optional parts bring (declared
as entry points in ``pyproject.toml``).  Each takes every setting as a flag (see
``--help``); settings can also come from the environment and the settings file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from . import DISTRIBUTION_NAME, __version__
from .app import create_app
from .chassis.commands import (
    CONTEXT_SETTINGS,
    DEFAULT_COMMAND,
    DefaultCommandGroup,
    load_or_exit,
    settings_options,
)
from .chassis.limits import TimeLimitedQuart
from .chassis.logging import configure_logging
from .chassis.openapi import openapi_document
from .chassis.server import serve_or_exit
from .settings import Settings, dump_settings


def build_app(settings: Settings) -> TimeLimitedQuart:
    """Set up this process (logging) and build the app; runs in every worker process."""
    configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    return create_app(settings)


@click.group(cls=DefaultCommandGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name=DISTRIBUTION_NAME)
def main() -> None:
    """Run the service (`serve`, the default), inspect its configuration (`config`) or API (`openapi`)."""


@main.command(DEFAULT_COMMAND)
@settings_options
def serve_command(config_file: Path | None, **flags: Any) -> None:
    """Start the HTTP server and serve until SIGTERM or SIGINT."""
    loaded = load_or_exit(config_file, flags, logs=True)
    configure_logging(loaded.settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    serve_or_exit(build_app, loaded.settings)


@main.group("config")
def config_group() -> None:
    """Check or show the effective configuration."""


@config_group.command("check")
@settings_options
def config_check(config_file: Path | None, **flags: Any) -> None:
    """Validate every setting as `serve` needs them; exit 0 (valid) or 2 (invalid) without serving."""
    loaded = load_or_exit(config_file, flags, serves="api")
    source = f" (settings file {loaded.config_file})" if loaded.config_file else ""
    click.echo(f"configuration is valid{source}")


@config_group.command("show")
@settings_options
def config_show(config_file: Path | None, **flags: Any) -> None:
    """Print the effective settings as YAML, each with its source; secrets are redacted."""
    loaded = load_or_exit(config_file, flags, serves="nothing")
    click.echo(dump_settings(loaded), nl=False)


@main.command("openapi")
@settings_options
def openapi_command(config_file: Path | None, **flags: Any) -> None:
    """Print the API's OpenAPI document (JSON), as /openapi.json serves it."""
    loaded = load_or_exit(config_file, flags, serves="nothing")
    document = openapi_document(create_app(loaded.settings))
    click.echo(json.dumps(document, indent=2))


main.add_commands_from_entry_points(f"{__package__}.commands")
