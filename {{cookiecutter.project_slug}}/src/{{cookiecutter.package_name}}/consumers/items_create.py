"""``items.create``: the command to create an item; its ``data`` is the body of ``POST /items``.

The item is created as ``POST /items`` creates it, so it publishes ``items.created`` too.
A name that is taken can never succeed: the command is rejected (dead-lettered) at once.
Handled once per command id, however often it is delivered (see ``chassis/consumers.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..chassis.consumers import CommandRejectedError, Consumer
from ..schemas import ItemIn
from ..services.items import ItemNameTakenError, NewItem

if TYPE_CHECKING:
    from ..services import Services


async def create_item(data: ItemIn, services: Services) -> None:
    try:
        await services.items.add(NewItem(**data.model_dump()))
    except ItemNameTakenError as error:
        raise CommandRejectedError(f"an item named {error.name!r} already exists") from None


consumer = Consumer("items.create", ItemIn, create_item, summary="Create an item, as POST /items does.")
