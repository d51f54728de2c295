"""The identity provider's signing keys (its JWKS): fetched at start, held, refreshed.

- On start the keys are fetched from ``auth.jwks_url``, or from the ``jwks_uri`` that
  ``<auth.issuer>/.well-known/openid-configuration`` names (the document must name the same
  issuer).  A failed fetch is retried with backoff, within ``resources.start_timeout``:
  readiness waits for the keys, as for any resource.
- Every ``auth.keys_refresh_interval`` they are fetched again in the background.  A fetch
  that fails keeps the keys held and is logged (throttled): while the identity provider is
  out, requests whose key is held are still served.
- A token signed with a key that is not held may cause one more fetch (a key rotation), at
  most once per ``auth.keys_refetch_interval`` and one at a time: a flood of tokens with
  forged key ids costs the identity provider nothing more.

Only public signature keys are kept (RSA, EC and OKP keys whose ``use`` is not ``enc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..settings import AuthSettings
from .lifecycle import Resource, ResourceCheck, ResourceUnavailableError
from .logging import Throttled, get_logger

DISCOVERY_PATH = "/.well-known/openid-configuration"
FETCH_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
# A JWKS holds a few keys (a few kB); a larger answer is not one.
MAX_DOCUMENT_SIZE = 1_048_576
SIGNATURE_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
FIRST_RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0

log = get_logger(__name__)


class SigningKeysError(Exception):
    """The keys could not be fetched; the message says why, in one line."""


class SigningKeysUnavailableError(ResourceUnavailableError):
    """A request came before the keys were fetched (the service is not ready yet): a 503."""

    resource = "identity provider's signing keys"


class SigningKeys(Resource):
    """The keys tokens are verified with; ``key_set`` is always the last good set fetched."""

    def __init__(self, settings: AuthSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._jwks_url = settings.jwks_url
        self._key_set: KeySet | None = None
        # Bumped at each new key set, so callers can tell that keys changed under them.
        self.generation = 0
        self._last_fetch = self._last_success = -float("inf")
        self._fetching = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._failures = Throttled(log)

    @property
    def key_set(self) -> KeySet:
        if self._key_set is None:
            raise SigningKeysUnavailableError("the signing keys are not fetched yet")
        return self._key_set

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT, transport=self._transport)
        try:
            await self._fetch_until_done()
        except BaseException:  # timed out or cancelled: stop() is not called for what never started
            await self._client.aclose()
            raise
        self._refresher = asyncio.create_task(self._refresh_periodically(), name="signing-keys-refresh")

    async def _fetch_until_done(self) -> None:
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                await self._fetch()
                return
            except SigningKeysError as error:
                self._failures.warning("signing keys unavailable; retrying", error=str(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._client is not None:
            await self._client.aclose()

    def health_checks(self) -> list[ResourceCheck]:
        # Not critical: requests whose key is held are served while the identity provider is out.
        return [ResourceCheck("fresh", self._fresh, critical=False)]

    async def _fresh(self) -> bool:
        return time.monotonic() - self._last_success < 2 * self._settings.keys_refresh_interval

    async def refetch(self) -> None:
        """Fetch the keys again for a token signed with an unknown key, if that is allowed now.

        A caller that comes while a fetch is under way neither waits for it nor starts another:
        its token is refused now (a client tries again). Otherwise requests with forged key
        ids would wait, each holding a place among ``http.max_concurrent_requests``, for as
        long as a slow identity provider takes, and valid requests would be shed meanwhile.
        """
        if self._fetching.locked():
            return
        seen = self.generation
        async with self._fetching:
            if self.generation != seen:
                return  # another caller fetched new keys meanwhile
            if time.monotonic() - self._last_fetch < self._settings.keys_refetch_interval:
                return
            try:
                await self._fetch_locked()
            except SigningKeysError as error:
                self._failures.warning("signing keys could not be fetched again", error=str(error))

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.keys_refresh_interval)
            async with self._fetching:
                try:
                    await self._fetch_locked()
                except SigningKeysError as error:
                    self._failures.warning(
                        "signing keys could not be refreshed; keeping those held", error=str(error)
                    )

    async def _fetch(self) -> None:
        async with self._fetching:
            await self._fetch_locked()

    async def _fetch_locked(self) -> None:
        self._last_fetch = time.monotonic()
        if self._jwks_url is None:
            self._jwks_url = await self._discover_jwks_url()
        document = await self._get_json(self._jwks_url)
        key_set = _signature_keys(document)
        if self._key_set is None or key_set.as_dict() != self._key_set.as_dict():
            self._key_set = key_set
            self.generation += 1
            log.info("signing keys fetched", keys=[key.kid for key in key_set.keys], url=self._jwks_url)
        self._last_success = time.monotonic()

    async def _discover_jwks_url(self) -> str:
        issuer = self._settings.issuer
        if issuer is None:  # settings require one of issuer and jwks_url
            raise SigningKeysError("neither auth.issuer nor auth.jwks_url is set")
        document = await self._get_json(issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != issuer:
            raise SigningKeysError(f"the discovery document names another issuer: {document.get('issuer')!r}")
        jwks_url = document.get("jwks_uri")
        if not isinstance(jwks_url, str) or not jwks_url.startswith(("https://", "http://")):
            raise SigningKeysError("the discovery document names no jwks_uri")
        return jwks_url

    async def _get_json(self, url: str) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("the signing keys are not started")
        try:
            async with self._client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise SigningKeysError(f"{url} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_SIZE:
                        raise SigningKeysError(f"{url} answered more than {MAX_DOCUMENT_SIZE} bytes")
        except httpx.HTTPError as error:
            raise SigningKeysError(f"{url}: {type(error).__name__}: {error}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise SigningKeysError(f"{url} answered something other than JSON") from None
        if not isinstance(document, dict):
            raise SigningKeysError(f"{url} answered JSON that is not an object")
        return document


def _signature_keys(document: dict[str, Any]) -> KeySet:
    """The public signature keys of a JWKS document (others are left out, as RFC 7517 allows)."""
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise SigningKeysError("the JWKS has no list of keys")
    usable = [
        key
        for key in keys
        if isinstance(key, dict) and key.get("kty") in SIGNATURE_KEY_TYPES and key.get("use", "sig") == "sig"
    ]
    if not usable:
        raise SigningKeysError("the JWKS holds no public signature key")
    try:
        key_set = KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError) as error:
        raise SigningKeysError(f"the JWKS holds a key that cannot be read: {error}") from None
    if any(key.is_private for key in key_set.keys):
        raise SigningKeysError("the JWKS holds a private key; only public keys belong there")
    return key_set
