"""The items the example API manages, and where they are kept.

``ItemRepository`` is the interface the views use; ``InMemoryItemRepository``
keeps items in this process (lost on restart; each worker has its own).  To
store them elsewhere, write another repository with the same methods.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import itertools

from ..chassis.lifecycle import Resource


@dataclasses.dataclass(frozen=True)
class NewItem:
    name: str
    description: str
    price_cents: int


@dataclasses.dataclass(frozen=True)
class Item(NewItem):
    id: int
    created_at: datetime.datetime


class ItemRepository(Resource, abc.ABC):
    """Where items are kept: a resource, started and stopped with the service."""

    @abc.abstractmethod
    async def add(self, new: NewItem) -> Item: ...

    @abc.abstractmethod
    async def get(self, item_id: int) -> Item | None: ...

    @abc.abstractmethod
    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        """A page of items, oldest first, and how many there are in all."""


class InMemoryItemRepository(ItemRepository):
    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._ids = itertools.count(1)

    async def add(self, new: NewItem) -> Item:
        now = datetime.datetime.now(datetime.UTC)
        item = Item(**dataclasses.asdict(new), id=next(self._ids), created_at=now)
        self._items[item.id] = item
        return item

    async def get(self, item_id: int) -> Item | None:
        return self._items.get(item_id)

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        items = list(self._items.values())
        return items[offset : offset + limit], len(items)
