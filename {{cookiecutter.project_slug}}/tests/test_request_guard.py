"""What is refused before the app: ambiguous framing, oversized heads, WebSockets, load past the limit."""

from __future__ import annotations

import asyncio

from {{ cookiecutter.package_name }}.chassis.health import Health
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.settings import HttpSettings, Settings

from .apps import create_test_app
from .asgi import Answer, asgi_request

HOST = (b"host", b"localhost")
PROBLEM = b"application/problem+json"


def assert_problem(answer: Answer, status: int) -> dict[str, object]:
    assert answer.status == status, answer.body
    assert answer.headers[b"content-type"] == PROBLEM
    body: dict[str, object] = answer.json()
    assert body["status"] == status
    assert body["request_id"] == answer.headers[b"x-request-id"].decode()
    assert answer.headers[b"x-content-type-options"] == b"nosniff"
    return body


async def test_both_content_length_and_transfer_encoding_is_400_and_closes_the_connection() -> None:
    app = create_test_app(Settings())
    async with app.test_app():
        headers = [HOST, (b"content-length", b"6"), (b"transfer-encoding", b"chunked")]
        answer = await asgi_request(app, "POST", "/items", headers)
    body = assert_problem(answer, 400)
    assert "Content-Length and Transfer-Encoding" in str(body["detail"])
    assert answer.headers[b"connection"] == b"close"


async def test_two_host_headers_are_400() -> None:
    app = create_test_app(Settings())
    async with app.test_app():
        answer = await asgi_request(app, "GET", "/items", [HOST, (b"host", b"elsewhere")])
    assert "more than one Host" in str(assert_problem(answer, 400)["detail"])


async def test_a_head_over_max_header_size_is_431() -> None:
    app = create_test_app(Settings(http=HttpSettings(max_header_size=2048)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        small = await asgi_request(app, "GET", "/items", [HOST, (b"x-note", b"n" * 1000)])
        large = await asgi_request(app, "GET", "/items", [HOST, (b"x-note", b"n" * 3000)])
    assert small.status == 200
    assert "http.max_header_size" in str(assert_problem(large, 431)["detail"])


async def test_a_websocket_handshake_is_refused_with_a_problem() -> None:
    app = create_test_app(Settings())
    async with app.test_app():
        answer = await asgi_request(app, "GET", "/items", [HOST], scope_type="websocket")
    assert answer.status == 400
    assert answer.headers[b"content-type"] == PROBLEM
    assert answer.json()["detail"] == "The service has no WebSocket endpoints."
    assert answer.headers[b"x-frame-options"] == b"DENY"


async def test_requests_past_the_limit_get_503_at_once_but_probes_never_do() -> None:
    app = create_test_app(Settings(http=HttpSettings(max_concurrent_requests=2)))
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    app.add_url_rule("/slow", "slow", slow)
    async with app.test_app():
        busy = [asyncio.ensure_future(asgi_request(app, "GET", "/slow", [HOST])) for _ in range(2)]
        await asyncio.sleep(0.05)  # both are running
        refused = await asyncio.wait_for(asgi_request(app, "GET", "/items", [HOST]), 2)
        probe = await asyncio.wait_for(asgi_request(app, "GET", "/health/live", [HOST]), 2)
        scrape = await asyncio.wait_for(asgi_request(app, "GET", "/metrics", [HOST]), 2)
        release.set()
        assert [answer.status for answer in await asyncio.gather(*busy)] == [200, 200]
        after = await asgi_request(app, "GET", "/items", [HOST])
    body = assert_problem(refused, 503)
    assert "http.max_concurrent_requests" in str(body["detail"])
    assert refused.headers[b"retry-after"] == b"1"
    assert (probe.status, scrape.status, after.status) == (200, 200, 200)


async def test_a_shed_request_is_counted_as_shed_under_the_route_it_was_for() -> None:
    app = create_test_app(Settings(http=HttpSettings(max_concurrent_requests=1)))
    release = asyncio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    app.add_url_rule("/slow", "slow", slow)
    async with app.test_app():
        busy = asyncio.ensure_future(asgi_request(app, "GET", "/slow", [HOST]))
        await asyncio.sleep(0.05)  # it is running
        shed = [await asgi_request(app, "GET", path, [HOST]) for path in ("/items/7", "/no-such-page")]
        release.set()
        assert (await busy).status == 200
        metrics = (await asgi_request(app, "GET", "/metrics", [HOST])).body.decode()
    assert [answer.status for answer in shed] == [503, 503]
    route = 'http_request_method="GET",http_route="/items/<int:item_id>"'
    assert "http_server_requests_shed_total{" + route + ',reason="concurrency_limit"} 1.0' in metrics
    counted = 'http_request_method="GET",http_response_status_code="503",http_route="/items/<int:item_id>"'
    assert "http_server_request_duration_seconds_count{" + counted + "} 1.0" in metrics
    # A path no route matches is shed too, under the one label value of unmatched paths.
    unmatched = 'http_request_method="GET",http_route="<unmatched>",reason="concurrency_limit"'
    assert "http_server_requests_shed_total{" + unmatched + "} 1.0" in metrics
    # A route that served without shedding shows 0, so rate() and ``errors - shed`` see it.
    served = 'http_request_method="GET",http_route="/slow",reason="concurrency_limit"'
    assert "http_server_requests_shed_total{" + served + "} 0.0" in metrics


async def test_while_draining_http1_responses_close_the_connection() -> None:
    app = create_test_app(Settings())
    async with app.test_app():
        before = await asgi_request(app, "GET", "/items", [HOST])
        part_of(app, Health).mark_draining()
        during = await asgi_request(app, "GET", "/items", [HOST])
        http2 = await asgi_request(app, "GET", "/items", [HOST], http_version="2")
    assert b"connection" not in before.headers
    assert during.headers[b"connection"] == b"close"
    assert b"connection" not in http2.headers, "HTTP/2 has no Connection header"
