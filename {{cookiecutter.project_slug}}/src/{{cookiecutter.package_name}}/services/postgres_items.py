"""Items kept in PostgreSQL (the ``items`` table of ``models.py``).

The only module that writes SQL for items; the views only see ``ItemRepository``.
A taken name is PostgreSQL's unique violation, turned into ``ItemNameTakenError``.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ..chassis.database import Database
from ..models import ItemRow
from .items import Item, ItemNameTakenError, ItemRepository, NewItem

UNIQUE_VIOLATION = "23505"


class PostgresItemRepository(ItemRepository):
    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, new: NewItem) -> Item:
        row = ItemRow(name=new.name, description=new.description, price_cents=new.price_cents)
        try:
            async with self._database.session() as session:
                session.add(row)
                await session.flush()
                await session.refresh(row)
        except IntegrityError as error:
            if _is_unique_violation(error):
                raise ItemNameTakenError(new.name) from error
            raise
        return _item(row)

    async def get(self, item_id: int) -> Item | None:
        async with self._database.session() as session:
            row = await session.get(ItemRow, item_id)
        return None if row is None else _item(row)

    async def list(self, *, limit: int, offset: int) -> tuple[list[Item], int]:
        async with self._database.session() as session:
            rows = await session.scalars(select(ItemRow).order_by(ItemRow.id).limit(limit).offset(offset))
            total = await session.scalar(select(func.count()).select_from(ItemRow))
            return [_item(row) for row in rows], total or 0

    async def replace(self, item_id: int, new: NewItem) -> Item | None:
        try:
            async with self._database.session() as session:
                row = await session.get(ItemRow, item_id, with_for_update=True)
                if row is None:
                    return None
                row.name, row.description, row.price_cents = new.name, new.description, new.price_cents
                await session.flush()
        except IntegrityError as error:
            if _is_unique_violation(error):
                raise ItemNameTakenError(new.name) from error
            raise
        return _item(row)

    async def remove(self, item_id: int) -> bool:
        async with self._database.session() as session:
            deleted = await session.scalars(
                delete(ItemRow).where(ItemRow.id == item_id).returning(ItemRow.id)
            )
            return deleted.first() is not None


def _item(row: ItemRow) -> Item:
    return Item(
        id=row.id,
        name=row.name,
        description=row.description,
        price_cents=row.price_cents,
        created_at=row.created_at,
    )


def _is_unique_violation(error: IntegrityError) -> bool:
    return getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION
