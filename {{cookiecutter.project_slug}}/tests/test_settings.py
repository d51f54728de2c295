"""Settings: precedence, validation and the settings file."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
{%- if cookiecutter.auth == "oidc" %}
from typing import Any
{%- endif %}

import pytest
import yaml

{% if cookiecutter.auth == "oidc" -%}
from {{ cookiecutter.package_name }} import settings as settings_module
{% endif -%}
from {{ cookiecutter.package_name }}.chassis.config import (
    REDACTED,
{%- if cookiecutter.auth == "oidc" %}
    LoadedSettings,
{%- endif %}
    SettingsError,
    check_http_url,
    redact_url,
    section,
    setting,
)
{%- if cookiecutter.auth == "oidc" %}
from {{ cookiecutter.package_name }}.settings import (
    CONFIG_ENV_VAR,
    AuthSettings,
    Settings,
    dump_settings,
)
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX as PREFIX
{%- else %}
from {{ cookiecutter.package_name }}.settings import (
    CONFIG_ENV_VAR,
    Settings,
    dump_settings,
    load_settings,
)
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX as PREFIX
{%- endif %}

PROJECT_ROOT = Path(__file__).resolve().parents[1]
{%- if cookiecutter.auth == "oidc" %}
# With auth = oidc, two settings have no default; every load below names them.
ISSUER, AUDIENCE = "https://idp.example.test", "https://api.example.test"
IDENTITY_PROVIDER = {f"{PREFIX}_AUTH_ISSUER": ISSUER, f"{PREFIX}_AUTH_AUDIENCE": AUDIENCE}


def load_settings(*, environ: dict[str, str], **kwargs: Any) -> LoadedSettings[Any]:
    return settings_module.load_settings(environ={**IDENTITY_PROVIDER, **environ}, **kwargs)
{%- endif %}


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_nothing_is_set() -> None:
    loaded = load_settings(environ={})
{%- if cookiecutter.auth == "oidc" %}
    assert loaded.settings == Settings(auth=AuthSettings(issuer=ISSUER, audience=AUDIENCE))
    assert {source for key, source in loaded.sources.items() if not key.startswith("auth.")} == {"default"}
{%- else %}
    assert loaded.settings == Settings()
    assert set(loaded.sources.values()) == {"default"}
{%- endif %}
    assert loaded.config_file is None


def test_precedence_is_cli_then_env_then_file_then_default(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "server:\n  port: 9001\n  host: 127.0.0.1\n  workers: 3\n")
    environ = {f"{PREFIX}_SERVER_PORT": "9002", f"{PREFIX}_SERVER_HOST": "::1"}
    loaded = load_settings(cli={"server_port": "9003"}, environ=environ, config_file=config)
    assert loaded.settings.server.port == 9003
    assert loaded.sources["server.port"] == "cli"
    assert loaded.settings.server.host == "::1"
    assert loaded.sources["server.host"] == "env"
    assert loaded.settings.server.workers == 3
    assert loaded.sources["server.workers"] == "file"
    assert loaded.sources["logging.level"] == "default"


def test_settings_file_found_in_working_directory(isolated_environment: Path) -> None:
    write_config(isolated_environment / "settings.yml", "logging:\n  level: warning\n")
    loaded = load_settings(environ={})
    assert loaded.settings.logging.level == "warning"
    assert loaded.config_file == Path("settings.yml")


def test_settings_file_named_by_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "other.yml", "shutdown:\n  grace_period: 3\n")
    loaded = load_settings(environ={CONFIG_ENV_VAR: str(config)})
    assert loaded.settings.shutdown.grace_period == 3.0


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({f"{PREFIX}_SERVER_PORT": "http"}, "server.port = 'http'"),
        ({f"{PREFIX}_SERVER_PORT": "0"}, "an integer from 1 to 65535"),
        ({f"{PREFIX}_SERVER_WORKERS": "-2"}, "server.workers"),
        ({f"{PREFIX}_LOGGING_LEVEL": "loud"}, "one of debug, info, warning, error, critical"),
        ({f"{PREFIX}_SHUTDOWN_GRACE_PERIOD": "nan"}, "shutdown.grace_period"),
        ({f"{PREFIX}_SHUTDOWN_GRACE_PERIOD": "-1"}, "a number from 0 to 3600"),
        ({f"{PREFIX}_TRACING_OTLP_ENDPOINT": "http://collector:notaport/v1"}, "cannot be parsed"),
        ({f"{PREFIX}_TRACING_OTLP_ENDPOINT": "http://collector:99999/v1"}, "cannot be parsed"),
        ({f"{PREFIX}_TRACING_OTLP_ENDPOINT": "http://[::1/v1"}, "cannot be parsed"),
        ({f"{PREFIX}_TRACING_OTLP_ENDPOINT": "http://:4318/v1"}, "names no host"),
        ({f"{PREFIX}_HTTP_TRUSTED_PROXIES": "10.0.0.0/33"}, "http.trusted_proxies"),
        ({f"{PREFIX}_HTTP_TRUSTED_PROXIES": "10.0.0.1/8"}, "has host bits set"),
    ],
)
def test_invalid_environment_values_name_the_key(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match="environment variable") as error:
        load_settings(environ=environ)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_invalid_flag_value_names_the_flag() -> None:
    with pytest.raises(SettingsError, match=r"server.port = 'x' \(from --server-port\)"):
        load_settings(cli={"server_port": "x"}, environ={})


def test_invalid_file_value_names_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "server:\n  port: true\n")
    with pytest.raises(SettingsError, match=r"server\.port = True \(from settings file"):
        load_settings(environ={}, config_file=config)


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "server:\n  prot: 8000\n")
    with pytest.raises(SettingsError, match=r"unknown setting 'server\.prot'.*did you mean 'server\.port'"):
        load_settings(environ={}, config_file=config)


def test_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={}, config_file=tmp_path / "missing.yml")
    with pytest.raises(SettingsError, match=f"named by {CONFIG_ENV_VAR}"):
        load_settings(environ={CONFIG_ENV_VAR: str(tmp_path / "missing.yml")})


def test_broken_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "server:\n  port: [8000\n")
    with pytest.raises(SettingsError, match="not valid YAML at line"):
        load_settings(environ={}, config_file=config)


def test_sections_must_be_mappings(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "server: 8000\n")
    with pytest.raises(SettingsError, match="'server' must be a mapping"):
        load_settings(environ={}, config_file=config)


def test_choices_ignore_case() -> None:
    loaded = load_settings(environ={f"{PREFIX}_LOGGING_LEVEL": "DEBUG"})
    assert loaded.settings.logging.level == "debug"


def test_settings_yml_and_the_readme_table_are_what_make_docs_writes() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/settings_docs.py", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"{result.stdout}{result.stderr}"
    documented = yaml.safe_load((PROJECT_ROOT / "settings.yml").read_text(encoding="utf-8"))
    assert documented["server"]["port"] == {{ cookiecutter.http_port }}


def test_dump_round_trips_and_names_sources() -> None:
    loaded = load_settings(cli={"server_workers": "2"}, environ={})
    text = dump_settings(loaded)
    assert "workers: 2  # cli" in text
    assert "port: {{ cookiecutter.http_port }}  # default" in text
    assert yaml.safe_load(text)["server"]["workers"] == 2


@section
class _DemoSection:
    token: str = setting(default="", help="A secret token.", secret=True)
    webhook: str = setting(
        default="https://hooks.example/", help="A secret URL.", secret=True, check=check_http_url
    )
    enabled: bool = setting(default=False, help="A switch.")
    endpoint: str | None = setting(default=None, help="An optional URL.")


@dataclasses.dataclass(frozen=True)
class _DemoSettings:
    demo: _DemoSection = dataclasses.field(default_factory=_DemoSection)


def test_secrets_are_redacted_when_shown_and_in_errors() -> None:
    environ = {f"{PREFIX}_DEMO_TOKEN": "s3cr3t", f"{PREFIX}_DEMO_ENABLED": "yes"}
    loaded = load_settings(environ=environ, root=_DemoSettings)
    assert isinstance(loaded.settings, _DemoSettings)
    assert loaded.settings.demo.token == "s3cr3t"
    assert loaded.settings.demo.enabled is True
    assert loaded.settings.demo.endpoint is None
    text = dump_settings(loaded)
    assert "s3cr3t" not in text
    assert f"token: '{REDACTED}'  # env" in text


def test_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    config = write_config(tmp_path / "s.yml", "demo:\n  token: 12345\n")
    with pytest.raises(SettingsError) as error:
        load_settings(environ={}, config_file=config, root=_DemoSettings)
    assert "12345" not in str(error.value)
    assert REDACTED in str(error.value)


def test_a_secret_can_come_from_the_file_its_variable_names(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cr3t\n", encoding="utf-8")  # as `echo` writes it
    loaded = load_settings(environ={f"{PREFIX}_DEMO_TOKEN_FILE": str(secret_file)}, root=_DemoSettings)
    assert isinstance(loaded.settings, _DemoSettings)
    assert loaded.settings.demo.token == "s3cr3t"
    assert loaded.sources["demo.token"] == "env_file"
    assert f"token: '{REDACTED}'  # env_file" in dump_settings(loaded)


def test_a_flag_wins_over_a_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("from-file", encoding="utf-8")
    environ = {f"{PREFIX}_DEMO_TOKEN_FILE": str(secret_file)}
    loaded = load_settings(cli={"demo_token": "from-flag"}, environ=environ, root=_DemoSettings)
    assert isinstance(loaded.settings, _DemoSettings)
    assert loaded.settings.demo.token == "from-flag"


def test_a_missing_secret_file_names_the_setting_and_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SettingsError) as error:
        load_settings(environ={f"{PREFIX}_DEMO_TOKEN_FILE": str(missing)}, root=_DemoSettings)
    message = str(error.value)
    assert message.startswith("setting demo.token: ")
    assert str(missing) in message
    assert f"{PREFIX}_DEMO_TOKEN_FILE" in message
    assert "No such file or directory" in message


def test_a_bad_value_in_a_secret_file_names_the_file_but_never_quotes_it(tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook"
    secret_file.write_text("ftp://u:hunter2@files.example/", encoding="utf-8")
    with pytest.raises(SettingsError) as error:
        load_settings(environ={f"{PREFIX}_DEMO_WEBHOOK_FILE": str(secret_file)}, root=_DemoSettings)
    message = str(error.value)
    assert message.startswith(f"invalid setting demo.webhook = {REDACTED} (from file {secret_file}, ")
    assert "hunter2" not in message
    assert "files.example" not in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "not a regular file"), (b"\xff\xfe", "not UTF-8 text"), (b"x" * 65537, "over 64 KiB")],
)
def test_a_secret_file_that_holds_no_value_is_refused(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    named = tmp_path
    if content is not None:
        named = tmp_path / "token"
        named.write_bytes(content)
    with pytest.raises(SettingsError, match=f"cannot be read \\({reason}\\)"):
        load_settings(environ={f"{PREFIX}_DEMO_TOKEN_FILE": str(named)}, root=_DemoSettings)


def test_a_file_named_for_any_setting_never_has_its_content_shown(tmp_path: Path) -> None:
    """A Secret wired to the wrong variable (or /proc/self/environ) must not reach the log."""
    wrong_file = tmp_path / "webhook-url"
    wrong_file.write_text("https://app:hunter2@hooks.example/in", encoding="utf-8")
    with pytest.raises(SettingsError) as error:
        load_settings(environ={f"{PREFIX}_LOGGING_LEVEL_FILE": str(wrong_file)})
    message = str(error.value)
    shown = "(the file's content, not shown)"
    assert message.startswith(f"invalid setting logging.level = {shown} (from file {wrong_file}")
    assert "hunter2" not in message
    assert "hooks.example" not in message


def test_a_fifo_named_for_a_setting_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO with no writer would block the start before any timeout."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SettingsError, match=r"cannot be read \(not a regular file\)"):
        load_settings(environ={f"{PREFIX}_DEMO_TOKEN_FILE": str(fifo)}, root=_DemoSettings)
    assert time.monotonic() - started < 1


def test_a_secret_given_by_its_variable_and_a_file_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("one", encoding="utf-8")
    environ = {f"{PREFIX}_DEMO_TOKEN": "two", f"{PREFIX}_DEMO_TOKEN_FILE": str(secret_file)}
    with pytest.raises(SettingsError, match=f"by {PREFIX}_DEMO_TOKEN and by {PREFIX}_DEMO_TOKEN_FILE"):
        load_settings(environ=environ, root=_DemoSettings)


def test_any_setting_can_come_from_a_file(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    port_file.write_text("9001\r\n", encoding="utf-8")  # as an editor on Windows writes it
    loaded = load_settings(environ={f"{PREFIX}_SERVER_PORT_FILE": str(port_file)})
    assert loaded.settings.server.port == 9001
    assert loaded.sources["server.port"] == "env_file"


def test_passwords_and_query_values_in_urls_are_redacted() -> None:
    endpoint = "https://user:hunter2@collector.example:4318/v1/traces?token=abc123"
    loaded = load_settings(environ={f"{PREFIX}_TRACING_OTLP_ENDPOINT": endpoint})
    assert loaded.settings.tracing.otlp_endpoint == endpoint
    shown = dump_settings(loaded)
    assert "hunter2" not in shown
    assert "abc123" not in shown
    redacted = f"https://user:{REDACTED}@collector.example:4318/v1/traces?token={REDACTED}"
    assert f"otlp_endpoint: {redacted}" in shown
    with pytest.raises(SettingsError) as error:
        load_settings(environ={f"{PREFIX}_TRACING_OTLP_ENDPOINT": "https://u:hunter2@host:99999/"})
    assert "hunter2" not in str(error.value)
    assert redact_url("not a url") == "not a url"
