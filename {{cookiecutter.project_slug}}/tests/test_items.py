"""The example resource: create, get by id, list by page; validated and documented."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }}.chassis.lifecycle import Lifecycle
from {{ cookiecutter.package_name }}.chassis.parts import part_of
from {{ cookiecutter.package_name }}.services import Services
from {{ cookiecutter.package_name }}.services.items import InMemoryItemRepository, NewItem
from {{ cookiecutter.package_name }}.settings import Settings

from .apps import create_app_from

LAMP = {"name": "lamp", "description": "A desk lamp.", "price_cents": 1999}


async def create(client: QuartClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/items", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = await response.get_json()
    assert response.headers["Location"] == f"/items/{created['id']}"
    return created


async def test_an_item_is_created_and_read_back(client: QuartClient) -> None:
    created = await create(client, LAMP)
    assert {key: created[key] for key in LAMP} == LAMP
    response = await client.get(f"/items/{created['id']}")
    assert response.status_code == 200
    assert await response.get_json() == created


async def test_items_are_listed_a_page_at_a_time(client: QuartClient) -> None:
    for index in range(5):
        await create(client, {"name": f"item {index}", "price_cents": index})
    response = await client.get("/items", query_string={"limit": 2, "offset": 3})
    page = await response.get_json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 3)
    assert [item["name"] for item in page["items"]] == ["item 3", "item 4"]
    assert (await (await client.get("/items")).get_json())["limit"] == 20


async def test_an_item_is_replaced_and_deleted(client: QuartClient) -> None:
    created = await create(client, LAMP)
    path = f"/items/{created['id']}"
    replaced = await client.put(path, json={**LAMP, "price_cents": 2999})
    assert replaced.status_code == 200
    assert await replaced.get_json() == {**created, "price_cents": 2999}
    deleted = await client.delete(path)
    assert deleted.status_code == 204
    assert await deleted.get_data() == b""
    for response in (await client.get(path), await client.delete(path), await client.put(path, json=LAMP)):
        assert response.status_code == 404


async def test_item_names_are_unique(client: QuartClient) -> None:
    await create(client, LAMP)
    chair = await create(client, {"name": "chair", "price_cents": 1})
    for response in (
        await client.post("/items", json=LAMP),
        await client.put(f"/items/{chair['id']}", json=LAMP),
    ):
        assert response.status_code == 409
        assert response.content_type == "application/problem+json"
        assert (await response.get_json())["detail"] == "An item named 'lamp' already exists."


async def test_an_unknown_item_is_a_404_problem(client: QuartClient) -> None:
    response = await client.get("/items/999")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert (await response.get_json())["detail"] == "There is no item 999."


async def test_invalid_items_are_refused_with_what_is_wrong(client: QuartClient) -> None:
    for body, field in (
        ({"name": "", "price_cents": 1}, "name"),
        ({"name": "x", "price_cents": -1}, "price_cents"),
        ({"name": "x"}, "price_cents"),
        ({"name": "x", "price_cents": 1, "colour": "red"}, "colour"),
    ):
        response = await client.post("/items", json=body)
        assert response.status_code == 422, body
        problem = await response.get_json()
        assert [error["location"] for error in problem["errors"]] == [[field]]


async def test_a_bad_page_is_a_422_problem(client: QuartClient) -> None:
    for query in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}):
        response = await client.get("/items", query_string=query)
        assert response.status_code == 422, query
        assert (await response.get_json())["detail"] == "The query string is not valid."


async def test_the_repository_can_be_substituted() -> None:
    repository = InMemoryItemRepository()
    await repository.add(NewItem(name="seeded", description="", price_cents=5))
    app: Quart = create_app_from(Settings(), services=Services(items=repository))
    async with app.test_app():
        await part_of(app, Lifecycle).wait_until_started()
        body = await (await app.test_client().get("/items/1")).get_json()
    assert body["name"] == "seeded"


async def test_values_are_not_silently_converted(client: QuartClient) -> None:
    for price in (True, "5", 5.5):
        response = await client.post("/items", json={"name": "x", "price_cents": price})
        assert response.status_code == 422, price
    assert (await create(client, {"name": "x", "price_cents": 5.0}))["price_cents"] == 5


async def test_text_with_a_nul_character_is_invalid(client: QuartClient) -> None:
    """Databases cannot keep U+0000 in text: it is the client's 422, never a 500."""
    nul = "\x00"
    for body in (
        {"name": f"a{nul}b", "price_cents": 1},
        {"name": "ab", "description": nul, "price_cents": 1},
    ):
        response = await client.post("/items", json=body)
        assert response.status_code == 422, body
        assert "NUL" in (await response.get_json())["errors"][0]["message"]


async def test_ids_and_offsets_past_64_bits_are_client_errors(client: QuartClient) -> None:
    too_large = str(2**63)
    for method in ("GET", "PUT", "DELETE"):
        response = await client.open(f"/items/{too_large}", method=method, json=LAMP)
        assert response.status_code == 404, method
        assert response.content_type == "application/problem+json"
    response = await client.get("/items", query_string={"offset": too_large})
    assert response.status_code == 422
    assert (await client.get("/items", query_string={"offset": str(2**63 - 1)})).status_code == 200
