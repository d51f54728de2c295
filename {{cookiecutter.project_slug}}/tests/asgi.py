"""One request straight through the app's ASGI stack, with headers no test client would send."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from quart import Quart
{%- if cookiecutter.auth == "oidc" %}

from .identity_provider import shared_identity_provider
{%- endif %}


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def asgi_request(
    app: Quart,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    body: bytes = b"",
    http_version: str = "1.1",
    client: tuple[str, int] = ("127.0.0.1", 50000),
    scope_type: str = "http",
) -> Answer:
    """Send one request through the whole middleware stack; returns what the app answered.
{%- if cookiecutter.auth == "oidc" %}

    Unless ``headers`` has one, an ``Authorization`` header with the shared identity provider's
    token is added (as the test clients of ``tests/apps.py`` do).
    {% endif %}"""
{%- if cookiecutter.auth == "oidc" %}
    if all(name.lower() != b"authorization" for name, _ in headers):
        headers = [*headers, (b"authorization", f"Bearer {shared_identity_provider().token()}".encode())]
{%- endif %}
    scope = {
        "type": scope_type,
        "asgi": {"version": "3.0"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 8000),
        "extensions": {"websocket.http.response": {}} if scope_type == "websocket" else {},
    }
    messages: list[dict[str, Any]] = [
        {"type": "websocket.connect"} if scope_type == "websocket" else {"type": "http.request", "body": body}
    ]
    sent: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await answered.wait()  # a client that stays until it has its answer
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"].endswith("response.body") and not message.get("more_body", False):
            answered.set()

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(message for message in sent if message["type"].endswith("response.start"))
    body_parts = [message.get("body", b"") for message in sent if message["type"].endswith("response.body")]
    return Answer(start["status"], dict(start["headers"]), b"".join(body_parts))
