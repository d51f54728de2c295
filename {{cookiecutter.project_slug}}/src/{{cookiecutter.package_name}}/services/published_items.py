"""Items whose changes are published as events, straight after each change (no database).

Without a database there is no transaction to write an event in, so the event is
published after the change, and the request waits for the broker's confirm: a client
that got its answer knows the event was published.  The window that remains: when the
broker cannot be reached or does not confirm, the change is kept and its event is lost
(the client gets a 503); when the process dies between the change and the confirm, the
event is lost (and so is the change here, kept in this process's memory).
With ``database = postgresql`` the template writes events through an outbox instead,
which closes this window.
"""

from __future__ import annotations

from ..chassis.events import Publisher
from ..events import item_created, item_deleted, item_updated
from .items import Item, ItemRepository, NewItem


class PublishingItemRepository(ItemRepository):
    """Wraps another repository (as ``CachedItemRepository`` does); the broker is a resource of its own."""

    def __init__(self, items: ItemRepository, publisher: Publisher) -> None:
        self._items = items
        self._publisher = publisher

    async def add(self, new: NewItem) -> Item:
        item = await self._items.add(new)
        await self._publisher.publish(item_created(item))
        return item

    async def get(self, item_id: int) -> Item | None:
        return await self._items.get(item_id)

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        return await self._items.list(limit=limit, offset=offset)

    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        item = await self._items.replace(item_id, new)
        if item is not None:
            await self._publisher.publish(item_updated(item))
        return item

    async def remove(self, item_id: int) -> bool:
        removed = await self._items.remove(item_id)
        if removed:
            await self._publisher.publish(item_deleted(item_id))
        return removed
