"""players.nickname_skeleton, and nickname_key as a skeleton: look-alike nicknames cannot share a room

`nickname_key` was the case-folded nickname; it becomes the Unicode TR39 skeleton of the
case-folded NFKC nickname, and the new `nickname_skeleton` the skeleton of the nickname as
written, case-folded, unique among a room's present players like the key
(backend.domain.nicknames).

Existing players get both recomputed from their nickname. Two present players of one room
that only now look alike keep their seats: the later one's key is made unique with its
player id after a character no nickname can hold (U+001F), and newcomers are still refused
against the first.

Revision ID: b7d4e2a91c3f
Revises: 5d1e0c7a9b21
Create Date: 2026-12-06 06:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.domain.nicknames import nickname_keys

revision: str = "b7d4e2a91c3f"
down_revision: str | None = "5d1e0c7a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRESENT = sa.text("left_at IS NULL")


def upgrade() -> None:
    op.add_column("players", sa.Column("nickname_skeleton", sa.String(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, room_id, nickname, left_at IS NULL FROM players ORDER BY room_id, joined_at, seat"
        )
    ).all()
    seen: set[tuple[object, str, str]] = set()
    updates = []
    for player_id, room_id, nickname, present in rows:
        keys = nickname_keys(nickname.strip())
        key, skeleton = keys.folded, keys.cased
        if present:
            if (room_id, "key", key) in seen or (room_id, "skeleton", skeleton) in seen:
                key, skeleton = f"{key}\x1f{player_id}", f"{skeleton}\x1f{player_id}"
            seen.update({(room_id, "key", key), (room_id, "skeleton", skeleton)})
        updates.append({"id": player_id, "key": key, "skeleton": skeleton})
    if updates:
        # Out of the way first: one player's new key may be another's old one.
        conn.execute(sa.text("UPDATE players SET nickname_key = chr(31) || id::text"))
        conn.execute(
            sa.text("UPDATE players SET nickname_key = :key, nickname_skeleton = :skeleton WHERE id = :id"),
            updates,
        )
    op.alter_column("players", "nickname_skeleton", nullable=False)
    op.create_index(
        "uq_players_room_skeleton_present",
        "players",
        ["room_id", "nickname_skeleton"],
        unique=True,
        postgresql_where=PRESENT,
    )


def downgrade() -> None:
    op.drop_index("uq_players_room_skeleton_present", table_name="players", postgresql_where=PRESENT)
    op.drop_column("players", "nickname_skeleton")
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, nickname FROM players")).all()
    if rows:
        conn.execute(sa.text("UPDATE players SET nickname_key = chr(31) || id::text"))
        conn.execute(
            sa.text("UPDATE players SET nickname_key = :key WHERE id = :id"),
            [{"id": player_id, "key": nickname.strip().casefold()} for player_id, nickname in rows],
        )
