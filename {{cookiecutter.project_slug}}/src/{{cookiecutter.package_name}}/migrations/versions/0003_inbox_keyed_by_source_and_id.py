"""Key the inbox by each event's source and id, as CloudEvents makes them unique, not by its id alone.

Revision ID: 0003
Revises: 0002
Created: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Events handled before have no source recorded: an empty one keeps them claimed.
    op.add_column(
        "handled_messages", sa.Column("source", sa.String(length=500), server_default="", nullable=False)
    )
    op.alter_column("handled_messages", "source", server_default=None)
    op.drop_constraint(op.f("pk_handled_messages"), "handled_messages", type_="primary")
    op.create_primary_key(op.f("pk_handled_messages"), "handled_messages", ["consumer", "source", "event_id"])


def downgrade() -> None:
    # Two events with one id but different sources become one claim again: keep the first.
    op.execute(
        "DELETE FROM handled_messages AS later USING handled_messages AS earlier "
        "WHERE later.consumer = earlier.consumer AND later.event_id = earlier.event_id "
        "AND later.source > earlier.source"
    )
    op.drop_constraint(op.f("pk_handled_messages"), "handled_messages", type_="primary")
    op.create_primary_key(op.f("pk_handled_messages"), "handled_messages", ["consumer", "event_id"])
    op.drop_column("handled_messages", "source")
