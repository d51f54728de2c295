"""The application factory: everything the app needs arrives through ``settings``."""

from __future__ import annotations

from . import DISTRIBUTION_NAME, __version__
from .api_access import install_api_access
from .chassis import api_docs
from .chassis.config import secret_values
from .chassis.error_reporting import ErrorReporting
from .chassis.errors import install_errors
from .chassis.event_loop_lag import EventLoopLag
from .chassis.health import Health, install_health
from .chassis.http_client import HttpClientMetrics, Upstreams
from .chassis.info import info_blueprint, running_commit
from .chassis.instrumentation import PROBE_ROUTES, install_instrumentation
from .chassis.json_body import install_json_body
from .chassis.json_responses import install_json_responses
from .chassis.lifecycle import Lifecycle, install_lifecycle
from .chassis.limits import TimeLimitedQuart, install_limits
from .chassis.management import install_management_port
from .chassis.metrics import HttpMetrics, install_metrics
from .chassis.openapi import install_openapi
from .chassis.parts import attach
from .chassis.proxies import install_proxy_headers
from .chassis.request_guard import RequestGuard
from .chassis.security import install_cors
from .chassis.tracing import Tracing
from .services import Services, build_services
from .settings import ENV_PREFIX, Settings
from .views import BLUEPRINTS


def create_app(settings: Settings, services: Services | None = None, *, api: bool = True) -> TimeLimitedQuart:
    """Build the Quart app: the chassis, the service's resources, then its blueprints.

    ``services`` replaces the resources built from ``settings`` (tests substitute them so).
    Without ``api`` (a worker), the app serves health, metrics and info only, beside the
    services' background work.
    """
    app = TimeLimitedQuart(__name__, request_timeout=settings.http.request_timeout)
    attach(app, settings)

    commit = running_commit(settings.build)
    metrics = HttpMetrics(service=DISTRIBUTION_NAME, version=__version__, commit=commit)
    health = Health(show_details=settings.health.show_details, registry=metrics.registry)
    lifecycle = Lifecycle(
        health,
        start_timeout=settings.resources.start_timeout,
        stop_timeout=settings.resources.stop_timeout,
    )
    tracing = Tracing(settings.tracing, service=DISTRIBUTION_NAME, version=__version__)
    upstreams = Upstreams.from_settings(
        settings.upstreams, metrics=HttpClientMetrics(metrics.registry), tracing=tracing
    )
    if services is None:
        services = build_services(settings, registry=metrics.registry, tracing=tracing)

    # Stopped last, so spans and error reports of the other resources' last calls still leave.
    lifecycle.add("tracing", tracing)
    lifecycle.add("error_reporting", error_reporting_of(settings))
    lifecycle.add("event_loop_lag", EventLoopLag(metrics.registry))
    for name, client in upstreams.items():
        lifecycle.add(f"upstream.{name}", client)
    for name, resource in services.backing.items():
        lifecycle.add(name, resource)
    lifecycle.add("items", services.items, depends_on=tuple(services.backing))
    for name, resource in services.background.items():
        lifecycle.add(name, resource, depends_on=(*services.backing, "items"))
    attach(app, upstreams)
    attach(app, services)

    # ASGI middleware, innermost first: the instrumentation, which asks the guard before the
    # app runs and counts and logs every request (the guard's refusals too), then the proxies'
    # view of the client.
    probes_and_scrapes = frozenset((*PROBE_ROUTES, settings.metrics.path))
    install_instrumentation(
        app,
        guard=RequestGuard(health, settings.http, always_admitted=probes_and_scrapes),
        metrics=metrics,
        tracing=tracing,
        logging=settings.logging,
        metrics_path=settings.metrics.path,
    )
    install_proxy_headers(app, settings.http)
    install_errors(app, docs_location=api_docs.docs_location(settings.management.port) if api else None)
    install_limits(app, settings.http)
    install_json_body(app, settings.http)
    install_cors(app, settings.http)
    install_lifecycle(app, lifecycle)
    install_management_port(app, settings)
    install_health(app, health)
    install_metrics(app, metrics, settings.metrics.path)
    app.register_blueprint(info_blueprint(settings))
    if api:
        install_openapi(app, BLUEPRINTS, title=DISTRIBUTION_NAME, version=__version__)
        install_api_access(app, settings, lifecycle, BLUEPRINTS, registry=metrics.registry)
        app.register_blueprint(api_docs.blueprint)
        for blueprint in BLUEPRINTS:
            app.register_blueprint(blueprint)
    install_json_responses(app)  # after quart-schema's provider, whose pydantic support it keeps
    return app


def error_reporting_of(settings: Settings) -> ErrorReporting:
    """Sentry, as ``settings.sentry`` says, with every secret setting kept out of the reports."""
    return ErrorReporting(
        settings.sentry.dsn,
        environment=settings.sentry.environment,
        release=f"{DISTRIBUTION_NAME}@{__version__}+{running_commit(settings.build)}",
        secrets=secret_values(settings, ENV_PREFIX),
    )
