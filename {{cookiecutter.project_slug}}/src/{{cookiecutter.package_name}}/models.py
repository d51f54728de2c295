"""The service's database tables, as SQLAlchemy models.

Changing a model needs a migration: ``make migration MESSAGE="add colour to items"``
writes one from the difference between these models and the database (review it),
and ``make migrate`` applies it.
"""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, DateTime, Identity, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are given by convention, so migrations can name what they change.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(1000))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
