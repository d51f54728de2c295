"""The app as most tests want it: items kept in memory, wherever the service itself keeps them."""

from __future__ import annotations
{%- if cookiecutter.auth == "oidc" %}

import dataclasses
{%- endif %}

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.chassis.limits import TimeLimitedQuart
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository
from {{ cookiecutter.package_name }}.settings import Settings
{%- if cookiecutter.auth == "oidc" %}

from .identity_provider import ClientWithToken, shared_identity_provider
{%- endif %}


def create_test_app(settings: Settings) -> TimeLimitedQuart:
    """``create_app`` with in-memory services: for tests of anything but where items are kept."""
    return create_app_from(settings, services=Services(items=InMemoryItemRepository()))


def create_app_from(settings: Settings, services: Services | None = None) -> TimeLimitedQuart:
    """``create_app`` as every test builds the app (``services``: built from ``settings`` if not given).
{%- if cookiecutter.auth == "oidc" %}

    Unless ``settings`` name an identity provider, the app trusts the tests' shared stand-in,
    and its test clients send that provider's token, which grants every scope.
    {% endif %}"""
{%- if cookiecutter.auth == "oidc" %}
    if settings.auth.issuer is None and settings.auth.jwks_url is None:
        settings = dataclasses.replace(settings, auth=shared_identity_provider().settings())
    app = create_app(settings, services=services)
    app.test_client_class = ClientWithToken  # type: ignore[assignment] # as Quart declares its own
    return app
{%- else %}
    return create_app(settings, services=services)
{%- endif %}
