"""spectators, and game numbers for rematches

A spectator watches a room with a token of its own (stored as a hash), never a player's. A
room plays game after game (rematch): `rooms.game_number` counts them (0 before the first),
and each vote and phase result belongs to one game, so a later game's round 1 does not meet
the earlier one's. A stream ticket names a player or a spectator.

Revision ID: a17c0ffee001
Revises: 3e9a1f6b2c58
Create Date: 2026-12-06 17:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a17c0ffee001"
down_revision: str | None = "3e9a1f6b2c58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spectators",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("nickname", sa.String(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_spectators_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spectators")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_spectators_token_hash")),
    )
    op.create_index(op.f("ix_spectators_room_id"), "spectators", ["room_id"], unique=False)
    op.alter_column("stream_tickets", "player_id", existing_type=sa.Uuid(), nullable=True)
    op.add_column("stream_tickets", sa.Column("spectator_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_stream_tickets_spectator_id_spectators"),
        "stream_tickets",
        "spectators",
        ["spectator_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(op.f("ix_stream_tickets_spectator_id"), "stream_tickets", ["spectator_id"], unique=False)
    op.create_check_constraint(
        op.f("ck_stream_tickets_one_holder"), "stream_tickets", "num_nonnulls(player_id, spectator_id) = 1"
    )
    op.add_column("rooms", sa.Column("game_number", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE rooms SET game_number = 1 WHERE game IS NOT NULL OR status IN ('in_progress', 'finished')"
    )
    op.add_column("votes", sa.Column("game", sa.Integer(), server_default="1", nullable=False))
    op.add_column("phase_results", sa.Column("game", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint("pk_phase_results", "phase_results", type_="primary")
    op.create_primary_key(
        "pk_phase_results", "phase_results", ["room_id", "game", "round", "phase", "attempt"]
    )
    op.drop_index("ix_votes_room_round_phase", table_name="votes")
    op.create_index(
        "ix_votes_room_game_round_phase",
        "votes",
        ["room_id", "game", "round", "phase", "attempt"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_votes_room_game_round_phase", table_name="votes")
    op.create_index(
        "ix_votes_room_round_phase", "votes", ["room_id", "round", "phase", "attempt"], unique=False
    )
    op.drop_constraint("pk_phase_results", "phase_results", type_="primary")
    op.execute("DELETE FROM phase_results WHERE game > 1")
    op.create_primary_key("pk_phase_results", "phase_results", ["room_id", "round", "phase", "attempt"])
    op.drop_column("phase_results", "game")
    op.execute("DELETE FROM votes WHERE game > 1")
    op.drop_column("votes", "game")
    op.drop_column("rooms", "game_number")
    op.drop_constraint(op.f("ck_stream_tickets_one_holder"), "stream_tickets", type_="check")
    op.drop_index(op.f("ix_stream_tickets_spectator_id"), table_name="stream_tickets")
    op.execute("DELETE FROM stream_tickets WHERE spectator_id IS NOT NULL")
    op.drop_column("stream_tickets", "spectator_id")
    op.alter_column("stream_tickets", "player_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_index(op.f("ix_spectators_room_id"), table_name="spectators")
    op.drop_table("spectators")
