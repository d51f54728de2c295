"""The API is documented: /openapi.json, /docs and the ``openapi`` command agree."""

from __future__ import annotations

import json

from click.testing import CliRunner
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.cli import main


async def test_the_document_covers_the_api_and_its_problems(client: QuartClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = await response.get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {"/items", "/items/{item_id}"}
    chassis = {
        "/health/live",
        "/health/ready",
        "/health/startup",
        "/metrics",
        "/info",
        "/openapi.json",
        "/docs",
    }
    assert not chassis & set(document["paths"]), "probes, metrics and the like are not the API"
    create = document["paths"]["/items"]["post"]
    assert "ItemIn" in json.dumps(create["requestBody"])
    assert set(create["responses"]) >= {"201", "415", "422", "default"}
    for operations in document["paths"].values():
        for operation in operations.values():
            default = operation["responses"]["default"]
            assert list(default["content"]) == ["application/problem+json"]


async def test_the_interactive_docs_load_nothing_from_elsewhere(client: QuartClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    html = await page.get_data(as_text=True)
    assert "http://" not in html
    assert "https://" not in html
    assert "<script>" not in html, "no inline script: the policy forbids it"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    start = await client.get("/docs/start.js")
    assert '"url": "/openapi.json"' in await start.get_data(as_text=True)
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        response = await client.get(f"/docs/{asset}")
        assert response.status_code == 200, asset
        assert kind in response.content_type
        assert len(await response.get_data()) > 10_000, "the real file, installed with the service"
    assert (await client.get("/docs/..%2Fcore.py")).status_code == 404
    assert (await client.get("/docs/index.css")).status_code == 404, "only the files the page uses"


async def test_the_openapi_command_prints_what_is_served(client: QuartClient) -> None:
    result = CliRunner().invoke(main, ["openapi"])
    assert result.exit_code == 0, result.output
    served = await (await client.get("/openapi.json")).get_json()
    assert json.loads(result.output) == served
