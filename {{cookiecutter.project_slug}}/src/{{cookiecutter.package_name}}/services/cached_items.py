"""Cache-aside for items: reads by id try the cache first, writes invalidate it.

``get`` answers from the cache when it can; on a miss it reads the repository
behind and caches what it found for ``cache.ttl`` seconds.  ``replace`` and
``remove`` delete the cached copy after the write, so the next read loads the new
one.  A read that raced a write can cache the old value; the TTL bounds how long.
When the cache fails, every call goes to the repository behind (see ``Cache``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json

from ..chassis.cache import Cache
from .items import Item, ItemRepository, NewItem


class CachedItemRepository(ItemRepository):
    def __init__(self, behind: ItemRepository, cache: Cache, *, ttl: int, key_prefix: str) -> None:
        """``key_prefix`` starts every key, so services (and tests) sharing a Redis never collide."""
        self._behind = behind
        self._cache = cache
        self._ttl = ttl
        self._key_prefix = key_prefix

    async def add(self, new: NewItem) -> Item:
        return await self._behind.add(new)

    async def get(self, item_id: int) -> Item | None:
        key = self._key(item_id)
        cached = await self._cache.get(key)
        if cached is not None:
            decoded = _decode(cached)
            if decoded is not None:
                return decoded
        item = await self._behind.get(item_id)
        if item is not None:
            await self._cache.set(key, _encode(item), ttl=self._ttl)
        return item

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        return await self._behind.list(limit=limit, offset=offset)

    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        item = await self._behind.replace(item_id, new)
        await self._cache.delete(self._key(item_id))
        return item

    async def remove(self, item_id: int) -> bool:
        removed = await self._behind.remove(item_id)
        await self._cache.delete(self._key(item_id))
        return removed

    def _key(self, item_id: int) -> str:
        return f"{self._key_prefix}:item:{item_id}"


def _encode(item: Item) -> bytes:
    fields = dataclasses.asdict(item)
    fields["created_at"] = item.created_at.isoformat()
    return json.dumps(fields).encode()


def _decode(data: bytes) -> Item | None:
    """The cached item; ``None`` for a value this version cannot read (it is then replaced)."""
    try:
        fields = json.loads(data)
        fields["created_at"] = datetime.datetime.fromisoformat(fields["created_at"])
        return Item(**fields)
    except (ValueError, TypeError, KeyError):
        return None
