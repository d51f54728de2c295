"""An identity provider for development and the tests: discovery, signing keys and tokens, on 127.0.0.1.

It serves ``/.well-known/openid-configuration``, ``/jwks`` and ``/token`` (the client
credentials grant, with the client ``CLIENT_ID``/``CLIENT_SECRET`` and any ``scope``), signs
tokens with keys it makes at start, and counts the requests for its keys and tokens.  Never
run it beside a deployed service: it gives a token for any scope to whoever asks.

    python scripts/dev_identity_provider.py serve              # make idp: until Ctrl+C
    python scripts/dev_identity_provider.py token --scopes "items:read items:write"   # make token

``make run`` and ``make dev`` start it too, and the service trusts it through
``settings.dev.yml`` (its issuer, and ``AUDIENCE``).  ``docker compose`` runs it in a container
of its own (``serve --host 0.0.0.0 --issuer http://identity-provider:9400``: the name the
service reaches it by), its port published on this machine's loopback, so ``make token`` works
the same.  The tests start one of their own on a free port (``tests/identity_provider.py``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, AuthSettings

# Where `make idp` serves; settings.dev.yml names it as auth.issuer.
DEV_PORT = 9400
# What the tokens name in aud; settings.dev.yml names it as auth.audience.
AUDIENCE = "https://api.example.test"
ALL_SCOPES = "items:read items:write"
CLIENT_ID, CLIENT_SECRET = "dev-client", "dev-secret"
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
    # Seconds /jwks takes to answer (a test may make the identity provider slow).
    jwks_delay: float = 0.0
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

    def start(self, port: int = 0, *, host: str = "127.0.0.1", issuer: str | None = None) -> IdentityProvider:
        """Serve on ``host``:``port`` (0: a free one) from a thread; raises ``OSError`` if it is taken.

        ``issuer`` is the URL its clients reach it by (default: ``http://<host>:<port>``).
        """
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.issuer = issuer or f"http://{host}:{self._server.server_address[1]}"
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
                time.sleep(provider.jwks_delay)  # this request's own thread
                self._json(200, provider.jwks())
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            provider.token_requests += 1
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                self._json(401, {"error": "invalid_client"})
            elif form.get("grant_type") != ["client_credentials"] or provider.token_status != 200:
                self._json(provider.token_status if provider.token_status != 200 else 400, {})
            else:
                scope = form.get("scope", [ALL_SCOPES])[0]
                token = provider.token(
                    sub=CLIENT_ID, client_id=CLIENT_ID, scope=scope, lifetime=provider.token_lifetime
                )
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


def fetch_token(port: int, scopes: str) -> str:
    """A token for ``scopes`` from the identity provider serving on 127.0.0.1:``port``."""
    credentials = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scopes}).encode(),
        headers={"Authorization": f"Basic {credentials}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http://127.0.0.1 only
        token: str = json.load(response)["access_token"]
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An identity provider for development, on 127.0.0.1.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve on 127.0.0.1 until Ctrl+C")
    serve.add_argument("--port", type=int, default=DEV_PORT)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--issuer", help="the URL the service reaches it by (default: http://<host>:<port>)")
    token = commands.add_parser("token", help="print a token from the identity provider serving")
    token.add_argument("--port", type=int, default=DEV_PORT)
    token.add_argument("--scopes", default=ALL_SCOPES, help="space-separated (default: %(default)s)")
    arguments = parser.parse_args(argv)
    if arguments.command == "token":
        try:
            print(fetch_token(arguments.port, arguments.scopes))
        except OSError as error:  # refused, or an HTTP error
            print(
                f"error: no token from http://127.0.0.1:{arguments.port}/token ({error}): "
                "is the identity provider running (make idp)?",
                file=sys.stderr,
            )
            return 1
        return 0
    return serve_until_stopped(arguments.host, arguments.port, arguments.issuer)


def serve_until_stopped(host: str, port: int, issuer: str | None) -> int:
    """Serve until Ctrl+C or SIGTERM (how a container is stopped; PID 1 has no default handler)."""
    try:
        provider = IdentityProvider().start(port, host=host, issuer=issuer)
    except OSError as error:
        print(f"error: cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        return 1
    stopped = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stopped.set())
    print(f"identity provider for development: {provider.issuer} (audience {AUDIENCE}); Ctrl+C stops it")
    sys.stdout.flush()  # before waiting: a container's log shows it at once
    stopped.wait()
    provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
