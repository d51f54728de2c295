"""A Host header the URL map cannot take is the client's 400, never a 500.

Werkzeug encodes the request's host name to IDNA when it binds the URL map to the request;
a name it cannot encode (``a..b``, ``.a``, ``.``, a label over 63 characters) raises
``BadHost`` while Quart sets up the request's context, before any error handler can answer:
a 500 with an empty body, on both ports, at anyone's will.  Here such a request is bound to
an adapter that matches nothing and says why, so the service's error handlers answer it as
every other client mistake: a 400 problem, with its request id and security headers.
"""

from __future__ import annotations

import typing as t
from typing import NoReturn

from quart import Quart
from quart.wrappers import BaseRequestWebsocket
from werkzeug.exceptions import BadHost, BadRequest
from werkzeug.routing import MapAdapter

# Where a refused request is bound: a name that is valid, and reserved never to resolve (RFC 6761).
PLACEHOLDER_HOST = "refused-host.invalid"


class HostCheckingQuart(Quart):
    """A Quart app that answers 400 to a request whose Host header cannot be a host name."""

    def create_url_adapter(self, request: BaseRequestWebsocket | None) -> MapAdapter | None:
        try:
            return super().create_url_adapter(request)
        except BadHost:
            return RefusedHostAdapter(self.url_map, PLACEHOLDER_HOST, "/", None, "http", "/", "GET")


class RefusedHostAdapter(MapAdapter):
    """The URL map bound for a request whose Host header is not a host name: it matches nothing."""

    def match(
        self,
        path_info: str | None = None,
        method: str | None = None,
        return_rule: bool = False,
        query_args: t.Mapping[str, t.Any] | str | None = None,
        websocket: bool | None = None,
    ) -> NoReturn:
        raise BadRequest("The Host header is not a valid host name.")
