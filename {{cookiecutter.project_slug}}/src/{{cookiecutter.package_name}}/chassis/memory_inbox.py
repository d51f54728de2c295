"""The inbox without a database: the events each consumer handled lately, in this process.

It recognises a redelivery to the same process within the last ``CAPACITY`` events, which
is what a lost acknowledgement causes; not one to another replica, nor after a restart.
Handlers whose effects must not repeat need a store shared by the replicas (the database
variant of this template keeps the inbox in PostgreSQL, in the handler's transaction).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

CAPACITY = 100_000


class MemoryInbox:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._handled: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    @asynccontextmanager
    async def once(self, consumer: str, source: str, event_id: str) -> AsyncIterator[bool]:
        key = (consumer, source, event_id)
        if key in self._handled:
            yield False
            return
        yield True
        self._handled[key] = None  # only once the handling succeeded
        if len(self._handled) > self._capacity:
            self._handled.popitem(last=False)
