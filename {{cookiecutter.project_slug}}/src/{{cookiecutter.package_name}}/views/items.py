"""``/items``: the example resource. Create, read, replace and delete items; list them by page.

The request model (``ItemIn``, in ``schemas.py``: the consumers take it too) and the
response models below are the API's contract: quart-schema validates requests against
them (invalid ones get a 422 problem) and documents them in ``/openapi.json``.  The
handlers hold no storage logic: they use the ``ItemRepository`` of ``services``.
{%- if cookiecutter.auth == "oidc" %}

Every route needs a bearer token (``chassis/auth.py``): reading takes the ``items:read``
scope, changing ``items:write``.
{%- endif %}
"""

from __future__ import annotations

import datetime

from pydantic import BaseModel, Field
from quart import Blueprint, Response, current_app, url_for
from quart_schema import validate_querystring, validate_request, validate_response
from werkzeug.exceptions import Conflict, NotFound

{% if cookiecutter.auth == "oidc" -%}
from ..chassis.auth import requires_scopes
{% endif -%}
from ..chassis.openapi import documents_no_content, documents_problems, empty_response
from ..chassis.parts import part_of
from ..schemas import ItemIn
from ..services import Services
from ..services.items import Item, ItemNameTakenError, NewItem

blueprint = Blueprint("items", __name__, url_prefix="/items")

MAX_PAGE_SIZE = 100
# Ids and offsets are 64-bit, as databases keep them (a bigint): a larger id names no
# item (404) and a larger offset is invalid (422), rather than overflowing a driver (500).
MAX_INT64 = 2**63 - 1


class ItemOut(BaseModel):
    """An item."""

    id: int
    name: str
    description: str
    price_cents: int
    created_at: datetime.datetime

    @classmethod
    def of(cls, item: Item) -> ItemOut:
        return cls(
            id=item.id,
            name=item.name,
            description=item.description,
            price_cents=item.price_cents,
            created_at=item.created_at,
        )


class PageQuery(BaseModel):
    """Which page of items."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=MAX_INT64)


class ItemPage(BaseModel):
    """A page of items, oldest first."""

    items: list[ItemOut]
    total: int = Field(description="How many items there are in all.")
    limit: int
    offset: int


def _refuse_ids_past_int64(item_id: int) -> None:
    if item_id > MAX_INT64:
        raise NotFound(f"There is no item {item_id}.")


@blueprint.post("")
{%- if cookiecutter.auth == "oidc" %}
@requires_scopes("items:write")
{%- endif %}
@validate_request(ItemIn)
@validate_response(ItemOut, 201)
@documents_problems(409, 415, 422)
async def create_item(data: ItemIn) -> tuple[ItemOut, int, dict[str, str]]:
    """Create an item (names are unique)."""
    try:
        item = await part_of(current_app, Services).items.add(NewItem(**data.model_dump()))
    except ItemNameTakenError as error:
        raise Conflict(f"An item named {error.name!r} already exists.") from None
    return ItemOut.of(item), 201, {"Location": url_for("items.get_item", item_id=item.id)}


@blueprint.get("/<int:item_id>")
{%- if cookiecutter.auth == "oidc" %}
@requires_scopes("items:read")
{%- endif %}
@validate_response(ItemOut)
@documents_problems(404)
async def get_item(item_id: int) -> ItemOut:
    """Get an item by its id."""
    _refuse_ids_past_int64(item_id)
    item = await part_of(current_app, Services).items.get(item_id)
    if item is None:
        raise NotFound(f"There is no item {item_id}.")
    return ItemOut.of(item)


@blueprint.put("/<int:item_id>")
{%- if cookiecutter.auth == "oidc" %}
@requires_scopes("items:write")
{%- endif %}
@validate_request(ItemIn)
@validate_response(ItemOut)
@documents_problems(404, 409, 415, 422)
async def replace_item(item_id: int, data: ItemIn) -> ItemOut:
    """Replace an item's name, description and price."""
    _refuse_ids_past_int64(item_id)
    try:
        item = await part_of(current_app, Services).items.replace(item_id, NewItem(**data.model_dump()))
    except ItemNameTakenError as error:
        raise Conflict(f"An item named {error.name!r} already exists.") from None
    if item is None:
        raise NotFound(f"There is no item {item_id}.")
    return ItemOut.of(item)


@blueprint.delete("/<int:item_id>")
{%- if cookiecutter.auth == "oidc" %}
@requires_scopes("items:write")
{%- endif %}
@documents_no_content()
@documents_problems(404)
async def delete_item(item_id: int) -> Response:
    """Delete an item."""
    _refuse_ids_past_int64(item_id)
    if not await part_of(current_app, Services).items.remove(item_id):
        raise NotFound(f"There is no item {item_id}.")
    return empty_response()


@blueprint.get("")
{%- if cookiecutter.auth == "oidc" %}
@requires_scopes("items:read")
{%- endif %}
@validate_querystring(PageQuery)
@validate_response(ItemPage)
@documents_problems(422)
async def list_items(query_args: PageQuery) -> ItemPage:
    """List items, a page at a time."""
    limit, offset = query_args.limit, query_args.offset
    items, total = await part_of(current_app, Services).items.list(limit=limit, offset=offset)
    return ItemPage(items=[ItemOut.of(item) for item in items], total=total, limit=limit, offset=offset)
