"""The application factory: everything the app needs arrives through ``settings``."""

from __future__ import annotations

from quart import Quart

from .chassis.health import install_health
from .settings import Settings
from .views import BLUEPRINTS

SETTINGS_KEY = "SETTINGS"


def create_app(settings: Settings) -> Quart:
    """Build the Quart app: chassis first, then the service's own blueprints."""
    app = Quart(__name__)
    app.config[SETTINGS_KEY] = settings
    install_health(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app
