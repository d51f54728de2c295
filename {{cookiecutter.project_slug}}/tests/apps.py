"""The app as most tests want it: items kept in memory, wherever the service itself keeps them."""

from __future__ import annotations

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.chassis.limits import TimeLimitedQuart
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository
from {{ cookiecutter.package_name }}.settings import Settings


def create_test_app(settings: Settings) -> TimeLimitedQuart:
    """``create_app`` with in-memory services: for tests of anything but where items are kept."""
    return create_app(settings, services=Services(items=InMemoryItemRepository()))
