"""stream_tickets: single-use, short-lived tickets that open one event stream

A browser's EventSource cannot send headers; rather than the bearer token in the URL, a page
asks for a ticket (POST /v1/rooms/{room_id}/stream-tickets) and opens the stream with it. A
ticket is stored as a hash and consumed with DELETE … RETURNING, so it works once across
workers.

Revision ID: b7a3c91e4f02
Revises: b7d4e2a91c3f
Create Date: 2026-12-06 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7a3c91e4f02"
down_revision: str | None = "b7d4e2a91c3f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["player_id"],
            ["players.id"],
            name=op.f("fk_stream_tickets_player_id_players"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_stream_tickets_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_stream_tickets")),
    )
    op.create_index(op.f("ix_stream_tickets_player_id"), "stream_tickets", ["player_id"], unique=False)
    op.create_index(op.f("ix_stream_tickets_room_id"), "stream_tickets", ["room_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_stream_tickets_room_id"), table_name="stream_tickets")
    op.drop_index(op.f("ix_stream_tickets_player_id"), table_name="stream_tickets")
    op.drop_table("stream_tickets")
