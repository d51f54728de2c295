"""Items whose changes are published as events through the transactional outbox.

Wraps the PostgreSQL repository: each change and its event are written in one
transaction (the repository's session joins it, see ``Database.transaction``), so the
event exists if, and only if, the change committed; the outbox relay publishes it.
"""

from __future__ import annotations

from ..chassis.database import Database
from ..chassis.outbox import Outbox
from ..events import item_created, item_deleted, item_updated
from .items import Item, ItemRepository, NewItem


class OutboxItemRepository(ItemRepository):
    def __init__(self, items: ItemRepository, database: Database, outbox: Outbox) -> None:
        self._items = items
        self._database = database
        self._outbox = outbox

    async def add(self, new: NewItem) -> Item:
        async with self._database.transaction() as session:
            item = await self._items.add(new)
            self._outbox.add(session, item_created(item))
        return item

    async def get(self, item_id: int) -> Item | None:
        return await self._items.get(item_id)

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        return await self._items.list(limit=limit, offset=offset)

    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        async with self._database.transaction() as session:
            item = await self._items.replace(item_id, new)
            if item is not None:
                self._outbox.add(session, item_updated(item))
        return item

    async def remove(self, item_id: int) -> bool:
        async with self._database.transaction() as session:
            removed = await self._items.remove(item_id)
            if removed:
                self._outbox.add(session, item_deleted(item_id))
        return removed
