"""What the calls to an upstream carry, by ``upstreams.<name>.credentials``.

- ``none``: no ``Authorization`` header.
- ``forward``: the bearer token of the request being handled, so the upstream sees the same
  caller (none outside a request, or on a public route).
- ``client_credentials``: a token of this service's own, from ``token_url`` by the OAuth 2.0
  client credentials grant (RFC 6749, section 4.4; the client authenticates with HTTP Basic).
  It is kept until shortly before it expires (``REFRESH_MARGIN``), and fetched by one call at
  a time; an upstream's 401 drops it, so the next call fetches a new one.  A token endpoint
  that fails makes the call fail as the upstream would (``UpstreamError``: a 503).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import httpx

from ..settings import UpstreamSettings
from .caller import current_caller_or_none

# A token is fetched again this many seconds before it expires (at most a tenth of its lifetime).
REFRESH_MARGIN = 30.0
# For a token endpoint that gives no expires_in.
DEFAULT_LIFETIME = 300.0


class TokenEndpointError(Exception):
    """The token endpoint gave no token; the message says why, never a secret."""


class Credentials(Protocol):
    async def headers(self) -> dict[str, str]:
        """The headers a call carries."""
        ...

    def refused(self) -> None:
        """The upstream answered 401 to the headers last given."""
        ...

    async def aclose(self) -> None: ...


class NoCredentials:
    async def headers(self) -> dict[str, str]:
        return {}

    def refused(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class ForwardedToken(NoCredentials):
    async def headers(self) -> dict[str, str]:
        caller = current_caller_or_none()
        return {} if caller is None else {"Authorization": f"Bearer {caller.token}"}


class ClientCredentials:
    def __init__(
        self, settings: UpstreamSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.token_url is None or settings.client_id is None or settings.client_secret is None:
            raise ValueError("client_credentials needs token_url, client_id and client_secret")
        self._token_url = settings.token_url
        self._form = {"grant_type": "client_credentials"}
        if settings.token_scope:
            self._form["scope"] = settings.token_scope
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(settings.client_id, settings.client_secret),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            transport=transport,
        )
        self._token: str | None = None
        self._refresh_at = 0.0
        self._fetching = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._current_token()}"}

    def refused(self) -> None:
        self._token = None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _current_token(self) -> str:
        token = self._token
        if token is not None and time.monotonic() < self._refresh_at:
            return token
        async with self._fetching:
            if self._token is not None and time.monotonic() < self._refresh_at:
                return self._token  # fetched while this call waited
            token, lifetime = await self._fetch()
            self._token = token
            self._refresh_at = time.monotonic() + lifetime - min(REFRESH_MARGIN, lifetime / 10)
            return token

    async def _fetch(self) -> tuple[str, float]:
        try:
            response = await self._client.post(self._token_url, data=self._form)
        except httpx.HTTPError as error:
            raise TokenEndpointError(f"token endpoint: {type(error).__name__}") from None
        if response.status_code != 200:
            raise TokenEndpointError(f"token endpoint answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise TokenEndpointError("token endpoint answered something other than JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenEndpointError("token endpoint answered no access_token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise TokenEndpointError("token endpoint answered a token that is not a bearer token")
        lifetime = body.get("expires_in", DEFAULT_LIFETIME)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_LIFETIME
        return token, float(lifetime)


def credentials_for(
    settings: UpstreamSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Credentials:
    """The credentials ``settings.credentials`` names."""
    if settings.credentials == "forward":
        return ForwardedToken()
    if settings.credentials == "client_credentials":
        return ClientCredentials(settings, transport=transport)
    return NoCredentials()
