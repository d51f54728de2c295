"""The service's database tables, as SQLAlchemy models.

Changing a model needs a migration: ``make migration MESSAGE="add colour to items"``
writes one from the difference between these models and the database (review it),
and ``make migrate`` applies it.
"""

from __future__ import annotations

import datetime
{%- if cookiecutter.broker != "none" %}
from typing import Any
{%- endif %}

from sqlalchemy import {% if cookiecutter.broker != "none" %}JSON, {% endif %}BigInteger, DateTime, Identity, MetaData, String, func
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
{%- if cookiecutter.broker != "none" %}


class OutboxRow(Base):
    """An event written with the change it tells of, waiting for the relay to publish it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(200))
    # The CloudEvent as published, and the message headers (trace context, request id).
    body: Mapped[str] = mapped_column(String)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HandledMessageRow(Base):
    """An event a consumer has handled: written in the handler's transaction (the inbox)."""

    __tablename__ = "handled_messages"

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    # CloudEvents makes an event's source and id unique together, not its id alone.
    source: Mapped[str] = mapped_column(String(500), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    handled_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
{%- endif %}
