"""The client a request comes from: its peer, unless the peer is a trusted proxy naming it."""

from __future__ import annotations

import pytest
from quart import request

from {{ cookiecutter.package_name }}.settings import HttpSettings, Settings

from .apps import create_test_app
from .asgi import asgi_request

HOST = (b"host", b"localhost")


async def who_is_asking(trusted: str, peer: str, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    app = create_test_app(Settings(http=HttpSettings(trusted_proxies=trusted)))

    async def whoami() -> dict[str, str]:
        return {"client": request.remote_addr or "", "scheme": request.scheme}

    app.add_url_rule("/whoami", "whoami", whoami)
    async with app.test_app():
        answer = await asgi_request(app, "GET", "/whoami", [HOST, *headers], client=(peer, 50000))
    seen: dict[str, str] = answer.json()
    return seen


FORWARDED_FOR = (b"x-forwarded-for", b"203.0.113.9")
FORWARDED_PROTO = (b"x-forwarded-proto", b"https")


async def test_without_trusted_proxies_forwarding_headers_are_ignored() -> None:
    seen = await who_is_asking("", "127.0.0.1", [FORWARDED_FOR, FORWARDED_PROTO])
    assert seen == {"client": "127.0.0.1", "scheme": "http"}


async def test_an_untrusted_peer_cannot_name_the_client() -> None:
    seen = await who_is_asking("10.0.0.0/8", "192.0.2.1", [FORWARDED_FOR, FORWARDED_PROTO])
    assert seen == {"client": "192.0.2.1", "scheme": "http"}


async def test_a_trusted_proxy_names_the_client_and_scheme() -> None:
    seen = await who_is_asking("10.0.0.0/8", "10.1.2.3", [FORWARDED_FOR, FORWARDED_PROTO])
    assert seen == {"client": "203.0.113.9", "scheme": "https"}


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        (b"198.51.100.7, 203.0.113.9, 10.0.0.5", "203.0.113.9"),  # the nearest untrusted hop
        (b"not-an-ip<script>", "10.1.2.3"),  # garbage names nobody: the peer stays
        (b"203.0.113.9, forged", "10.1.2.3"),
        (b"2001:db8::1", "2001:db8::1"),
    ],
)
async def test_only_a_valid_address_beyond_the_trusted_proxies_becomes_the_client(
    chain: bytes, client: str
) -> None:
    seen = await who_is_asking("10.0.0.0/8", "10.1.2.3", [(b"x-forwarded-for", chain)])
    assert seen["client"] == client


async def test_the_forwarded_header_is_understood() -> None:
    forwarded = (b"forwarded", b'for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.9')
    seen = await who_is_asking("10.0.0.0/8", "10.1.2.3", [forwarded])
    assert seen == {"client": "2001:db8:cafe::17", "scheme": "https"}
