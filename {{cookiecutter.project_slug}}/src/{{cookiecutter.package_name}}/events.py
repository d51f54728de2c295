"""The events this service publishes, declared once: their CloudEvents ``type`` and ``data``.

The ``asyncapi`` command documents them from here.  To publish a new event, declare it
below, list it in ``PUBLISHED_EVENTS`` and write it where the change happens: in the
change's transaction, through the outbox, when the service has a database.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from . import DISTRIBUTION_NAME
from .chassis.events import CloudEvent, EventType

if TYPE_CHECKING:
    from .services.items import Item

# CloudEvents ``source``: which service the events come from.
SOURCE = f"/{DISTRIBUTION_NAME}"


class ItemData(BaseModel):
    """An item, as ``GET /items/{id}`` shows it."""

    id: int
    name: str
    description: str
    price_cents: int
    created_at: datetime.datetime

    @classmethod
    def of(cls, item: Item) -> ItemData:
        return cls(
            id=item.id,
            name=item.name,
            description=item.description,
            price_cents=item.price_cents,
            created_at=item.created_at,
        )


class ItemDeletedData(BaseModel):
    """The id of an item that was deleted."""

    id: int


ITEM_CREATED = EventType("items.created", ItemData, "An item was created.")
ITEM_UPDATED = EventType("items.updated", ItemData, "An item's name, description or price changed.")
ITEM_DELETED = EventType("items.deleted", ItemDeletedData, "An item was deleted.")

PUBLISHED_EVENTS: list[EventType[Any]] = [ITEM_CREATED, ITEM_UPDATED, ITEM_DELETED]


def item_created(item: Item) -> CloudEvent:
    return ITEM_CREATED.event(ItemData.of(item), source=SOURCE)


def item_updated(item: Item) -> CloudEvent:
    return ITEM_UPDATED.event(ItemData.of(item), source=SOURCE)


def item_deleted(item_id: int) -> CloudEvent:
    return ITEM_DELETED.event(ItemDeletedData(id=item_id), source=SOURCE)
