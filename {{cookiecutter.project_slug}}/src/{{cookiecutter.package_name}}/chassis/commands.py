"""What every command of the entrypoint shares: settings as flags, help grouped by section.

``settings_options`` gives a command ``--config`` and one flag per declared setting;
its ``--help`` lists the flags under a heading per settings section.  Commands that an
optional part of the service brings live in that part's own module and are found
through the ``<package>.commands`` entry points (see ``pyproject.toml``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from .. import DISTRIBUTION_NAME, __version__
from ..settings import (
    CONFIG_ENV_VAR,
    ENV_PREFIX,
    LoggingSettings,
    Serves,
    Settings,
    iter_specs,
    load_settings,
)
from .config import LoadedSettings, SettingsError, resolve_setting
from .logging import json_error_line

DEFAULT_COMMAND = "serve"
# Exit code for bad configuration (the same code click uses for usage errors).
EXIT_BAD_CONFIG = 2
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class SettingOption(click.Option):
    """The flag of one setting; knows its section, so ``--help`` can group it."""

    def __init__(self, *args: Any, section: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class SettingsCommand(click.Command):
    """A command whose ``--help`` lists its own options, then the settings flags by section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        by_section: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, SettingOption):
                by_section.setdefault(param.section, []).append(record)
            else:
                own.append(record)
        with formatter.section("Options"):
            formatter.write_dl(own)
        for section, records in by_section.items():
            with formatter.section(f"{section} settings"):
                formatter.write_dl(records)


class CommandGroup(click.Group):
    """A group whose commands are ``SettingsCommand``s."""

    command_class = SettingsCommand


class DefaultCommandGroup(CommandGroup):
    """The entrypoint: runs ``serve`` when no command is named; its help lists every setting."""

    group_class = CommandGroup

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
            formatter.write_paragraph()
            formatter.write_text(
                "Instead of an environment variable X, X_FILE may name a file that holds the value "
                "(a secret mounted as a file)."
            )
        super().format_epilog(ctx, formatter)

    def add_commands_from_entry_points(self, group: str) -> None:
        """Add the commands that installed parts of the service declare in entry point ``group``.

        The summary (the group's help) then names them too, so ``--help`` lists every command.
        """
        added = sorted(entry_points(group=group), key=lambda entry_point: entry_point.name)
        for entry_point in added:
            self.add_command(entry_point.load(), entry_point.name)
        if added and self.help:
            names = ", ".join(f"`{entry_point.name}`" for entry_point in added)
            self.help = f"{self.help.rstrip().removesuffix('.')}; its optional parts add {names}."


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config`` and one flag per declared setting to a command."""
    for spec in reversed(list(iter_specs())):
        help_text = f"{spec.help} [default: {spec.default!r}; env: {spec.env_var}]"
        if spec.is_flag:
            flags = f"{spec.flag}/--no-{spec.flag.removeprefix('--')}"
            option = click.option(
                flags, spec.param_name, cls=SettingOption, section=spec.section, default=None, help=help_text
            )
        else:
            option = click.option(
                spec.flag,
                spec.param_name,
                cls=SettingOption,
                section=spec.section,
                default=None,
                metavar=spec.metavar,
                help=help_text,
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


def load_or_exit(
    config_file: Path | None, flags: dict[str, Any], *, serves: Serves = "api", logs: bool = False
) -> LoadedSettings[Settings]:
    """Load the settings, or write one line naming the problem on stderr and exit with code 2.

    ``serves``: what the command serves, whose settings it needs (``serve`` the API, a
    worker the background work, ``openapi`` nothing: no identity provider, say).
    ``logs``: the command runs the service and writes logs (``serve`` does, and so may those of
    the optional parts).  The line is then a log line, JSON when the logs would be (a collector
    reads a pod's logs as JSON, its last line too); else, and for the commands a person reads
    (``config check``), ``error: ...``.
    """
    try:
        return load_settings(cli=flags, config_file=config_file, serves=serves)
    except SettingsError as error:
        if logs and _log_format(config_file, flags) == "json":
            line = json_error_line(
                str(error), logger=__name__, service=DISTRIBUTION_NAME, version=__version__
            )
        else:
            line = f"error: {error}"
        click.echo(line, err=True)
        sys.exit(EXIT_BAD_CONFIG)


def _log_format(config_file: Path | None, flags: dict[str, Any]) -> str:
    """The logging format the settings ask for, read alone; its default when it is what is wrong."""
    try:
        value = resolve_setting(Settings, ENV_PREFIX, "logging.format", cli=flags, config_file=config_file)
    except SettingsError:
        value = LoggingSettings().format
    return str(value)
