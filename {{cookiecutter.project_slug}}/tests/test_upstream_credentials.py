"""What calls to upstreams carry: the caller's token, or this service's own from a token endpoint."""

# ruff: noqa: F811 - the fixtures of test_http_client, imported, are this module's test arguments

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from quart import Blueprint, current_app

from {{ cookiecutter.package_name }}.chassis.config import SettingsError
from {{ cookiecutter.package_name }}.chassis.http_client import UpstreamError, Upstreams
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, load_settings

from .apps import create_test_app
from .identity_provider import CLIENT_ID, CLIENT_SECRET, IdentityProvider, shared_identity_provider
from .test_http_client import (  # noqa: F401 - fixtures used here
    CatalogUpstreams,
    SettingsWithCatalog,
    Upstream,
    make_client,
    registry,
    settings_for,
    upstream,
)


@pytest.fixture
def identity_provider() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


def authorization_seen(upstream: Upstream) -> list[str | None]:
    return [
        {name.lower(): value for name, value in seen.headers.items()}.get("authorization")
        for seen in upstream.seen
    ]


async def test_forward_sends_the_callers_token(upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    blueprint = Blueprint("catalog_proxy", __name__)

    @blueprint.get("/product")
    async def product() -> dict[str, Any]:
        response = await part_of(current_app, Upstreams)["catalog"].get("/products/1")
        return {"status": response.status_code}

    monkeypatch.setattr("{{ cookiecutter.package_name }}.app.BLUEPRINTS", [blueprint])
    catalog = settings_for(upstream.url, credentials="forward")
    app = create_test_app(SettingsWithCatalog(upstreams=CatalogUpstreams(catalog=catalog)))
    token = shared_identity_provider().token(sub="carol")
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        response = await app.test_client().get("/product", headers={"Authorization": f"Bearer {token}"})
    assert await response.get_json() == {"status": 200}
    assert authorization_seen(upstream) == [f"Bearer {token}"]


def client_credentials(provider: IdentityProvider, **overrides: Any) -> dict[str, Any]:
    return {
        "credentials": "client_credentials",
        "token_url": f"{provider.issuer}/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **overrides,
    }


async def test_client_credentials_fetch_a_token_once_and_keep_it(
    upstream: Upstream, identity_provider: IdentityProvider, make_client: Any
) -> None:
    settings = client_credentials(identity_provider, token_scope="catalog:read")  # noqa: S106 - a scope
    client = await make_client(upstream.url, **settings)
    await asyncio.gather(*(client.get("/products/1") for _ in range(5)))
    assert identity_provider.token_requests == 1, "concurrent calls share one fetch"
    seen = authorization_seen(upstream)
    assert len(set(seen)) == 1
    token = str(seen[0]).removeprefix("Bearer ")
    claims = jwt.decode(token, identity_provider.keys[0]).claims
    assert claims["sub"] == CLIENT_ID
    assert claims["scope"] == "catalog:read", "the scope asked for"

    upstream.script = [401]  # the upstream no longer takes it (revoked): the next call fetches another
    assert (await client.get("/products/1")).status_code == 401
    await client.get("/products/1")
    assert identity_provider.token_requests == 2


async def test_a_token_is_fetched_again_shortly_before_it_expires(
    upstream: Upstream, identity_provider: IdentityProvider, make_client: Any
) -> None:
    identity_provider.token_lifetime = 1  # fetched again after 0.9 s
    client = await make_client(upstream.url, **client_credentials(identity_provider))
    await client.get("/products/1")
    await client.get("/products/1")
    assert identity_provider.token_requests == 1
    await asyncio.sleep(1)
    await client.get("/products/1")
    assert identity_provider.token_requests == 2


async def test_a_failing_token_endpoint_fails_the_call_without_reaching_the_upstream(
    upstream: Upstream, identity_provider: IdentityProvider, make_client: Any
) -> None:
    identity_provider.token_status = 503
    client = await make_client(upstream.url, **client_credentials(identity_provider))
    with pytest.raises(UpstreamError, match="token endpoint answered 503"):
        await client.get("/products/1")
    wrong = client_credentials(identity_provider, client_secret="nope")  # noqa: S106 - a wrong one
    wrong_secret = await make_client(upstream.url, **wrong)
    with pytest.raises(UpstreamError, match="token endpoint answered 401") as refused:
        await wrong_secret.get("/products/1")
    assert "nope" not in str(refused.value)
    assert upstream.seen == []


def test_client_credentials_need_a_token_url_a_client_id_and_a_secret() -> None:
    provider = shared_identity_provider()
    environ = {**provider.environment(), f"{ENV_PREFIX}_UPSTREAMS_CATALOG_CREDENTIALS": "client_credentials"}
    with pytest.raises(SettingsError, match=r"^missing setting upstreams\.catalog\.token_url: "):
        load_settings(environ=environ, root=SettingsWithCatalog)
