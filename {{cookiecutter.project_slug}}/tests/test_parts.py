"""The app's parts: stored by their type, fetched by their type."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from quart import Quart

from {{ cookiecutter.package_name }}.chassis.health import Health
from {{ cookiecutter.package_name }}.chassis.parts import attach, part_of
from {{ cookiecutter.package_name }}.settings import Settings

from .apps import create_test_app


def test_the_app_holds_its_settings_and_parts_by_type(settings: Settings) -> None:
    app = create_test_app(settings)
    assert part_of(app, Settings) is settings
    assert isinstance(part_of(app, Health), Health)


def test_a_part_is_attached_once() -> None:
    app = Quart(__name__)
    attach(app, Health(show_details=True, registry=CollectorRegistry()))
    with pytest.raises(RuntimeError, match="already has a Health"):
        attach(app, Health(show_details=False, registry=CollectorRegistry()))


def test_a_missing_part_is_named() -> None:
    with pytest.raises(LookupError, match="the app has no Settings"):
        part_of(Quart(__name__), Settings)
