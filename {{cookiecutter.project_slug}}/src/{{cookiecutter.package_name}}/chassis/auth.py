"""Who may call the API: bearer tokens an OpenID Connect identity provider issued (RFC 6750).

The service is an OAuth 2.0 resource server.  Every route of the API (the blueprints in
``views``) requires ``Authorization: Bearer <JWT>``, a token that:

- is signed with one of the identity provider's keys (``signing_keys``), by one of the
  asymmetric algorithms in ``auth.algorithms`` (never ``none``, never HMAC);
- names ``auth.issuer`` in ``iss`` (when set) and ``auth.audience`` in ``aud``, has a
  subject (``sub``), and is within its ``exp`` and ``nbf`` (``auth.leeway`` seconds of skew).

Beside a route, ``@requires_scopes("items:write")`` adds the scopes the token must grant (its
``scope`` or ``scp`` claim), and ``@public`` lets anyone call it.  Both are shown in
``/openapi.json``, under the ``bearer`` security scheme.  The management endpoints (health,
metrics, info, docs) take no token: keep them apart with ``management.port``.

A request without a token gets 401 with ``WWW-Authenticate: Bearer``; one with a token that
is not valid gets 401 with ``error="invalid_token"``; a valid token without a scope the route
requires gets 403 with ``error="insufficient_scope"``.  All are problems (``errors``).  The
handler reaches its caller through ``current_caller()``; the caller's subject and client id
are in the request's log lines and access line, its token never is.

Verifying a token costs its signature check (``make bench`` prints the figure); a token seen
before is not checked again until the keys change, only its times are (``VERIFIED_TOKENS``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
    UnsupportedAlgorithmError,
)
from joserfc.jws import JWSRegistry
from prometheus_client import CollectorRegistry, Counter
from quart import Blueprint, Quart, request
from quart_schema import HttpSecurityScheme, security_scheme
from werkzeug.exceptions import HTTPException

from ..settings import AuthSettings
from .caller import Caller, bind_caller
from .lifecycle import Lifecycle
from .openapi import documents_problems
from .signing_keys import SigningKeys

BEARER_SCHEME = "bearer"
# Tokens verified before, kept until the keys change; a bound on the memory they take.
VERIFIED_TOKENS = 4096
# And at most this many characters of them: a token's parsed claims take several times its
# length in memory, so 4 MiB of tokens (256 of the longest) stays well inside a pod's memory.
VERIFIED_TOKEN_CHARACTERS = 4 * 1024 * 1024
# A JWT of a few kB at most; a longer header is refused before anything is decoded.
MAX_TOKEN_LENGTH = 16_384
_AUTH_ATTRIBUTE = "_auth_required_scopes"
# RFC 9864 deprecates "EdDSA" for "Ed25519"; identity providers still sign with it, by that name.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def requires_scopes(*scopes: str) -> Callable[[Handler], Handler]:
    """The route also requires the token to grant each of ``scopes``."""

    def decorator(handler: Handler) -> Handler:
        setattr(handler, _AUTH_ATTRIBUTE, frozenset(scopes))
        handler = documents_problems(401, 403)(handler)
        return security_scheme([{BEARER_SCHEME: sorted(scopes)}])(handler)

    return decorator


def public(handler: Handler) -> Handler:
    """Anyone may call the route, with no token."""
    setattr(handler, _AUTH_ATTRIBUTE, None)
    return security_scheme([])(handler)


class Challenge(HTTPException):
    """401 or 403 with its ``WWW-Authenticate`` challenge (RFC 6750, section 3).

    ``kind`` labels the refusal in ``auth_rejected_requests_total``.
    """

    def __init__(
        self, code: int, kind: str, detail: str, *, error: str | None = None, scope: str = ""
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.kind = kind
        parameters = [f'error="{error}"'] if error else []
        if scope:
            parameters.append(f'scope="{scope}"')
        self.challenge = f"Bearer {', '.join(parameters)}" if parameters else "Bearer"

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [("WWW-Authenticate", self.challenge)]


class InvalidToken(Challenge):
    """401 ``invalid_token``: the token is missing something, or is not to be trusted."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(401, kind, detail, error="invalid_token")


class UnknownKey(InvalidToken):
    """The token names a key that is not held (yet): the keys may be fetched again."""

    def __init__(self) -> None:
        super().__init__("unknown_key", "The token is signed with a key this service does not know.")


class TokenVerifier:
    """Checks tokens against the keys and the settings; remembers the tokens that passed."""

    def __init__(self, settings: AuthSettings, keys: SigningKeys) -> None:
        self._keys = keys
        algorithms = [name.strip() for name in settings.algorithms.split(",")]
        self._registry = JWSRegistry(algorithms=algorithms)
        self._leeway = settings.leeway
        self._max_lifetime = settings.max_token_lifetime
        required: dict[str, Any] = {
            "aud": {"essential": True, "value": settings.audience},
            "exp": {"essential": True},
            "sub": {"essential": True},
        }
        if settings.issuer is not None:
            required["iss"] = {"essential": True, "value": settings.issuer}
        self._claims = jwt.JWTClaimsRegistry(leeway=settings.leeway, **required)
        self._verified: dict[str, tuple[Caller, float, float]] = {}
        self._verified_characters = 0
        self._generation = -1

    def verify(self, token: str) -> Caller:
        """The caller ``token`` stands for; raises ``InvalidToken`` (``UnknownKey``) if it is not valid."""
        if self._generation != self._keys.generation:  # a key may be gone: check every token again
            self._verified.clear()
            self._verified_characters = 0
            self._generation = self._keys.generation
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, not_before, expires = remembered
            now = time.time()
            if now < not_before - self._leeway:
                raise InvalidToken("not_yet_valid", "The token is not valid yet.")
            if now > expires + self._leeway:
                raise InvalidToken("expired", "The token has expired.")
            return caller
        caller, not_before, expires = self._verify_anew(token)
        self._remember(token, (caller, not_before, expires))
        return caller

    def _remember(self, token: str, verified: tuple[Caller, float, float]) -> None:
        """Keep ``token``'s verification, forgetting the oldest beyond either bound."""
        while self._verified and (
            len(self._verified) >= VERIFIED_TOKENS
            or self._verified_characters + len(token) > VERIFIED_TOKEN_CHARACTERS
        ):
            oldest = next(iter(self._verified))
            del self._verified[oldest]
            self._verified_characters -= len(oldest)
        self._verified[token] = verified
        self._verified_characters += len(token)

    def _verify_anew(self, token: str) -> tuple[Caller, float, float]:
        try:
            claims = jwt.decode(token, self._keys.key_set, registry=self._registry).claims
            self._claims.validate(claims)
        except InvalidKeyIdError:
            raise UnknownKey() from None
        except UnsupportedAlgorithmError:
            raise InvalidToken(
                "algorithm", "The token is signed with an algorithm this service refuses."
            ) from None
        except BadSignatureError:
            raise InvalidToken("signature", "The token's signature is not valid.") from None
        except ExpiredTokenError:
            raise InvalidToken("expired", "The token has expired.") from None
        except InvalidClaimError as error:
            raise _invalid_claim(error.claim) from None
        except MissingClaimError as error:
            raise InvalidToken("claims", f"The token has no {error.claim} claim.") from None
        except (JoseError, ValueError, TypeError, KeyError):
            raise InvalidToken("malformed", "The token is not a well-formed signed JWT.") from None
        subject = claims["sub"]
        if not isinstance(subject, str):
            raise InvalidToken("claims", "The token's sub claim is not a string.")
        expires = _number(claims["exp"], float("inf"))
        if expires - time.time() > self._max_lifetime:  # a sender's 10**400 included
            raise InvalidToken("claims", "The token's exp claim is further ahead than this service accepts.")
        caller = Caller(
            subject=subject,
            client_id=_text_or_none(claims.get("client_id", claims.get("azp"))),
            scopes=_scopes(claims),
            claims=claims,
            token=token,
        )
        return caller, _number(claims.get("nbf"), -float("inf")), expires


def _invalid_claim(claim: str) -> InvalidToken:
    if claim == "nbf":
        return InvalidToken("not_yet_valid", "The token is not valid yet.")
    if claim == "iss":
        return InvalidToken("issuer", "The token was issued by another identity provider.")
    if claim == "aud":
        return InvalidToken("audience", "The token is meant for another audience.")
    return InvalidToken("claims", f"The token's {claim} claim is not valid.")


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The granted scopes: ``scope`` (a space-separated string, RFC 9068) or ``scp`` (a list, or a string)."""
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, str):
        return frozenset(granted.split())
    if isinstance(granted, list):
        return frozenset(item for item in granted if isinstance(item, str))
    return frozenset()


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object, default: float) -> float:
    """A numeric claim as a float; an integer too large for one is infinite (JSON has no bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "auth_rejected_requests_total",
            "Requests refused for their token, by reason (missing, expired, insufficient_scope...).",
            ["reason"],
            registry=registry,
        )


def install_auth(
    app: Quart,
    settings: AuthSettings,
    lifecycle: Lifecycle,
    blueprints: Iterable[Blueprint],
    *,
    registry: CollectorRegistry,
) -> None:
    """Require a valid token on every route of ``blueprints`` but the public ones.

    The signing keys are a resource of ``lifecycle``: the service is ready once they are held.
    """
    keys = SigningKeys(settings)
    lifecycle.add("signing_keys", keys)
    verifier = TokenVerifier(settings, keys)
    metrics = AuthMetrics(registry)
    guarded = frozenset(blueprint.name for blueprint in blueprints)
    schema = app.extensions["QUART_SCHEMA"]  # quart-schema reads these as it builds the document
    schema.security_schemes = {BEARER_SCHEME: HttpSecurityScheme(scheme="bearer", bearer_format="JWT")}
    schema.security = [{BEARER_SCHEME: []}]

    @app.before_request
    async def authenticate() -> None:
        if request.blueprint not in guarded:
            return
        handler = app.view_functions[request.endpoint or ""]
        required: frozenset[str] | None = getattr(handler, _AUTH_ATTRIBUTE, frozenset())
        if required is None:  # public
            return
        try:
            caller = await _caller_of_request(verifier, keys)
            if not required <= caller.scopes:
                raise Challenge(
                    403,
                    "insufficient_scope",
                    "The token does not grant the scopes this operation requires.",
                    error="insufficient_scope",
                    scope=" ".join(sorted(required)),
                )
        except Challenge as challenge:
            metrics.rejected.labels(challenge.kind).inc()
            raise
        bind_caller(caller)


async def _caller_of_request(verifier: TokenVerifier, keys: SigningKeys) -> Caller:
    token = _bearer_token(request.headers.get("Authorization"))
    try:
        return verifier.verify(token)
    except UnknownKey:
        await keys.refetch()  # a rotation, perhaps: at most once per interval
        return verifier.verify(token)


def _bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; no token (or another scheme) is a challenge."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Challenge(401, "missing", "The request needs a bearer token (Authorization: Bearer <token>).")
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or " " in token:
        raise InvalidToken("malformed", "The token is not a well-formed signed JWT.")
    return token
