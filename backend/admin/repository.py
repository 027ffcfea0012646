"""All SQL of the operators' view: a page of rooms is three statements, whatever its size."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.persistence.tables import EventRow, PlayerRow, RoomRow


def _last_event_at() -> Any:
    """When the room's newest event was written: one primary-key look-up per room, in the same
    statement (NULL before any event)."""
    return (
        select(EventRow.created_at)
        .where(col(EventRow.room_id) == col(RoomRow.id), col(EventRow.seq) == col(RoomRow.last_seq))
        .correlate(RoomRow)
        .scalar_subquery()
    )


async def list_rooms(
    session: AsyncSession, *, status: str | None, limit: int, before: int | None
) -> list[tuple[RoomRow, datetime | None]]:
    """Return up to `limit` rooms newest first (those in `status`, else every room not closed),
    each with the time of its newest event."""
    query = select(RoomRow, _last_event_at()).order_by(col(RoomRow.list_key).desc()).limit(limit)
    if status is not None:
        query = query.where(col(RoomRow.status) == status)
    else:
        query = query.where(col(RoomRow.status) != "closed")
    if before is not None:
        query = query.where(col(RoomRow.list_key) < before)
    result = await session.exec(query)
    return [(room, at) for room, at in result.all()]


async def get_room(session: AsyncSession, room_id: uuid.UUID) -> tuple[RoomRow, datetime | None] | None:
    """Return the room with the time of its newest event."""
    result = await session.exec(select(RoomRow, _last_event_at()).where(col(RoomRow.id) == room_id))
    row = result.first()
    return None if row is None else (row[0], row[1])


async def present_players(
    session: AsyncSession, room_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[PlayerRow]]:
    """Return the players present in each of the rooms, by seat."""
    players: dict[uuid.UUID, list[PlayerRow]] = {room_id: [] for room_id in room_ids}
    if not room_ids:
        return players
    result = await session.exec(
        select(PlayerRow)
        .where(col(PlayerRow.room_id).in_(room_ids), col(PlayerRow.left_at).is_(None))
        .order_by(col(PlayerRow.room_id), col(PlayerRow.seat))
    )
    for player in result.all():
        players[player.room_id].append(player)
    return players


async def events_after(
    session: AsyncSession, room_id: uuid.UUID, after: int, limit: int
) -> Sequence[EventRow]:
    """Return up to `limit` of the room's events after seq `after`, every audience, in order."""
    result = await session.exec(
        select(EventRow)
        .where(col(EventRow.room_id) == room_id, col(EventRow.seq) > after)
        .order_by(col(EventRow.seq))
        .limit(limit)
    )
    return result.all()


async def game_log(
    session: AsyncSession, room_id: uuid.UUID, start: int, end: int | None, before: Sequence[str]
) -> Sequence[EventRow]:
    """Return a game's events (seq `start` up to `end`, excluded; to the newest when None), after
    those of the `before` types that came earlier, every audience, in order."""
    query = (
        select(EventRow)
        .where(
            col(EventRow.room_id) == room_id,
            or_(col(EventRow.seq) >= start, col(EventRow.type).in_(before)),
        )
        .order_by(col(EventRow.seq))
    )
    if end is not None:
        query = query.where(col(EventRow.seq) < end)
    result = await session.exec(query)
    return result.all()
