"""rooms.state_seq: the seq of the newest event that changed the room's state

Chat appends without locking the room first: it reads the room and the speaker in one
statement and appends only if `state_seq` is still what it read (any change to the room or
its players appends a non-chat event, which moves `state_seq`).

Revision ID: 5d1e0c7a9b21
Revises: 44b3aa90e9a7
Create Date: 2026-11-26 17:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e0c7a9b21"
down_revision: str | None = "44b3aa90e9a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rooms", sa.Column("state_seq", sa.BigInteger(), server_default="0", nullable=False))
    # Existing rooms: as if their newest event changed their state (a chat then re-reads once).
    op.execute("UPDATE rooms SET state_seq = last_seq")


def downgrade() -> None:
    op.drop_column("rooms", "state_seq")
