"""Appending to a room's event log under the room's row lock: gapless seq per room."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import insert, update
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
    """Append `events` with seqs last_seq+1...; the caller holds the room row lock.

    Every change to a room or its players comes with events appended here: `state_seq`
    moves with them, which is what chat's unlocked append checks (see `append_event`).
    """
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
    await session.exec(update(table).where(table.c.id == room.id).values(last_seq=last, state_seq=last))
    set_committed_value(room, "last_seq", last)
    set_committed_value(room, "state_seq", last)
    return last


_APPEND_IF_UNCHANGED = (
    "WITH next AS (UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 AND state_seq = $6"
    " RETURNING last_seq)"
    " INSERT INTO room_events (room_id, seq, type, data, visibility, audience)"
    " SELECT $1, next.last_seq, $2, $3::jsonb, $4, $5 FROM next"
    " RETURNING seq, created_at"
)


async def append_event(
    conn: asyncpg.Connection, room_id: uuid.UUID, event: NewEvent, state_seq: int
) -> StoredEvent | None:
    """Append one event that changes nothing else (a chat message), in one statement on the
    driver, if the room's state is still the one the caller decided on: `state_seq` unchanged.
    None when it changed meanwhile (the caller reads again and decides again).

    No lock is taken first: the statement's own row lock makes the seq gapless, and its
    condition is re-checked on the newest row version if it had to wait, so an event
    appended here follows every state change it was decided on, and precedes the rest.
    """
    row = await conn.fetchrow(
        _APPEND_IF_UNCHANGED,
        room_id,
        event.type,
        json.dumps(event.data),
        event.visibility.value,
        event.audience,
        state_seq,
    )
    if row is None:
        return None
    seq, at = row
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


async def read_events(
    conn: asyncpg.Connection, room_id: uuid.UUID, after: int, limit: int = 1000
) -> list[StoredEvent]:
    """Return the room's events with seq > `after`, in order, at most `limit` (on the driver:
    each worker runs this once per doorbell)."""
    rows = await conn.fetch(
        "SELECT seq, type, data, visibility, audience, created_at FROM room_events"
        " WHERE room_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        room_id,
        after,
        limit,
    )
    return [StoredEvent(*row) for row in rows]


async def last_seqs(conn: asyncpg.Connection, room_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Return each room's newest seq."""
    rows = await conn.fetch("SELECT id, last_seq FROM rooms WHERE id = ANY($1::uuid[])", room_ids)
    return {row[0]: row[1] for row in rows}
