"""All SQL about the game: votes, phase results, idempotency keys, overdue deadlines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.persistence.tables import EventRow, IdempotencyRow, PhaseResultRow, PlayerRow, RoomRow, VoteRow


async def db_clock(session: AsyncSession) -> datetime:
    """Return the database's clock now (not the transaction's start): deadlines use one clock."""
    result = await session.exec(select(func.clock_timestamp()))
    now: datetime = result.one()
    return now


async def dealt_players(session: AsyncSession, room_id: uuid.UUID) -> Sequence[PlayerRow]:
    """Return every player dealt into the room's game (those who left included), by seat."""
    result = await session.exec(
        select(PlayerRow)
        .where(col(PlayerRow.room_id) == room_id, col(PlayerRow.role).is_not(None))
        .order_by(col(PlayerRow.seat))
    )
    return result.all()


async def current_ballots(
    session: AsyncSession, room_id: uuid.UUID, round_: int, phase: str, attempt: int
) -> Sequence[VoteRow]:
    """Return each voter's newest vote in one opening of a phase, in the order they were cast."""
    latest = (
        select(VoteRow)
        .where(
            col(VoteRow.room_id) == room_id,
            col(VoteRow.round) == round_,
            col(VoteRow.phase) == phase,
            col(VoteRow.attempt) == attempt,
        )
        .order_by(col(VoteRow.voter_id), col(VoteRow.id).desc())
        .ext(distinct_on(col(VoteRow.voter_id)))
    )
    rows = (await session.exec(latest)).all()
    return sorted(rows, key=lambda v: v.seq)


async def insert_votes(session: AsyncSession, votes: list[dict[str, Any]]) -> None:
    """Record votes as cast (a change is a new row)."""
    if votes:
        await session.exec(insert(VoteRow).values(votes))


async def record_phase_result(session: AsyncSession, result: dict[str, Any]) -> None:
    """Record a closed phase's result."""
    table = PhaseResultRow.__table__  # type: ignore[attr-defined]
    await session.exec(pg_insert(table).values(result))


async def final_votes(session: AsyncSession, room_id: uuid.UUID) -> list[VoteRow]:
    """Return the final vote of every voter in every phase, in the order cast."""
    latest = (
        select(VoteRow)
        .where(col(VoteRow.room_id) == room_id)
        .order_by(
            col(VoteRow.round),
            col(VoteRow.phase),
            col(VoteRow.attempt),
            col(VoteRow.voter_id),
            col(VoteRow.id).desc(),
        )
        .ext(distinct_on(col(VoteRow.round), col(VoteRow.phase), col(VoteRow.attempt), col(VoteRow.voter_id)))
    )
    return sorted((await session.exec(latest)).all(), key=lambda v: v.seq)


async def game_events(session: AsyncSession, room_id: uuid.UUID, types: Sequence[str]) -> Sequence[EventRow]:
    """Return the room's events of the given types, in order (every audience: filter them)."""
    result = await session.exec(
        select(EventRow)
        .where(col(EventRow.room_id) == room_id, col(EventRow.type).in_(types))
        .order_by(col(EventRow.seq))
    )
    return result.all()


async def idempotent_answer(session: AsyncSession, player_id: uuid.UUID, key: str) -> IdempotencyRow | None:
    """Return the stored first answer under a player's idempotency key."""
    return await session.get(IdempotencyRow, (player_id, key))


async def store_idempotent_answer(session: AsyncSession, row: IdempotencyRow) -> None:
    """Keep a command's first answer, in the command's own transaction."""
    session.add(row)


async def lock_overdue_room(session: AsyncSession) -> RoomRow | None:
    """Return one running room whose phase deadline has passed, locked; rooms others hold are skipped."""
    # now() (the transaction's start, this being its first statement), not clock_timestamp():
    # a volatile function cannot bound the deadline index, so every poll of every worker read
    # every running game's entry when nothing was due.
    result = await session.exec(
        select(RoomRow)
        .where(
            col(RoomRow.status) == "in_progress",
            col(RoomRow.phase_ends_at) <= func.now(),
        )
        .order_by(col(RoomRow.phase_ends_at))
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return result.first()
