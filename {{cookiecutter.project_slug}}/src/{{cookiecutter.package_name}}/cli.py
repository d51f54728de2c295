"""The service's one entrypoint, run as either of:

    {{ cookiecutter.project_slug }}
    python -m {{ cookiecutter.package_name }}

Commands: ``serve`` (the default when no command is named), ``config check``,
``config show``, ``openapi``{% if cookiecutter.database == "postgresql" %} and ``migrate``{% endif %}.  Each takes every setting as a flag (see ``--help``); settings
can also come from the environment and the settings file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import DISTRIBUTION_NAME, __version__
from .app import create_app
from .chassis.limits import TimeLimitedQuart
from .chassis.logging import configure_logging
from .chassis.openapi import openapi_document
from .chassis.server import ServerError, serve
from .settings import (
    CONFIG_ENV_VAR,
    LoadedSettings,
    Settings,
    SettingsError,
    dump_settings,
    iter_specs,
    load_settings,
)

DEFAULT_COMMAND = "serve"
# Exit code for bad configuration (the same code click uses for usage errors).
EXIT_BAD_CONFIG = 2

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class DefaultCommandGroup(click.Group):
    """A command group that runs ``serve`` when no command is named."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        group_options = {"-h", "--help", "--version"}
        if not args or (args[0] not in self.commands and args[0] not in group_options):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every setting, so the top-level help documents the whole configuration."""
        rows = [
            (spec.key, f"{spec.flag}, {spec.env_var}: {spec.describe()}; default {spec.default!r}")
            for spec in iter_specs()
        ]
        with formatter.section("Settings (settings.yml key: flag, environment variable: type; default)"):
            formatter.write_dl(rows)
        super().format_epilog(ctx, formatter)


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config`` and one flag per declared setting to a command."""
    for spec in reversed(list(iter_specs())):
        help_text = f"{spec.help} [default: {spec.default!r}; env: {spec.env_var}]"
        if spec.is_flag:
            flags = f"{spec.flag}/--no-{spec.flag.removeprefix('--')}"
            option = click.option(flags, spec.param_name, default=None, help=help_text)
        else:
            option = click.option(
                spec.flag, spec.param_name, default=None, metavar=spec.metavar, help=help_text
            )
        command = option(command)
    config_option = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Settings file (YAML). [env: {CONFIG_ENV_VAR}; default: ./settings.yml if it exists]",
    )
    return config_option(command)


def load_or_exit(config_file: Path | None, flags: dict[str, Any]) -> LoadedSettings:
    """Load the settings, or print one line naming the problem and exit with code 2."""
    try:
        return load_settings(cli=flags, config_file=config_file)
    except SettingsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)


def build_app(settings: Settings) -> TimeLimitedQuart:
    """Set up this process (logging) and build the app; runs in every worker process."""
    configure_logging(settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    return create_app(settings)


@click.group(cls=DefaultCommandGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name=DISTRIBUTION_NAME)
def main() -> None:
{%- if cookiecutter.database == "postgresql" %}
    """Run the service (`serve`, the default), migrate its database (`migrate`),
    inspect its configuration (`config`) or API (`openapi`)."""
{%- else %}
    """Run the service (`serve`, the default), inspect its configuration (`config`) or API (`openapi`)."""
{%- endif %}


@main.command(DEFAULT_COMMAND)
@settings_options
def serve_command(config_file: Path | None, **flags: Any) -> None:
    """Start the HTTP server and serve until SIGTERM or SIGINT."""
    loaded = load_or_exit(config_file, flags)
    configure_logging(loaded.settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    try:
        exit_code = serve(build_app, loaded.settings)
    except ServerError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    sys.exit(exit_code)


@main.group("config")
def config_group() -> None:
    """Check or show the effective configuration."""


@config_group.command("check")
@settings_options
def config_check(config_file: Path | None, **flags: Any) -> None:
    """Validate every setting and exit 0 (valid) or 2 (invalid) without starting the server."""
    loaded = load_or_exit(config_file, flags)
    source = f" (settings file {loaded.config_file})" if loaded.config_file else ""
    click.echo(f"configuration is valid{source}")


@config_group.command("show")
@settings_options
def config_show(config_file: Path | None, **flags: Any) -> None:
    """Print the effective settings as YAML, each with its source; secrets are redacted."""
    loaded = load_or_exit(config_file, flags)
    click.echo(dump_settings(loaded), nl=False)


@main.command("openapi")
@settings_options
def openapi_command(config_file: Path | None, **flags: Any) -> None:
    """Print the API's OpenAPI document (JSON), as /openapi.json serves it."""
    loaded = load_or_exit(config_file, flags)
    document = openapi_document(create_app(loaded.settings))
    click.echo(json.dumps(document, indent=2))
{%- if cookiecutter.database == "postgresql" %}


@main.command("migrate")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it (connects to nothing).")
@settings_options
def migrate_command(config_file: Path | None, sql: bool, **flags: Any) -> None:
    """Upgrade the database to the latest migration; run it before a new version serves."""
    loaded = load_or_exit(config_file, flags)
    configure_logging(loaded.settings.logging, service=DISTRIBUTION_NAME, version=__version__)
    # Imported here: only this command needs Alembic, and `serve` starts faster without it.
    from .chassis.database import first_line, is_unavailable
    from .migrations import upgrade

    try:
        upgrade(loaded.settings.database, sql=sql)
    except Exception as error:  # one line for the operator, whatever went wrong
        what = "cannot reach the database to migrate" if is_unavailable(error) else "the migration failed"
        click.echo(f"error: {what}: {first_line(error)}", err=True)
        sys.exit(1)
{%- endif %}
