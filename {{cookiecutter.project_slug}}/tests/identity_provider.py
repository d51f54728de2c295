"""A stand-in identity provider for the tests: discovery, signing keys and tokens, on 127.0.0.1.

It serves ``/.well-known/openid-configuration``, ``/jwks`` and ``/token`` (the client
credentials grant) from a thread, signs tokens with keys it makes, and counts the requests
for its keys and tokens, so a test can rotate a key in, or watch how often the service asks.
Tests get one from the ``identity_provider`` fixture; apps built by ``tests/apps.py`` trust
the shared one unless their settings name another, and their test clients send its token.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, AuthSettings

AUDIENCE = "https://api.example.test"
ALL_SCOPES = "items:read items:write"
CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"
SIGNING = JWSRegistry(algorithms=["RS256", "ES256", "EdDSA"])


def make_key(algorithm: str = "RS256", kid: str = "key-1") -> Key:
    """A new private key for ``algorithm`` (RS256, ES256 or EdDSA) named ``kid``."""
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": algorithm})
    if algorithm == "EdDSA":
        return OKPKey.generate_key("Ed25519", parameters={"kid": kid, "alg": algorithm})
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": algorithm})


@dataclasses.dataclass
class IdentityProvider:
    keys: list[Key] = dataclasses.field(default_factory=lambda: [make_key()])
    jwks_requests: int = 0
    token_requests: int = 0
    # What /token answers with (a test may make it fail or shorten the lifetime).
    token_status: int = 200
    token_lifetime: int = 3600
    issuer: str = ""  # known once started
    _server: ThreadingHTTPServer | None = None

    def settings(self, **overrides: Any) -> AuthSettings:
        """Auth settings that trust this identity provider."""
        return AuthSettings(**{"issuer": self.issuer, "audience": AUDIENCE, **overrides})

    def token(
        self,
        *,
        scope: str | None = ALL_SCOPES,
        key: Key | None = None,
        header: dict[str, Any] | None = None,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        """A token signed with ``key`` (the first published key), for the subject "alice"."""
        key = key or self.keys[0]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "client_id": "web-app",
            "iat": now,
            "exp": int(now + lifetime),
        }
        if scope is not None:
            body["scope"] = scope
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        protected = {"alg": key.alg or "RS256", "kid": key.kid, **(header or {})}
        return jwt.encode(protected, body, key, registry=SIGNING)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.keys]}

    def environment(self) -> dict[str, str]:
        """The environment variables of a service process that trusts this identity provider."""
        return {f"{ENV_PREFIX}_AUTH_ISSUER": self.issuer, f"{ENV_PREFIX}_AUTH_AUDIENCE": AUDIENCE}

    def authorization(self) -> dict[str, str]:
        """An ``Authorization`` header with a token granting every scope."""
        return {"Authorization": f"Bearer {self.token()}"}

    def start(self) -> IdentityProvider:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler_for(provider: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": provider.issuer,
                        "jwks_uri": f"{provider.issuer}/jwks",
                        "token_endpoint": f"{provider.issuer}/token",
                    },
                )
            elif self.path == "/jwks":
                provider.jwks_requests += 1
                self._json(200, provider.jwks())
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = self.rfile.read(length).decode()
            provider.token_requests += 1
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                self._json(401, {"error": "invalid_client"})
            elif "grant_type=client_credentials" not in form or provider.token_status != 200:
                self._json(provider.token_status if provider.token_status != 200 else 400, {})
            else:
                token = provider.token(sub=CLIENT_ID, client_id=CLIENT_ID, lifetime=provider.token_lifetime)
                body = {"access_token": token, "token_type": "Bearer", "expires_in": provider.token_lifetime}
                self._json(200, body)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass  # quiet

    return Handler


_shared: IdentityProvider | None = None


def shared_identity_provider() -> IdentityProvider:
    """The identity provider apps of the tests trust by default; started once per test process."""
    global _shared  # one per process, as a server would be
    if _shared is None:
        _shared = IdentityProvider().start()
    return _shared


class ClientWithToken(QuartClient):
    """A Quart test client that sends the shared identity provider's token unless told otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = shared_identity_provider().token(lifetime=3600)

    async def _make_request(self, path: str, method: str, headers: Any, *args: Any, **kwargs: Any) -> Any:
        return await super()._make_request(path, method, self._with_token(headers), *args, **kwargs)

    def request(self, path: str, *, headers: Any = None, **kwargs: Any) -> Any:
        return super().request(path, headers=self._with_token(headers), **kwargs)

    def _with_token(self, headers: Any) -> Headers:
        with_token = Headers(headers)
        if "Authorization" not in with_token:
            with_token["Authorization"] = f"Bearer {self.token}"
        return with_token


def unsigned(token: str, **header: Any) -> str:
    """``token`` with its header replaced by ``header`` and its signature cut off (``alg: none``)."""
    body = token.split(".")[1]
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{body}."
