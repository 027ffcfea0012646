"""Appending to a room's event log under the room's row lock: gapless seq per room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.visibility import Audience
from backend.persistence.tables import EventRow, RoomRow


@dataclass(frozen=True)
class NewEvent:
    """An event a command produced, before it has a seq."""

    type: str
    data: dict[str, Any]
    visibility: Audience = Audience.room
    audience: str | None = None


async def append_events(session: AsyncSession, room: RoomRow, events: list[NewEvent]) -> int:
    """Append `events` with seqs last_seq+1...; the caller holds the room row lock."""
    if not events:
        return room.last_seq
    first = room.last_seq + 1
    rows = [
        {
            "room_id": room.id,
            "seq": first + i,
            "type": e.type,
            "data": e.data,
            "visibility": e.visibility.value,
            "audience": e.audience,
        }
        for i, e in enumerate(events)
    ]
    await session.exec(insert(EventRow).values(rows))
    room.last_seq = first + len(events) - 1
    session.add(room)
    return room.last_seq
