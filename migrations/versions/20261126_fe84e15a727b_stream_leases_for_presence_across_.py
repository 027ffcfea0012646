"""stream leases for presence across workers

Revision ID: fe84e15a727b
Revises: c15c9c9a7026
Create Date: 2026-11-26 13:00:14.010029+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "fe84e15a727b"
down_revision: str | None = "c15c9c9a7026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_leases",
        sa.Column("worker_id", sa.Uuid(), nullable=False),
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["player_id"], ["players.id"], name=op.f("fk_stream_leases_player_id_players"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_stream_leases_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("worker_id", "player_id", name=op.f("pk_stream_leases")),
    )
    op.create_index(op.f("ix_stream_leases_room_id"), "stream_leases", ["room_id"], unique=False)
    op.create_index(op.f("ix_stream_leases_player_id"), "stream_leases", ["player_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_stream_leases_player_id"), table_name="stream_leases")
    op.drop_index(op.f("ix_stream_leases_room_id"), table_name="stream_leases")
    op.drop_table("stream_leases")
