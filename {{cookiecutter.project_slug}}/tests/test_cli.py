"""The command line: exit codes, help texts and where settings come from."""

from __future__ import annotations

import datetime
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from {{ cookiecutter.package_name }} import DISTRIBUTION_NAME, __version__, cli
from {{ cookiecutter.package_name }}.chassis import server
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX as PREFIX
from {{ cookiecutter.package_name }}.settings import Settings, iter_specs


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_config_check_accepts_defaults(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.output


def test_bad_setting_exits_2_with_one_line(runner: CliRunner) -> None:
    """``config check`` answers a person (or CI): a plain line, whatever the logs' format."""
    result = runner.invoke(cli.main, ["config", "check"], env={f"{PREFIX}_SERVER_PORT": "99999"})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: invalid setting server.port = '99999' (from environment variable {PREFIX}_SERVER_PORT): "
        "expected an integer from 1 to 65535"
    ]
    assert "Traceback" not in result.output


def test_bad_setting_stops_the_service_with_one_json_log_line(runner: CliRunner) -> None:
    """Where the logs are JSON (the default: a collector reads them), so is the line that stops it."""
    result = runner.invoke(cli.main, ["serve"], env={f"{PREFIX}_SERVER_PORT": "99999"})
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    timestamp = datetime.datetime.fromisoformat(record.pop("timestamp"))
    assert timestamp.utcoffset() == datetime.timedelta(0)
    assert record == {
        "event": f"invalid setting server.port = '99999' (from environment variable {PREFIX}_SERVER_PORT): "
        "expected an integer from 1 to 65535",
        "level": "error",
        "logger": "{{ cookiecutter.package_name }}.chassis.commands",
        "service": DISTRIBUTION_NAME,
        "version": __version__,
    }
    assert result.stdout == ""


@pytest.mark.parametrize("console_by", ["flag", "environment", "settings file"])
def test_bad_setting_stops_the_service_with_one_plain_line_for_a_console(
    runner: CliRunner, isolated_environment: Path, console_by: str
) -> None:
    args, env = ["serve", "--server-port", "99999"], {}
    if console_by == "flag":
        args.append("--logging-format=console")
    elif console_by == "environment":
        env[f"{PREFIX}_LOGGING_FORMAT"] = "console"
    else:
        (isolated_environment / "settings.yml").write_text("logging:\n  format: console\n", encoding="utf-8")
    result = runner.invoke(cli.main, args, env=env)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: invalid setting server.port = '99999' (from --server-port): "
        "expected an integer from 1 to 65535"
    ]


def test_a_bad_logging_format_is_reported_in_the_default_one(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["serve"], env={f"{PREFIX}_LOGGING_FORMAT": "xml"})
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["event"].startswith("invalid setting logging.format = 'xml'")


def test_missing_config_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli.main, ["config", "check", "--config", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_config_show_names_each_source(runner: CliRunner, isolated_environment: Path) -> None:
    (isolated_environment / "settings.yml").write_text("logging:\n  level: error\n", encoding="utf-8")
    result = runner.invoke(
        cli.main,
        ["config", "show", "--server-port", "9100"],
        env={f"{PREFIX}_SERVER_HOST": "127.0.0.1"},
    )
    assert result.exit_code == 0, result.output
    assert "  port: 9100  # cli" in result.output
    assert "  host: 127.0.0.1  # env" in result.output
    assert "  level: error  # file" in result.output
    assert "  workers: 1  # default" in result.output


@pytest.mark.parametrize("command", [[], ["serve"], ["config", "check"], ["config", "show"]])
def test_help_lists_every_setting(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(cli.main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for spec in iter_specs():
        assert spec.env_var in text
        assert spec.flag in text


def test_help_summary_names_every_command(runner: CliRunner) -> None:
    """The summary above ``Options`` names each command, those of the optional parts included."""
    result = runner.invoke(cli.main, ["--help"])
    assert result.exit_code == 0, result.output
    summary = " ".join(result.output.split("Options:")[0].split())
    optional = {entry_point.name for entry_point in entry_points(group=f"{cli.__package__}.commands")}
    assert optional <= set(cli.main.commands)
    assert {"serve", "config", "openapi"} <= set(cli.main.commands)
    for name in cli.main.commands:
        assert f"`{name}`" in summary, summary


@pytest.mark.parametrize("command", [["serve"], ["config", "check"], ["openapi"]])
def test_command_help_groups_the_flags_by_section(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(cli.main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    headings = [line.removesuffix(":") for line in lines if line[:1].isalpha() and line.endswith(":")]
    sections = list(dict.fromkeys(spec.section for spec in iter_specs()))
    assert headings == ["Options", *(f"{section} settings" for section in sections)]
    server = result.output.split("server settings:")[1].split("logging settings:")[0]
    assert "--server-port" in server
    assert "--logging-level" not in server


def test_serve_is_the_default_command(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Settings] = []

    def fake_serve(app_factory: Any, settings: Settings, *, api: bool = True) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(server, "serve", fake_serve)
    result = runner.invoke(cli.main, ["--server-port", "9200"])
    assert result.exit_code == 0, result.output
    assert [settings.server.port for settings in started] == [9200]


def test_unknown_flag_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["serve", "--server-prot", "1"])
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert "{{ cookiecutter.project_slug }}" in result.output
