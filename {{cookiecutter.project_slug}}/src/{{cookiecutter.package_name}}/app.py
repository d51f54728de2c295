"""The application factory: everything the app needs arrives through ``settings``."""

from __future__ import annotations

from quart import Quart

from . import DISTRIBUTION_NAME, __version__
from .chassis import info
from .chassis.health import Health, install_health
from .chassis.instrumentation import install_instrumentation
from .chassis.lifecycle import Lifecycle, install_lifecycle
from .chassis.metrics import HttpMetrics, install_metrics
from .chassis.tracing import Tracing
from .settings import SETTINGS_KEY, Settings
from .views import BLUEPRINTS


def create_app(settings: Settings) -> Quart:
    """Build the Quart app: the chassis first, then the service's own blueprints."""
    app = Quart(__name__)
    app.config[SETTINGS_KEY] = settings

    health = Health(show_details=settings.health.show_details)
    lifecycle = Lifecycle(health)
    tracing = Tracing(settings.tracing, service=DISTRIBUTION_NAME, version=__version__)
    metrics = HttpMetrics(service=DISTRIBUTION_NAME, version=__version__, commit=settings.build.commit)
    lifecycle.on_shutdown(tracing.shutdown)

    install_instrumentation(
        app, metrics=metrics, tracing=tracing, logging=settings.logging, metrics_path=settings.metrics.path
    )
    install_lifecycle(app, lifecycle)
    install_health(app, health)
    install_metrics(app, metrics, settings.metrics.path)
    app.register_blueprint(info.blueprint)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
