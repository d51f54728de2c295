"""Every error is an RFC 9457 problem; limits, security headers and CORS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.chassis.errors import MAX_ECHOED_PATH
from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.metrics import HttpMetrics
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository
from {{ cookiecutter.package_name }}.settings import (
    HttpSettings,
    ManagementSettings,
    Settings,
)

from .apps import create_test_app

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "request_id"}


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    assert body.keys() >= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


async def test_not_found_and_method_not_allowed(client: QuartClient) -> None:
    body = await problem_of(await client.get("/nowhere"), 404)
    assert (body["type"], body["title"], body["instance"]) == ("about:blank", "Not Found", "/nowhere")
    response = await client.delete("/items")
    await problem_of(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_malformed_json_is_400_and_other_media_types_415(client: QuartClient) -> None:
    headers = {"Content-Type": "application/json"}
    await problem_of(await client.post("/items", data="{not json", headers=headers), 400)
    await problem_of(await client.post("/items", data="name=x", headers={"Content-Type": "text/plain"}), 415)


async def test_a_404_names_what_was_asked_and_where_the_docs_are(client: QuartClient) -> None:
    body = await problem_of(await client.get("/"), 404)
    assert body["detail"] == "No route matches GET /. The API is documented at /docs."
    assert "spelling" not in body["detail"]
    body = await problem_of(await client.get("/items/999"), 404)
    assert body["detail"] == "There is no item 999.", "a handler's own words are kept"
    long_path = "/" + "a" * 5000
    body = await problem_of(await client.get(long_path), 404)
    assert body["detail"].startswith(f"No route matches GET {long_path[:MAX_ECHOED_PATH]}… (cut).")
    assert len(body["detail"]) < MAX_ECHOED_PATH + 100


async def test_a_404_points_to_the_docs_where_they_are() -> None:
    with_management_port = create_test_app(Settings(management=ManagementSettings(port=9001)))
    worker = create_app(Settings(), services=Services(items=InMemoryItemRepository()), api=False)
    for app, detail in (
        (
            with_management_port,
            "No route matches GET /nope. The API is documented at /docs on the management port (9001).",
        ),
        (worker, "No route matches GET /nope."),
    ):
        async with app.test_app():
            body = await problem_of(await app.test_client().get("/nope"), 404)
        assert body["detail"] == detail


async def test_a_405_names_the_method_and_the_allowed_ones(client: QuartClient) -> None:
    body = await problem_of(await client.delete("/items"), 405)
    assert body["detail"] == "The route does not take DELETE /items; it allows GET, HEAD, OPTIONS, POST."


async def test_malformed_json_says_what_is_wrong_and_where_but_not_the_body(client: QuartClient) -> None:
    secret = "card-4111-1111"
    headers = {"Content-Type": "application/json"}
    data = '{"name": "' + secret + '",\n "price_cents": nope}'
    body = await problem_of(await client.post("/items", data=data, headers=headers), 400)
    assert body["detail"] == "The request body is not valid JSON: Expecting value (line 2, column 17)."
    body = await problem_of(await client.post("/items", data=f'"{secret}', headers=headers), 400)
    detail = "The request body is not valid JSON: Unterminated string starting (line 1, column 1)."
    assert body["detail"] == detail
    assert secret not in str(body)


async def test_a_body_over_the_limit_is_413() -> None:
    app = create_test_app(Settings(http=HttpSettings(max_body_size=100)))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        response = await app.test_client().post("/items", json={"name": "x" * 200, "price_cents": 1})
        await problem_of(response, 413)


async def test_a_slow_handler_is_cut_off_with_504() -> None:
    app = create_test_app(Settings(http=HttpSettings(request_timeout=0.05)))

    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    app.add_url_rule("/slow", "slow", slow)
    async with app.test_app():
        response = await asyncio.wait_for(app.test_client().get("/slow"), 5)
        body = await problem_of(response, 504)
    assert "http.request_timeout" in body["detail"]


async def test_an_unhandled_error_is_a_generic_500_without_details() -> None:
    app = create_test_app(Settings())

    async def broken() -> str:
        raise RuntimeError("password=hunter2 in a message")

    app.add_url_rule("/broken", "broken", broken)
    async with app.test_app():
        response = await app.test_client().get("/broken")
        body = await problem_of(response, 500)
    text = str(body)
    assert "hunter2" not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text


async def test_security_headers_are_on_every_response(client: QuartClient) -> None:
    for path in ("/items", "/nowhere", "/health/live"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "Server" not in response.headers


@pytest.mark.parametrize("host", ["a..b", ".a", ".", "x" * 64 + ".example"])
async def test_a_host_header_that_is_not_a_host_name_is_a_400_problem(client: QuartClient, host: str) -> None:
    """Werkzeug refuses it before any handler (a 500 with an empty body, once)."""
    for path in ("/items", "/health/live"):
        response = await client.get(path, headers={"Host": host})
        body = await problem_of(response, 400)
        assert body["detail"] == "The Host header is not a valid host name."
        assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_cors_is_off_by_default(client: QuartClient) -> None:
    response = await client.get("/items", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_allows_only_the_configured_origins() -> None:
    app = create_test_app(
        Settings(http=HttpSettings(cors_allow_origins="https://app.example.com, https://b.example"))
    )
    async with app.test_app():
        client = app.test_client()
        allowed = await client.get("/items", headers={"Origin": "https://app.example.com"})
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        other = await client.get("/items", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        preflight = await client.options(
            "/items",
            headers={"Origin": "https://b.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://b.example"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


async def test_a_body_that_is_not_utf8_is_400(client: QuartClient) -> None:
    headers = {"Content-Type": "application/json"}
    body = await problem_of(await client.post("/items", data=b"\xd3\x07", headers=headers), 400)
    assert body["detail"] == "The request body is not valid UTF-8."


async def test_handlers_still_running_when_the_grace_period_ends_answer_503() -> None:
    app = create_test_app(Settings())

    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    app.add_url_rule("/slow", "slow", slow)
    async with app.test_app():
        client = app.test_client()
        in_flight = asyncio.ensure_future(client.get("/slow"))
        await asyncio.sleep(0.05)  # the handler is running
        assert app.end_grace_period() == 1
        body = await problem_of(await asyncio.wait_for(in_flight, 5), 503)
        assert "shutdown.grace_period" in body["detail"]
        # One arriving afterwards (on a connection still open) is cut off at once.
        await problem_of(await asyncio.wait_for(client.get("/slow"), 5), 503)
        metrics = part_of(app, HttpMetrics).exposition()[0].decode()  # /metrics is cut off too
    # Both are shed, under their route: the service refused them to stop, they did not fail.
    shed = 'http_server_requests_shed_total{http_request_method="GET",http_route="/slow",reason="shutdown"}'
    assert shed + " 2.0" in metrics


async def test_json_nested_deeper_than_the_limit_is_400(client: QuartClient) -> None:
    headers = {"Content-Type": "application/json"}
    for depth in (33, 1_000, 100_000):  # past the default of 32, past Python's recursion limit
        body = "[" * depth + "]" * depth
        problem = await problem_of(await client.post("/items", data=body, headers=headers), 400)
        assert "http.max_json_depth" in problem["detail"]
    nested_within = {"name": "x", "price_cents": 1, "description": "[" * 10}
    assert (await client.post("/items", json=nested_within)).status_code == 201


async def test_a_422_lists_at_most_twenty_errors_however_many_there_are(client: QuartClient) -> None:
    body = {f"unknown_{index}": index for index in range(5_000)} | {"name": "x", "price_cents": 1}
    response = await client.post("/items", json=body)
    problem = await problem_of(response, 422)
    assert len(problem["errors"]) == 20
    assert problem["errors_omitted"] == 4_980
    assert len(await response.get_data()) < 5_000
