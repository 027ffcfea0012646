"""rulesets behind one seam: rooms.game, and votes and results keyed by attempt with audiences

The game service no longer knows mafia: it stores each game's state as its ruleset dumps it
(rooms.game), and each vote row carries the audience its event had (a missions choice is
for nobody), a choice instead of a target, and the attempt (a missions phase opens up to
five times in one round), which also keys phase results. Existing mafia games get their
state from their rows, so a game in progress plays on after the upgrade.

Revision ID: 3e9a1f6b2c58
Revises: 8c3f5e2a1d47
Create Date: 2026-12-06 09:30:00.000000+00:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3e9a1f6b2c58"
down_revision: str | None = "8c3f5e2a1d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("rooms", sa.Column("game", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("votes", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
    op.add_column("votes", sa.Column("choice", sa.String(), nullable=True))
    op.add_column("votes", sa.Column("visibility", sa.String(), server_default="room", nullable=False))
    op.add_column("votes", sa.Column("audience", sa.String(), nullable=True))
    # The audiences mafia's votes always had (backend/games/mafia/rules.py audience_of).
    op.execute(
        "UPDATE votes SET visibility = CASE action WHEN 'kill' THEN 'team' WHEN 'eliminate' THEN 'room'"
        " ELSE 'player' END, audience = CASE action WHEN 'kill' THEN 'mafia' WHEN 'eliminate' THEN NULL"
        " ELSE voter_id::text END"
    )
    op.drop_index("ix_votes_room_round_phase", table_name="votes")
    op.create_index("ix_votes_room_round_phase", "votes", ["room_id", "round", "phase", "attempt"])
    op.add_column("phase_results", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint("pk_phase_results", "phase_results", type_="primary")
    op.create_primary_key("pk_phase_results", "phase_results", ["room_id", "round", "phase", "attempt"])
    _mafia_state()


def _mafia_state() -> None:
    """Give every dealt mafia game its state, as backend/games/mafia/rules.py `dump` writes it."""
    conn = op.get_bind()
    rooms = conn.execute(
        sa.text(
            "SELECT id, round, phase, winner, settings FROM rooms WHERE ruleset = 'mafia'"
            " AND EXISTS (SELECT 1 FROM players p WHERE p.room_id = rooms.id AND p.role IS NOT NULL)"
        )
    ).all()
    for room_id, round_, phase, winner, settings in rooms:
        seats = conn.execute(
            sa.text(
                "SELECT id::text, role, alive FROM players"
                " WHERE room_id = :room AND role IS NOT NULL ORDER BY seat"
            ),
            {"room": room_id},
        ).all()
        ballots = conn.execute(
            sa.text(
                "SELECT DISTINCT ON (voter_id) voter_id::text, action, target_player_id::text FROM votes"
                " WHERE room_id = :room AND round = :round AND phase = :phase ORDER BY voter_id, id DESC"
            ),
            {"room": room_id, "round": round_, "phase": phase},
        ).all()
        game = {
            "seats": [[pid, role, alive] for pid, role, alive in seats],
            "round": round_,
            "phase": phase,
            "ballots": [[v, a, t] for v, a, t in ballots] if phase is not None and winner is None else [],
            "winner": winner,
            "reveal_on_death": bool(settings.get("reveal_on_death", True)),
        }
        conn.execute(
            sa.text("UPDATE rooms SET game = CAST(:game AS jsonb) WHERE id = :room"),
            {"game": json.dumps(game), "room": room_id},
        )


def downgrade() -> None:
    op.execute("DELETE FROM phase_results WHERE attempt > 1")
    op.drop_constraint("pk_phase_results", "phase_results", type_="primary")
    op.create_primary_key("pk_phase_results", "phase_results", ["room_id", "round", "phase"])
    op.drop_column("phase_results", "attempt")
    op.drop_index("ix_votes_room_round_phase", table_name="votes")
    op.create_index("ix_votes_room_round_phase", "votes", ["room_id", "round", "phase"])
    op.drop_column("votes", "audience")
    op.drop_column("votes", "visibility")
    op.drop_column("votes", "choice")
    op.drop_column("votes", "attempt")
    op.drop_column("rooms", "game")
