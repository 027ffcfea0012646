"""Appending to a room's event log under the room's row lock: gapless seq per room."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm.attributes import set_committed_value
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
    last = first + len(events) - 1
    await session.exec(insert(EventRow).values(rows))
    # A plain UPDATE, and the loaded row told without marking it dirty: no ORM flush for it.
    table = RoomRow.__table__  # type: ignore[attr-defined]
    await session.exec(update(table).where(table.c.id == room.id).values(last_seq=last))
    set_committed_value(room, "last_seq", last)
    return last


_APPEND_ONE = (
    "WITH next AS (UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq)"
    " INSERT INTO room_events (room_id, seq, type, data, visibility, audience)"
    " SELECT $1, next.last_seq, $2, $3::jsonb, $4, $5 FROM next"
    " RETURNING seq, created_at"
)


async def append_event(conn: asyncpg.Connection, room_id: uuid.UUID, event: NewEvent) -> StoredEvent:
    """Append one event and return it as stored, in one statement on the driver; the caller
    holds the room row lock."""
    data = json.dumps(event.data)
    seq, at = await conn.fetchrow(
        _APPEND_ONE, room_id, event.type, data, event.visibility.value, event.audience
    )
    return StoredEvent(seq, event.type, event.data, event.visibility.value, event.audience, at)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log."""

    seq: int
    type: str
    data: dict[str, Any]
    visibility: str
    audience: str | None
    at: datetime


_EVENT_COLUMNS = (
    EventRow.__table__.c.seq,  # type: ignore[attr-defined]
    EventRow.__table__.c.type,  # type: ignore[attr-defined]
    EventRow.__table__.c.data,  # type: ignore[attr-defined]
    EventRow.__table__.c.visibility,  # type: ignore[attr-defined]
    EventRow.__table__.c.audience,  # type: ignore[attr-defined]
    EventRow.__table__.c.created_at,  # type: ignore[attr-defined]
)


async def read_events(
    conn: AsyncConnection, room_id: uuid.UUID, after: int, limit: int = 1000
) -> list[StoredEvent]:
    """Return the room's events with seq > `after`, in order, at most `limit`."""
    table = EventRow.__table__  # type: ignore[attr-defined]
    query = (
        select(*_EVENT_COLUMNS)
        .where(table.c.room_id == room_id, table.c.seq > after)
        .order_by(table.c.seq)
        .limit(limit)
    )
    result = await conn.execute(query)
    return [StoredEvent(*row) for row in result]


async def last_seqs(conn: AsyncConnection, room_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Return each room's newest seq."""
    table = RoomRow.__table__  # type: ignore[attr-defined]
    result = await conn.execute(select(table.c.id, table.c.last_seq).where(table.c.id.in_(room_ids)))
    return {row.id: row.last_seq for row in result}
