"""Bearer tokens: who may call the API, with which scopes, and what a refusal looks like."""

# ruff: noqa: F811 - the log fixtures of test_observability, imported, are test arguments here

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from joserfc.jwk import RSAKey
from quart import Blueprint
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.chassis import server
from {{ cookiecutter.package_name }}.chassis.auth import (
    VERIFIED_TOKEN_CHARACTERS,
    TokenVerifier,
    public,
    requires_scopes,
)
from {{ cookiecutter.package_name }}.chassis.caller import current_caller
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.openapi import openapi_document
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.chassis.signing_keys import SigningKeys
from {{ cookiecutter.package_name }}.settings import (
    ENV_PREFIX,
    AuthSettings,
    HttpSettings,
    ResourcesSettings,
    Settings,
    load_settings,
)
from {{ cookiecutter.package_name }}.views import BLUEPRINTS

from .apps import create_test_app
from .identity_provider import AUDIENCE, IdentityProvider, make_key, unsigned
from .test_observability import capture_logs, json_logs  # noqa: F401 - fixtures used here

REFETCH_INTERVAL = 0.5
BLUEPRINTS_MODULE = "{{ cookiecutter.package_name }}.app"  # where create_app finds them


@pytest.fixture
def identity_provider() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def settings(identity_provider: IdentityProvider) -> Settings:
    return Settings(auth=identity_provider.settings(keys_refetch_interval=REFETCH_INTERVAL))


async def call(client: QuartClient, token: str | None, path: str = "/items") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    return await client.get(path, headers=headers)


async def assert_refused(response: Any, status: int, challenge: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.content_type == "application/problem+json"
    problem: dict[str, Any] = await response.get_json()
    assert problem["status"] == status
    return problem


async def test_a_valid_token_is_accepted(client: QuartClient, identity_provider: IdentityProvider) -> None:
    assert (await call(client, identity_provider.token())).status_code == 200


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA"])
async def test_tokens_signed_with_ec_and_edwards_keys_are_accepted(
    client: QuartClient, identity_provider: IdentityProvider, algorithm: str
) -> None:
    key = make_key(algorithm, kid=f"key-{algorithm}")
    identity_provider.keys.append(key)
    await asyncio.sleep(REFETCH_INTERVAL)  # the new key is fetched on first sight, once allowed
    assert (await call(client, identity_provider.token(key=key))).status_code == 200


async def test_no_token_is_a_401_without_an_error_code(client: QuartClient) -> None:
    """RFC 6750, section 3.1: a request with no credentials gets the bare challenge."""
    await assert_refused(await call(client, None), 401, "Bearer")
    response = await client.get("/items", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    await assert_refused(response, 401, "Bearer")


def _now() -> int:
    return int(time.time())


def _segment(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _bad_tokens(provider: IdentityProvider) -> dict[str, str]:
    rsa_key = provider.keys[0]
    assert isinstance(rsa_key, RSAKey)
    # The classic confusion attack: HMAC keyed with the public key the JWKS publishes.
    header = _segment({"alg": "HS256", "kid": "key-1"})
    claims = _segment({"iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory", "exp": _now() + 300})
    mac = hmac.new(rsa_key.as_pem(private=False), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    hmac_with_public_key = f"{header}.{claims}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    valid = provider.token()
    header, body, _ = valid.split(".")
    other = provider.token(sub="mallory").split(".")[1]
    return {
        "malformed": "not-a-token",
        "expired": provider.token(exp=_now() - 3600),
        "exp past any float": provider.token(exp=10**400),
        "exp further ahead than auth.max_token_lifetime": provider.token(exp=_now() + 86_400 + 3600),
        "not yet valid": provider.token(nbf=_now() + 3600),
        "wrong issuer": provider.token(iss="https://idp.attacker.example"),
        "wrong audience": provider.token(aud="https://another-api.example"),
        "no subject": provider.token(sub=None),
        "alg none": unsigned(valid, alg="none", typ="JWT"),
        "HS256 with the public key": hmac_with_public_key,
        "changed body": f"{header}.{other}.{valid.split('.')[2]}",
        "signed by an unpublished key": provider.token(key=make_key(kid="key-1")),
        "no signature": f"{header}.{body}.",
    }


async def test_invalid_tokens_are_401_invalid_token(
    client: QuartClient, identity_provider: IdentityProvider
) -> None:
    for name, token in _bad_tokens(identity_provider).items():
        response = await call(client, token)
        problem = await assert_refused(response, 401, 'Bearer error="invalid_token"')
        assert "Traceback" not in json.dumps(problem), name
    metrics = await (await client.get("/metrics")).get_data(as_text=True)
    for reason in ("expired", "not_yet_valid", "issuer", "audience", "algorithm", "signature", "malformed"):
        assert f'auth_rejected_requests_total{% raw %}{{reason="{reason}"}}{% endraw %}' in metrics, reason


async def test_a_token_without_the_scope_is_403_insufficient_scope(
    client: QuartClient, identity_provider: IdentityProvider
) -> None:
    reader = identity_provider.token(scope="items:read")
    assert (await call(client, reader)).status_code == 200
    lamp = {"name": "lamp", "price_cents": 1}
    response = await client.post("/items", json=lamp, headers={"Authorization": f"Bearer {reader}"})
    await assert_refused(response, 403, 'Bearer error="insufficient_scope", scope="items:write"')
    writer = identity_provider.token(scope=None, scp=["items:write"])  # scp, as a list: Entra ID, Okta
    response = await client.post("/items", json=lamp, headers={"Authorization": f"Bearer {writer}"})
    assert response.status_code == 201


async def test_a_new_key_is_fetched_once_and_forged_key_ids_cost_no_more_fetches(
    client: QuartClient, identity_provider: IdentityProvider
) -> None:
    rotated = make_key(kid="key-2")
    token = identity_provider.token(key=rotated)
    await asyncio.sleep(REFETCH_INTERVAL)
    fetches = identity_provider.jwks_requests
    await assert_refused(await call(client, token), 401, 'Bearer error="invalid_token"')
    assert identity_provider.jwks_requests == fetches + 1, "an unknown key id causes one fetch"

    identity_provider.keys.append(rotated)  # the identity provider rotates the key in
    await assert_refused(await call(client, token), 401, 'Bearer error="invalid_token"')
    assert identity_provider.jwks_requests == fetches + 1, "not again within the interval"
    await asyncio.sleep(REFETCH_INTERVAL)
    assert (await call(client, token)).status_code == 200
    assert identity_provider.jwks_requests == fetches + 2

    await asyncio.sleep(REFETCH_INTERVAL)
    forged = [identity_provider.token(key=make_key(kid=f"forged-{uuid.uuid4()}")) for _ in range(3)] * 20
    fetches = identity_provider.jwks_requests
    for _ in range(3):  # concurrent floods, one after the other (within the interval)
        responses = await asyncio.gather(*(call(client, token) for token in forged))
        assert {response.status_code for response in responses} == {401}
    assert identity_provider.jwks_requests == fetches + 1, "a flood of forged key ids: one fetch"


async def test_forged_key_ids_never_hold_valid_requests_back_while_the_identity_provider_is_slow(
    identity_provider: IdentityProvider,
) -> None:
    """Requests with an unknown key id do not wait, each holding a place, for a slow fetch."""
    settings = Settings(
        auth=identity_provider.settings(keys_refetch_interval=REFETCH_INTERVAL),
        http=HttpSettings(max_concurrent_requests=8),
    )
    app = create_test_app(settings)
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        client = app.test_client()
        await asyncio.sleep(REFETCH_INTERVAL)
        identity_provider.jwks_delay = 2.0
        forged = identity_provider.token(key=make_key("ES256", kid="forged"))
        forged_calls = [asyncio.create_task(call(client, forged)) for _ in range(6)]
        await asyncio.sleep(0.2)  # the first of them is fetching the keys, slowly
        started = time.monotonic()
        valid = await asyncio.gather(*(call(client, identity_provider.token()) for _ in range(5)))
        valid_seconds = time.monotonic() - started
        refused = await asyncio.gather(*forged_calls)
    assert [response.status_code for response in valid] == [200] * 5
    assert valid_seconds < 1.0
    assert {response.status_code for response in refused} == {401}


async def test_the_tokens_remembered_are_bounded_by_their_length_too(
    identity_provider: IdentityProvider,
) -> None:
    """Long tokens (large claims) cannot fill the memory: at most VERIFIED_TOKEN_CHARACTERS of them."""
    settings = identity_provider.settings()
    keys = SigningKeys(settings)
    await keys.start()
    try:
        verifier = TokenVerifier(settings, keys)
        groups = [f"group-{index:04d}-{'x' * 30}" for index in range(240)]  # a realistic groups claim
        for index in range(600):
            verifier.verify(identity_provider.token(sub=f"user-{index}", groups=groups))
    finally:
        await keys.stop()
    # Read from inside: nothing outside the verifier may see what it remembers.
    assert verifier._verified_characters <= VERIFIED_TOKEN_CHARACTERS
    assert 100 < len(verifier._verified) < 600


async def test_held_keys_keep_serving_while_the_identity_provider_is_down(
    client: QuartClient, identity_provider: IdentityProvider
) -> None:
    token = identity_provider.token()
    assert (await call(client, token)).status_code == 200
    identity_provider.stop()
    assert (await call(client, identity_provider.token(sub="bob"))).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


async def test_readiness_waits_for_the_keys(identity_provider: IdentityProvider) -> None:
    identity_provider.stop()  # nothing answers at its address
    settings = Settings(auth=identity_provider.settings(), resources=ResourcesSettings(start_timeout=60))
    app = create_test_app(settings)
    async with app.test_app():
        await asyncio.sleep(0.5)
        assert (await app.test_client().get("/health/ready")).status_code == 503
        assert (await app.test_client().get("/health/live")).status_code == 200


async def test_the_handler_gets_its_caller_and_the_log_names_it_never_the_token(
    identity_provider: IdentityProvider,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    json_logs: io.StringIO,
) -> None:
    blueprint = Blueprint("whoami", __name__)

    @blueprint.get("/whoami")
    @requires_scopes("profile")
    async def whoami() -> dict[str, Any]:
        caller = current_caller()
        return {"subject": caller.subject, "client_id": caller.client_id, "scopes": sorted(caller.scopes)}

    @blueprint.get("/hello")
    @public
    async def hello() -> dict[str, str]:
        return {"hello": "anyone"}

    monkeypatch.setattr(f"{BLUEPRINTS_MODULE}.BLUEPRINTS", [*BLUEPRINTS, blueprint])
    app = create_test_app(settings)
    token = identity_provider.token(scope="profile items:read")
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        client = app.test_client()
        response = await call(client, token, "/whoami")
        assert await response.get_json() == {
            "subject": "alice",
            "client_id": "web-app",
            "scopes": ["items:read", "profile"],
        }
        assert (await client.get("/hello", headers={"Authorization": ""})).status_code == 200
        document = openapi_document(app)
    access = [json.loads(line) for line in json_logs.getvalue().splitlines() if '"access"' in line]
    whoami_line = next(line for line in access if line["path"] == "/whoami")
    assert (whoami_line["subject"], whoami_line["client_id"]) == ("alice", "web-app")
    assert token not in json_logs.getvalue()
    assert token.split(".")[2] not in json_logs.getvalue()

    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/whoami"]["get"]["security"] == [{"bearer": ["profile"]}]
    assert document["paths"]["/hello"]["get"]["security"] == []
    assert document["paths"]["/items"]["post"]["security"] == [{"bearer": ["items:write"]}]


def test_the_settings_need_an_identity_provider_and_an_audience() -> None:
    from {{ cookiecutter.package_name }}.chassis.config import SettingsError

    with pytest.raises(SettingsError, match=r"missing setting auth\.issuer"):
        load_settings(environ={})
    with pytest.raises(SettingsError, match=r"missing setting auth\.audience"):
        load_settings(environ={"{{ cookiecutter.package_name | upper }}_AUTH_ISSUER": "https://idp.example"})
    with pytest.raises(SettingsError, match=r"auth\.algorithms"):
        load_settings(environ={"{{ cookiecutter.package_name | upper }}_AUTH_ALGORITHMS": "RS256,HS256"})
    assert AuthSettings().algorithms == "RS256,ES256,EdDSA"


# The commands that serve nothing, with their arguments (migrate --sql connects to nothing):
# they run without an identity provider, in CI or on a laptop, as far as the service has them.
SERVING_NOTHING = {"openapi": [], "config": ["show"], "asyncapi": [], "migrate": ["--sql"]}


@pytest.fixture
def no_identity_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    """No auth setting anywhere; ``serve`` and ``worker`` record their settings instead of serving.

    The commands configure logging into the runner's output: it is reset after, as capture_logs
    does, so later tests' logs reach their own stdout."""
    monkeypatch.delenv(f"{ENV_PREFIX}_AUTH_ISSUER")
    monkeypatch.delenv(f"{ENV_PREFIX}_AUTH_AUDIENCE")
    served: list[Settings] = []

    def fake_serve(app_factory: Any, settings: Settings, *, api: bool = True) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(server, "serve", fake_serve)
    yield served
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize("command", [name for name in SERVING_NOTHING if name in cli.main.commands])
def test_the_commands_that_serve_nothing_need_no_identity_provider(
    command: str, no_identity_provider: list[Settings]
) -> None:
    result = CliRunner().invoke(cli.main, [command, *SERVING_NOTHING[command]])
    assert result.exit_code == 0, result.output
    assert result.output.strip()
    assert "auth.issuer" not in result.output


@pytest.mark.parametrize("command", [["serve"], ["config", "check"]])
def test_serving_the_api_needs_the_identity_provider(
    command: list[str], no_identity_provider: list[Settings]
) -> None:
    result = CliRunner().invoke(cli.main, command)
    assert result.exit_code == 2
    assert the_one_error(result.stderr).startswith("missing setting auth.issuer: ")
    assert no_identity_provider == []
    result = CliRunner().invoke(cli.main, command, env={f"{ENV_PREFIX}_AUTH_ISSUER": "https://idp.example"})
    assert result.exit_code == 2
    assert the_one_error(result.stderr).startswith("missing setting auth.audience: ")


def the_one_error(stderr: str) -> str:
    """The one line that stopped a command: ``serve``'s is a JSON log line (the logs' default format),
    ``config check``'s plain."""
    (line,) = stderr.splitlines()
    return str(json.loads(line)["event"]) if line.startswith("{") else line.removeprefix("error: ")
{%- if cookiecutter.broker != "none" %}


def test_the_worker_verifies_no_token_and_needs_no_identity_provider(
    no_identity_provider: list[Settings],
) -> None:
    result = CliRunner().invoke(cli.main, ["worker"])
    assert result.exit_code == 0, result.output
    assert [settings.auth.issuer for settings in no_identity_provider] == [None]
{%- endif %}
