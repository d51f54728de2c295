"""Which client a request comes from, when it passed through proxies the service trusts.

Only when the connection's peer is one of ``http.trusted_proxies`` are ``Forwarded``
(RFC 7239) or, without it, ``X-Forwarded-For`` and ``X-Forwarded-Proto`` believed:
the client is the nearest address in the chain that is not itself a trusted proxy,
and only a valid IP address can become it.  Anyone else's forwarding headers are
ignored, so a client cannot choose the address the logs and the app see.  With no
trusted proxy (the default) nothing is rewritten.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope, WebsocketScope
from quart import Quart

from ..settings import HttpSettings

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


def install_proxy_headers(app: Quart, settings: HttpSettings) -> None:
    """Read trusted proxies' headers first, so everything after sees the real client.

    With no trusted proxy there is nothing to read, and no middleware is added.
    """
    trusted = parse_networks(settings.trusted_proxies)
    if trusted:
        app.asgi_app = ProxyHeadersMiddleware(app.asgi_app, trusted)  # type: ignore[method-assign]


def parse_networks(text: str) -> list[Network]:
    """``"10.0.0.0/8, 192.0.2.7"`` → networks (the setting is checked when it is loaded)."""
    return [ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip()]


class ProxyHeadersMiddleware:
    """Sets ``scope["client"]`` and ``scope["scheme"]`` from trusted proxies' headers."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self._app = app
        self._trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if (scope["type"] == "http" or scope["type"] == "websocket") and self._is_trusted(_peer(scope)):
            scope = self._rewritten(scope)
        await self._app(scope, receive, send)

    def _is_trusted(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._trusted)

    def _rewritten(self, scope: HTTPScope | WebsocketScope) -> Scope:
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:  # repeated lines of one header make one list
            text = value.decode("latin-1")
            headers[name] = f"{headers[name]},{text}" if name in headers else text
        if b"forwarded" in headers:
            chain, proto = _from_forwarded(headers[b"forwarded"])
        else:
            chain = [part.strip() for part in headers.get(b"x-forwarded-for", "").split(",")]
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower() or None
        client = self._client(chain)
        changes: dict[str, object] = {}
        if client is not None:
            changes["client"] = (client, 0)
        if proto in WEBSOCKET_SCHEMES:
            changes["scheme"] = proto if scope["type"] == "http" else WEBSOCKET_SCHEMES[proto]
        return {**scope, **changes} if changes else scope  # type: ignore[return-value]

    def _client(self, chain: Iterable[str]) -> str | None:
        """The nearest address that is not a trusted proxy; None when the chain has no valid one."""
        nearest = None
        for address in reversed(list(chain)):
            ip = _ip(address)
            if ip is None:
                break  # a forged or garbled entry: trust nothing further out
            nearest = str(ip)
            if not any(ip in network for network in self._trusted):
                break
        return nearest


def _peer(scope: HTTPScope | WebsocketScope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _from_forwarded(value: str) -> tuple[list[str], str | None]:
    """The ``for=`` addresses of a ``Forwarded`` header, nearest last, and the first ``proto=``."""
    chain: list[str] = []
    proto = None
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, raw = pair.strip().partition("=")
            text = raw.strip().strip('"')
            if name.lower() == "for":
                chain.append(_strip_port(text))
            elif name.lower() == "proto" and proto is None:
                proto = text.lower()
    return chain, proto


def _strip_port(node: str) -> str:
    """``"[2001:db8::1]:4711"`` → ``"2001:db8::1"``; ``"192.0.2.60:80"`` → ``"192.0.2.60"``."""
    if node.startswith("["):
        return node[1:].partition("]")[0]
    host, separator, port = node.rpartition(":")
    return host if separator and port.isdigit() and ":" not in host else node
