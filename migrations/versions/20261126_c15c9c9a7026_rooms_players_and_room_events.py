"""rooms players and room events

Revision ID: c15c9c9a7026
Revises:
Create Date: 2026-11-26 11:30:24.944893+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c15c9c9a7026"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("list_key", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("ruleset", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("host_player_id", sa.Uuid(), nullable=True),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(), nullable=True),
        sa.Column("phase_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("winner", sa.String(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("list_key", name=op.f("uq_rooms_list_key")),
    )
    op.create_index("ix_rooms_listing", "rooms", ["status", "list_key"], unique=False)
    op.create_index(
        "uq_rooms_code_unfinished",
        "rooms",
        ["code"],
        unique=True,
        postgresql_where=sa.text("status IN ('lobby', 'in_progress')"),
    )
    op.create_table(
        "players",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("nickname", sa.String(), nullable=False),
        sa.Column("nickname_key", sa.String(), nullable=False),
        sa.Column("seat", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("alive", sa.Boolean(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("team", sa.String(), nullable=True),
        sa.Column("role", sa.String(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_players_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_players")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_players_token_hash")),
    )
    op.create_index(op.f("ix_players_room_id"), "players", ["room_id"], unique=False)
    op.create_index(
        "uq_players_room_nickname_present",
        "players",
        ["room_id", "nickname_key"],
        unique=True,
        postgresql_where=sa.text("left_at IS NULL"),
    )
    op.create_index(
        "uq_players_room_seat_present",
        "players",
        ["room_id", "seat"],
        unique=True,
        postgresql_where=sa.text("left_at IS NULL"),
    )
    op.create_table(
        "room_events",
        sa.Column("room_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("visibility", sa.String(), nullable=False),
        sa.Column("audience", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_room_events_room_id_rooms"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("room_id", "seq", name=op.f("pk_room_events")),
    )


def downgrade() -> None:
    op.drop_table("room_events")
    op.drop_index(
        "uq_players_room_seat_present", table_name="players", postgresql_where=sa.text("left_at IS NULL")
    )
    op.drop_index(
        "uq_players_room_nickname_present", table_name="players", postgresql_where=sa.text("left_at IS NULL")
    )
    op.drop_index(op.f("ix_players_room_id"), table_name="players")
    op.drop_table("players")
    op.drop_index(
        "uq_rooms_code_unfinished",
        table_name="rooms",
        postgresql_where=sa.text("status IN ('lobby', 'in_progress')"),
    )
    op.drop_index("ix_rooms_listing", table_name="rooms")
    op.drop_table("rooms")
