"""The items the example API manages, and where they are kept.

``ItemRepository`` is the interface the views use; ``InMemoryItemRepository``
keeps items in this process (lost on restart; each worker has its own).  To
store them elsewhere, write another repository with the same methods.
Item names are unique: a name that is taken raises ``ItemNameTakenError``.
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


class ItemNameTakenError(Exception):
    """Another item already has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"an item named {name!r} already exists")
        self.name = name


class ItemRepository(Resource, abc.ABC):
    """Where items are kept: a resource, started and stopped with the service."""

    @abc.abstractmethod
    async def add(self, new: NewItem) -> Item: ...

    @abc.abstractmethod
    async def get(self, item_id: int) -> Item | None: ...

    @abc.abstractmethod
    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        """A page of items, oldest first, and how many there are in all."""

    @abc.abstractmethod
    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        """Give item ``item_id`` these values; ``None`` when there is no such item."""

    @abc.abstractmethod
    async def remove(self, item_id: int) -> bool:
        """Delete item ``item_id``; ``False`` when there was no such item."""


class InMemoryItemRepository(ItemRepository):
    def __init__(self) -> None:
        self._items: dict[int, Item] = {}
        self._ids = itertools.count(1)

    async def add(self, new: NewItem) -> Item:
        self._refuse_taken_name(new.name, keep=None)
        now = datetime.datetime.now(datetime.UTC)
        item = Item(**dataclasses.asdict(new), id=next(self._ids), created_at=now)
        self._items[item.id] = item
        return item

    async def get(self, item_id: int) -> Item | None:
        return self._items.get(item_id)

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        items = list(self._items.values())
        return items[offset : offset + limit], len(items)

    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        current = self._items.get(item_id)
        if current is None:
            return None
        self._refuse_taken_name(new.name, keep=item_id)
        item = dataclasses.replace(current, **dataclasses.asdict(new))
        self._items[item_id] = item
        return item

    async def remove(self, item_id: int) -> bool:
        return self._items.pop(item_id, None) is not None

    def _refuse_taken_name(self, name: str, *, keep: int | None) -> None:
        if any(item.name == name and item.id != keep for item in self._items.values()):
            raise ItemNameTakenError(name)
