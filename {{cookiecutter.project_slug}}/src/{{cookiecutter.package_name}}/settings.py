"""Every setting of the service, declared once.

A setting is a field of one of the section classes below.  From that one
declaration come the settings file key, the command-line flag, the environment
variable, the default, the validation, the ``--help`` text and the documentation
(``make docs`` writes ``settings.yml`` and the README's table from it), e.g.:

    server.port    --server-port    {{ cookiecutter.package_name | upper }}_SERVER_PORT

Nothing here reads the environment or a file at import time: ``load_settings``
does, when the entrypoint calls it.  Tests build ``Settings(...)`` directly.

Precedence: command-line flag > environment variable > settings file > default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
{%- if cookiecutter.database == "postgresql" %}
from urllib.parse import parse_qsl, urlsplit
{%- elif cookiecutter.cache == "redis" or cookiecutter.broker == "rabbitmq" %}
from urllib.parse import urlsplit
{%- endif %}

from .chassis import config
from .chassis.config import (
    LoadedSettings,
    SettingsError,
    SettingSpec,
    check_http_url,
    check_networks,
{%- if cookiecutter.database == "postgresql" or cookiecutter.cache == "redis" or cookiecutter.broker != "none" %}
    check_url,
{%- endif %}
    section,
    setting,
)

ENV_PREFIX = "{{ cookiecutter.package_name | upper }}"
CONFIG_ENV_VAR = config.config_env_var(ENV_PREFIX)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["json", "console"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
# What a command's settings are for: serving the API (serve), the background work (worker),
# or nothing (openapi, config show...), which needs no identity provider, say.
Serves = Literal["api", "worker", "nothing"]
{%- if cookiecutter.auth == "oidc" %}
UpstreamCredentials = Literal["none", "forward", "client_credentials"]
{%- endif %}

# A comma-separated list of origins (scheme://host[:port]), or "*", or nothing.
_ORIGINS = r"|\*|https?://[^\s,/]+(\s*,\s*https?://[^\s,/]+)*"
# A comma-separated list of IP addresses or CIDR ranges, or nothing (check_networks looks closer).
_NETWORKS = r"|[0-9A-Fa-f.:/]+(\s*,\s*[0-9A-Fa-f.:/]+)*"


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
class ManagementSettings:
    port: int | None = setting(
        default=None,
        help="Port of the management endpoints (metrics, health, info, API docs), which server.port "
        "then does not serve; empty: server.port serves everything.",
        minimum=1,
        maximum=65535,
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
        help="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty: no export "
        "(trace ids from incoming traceparent headers still reach the logs).",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    sample_ratio: float = setting(
        default=1.0, help="Share of new traces that are sampled (parent-based).", minimum=0, maximum=1
    )
    trace_probes: bool = setting(
        default=False,
        help="Also export spans of health probes and metrics scrapes (every probe of every pod would "
        "otherwise be a trace); for debugging.",
    )


@section
class SentrySettings:
    dsn: str | None = setting(
        default=None,
        help="Sentry DSN that unhandled errors are reported to; empty: nothing is reported.",
        secret=True,
        pattern=(r"https?://\S+", "a Sentry DSN: https://<key>@<host>/<project>"),
        check=check_http_url,
    )
    environment: str = setting(default="production", help="The environment the reports name.")


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
        help="Seconds that in-flight requests get to finish once the port is closed. Keep delay + "
        "grace_period + resources.stop_timeout below the orchestrator's limit (Kubernetes: "
        "terminationGracePeriodSeconds).",
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
{%- if cookiecutter.auth == "oidc" %}
    credentials: UpstreamCredentials = setting(
        default="none",
        help="What the calls carry: none; forward (the caller's bearer token); client_credentials "
        "(this service's own token, from token_url with client_id and client_secret).",
    )
    token_url: str | None = setting(
        default=None,
        help="OAuth 2.0 token endpoint for credentials = client_credentials.",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    client_id: str | None = setting(default=None, help="This service's client id at token_url.")
    client_secret: str | None = setting(
        default=None, help="This service's client secret at token_url.", secret=True
    )
    token_scope: str = setting(
        default="", help="Scopes to ask token_url for, space-separated; empty: the client's default."
    )
{%- endif %}


def upstream(base_url: str) -> Any:
    """Declare an upstream in ``UpstreamsSettings`` with its default base URL."""
    return dataclasses.field(default_factory=lambda: UpstreamSettings(base_url=base_url))


@section
class UpstreamsSettings:
    """Other services this one calls, one field each; each gets a client (``chassis/http_client.py``).

    For example ``catalog: UpstreamSettings = upstream("http://catalog:8080")`` gives the
    settings ``upstreams.catalog.base_url``, ``upstreams.catalog.retries`` and so on.
    """


{% if cookiecutter.auth == "oidc" -%}
# Signature algorithms with a public key: never "none", never HMAC (whose key a JWKS would publish).
ASYMMETRIC_ALGORITHMS = (
    *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),  # RSA
    *("ES256", "ES384", "ES512"),  # elliptic curves
    *("EdDSA", "Ed25519"),  # Edwards curves (Ed25519 is the new name, RFC 9864)
)
_ALGORITHMS = "|".join(ASYMMETRIC_ALGORITHMS)


@section
class AuthSettings:
    """Who may call the API: bearer tokens (JWTs) an OpenID Connect identity provider issued."""

    issuer: str | None = setting(
        default=None,
        help="The identity provider's issuer URL (required unless jwks_url is set): tokens must carry "
        "it as iss, and unless jwks_url is set, <issuer>/.well-known/openid-configuration names the "
        "signing keys.",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    jwks_url: str | None = setting(
        default=None,
        help="URL of the signing keys (a JWKS), instead of discovering it from the issuer.",
        pattern=(r"https?://\S+", "an http:// or https:// URL"),
        check=check_http_url,
    )
    audience: str | None = setting(
        default=None,
        help="What tokens must name in aud (required): this API's identifier at the identity provider.",
    )
    algorithms: str = setting(
        default="RS256,ES256,EdDSA",
        help=f"Signature algorithms accepted, comma-separated, of {', '.join(ASYMMETRIC_ALGORITHMS)}.",
        pattern=(rf"({_ALGORITHMS})(\s*,\s*({_ALGORITHMS}))*", "asymmetric algorithms such as RS256,ES256"),
    )
    leeway: int = setting(
        default=30, help="Seconds of clock skew allowed when checking exp and nbf.", minimum=0, maximum=300
    )
    max_token_lifetime: int = setting(
        default=86_400,
        help="Longest a token may still be valid, in seconds: one whose exp is further ahead is refused.",
        minimum=60,
        maximum=31_536_000,
    )
    keys_refresh_interval: float = setting(
        default=300.0,
        help="Seconds between two fetches of the signing keys (a failed fetch keeps the keys held).",
        minimum=1,
        maximum=86_400,
    )
    keys_refetch_interval: float = setting(
        default=30.0,
        help="Least seconds between two fetches a token signed with an unknown key may cause.",
        minimum=0.1,
        maximum=3600,
    )


{% endif -%}
{% if cookiecutter.database == "postgresql" -%}
# postgresql://user:password@host:port/database, optionally with ?options.
_POSTGRES_URL = r"postgres(ql)?(\+asyncpg)?://[^\s/?#]+/[^\s/?#]+(\?\S*)?"
_IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"
# The database `docker compose up -d postgres` starts, for local development only.
DEV_DATABASE_URL = "postgresql://postgres:dev@localhost/{{ cookiecutter.package_name }}"
# PostgreSQL's sslmode values; asyncpg takes the same words as its ``ssl`` argument.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})


def check_postgres_url(value: str) -> None:
    """A PostgreSQL URL whose one option, if any, is sslmode (the database.* settings give the rest)."""
    check_url(value, ("postgres", "postgresql", "postgresql+asyncpg"))
    for name, option in parse_qsl(urlsplit(value).query, keep_blank_values=True):
        if name != "sslmode":
            raise ValueError(f"it has the option {name!r}; the one option supported is sslmode")
        if option not in SSL_MODES:
            raise ValueError(f"sslmode is {option!r}, not one of {', '.join(sorted(SSL_MODES))}")


@section
class DatabaseSettings:
    url: str = setting(
        default=DEV_DATABASE_URL,
        help="PostgreSQL URL: postgresql://user:password@host:port/database; the default is the database "
        "`docker compose up -d postgres` starts.",
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
        help="Seconds a statement may run before PostgreSQL cancels it (migrations have no limit).",
        minimum=0.001,
        maximum=3600,
    )


{% endif -%}
{% if cookiecutter.cache == "redis" -%}
# redis://[[user]:password@]host[:port][/db]; rediss:// for TLS.
_REDIS_URL = r"rediss?://[^\s/?#]+(/\d{1,2})?(\?\S*)?"


def check_redis_url(value: str) -> None:
    """A Redis URL without options (the cache.* settings give them)."""
    check_url(value, ("redis", "rediss"))
    if urlsplit(value).query:
        raise ValueError("it has options; set them with the cache settings instead")


@section
class CacheSettings:
    url: str = setting(
        default="redis://localhost:6379/0",
        help="Redis URL: redis://[:password@]host:port/db, rediss:// for TLS.",
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
{% if cookiecutter.broker == "rabbitmq" -%}
# amqp://user:password@host:port/vhost; amqps:// for TLS.
_BROKER_URL = r"amqps?://[^\s/?#]+(/[^\s/?#]*)?"


def check_broker_url(value: str) -> None:
    """An AMQP URL without options (the broker.* settings give them)."""
    check_url(value, ("amqp", "amqps"))
    if urlsplit(value).query:
        raise ValueError("it has options; set them with the broker settings instead")


{% elif cookiecutter.broker == "nats" -%}
# nats://[user:password@]host:port; tls:// for TLS.
_BROKER_URL = r"(nats|tls)://[^\s/?#]+/?"


def check_broker_url(value: str) -> None:
    """A NATS URL without a path or options."""
    check_url(value, ("nats", "tls"))


{% endif -%}
{% if cookiecutter.broker != "none" -%}
@section
class BrokerSettings:
    url: str = setting(
{%- if cookiecutter.broker == "rabbitmq" %}
        default="amqp://guest:guest@localhost:5672/",
        help="RabbitMQ URL: amqp://user:password@host:port/vhost, amqps:// for TLS; the default is "
        "the broker `docker compose up -d rabbitmq` starts.",
        secret=True,
        pattern=(_BROKER_URL, "an AMQP URL: amqp://user:password@host:port/vhost"),
{%- else %}
        default="nats://localhost:4222",
        help="NATS URL: nats://[user:password@]host:port, tls:// for TLS; the default is the server "
        "`docker compose up -d nats` starts.",
        secret=True,
        pattern=(_BROKER_URL, "a NATS URL: nats://host:port"),
{%- endif %}
        check=check_broker_url,
    )
    namespace: str = setting(
        default="{{ cookiecutter.project_slug }}",
{%- if cookiecutter.broker == "rabbitmq" %}
        help="Start of the exchange and queue names (<namespace>.events, <namespace>.commands), so "
        "environments sharing a broker never collide.",
{%- else %}
        help="Start of the subjects and streams (<namespace>.events.*, <namespace>.commands.*), so "
        "environments sharing a server never collide.",
{%- endif %}
        pattern=(r"[a-z0-9][a-z0-9-]{0,62}", "lowercase letters, digits and hyphens (at most 63)"),
    )
    consume: bool = setting(
        default=True,
        help="Whether `serve` also runs the consumers (`worker` always does); false when workers run apart.",
    )
    connect_timeout: float = setting(
        default=5.0, help="Seconds to wait for each connection attempt.", minimum=0.001, maximum=600
    )
    publish_timeout: float = setting(
        default=5.0,
        help="Seconds to wait for the broker to confirm a published message.",
        minimum=0.001,
        maximum=600,
    )
    prefetch: int = setting(
        default=16, help="Messages each process handles at once.", minimum=1, maximum=10_000
    )
    max_message_size: int = setting(
        default=262_144,
        help="Largest command accepted, in bytes: a larger one is dead-lettered unread (the broker's own "
        "limit bounds what reaches the process).",
        minimum=1024,
        maximum=64 * 1024 * 1024,
    )
    max_deliveries: int = setting(
        default=5,
        help="Deliveries of a message whose handling fails before it is dead-lettered.",
        minimum=1,
        maximum=100,
    )
    retry_delay: float = setting(
        default=1.0,
        help="Seconds before a failed message is delivered again; doubled at each further attempt, "
        "at most 60.",
        minimum=0,
        maximum=60,
    )
{%- if cookiecutter.database == "postgresql" %}
    relay_interval: float = setting(
        default=1.0,
        help="Seconds between two looks at the outbox for events to publish (events this process "
        "writes are published at once).",
        minimum=0.01,
        maximum=60,
    )
{%- endif %}


{% endif -%}
@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings, one attribute per section: ``settings.server.port``."""

    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    management: ManagementSettings = dataclasses.field(default_factory=ManagementSettings)
    logging: LoggingSettings = dataclasses.field(default_factory=LoggingSettings)
    metrics: MetricsSettings = dataclasses.field(default_factory=MetricsSettings)
    tracing: TracingSettings = dataclasses.field(default_factory=TracingSettings)
    sentry: SentrySettings = dataclasses.field(default_factory=SentrySettings)
    health: HealthSettings = dataclasses.field(default_factory=HealthSettings)
    build: BuildSettings = dataclasses.field(default_factory=BuildSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    resources: ResourcesSettings = dataclasses.field(default_factory=ResourcesSettings)
    shutdown: ShutdownSettings = dataclasses.field(default_factory=ShutdownSettings)
    upstreams: UpstreamsSettings = dataclasses.field(default_factory=UpstreamsSettings)
{%- if cookiecutter.auth == "oidc" %}
    auth: AuthSettings = dataclasses.field(default_factory=AuthSettings)
{%- endif %}
{%- if cookiecutter.database == "postgresql" %}
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
{%- endif %}
{%- if cookiecutter.cache == "redis" %}
    cache: CacheSettings = dataclasses.field(default_factory=CacheSettings)
{%- endif %}
{%- if cookiecutter.broker != "none" %}
    broker: BrokerSettings = dataclasses.field(default_factory=BrokerSettings)
{%- endif %}


def iter_specs(root: type[Any] = Settings) -> Iterator[SettingSpec]:
    """Every declared setting, section by section, in declaration order."""
    return config.iter_specs(root, ENV_PREFIX)


def load_settings(
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
    root: type[Any] = Settings,
    serves: Serves = "api",
) -> LoadedSettings[Settings]:
    """Resolve every setting from its sources and validate it (see ``chassis.config.load_settings``).

    ``serves`` is what the settings are for (see ``Serves``): only a process that serves
    needs the settings of what it serves.
    """
    loaded = config.load_settings(root, ENV_PREFIX, cli=cli, environ=environ, config_file=config_file)
    if isinstance(loaded.settings, Settings):
        check_across_sections(loaded.settings, serves)
    return loaded


def check_across_sections(settings: Settings, serves: Serves = "api") -> None:
    """What no single setting can check: raises ``SettingsError`` naming the setting.
{%- if cookiecutter.auth == "oidc" %}

    Where tokens are verified (``serves`` the API), the identity provider and the audience
    are required; where upstreams are called (the API, the worker), their credentials.
    Commands that serve nothing (``openapi``, ``config show``...) need neither.
    {% endif %}"""
    port = settings.management.port
    if port is not None and port == settings.server.port:
        raise SettingsError(
            f"invalid setting management.port = {port}: expected a port other than server.port"
        )
{%- if cookiecutter.auth == "oidc" %}
    if serves == "nothing":
        return
    if serves == "api" and settings.auth.issuer is None and settings.auth.jwks_url is None:
        raise SettingsError("missing setting auth.issuer: the identity provider (or auth.jwks_url) is needed")
    if serves == "api" and settings.auth.audience is None:
        raise SettingsError("missing setting auth.audience: what tokens for this API name in aud")
    for field in dataclasses.fields(settings.upstreams):
        upstream = getattr(settings.upstreams, field.name)
        if upstream.credentials != "client_credentials":
            continue
        for name in ("token_url", "client_id", "client_secret"):
            if getattr(upstream, name) is None:
                raise SettingsError(
                    f"missing setting upstreams.{field.name}.{name}: client_credentials needs it"
                )
{%- endif %}


def dump_settings(loaded: LoadedSettings[Any]) -> str:
    """The effective settings as YAML, each key commented with its source; secrets redacted."""
    return config.dump_settings(loaded)
