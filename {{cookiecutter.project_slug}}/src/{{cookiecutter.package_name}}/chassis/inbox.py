"""The inbox: which events each consumer has handled, kept in PostgreSQL with the handling itself.

``once()`` opens the database transaction the handler runs in (every repository's session
joins it, see ``Database.transaction``) and first claims the event (its source and id): a
row in ``handled_messages``.  If the row is there already, the event was handled before (a
redelivery) and the handler does not run.  The claim commits with the handler's changes
or rolls back with them, so an event is handled once even though it is delivered at least
once.  Claims older than ``RETENTION`` are removed now and then: redeliveries come within
minutes, never weeks, later.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert

from ..models import HandledMessageRow
from .database import Database

RETENTION = datetime.timedelta(days=7)
# Old claims are removed once every this many claims.
PRUNE_EVERY = 1000


class DatabaseInbox:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._claims = 0

    @asynccontextmanager
    async def once(self, consumer: str, source: str, event_id: str) -> AsyncIterator[bool]:
        async with self._database.transaction() as session:
            claimed = await session.scalar(
                insert(HandledMessageRow)
                .values(consumer=consumer, source=source, event_id=event_id)
                .on_conflict_do_nothing()
                .returning(HandledMessageRow.event_id)
            )
            self._claims += 1
            if self._claims % PRUNE_EVERY == 0:
                await session.execute(
                    delete(HandledMessageRow).where(HandledMessageRow.handled_at < func.now() - RETENTION)
                )
            yield claimed is not None
