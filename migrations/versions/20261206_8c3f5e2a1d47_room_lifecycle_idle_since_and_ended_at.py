"""room lifecycle: rooms.idle_since and rooms.ended_at, indexed for the sweep

An idle lobby closes, an abandoned game ends and an ended room is purged after its
retention (backend/game/lifecycle.py); the sweep finds them by these columns. votes.voter_id
is indexed for the cascade when a purge deletes players.

Revision ID: 8c3f5e2a1d47
Revises: b7a3c91e4f02
Create Date: 2026-12-06 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8c3f5e2a1d47"
down_revision: str | None = "b7a3c91e4f02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rooms",
        sa.Column("idle_since", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True),
    )
    op.add_column("rooms", sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    # Existing rooms: running ones nobody is connected to are idle from now; ended ones ended
    # with their newest event.
    op.execute(
        "UPDATE rooms SET idle_since = CASE WHEN status IN ('lobby', 'in_progress') AND NOT EXISTS"
        " (SELECT 1 FROM players p WHERE p.room_id = rooms.id AND p.left_at IS NULL AND p.connected)"
        " THEN now() END,"
        " ended_at = CASE WHEN status IN ('finished', 'closed') THEN COALESCE("
        "(SELECT max(e.created_at) FROM room_events e WHERE e.room_id = rooms.id), created_at) END"
    )
    op.create_index(
        "ix_rooms_idle",
        "rooms",
        ["status", "idle_since"],
        unique=False,
        postgresql_where=sa.text("status IN ('lobby', 'in_progress')"),
    )
    op.create_index(
        "ix_rooms_ended",
        "rooms",
        ["ended_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('finished', 'closed')"),
    )
    op.create_index(op.f("ix_votes_voter_id"), "votes", ["voter_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_votes_voter_id"), table_name="votes")
    op.drop_index(
        "ix_rooms_ended", table_name="rooms", postgresql_where=sa.text("status IN ('finished', 'closed')")
    )
    op.drop_index(
        "ix_rooms_idle", table_name="rooms", postgresql_where=sa.text("status IN ('lobby', 'in_progress')")
    )
    op.drop_column("rooms", "ended_at")
    op.drop_column("rooms", "idle_since")
