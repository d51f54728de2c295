"""Every setting of the service, declared once.

A setting is a field of one of the section classes below.  From that one
declaration come the settings file key, the command-line flag, the environment
variable, the default, the validation and the ``--help`` text, e.g.:

    server.port    --server-port    {{ cookiecutter.package_name | upper }}_SERVER_PORT

Nothing here reads the environment or a file at import time: ``load_settings``
does, when the entrypoint calls it.  Tests build ``Settings(...)`` directly.

Precedence: command-line flag > environment variable > settings file > default.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union, dataclass_transform, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

ENV_PREFIX = "{{ cookiecutter.package_name | upper }}"
CONFIG_ENV_VAR = f"{ENV_PREFIX}_CONFIG"
DEFAULT_CONFIG_FILE = Path("settings.yml")
REDACTED = "***"
# Where the app keeps its settings: ``app.config[SETTINGS_KEY]``.
SETTINGS_KEY = "SETTINGS"

Source = Literal["default", "file", "env", "cli"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "console"]
EventLoop = Literal["auto", "asyncio", "uvloop"]

# A comma-separated list of origins (scheme://host[:port]), or "*", or nothing.
_ORIGINS = r"|\*|https?://[^\s,/]+(\s*,\s*https?://[^\s,/]+)*"
# A comma-separated list of IP addresses or CIDR ranges, or nothing (check_networks looks closer).
_NETWORKS = r"|[0-9A-Fa-f.:/]+(\s*,\s*[0-9A-Fa-f.:/]+)*"
{%- if cookiecutter.database == "postgresql" %}
# postgresql://user:password@host:port/database, optionally with ?options.
_POSTGRES_URL = r"postgres(ql)?(\+asyncpg)?://[^\s/?#]+/[^\s/?#]+(\?\S*)?"
_IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"
# The database `docker compose up -d postgres` starts, for local development only.
DEV_DATABASE_URL = "postgresql://postgres:dev@localhost/{{ cookiecutter.package_name }}"
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
# redis://[[user]:password@]host[:port][/db]; rediss:// for TLS.
_REDIS_URL = r"rediss?://[^\s/?#]+(/\d{1,2})?(\?\S*)?"
{%- endif %}
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}
{%- if cookiecutter.database == "postgresql" %}
# PostgreSQL's sslmode values; asyncpg takes the same words as its ``ssl`` argument.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
{%- endif %}


def check_url(value: str, schemes: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is a URL with one of ``schemes``, a host and a valid port."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as error:
        raise ValueError(f"it cannot be parsed ({error})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"its scheme is {parts.scheme or 'missing'}")
    if not parts.hostname:
        raise ValueError("it names no host")
    if port == 0:
        raise ValueError("its port is 0")


def check_http_url(value: str) -> None:
    check_url(value, ("http", "https"))


def check_networks(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` is a comma-separated list of IP addresses or CIDR ranges."""
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            ipaddress.ip_network(item)
        except ValueError as error:
            raise ValueError(str(error)) from None
{%- if cookiecutter.database == "postgresql" %}


def check_postgres_url(value: str) -> None:
    """A PostgreSQL URL whose one option, if any, is sslmode (the database.* settings give the rest)."""
    check_url(value, ("postgres", "postgresql", "postgresql+asyncpg"))
    for name, option in parse_qsl(urlsplit(value).query, keep_blank_values=True):
        if name != "sslmode":
            raise ValueError(f"it has the option {name!r}; the one option supported is sslmode")
        if option not in SSL_MODES:
            raise ValueError(f"sslmode is {option!r}, not one of {', '.join(sorted(SSL_MODES))}")
{%- endif %}
{%- if cookiecutter.cache == "redis" %}


def check_redis_url(value: str) -> None:
    """A Redis URL without options (the cache.* settings give them)."""
    check_url(value, ("redis", "rediss"))
    if urlsplit(value).query:
        raise ValueError("it has options; set them with the cache settings instead")
{%- endif %}


def redact_url(value: str) -> str:
    """``value`` with a URL's password and query values replaced by ``***``; other text unchanged."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = "&".join(f"{name}={REDACTED}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def setting(
    *,
    default: Any,
    help: str,  # noqa: A002 - the same word click uses
    secret: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: tuple[str, str] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """Declare one setting: default, help text, whether it is secret, and its bounds or pattern.

    ``pattern`` is a regular expression the whole text must match, with a description of it.
    ``check`` looks deeper (a URL's port, a network's prefix) and raises ``ValueError`` saying
    what is wrong, in words that never repeat a secret.
    """
    metadata = {
        "help": help,
        "secret": secret,
        "minimum": minimum,
        "maximum": maximum,
        "pattern": pattern,
        "check": check,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclass_transform(frozen_default=True, field_specifiers=(setting,))
def section(cls: type[Any]) -> type[Any]:
    """Make a class a frozen section of settings (a dataclass whose fields use ``setting``)."""
    return dataclasses.dataclass(frozen=True)(cls)


@section
class ServerSettings:
    host: str = setting(default="0.0.0.0", help="Interface to listen on (0.0.0.0 for all).")  # noqa: S104
    port: int = setting(default={{ cookiecutter.http_port }}, help="TCP port to listen on.", minimum=1, maximum=65535)
    workers: int = setting(
        default=1,
        help="Worker processes. 1 serves in a single process; more share the port.",
        minimum=1,
        maximum=64,
    )
    loop: EventLoop = setting(
        default="auto", help="Event loop: auto (uvloop when installed), asyncio or uvloop."
    )


@section
class LoggingSettings:
    level: LogLevel = setting(default="info", help="Lowest level that is logged.")
    format: LogFormat = setting(default="json", help="json: one JSON object per line; console: for humans.")
    access_log: bool = setting(default=True, help="Write one access line per request.")
    access_log_probes: bool = setting(
        default=False, help="Also write access lines for health probes and metrics scrapes."
    )


@section
class MetricsSettings:
    path: str = setting(
        default="/metrics",
        help="Path that serves Prometheus metrics.",
        pattern=(r"/[A-Za-z0-9._~/-]*", "a URL path starting with /"),
    )
    multiprocess_root: str = setting(
        default="/tmp",  # noqa: S108 - a writable folder; a fresh, private subfolder is made per run
        help="Folder in which a fresh metrics folder is made per run when server.workers > 1.",
    )


@section
class TracingSettings:
    otlp_endpoint: str | None = setting(
        default=None,
        help="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty: no export.",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    sample_ratio: float = setting(
        default=1.0, help="Share of new traces that are sampled (parent-based).", minimum=0, maximum=1
    )


@section
class HealthSettings:
    show_details: bool = setting(default=True, help="Show each check's status in /health/ready.")


@section
class BuildSettings:
    commit: str = setting(default="unknown", help="Git commit the service was built from (shown in /info).")
    time: str = setting(default="unknown", help="When the service was built (shown in /info).")


@section
class HttpSettings:
    max_body_size: int = setting(
        default=1_048_576,
        help="Largest request body accepted, in bytes; larger ones get 413.",
        minimum=1,
        maximum=1_073_741_824,
    )
    body_timeout: float = setting(
        default=30.0,
        help="Seconds a request's body may take to arrive; a slower client gets 408.",
        minimum=0.001,
        maximum=3600,
    )
    request_timeout: float = setting(
        default=30.0,
        help="Seconds a request handler may take once the body is in; past it the client gets 504.",
        minimum=0.001,
        maximum=3600,
    )
    keep_alive_timeout: float = setting(
        default=5.0,
        help="Seconds a client may take to send a request's headers, or leave a connection idle; "
        "then it is closed. Behind a proxy that reuses connections, keep it above the proxy's idle timeout.",
        minimum=0.1,
        maximum=3600,
    )
    max_header_size: int = setting(
        default=16_384,
        help="Largest request line and headers, in bytes; larger gets 431.",
        minimum=1024,
        maximum=1_048_576,
    )
    max_json_depth: int = setting(
        default=32,
        help="Deepest nesting of arrays and objects in a JSON body; deeper gets 400.",
        minimum=1,
        maximum=500,
    )
    max_concurrent_requests: int = setting(
        default=100,
        help="Requests handled at once; more get 503 at once (health probes and metrics are never refused).",
        minimum=1,
        maximum=100_000,
    )
    trusted_proxies: str = setting(
        default="",
        help="Proxies (IP addresses or CIDR ranges, comma-separated) whose X-Forwarded-For, "
        "X-Forwarded-Proto and Forwarded headers name the client; empty: none is trusted.",
        pattern=(_NETWORKS, "comma-separated IP addresses or CIDR ranges such as 10.0.0.0/8"),
        check=check_networks,
    )
    cors_allow_origins: str = setting(
        default="",
        help="Origins allowed to call from browsers (CORS), comma-separated, or *; empty: CORS off.",
        pattern=(_ORIGINS, "comma-separated origins such as https://app.example.com, or *"),
    )


@section
class ResourcesSettings:
    start_timeout: float = setting(
        default=30.0, help="Seconds each resource may take to start.", minimum=0.001, maximum=3600
    )
    stop_timeout: float = setting(
        default=10.0, help="Seconds each resource may take to stop.", minimum=0.001, maximum=3600
    )


@section
class ShutdownSettings:
    delay: float = setting(
        default=3.0,
        help="Seconds between a stop signal and closing the port (readiness is 503 meanwhile).",
        minimum=0,
        maximum=600,
    )
    grace_period: float = setting(
        default=25.0,
        help="Seconds that in-flight requests get to finish once the port is closed.",
        minimum=0,
        maximum=3600,
    )


@section
class UpstreamSettings:
    """How to reach one other service: declare one field of this type per upstream (see below)."""

    base_url: str = setting(
        default="http://localhost",
        help="Base URL of the upstream service.",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    connect_timeout: float = setting(
        default=2.0, help="Seconds to wait for a connection.", minimum=0.001, maximum=600
    )
    read_timeout: float = setting(
        default=10.0, help="Seconds to wait for each part of the response.", minimum=0.001, maximum=600
    )
    total_timeout: float = setting(
        default=30.0, help="Seconds one call may take in all, retries included.", minimum=0.001, maximum=3600
    )
    max_connections: int = setting(default=100, help="Most open connections.", minimum=1, maximum=10_000)
    retries: int = setting(
        default=2, help="Retries of a failed call when it is safe to retry.", minimum=0, maximum=10
    )
    breaker_failures: int = setting(
        default=5, help="Consecutive failures that open the circuit breaker.", minimum=1, maximum=1000
    )
    breaker_cooldown: float = setting(
        default=30.0,
        help="Seconds the circuit stays open before one trial call is let through.",
        minimum=0.001,
        maximum=3600,
    )


@section
class UpstreamsSettings:
    """Other services this one calls, one field each; each gets a client in ``services``.

    For example ``catalog: UpstreamSettings = upstream("http://catalog:8080")`` gives the
    settings ``upstreams.catalog.base_url``, ``upstreams.catalog.retries`` and so on.
    """


{% if cookiecutter.database == "postgresql" -%}
@section
class DatabaseSettings:
    url: str = setting(
        default=DEV_DATABASE_URL,
        help="PostgreSQL URL: postgresql://user:password@host:port/database (secret).",
        secret=True,
        pattern=(_POSTGRES_URL, "a PostgreSQL URL: postgresql://user:password@host:port/database"),
        check=check_postgres_url,
    )
    schema: str | None = setting(
        default=None,
        help="Schema holding the service's tables; empty: the database's default search path.",
        pattern=(_IDENTIFIER, "a lowercase SQL identifier such as orders"),
    )
    pool_size: int = setting(default=5, help="Connections kept open in the pool.", minimum=1, maximum=100)
    max_overflow: int = setting(
        default=5, help="Extra connections opened under load, beyond pool_size.", minimum=0, maximum=100
    )
    pool_timeout: float = setting(
        default=5.0, help="Seconds to wait for a free connection.", minimum=0.001, maximum=600
    )
    connect_timeout: float = setting(
        default=5.0, help="Seconds to wait for a new connection.", minimum=0.001, maximum=600
    )
    statement_timeout: float = setting(
        default=10.0,
        help="Seconds a statement may run before PostgreSQL cancels it.",
        minimum=0.001,
        maximum=3600,
    )


{% endif -%}
{% if cookiecutter.cache == "redis" -%}
@section
class CacheSettings:
    url: str = setting(
        default="redis://localhost:6379/0",
        help="Redis URL: redis://[:password@]host:port/db, rediss:// for TLS (secret).",
        secret=True,
        pattern=(_REDIS_URL, "a Redis URL: redis://[:password@]host:port/db"),
        check=check_redis_url,
    )
    ttl: int = setting(default=300, help="Seconds an item stays cached.", minimum=1, maximum=86_400)
    timeout: float = setting(
        default=0.25,
        help="Seconds each cache call may take; a slower cache is skipped, never waited for.",
        minimum=0.001,
        maximum=60,
    )
    max_connections: int = setting(default=50, help="Most open connections.", minimum=1, maximum=10_000)
    key_prefix: str = setting(
        default="{{ cookiecutter.project_slug }}",
        help="Start of every key, so services (or environments) sharing a Redis never collide.",
        pattern=(r"[A-Za-z0-9._:-]{1,100}", "letters, digits and . _ : - (at most 100)"),
    )


{% endif -%}
def upstream(base_url: str) -> Any:
    """Declare an upstream in ``UpstreamsSettings`` with its default base URL."""
    return dataclasses.field(default_factory=lambda: UpstreamSettings(base_url=base_url))


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings, one attribute per section: ``settings.server.port``."""

    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    logging: LoggingSettings = dataclasses.field(default_factory=LoggingSettings)
    metrics: MetricsSettings = dataclasses.field(default_factory=MetricsSettings)
    tracing: TracingSettings = dataclasses.field(default_factory=TracingSettings)
    health: HealthSettings = dataclasses.field(default_factory=HealthSettings)
    build: BuildSettings = dataclasses.field(default_factory=BuildSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    resources: ResourcesSettings = dataclasses.field(default_factory=ResourcesSettings)
    shutdown: ShutdownSettings = dataclasses.field(default_factory=ShutdownSettings)
    upstreams: UpstreamsSettings = dataclasses.field(default_factory=UpstreamsSettings)
{%- if cookiecutter.database == "postgresql" %}
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache: CacheSettings = dataclasses.field(default_factory=CacheSettings)
{%- endif %}


class SettingsError(Exception):
    """A setting, or the settings file, is not valid.  The message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What one declared setting is: derived from its field, used for every source."""

    section: str  # dotted for nested sections: "upstreams.catalog"
    name: str
    type: Any
    default: Any
    help: str
    secret: bool
    minimum: float | None
    maximum: float | None
    pattern: tuple[str, str] | None
    check: Callable[[Any], None] | None = None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def param_name(self) -> str:
        """The identifier click passes the flag's value under."""
        return f"{self.section}_{self.name}".replace(".", "_")

    @property
    def flag(self) -> str:
        return "--" + self.param_name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}_{self.param_name}".upper()

    @property
    def is_flag(self) -> bool:
        return _optional_inner(self.type) is bool

    @property
    def metavar(self) -> str:
        """How ``--help`` shows the flag's value."""
        kind = _optional_inner(self.type)
        if get_origin(kind) is Literal:
            return "[" + "|".join(str(choice) for choice in get_args(kind)) + "]"
        return {int: "INTEGER", float: "NUMBER", bool: "BOOLEAN"}.get(kind, "TEXT")

    def describe(self) -> str:
        """What a valid value looks like, for help texts and error messages."""
        kind = _optional_inner(self.type)
        if get_origin(kind) is Literal:
            text = "one of " + ", ".join(str(choice) for choice in get_args(kind))
        elif self.pattern is not None:
            text = self.pattern[1]
        else:
            noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
            text = noun.get(kind, str(kind))
            if self.minimum is not None and self.maximum is not None:
                text += f" from {_plain(self.minimum)} to {_plain(self.maximum)}"
            elif self.minimum is not None:
                text += f" of at least {_plain(self.minimum)}"
            elif self.maximum is not None:
                text += f" of at most {_plain(self.maximum)}"
        if _is_optional(self.type):
            text += " (empty for none)"
        return text

    def parse(self, raw: Any) -> Any:
        """Turn a raw value (text from a flag or the environment, or YAML data) into a valid value."""
        if _is_optional(self.type) and (raw is None or raw == ""):
            return None
        kind = _optional_inner(self.type)
        value = _convert(kind, raw)
        if value is None:
            raise ValueError(self.describe())
        if self.pattern is not None and not re.fullmatch(self.pattern[0], value):
            raise ValueError(self.describe())
        if isinstance(value, int | float) and not isinstance(value, bool):
            too_low = self.minimum is not None and value < self.minimum
            too_high = self.maximum is not None and value > self.maximum
            if too_low or too_high:
                raise ValueError(self.describe())
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as problem:
                raise ValueError(f"{self.describe()}, but {problem}") from None
        return value


@dataclasses.dataclass(frozen=True)
class LoadedSettings:
    """Settings together with where each value came from and which file was read.

    ``settings`` is an instance of the ``root`` that was loaded: ``Settings`` unless a test
    passed its own root.
    """

    settings: Settings
    sources: Mapping[str, Source]
    config_file: Path | None


def iter_specs(root: type[Any] = Settings) -> Iterator[SettingSpec]:
    """Every declared setting, section by section, in declaration order."""
    yield from _walk_section(root, root(), "")


def _walk_section(section_type: type[Any], defaults: Any, path: str) -> Iterator[SettingSpec]:
    """The settings of one section, and of the sections nested in it (such as ``upstreams.catalog``)."""
    hints = get_type_hints(section_type)
    for item in dataclasses.fields(section_type):
        kind, default = hints[item.name], getattr(defaults, item.name)
        if _is_section(kind):
            yield from _walk_section(kind, default, f"{path}.{item.name}".lstrip("."))
            continue
        yield SettingSpec(
            section=path,
            name=item.name,
            type=kind,
            default=default,
            help=item.metadata["help"],
            secret=item.metadata["secret"],
            minimum=item.metadata["minimum"],
            maximum=item.metadata["maximum"],
            pattern=item.metadata["pattern"],
            check=item.metadata["check"],
        )


def load_settings(
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
    root: type[Any] = Settings,
) -> LoadedSettings:
    """Resolve every setting from its sources (flag > environment > file > default) and validate it.

    ``cli`` maps a setting's ``param_name`` to the flag's value (``None`` when not given).
    ``environ`` defaults to the process environment, read now.
    ``config_file`` is the ``--config`` value; without it ``{ENV_PREFIX}_CONFIG`` is used,
    then ``./settings.yml`` if it exists.
    """
    cli = cli or {}
    environ = os.environ if environ is None else environ
    path, file_values = _read_config_file(config_file, environ)
    specs = list(iter_specs(root))
    _reject_unknown_keys(file_values, specs, path)

    sources: dict[str, Source] = {}
    values: dict[str, Any] = {}
    for spec in specs:
        values[spec.key], sources[spec.key] = _resolve(spec, cli, environ, file_values, path)
    settings = _build_section(root, values, "")
    return LoadedSettings(settings=settings, sources=sources, config_file=path)


def _build_section(section_type: type[Any], values: Mapping[str, Any], path: str) -> Any:
    """An instance of ``section_type`` (and the sections nested in it) from values by key."""
    hints = get_type_hints(section_type)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(section_type):
        key = f"{path}.{item.name}".lstrip(".")
        kind = hints[item.name]
        fields[item.name] = _build_section(kind, values, key) if _is_section(kind) else values[key]
    return section_type(**fields)


def dump_settings(loaded: LoadedSettings, root: type[Any] = Settings) -> str:
    """The effective settings as YAML, each key commented with its source; secrets redacted."""
    lines: list[str] = []
    if loaded.config_file is not None:
        lines.append(f"# settings file: {loaded.config_file}")
    open_sections: list[str] = []
    for spec in iter_specs(root):
        path = spec.section.split(".")
        shared = 0
        while shared < min(len(path), len(open_sections)) and path[shared] == open_sections[shared]:
            shared += 1
        for depth in range(shared, len(path)):
            lines.append(f"{'  ' * depth}{path[depth]}:")
        open_sections = path
        value = _get(loaded.settings, spec.key)
        if spec.secret and value not in (None, ""):
            shown = REDACTED
        else:
            shown = redact_url(value) if isinstance(value, str) else value
        indent = "  " * len(path)
        lines.append(f"{indent}{spec.name}: {_yaml_scalar(shown)}  # {loaded.sources[spec.key]}")
    return "\n".join(lines) + "\n"


def _get(settings: Any, key: str) -> Any:
    """The value of ``key`` (``section.name``, or deeper) in ``settings``."""
    value = settings
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _resolve(
    spec: SettingSpec,
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    file_values: Mapping[str, Any],
    path: Path | None,
) -> tuple[Any, Source]:
    candidates: list[tuple[Source, bool, Any, str]] = [
        ("cli", cli.get(spec.param_name) is not None, cli.get(spec.param_name), spec.flag),
        ("env", spec.env_var in environ, environ.get(spec.env_var), f"environment variable {spec.env_var}"),
        ("file", spec.key in file_values, file_values.get(spec.key), f"settings file {path}"),
    ]
    for source, present, raw, origin in candidates:
        if present:
            try:
                return spec.parse(raw), source
            except ValueError as problem:
                shown = REDACTED if spec.secret else repr(redact_url(raw) if isinstance(raw, str) else raw)
                raise SettingsError(
                    f"invalid setting {spec.key} = {shown} (from {origin}): expected {problem}"
                ) from None
    return spec.default, "default"


def _read_config_file(
    config_file: Path | str | None, environ: Mapping[str, str]
) -> tuple[Path | None, dict[str, Any]]:
    """Find and read the settings file; return its values flattened to ``section.name`` keys."""
    if config_file is not None:
        path, named_by = Path(config_file), "--config"
    elif environ.get(CONFIG_ENV_VAR):
        path, named_by = Path(environ[CONFIG_ENV_VAR]), CONFIG_ENV_VAR
    elif DEFAULT_CONFIG_FILE.is_file():
        path, named_by = DEFAULT_CONFIG_FILE, ""
    else:
        return None, {}
    if not path.is_file():
        raise SettingsError(f"settings file {path} (named by {named_by}) does not exist or is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SettingsError(f"settings file {path} is not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"settings file {path} cannot be read: {error}") from None
    return path, _flatten(data, path)


def _flatten(data: Any, path: Path) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must be a mapping of sections such as 'server:'")
    flat: dict[str, Any] = {}
    for section_name, values in data.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise SettingsError(f"settings file {path}: '{section_name}' must be a mapping of settings")
        flat.update(_flatten_section(values, str(section_name)))
    return flat


def _flatten_section(values: dict[Any, Any], prefix: str) -> dict[str, Any]:
    """``{"catalog": {"retries": 3}}`` under ``upstreams`` → ``{"upstreams.catalog.retries": 3}``."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        key = f"{prefix}.{name}"
        if isinstance(value, dict):
            flat.update(_flatten_section(value, key))
        else:
            flat[key] = value
    return flat


def _reject_unknown_keys(file_values: Mapping[str, Any], specs: list[SettingSpec], path: Path | None) -> None:
    known = [spec.key for spec in specs]
    for key in file_values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known settings: {', '.join(known)}"
            raise SettingsError(f"unknown setting '{key}' in settings file {path}{hint}")


def _convert(kind: Any, raw: Any) -> Any:
    """Convert ``raw`` to ``kind``; ``None`` when it cannot be."""
    if get_origin(kind) is Literal:
        text = raw.strip().lower() if isinstance(raw, str) else raw
        return text if text in get_args(kind) else None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        return True if text in _TRUE_WORDS else False if text in _FALSE_WORDS else None
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        try:
            return int(str(raw).strip()) if isinstance(raw, str) else None
        except ValueError:
            return None
    if kind is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            number = float(raw)
        elif isinstance(raw, str):
            try:
                number = float(raw.strip())
            except ValueError:
                return None
        else:
            return None
        return number if math.isfinite(number) else None
    if kind is str:
        return raw if isinstance(raw, str) else None
    raise TypeError(f"settings of type {kind!r} are not supported")


def _is_section(kind: Any) -> bool:
    """Whether a field holds a section of settings (rather than one setting)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _is_optional(kind: Any) -> bool:
    return get_origin(kind) in (Union, types.UnionType) and type(None) in get_args(kind)


def _optional_inner(kind: Any) -> Any:
    if _is_optional(kind):
        return next(arg for arg in get_args(kind) if arg is not type(None))
    return kind


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()
