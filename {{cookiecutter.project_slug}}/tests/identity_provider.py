"""The identity provider the tests trust: the project's own (``scripts/dev_identity_provider.py``).

Tests get one of their own from the ``identity_provider`` fixture; apps built by
``tests/apps.py`` trust the shared one unless their settings name another, and their test
clients send its token.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from dev_identity_provider import (  # scripts/, on pytest's pythonpath
    ALL_SCOPES,
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    IdentityProvider,
    make_key,
)
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

__all__ = [
    "ALL_SCOPES",
    "AUDIENCE",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ClientWithToken",
    "IdentityProvider",
    "make_key",
    "shared_identity_provider",
    "unsigned",
]


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
