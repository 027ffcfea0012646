"""votes, phase results and idempotency keys

Revision ID: 44b3aa90e9a7
Revises: fe84e15a727b
Create Date: 2026-11-26 13:45:46.089524+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "44b3aa90e9a7"
down_revision: str | None = "fe84e15a727b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phase_results",
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("tally", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("eliminated_player_id", sa.Uuid(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_phase_results_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("room_id", "round", "phase", name=op.f("pk_phase_results")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("player_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["player_id"],
            ["players.id"],
            name=op.f("fk_idempotency_keys_player_id_players"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("player_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "votes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("voter_id", sa.Uuid(), nullable=False),
        sa.Column("target_player_id", sa.Uuid(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("cast_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_votes_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["voter_id"], ["players.id"], name=op.f("fk_votes_voter_id_players"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
    )
    op.create_index("ix_votes_room_round_phase", "votes", ["room_id", "round", "phase"], unique=False)
    op.create_index(
        "ix_rooms_deadline",
        "rooms",
        ["phase_ends_at"],
        unique=False,
        postgresql_where=sa.text("status = 'in_progress'"),
    )


def downgrade() -> None:
    op.drop_index("ix_rooms_deadline", table_name="rooms", postgresql_where=sa.text("status = 'in_progress'"))
    op.drop_index("ix_votes_room_round_phase", table_name="votes")
    op.drop_table("votes")
    op.drop_table("idempotency_keys")
    op.drop_table("phase_results")
