"""Appending to a room's event log under the room's row lock: gapless seq per room."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import insert, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.core.db import appended
from backend.games.protocol import Visibility
from backend.persistence.tables import EventRow, RoomRow


@dataclass(frozen=True)
class NewEvent:
    """An event a command produced, before it has a seq."""

    type: str
    data: dict[str, Any]
    visibility: Visibility = Visibility.room
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
    appended(session, room.id, last)  # rung by Database.transaction once committed
    return last


# Appends events that change nothing else (chat), several commands' at once, each only if its
# room's state is still the one it was decided on (`state_seq`); seqs follow the order given.
_APPEND_IF_UNCHANGED = """
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
    WITH ORDINALITY AS t(room_id, state_seq, type, data, visibility, audience, ord)
), counts AS (
  SELECT room_id, state_seq, count(*) AS n FROM input GROUP BY room_id, state_seq
), bumped AS (
  UPDATE rooms SET last_seq = rooms.last_seq + counts.n FROM counts
  WHERE rooms.id = counts.room_id AND rooms.state_seq = counts.state_seq
  RETURNING rooms.id, counts.state_seq, rooms.last_seq - counts.n AS base
), numbered AS (
  SELECT input.ord, input.room_id, input.type, input.data::jsonb AS data, input.visibility,
    input.audience, bumped.base + row_number() OVER (PARTITION BY input.room_id ORDER BY input.ord) AS seq
  FROM input JOIN bumped ON bumped.id = input.room_id AND bumped.state_seq = input.state_seq
), stored AS (
  INSERT INTO room_events (room_id, seq, type, data, visibility, audience)
  SELECT room_id, seq, type, data, visibility, audience FROM numbered
  RETURNING created_at
)
SELECT numbered.ord, numbered.seq, (SELECT created_at FROM stored LIMIT 1) FROM numbered
"""


@dataclass(frozen=True, slots=True)
class Append:
    """One event to append to `room_id` if the room's `state_seq` is still this one."""

    room_id: uuid.UUID
    event: NewEvent
    state_seq: int


async def append_if_unchanged(
    conn: asyncpg.Connection, appends: Sequence[Append]
) -> list[StoredEvent | None]:
    """Append events that change nothing else (chat messages), in one statement on the driver,
    each if its room's state is still the one the caller decided on: `state_seq` unchanged.
    Return each one as stored, or None where the state changed meanwhile (the caller reads
    again and decides again). Several events of one room get consecutive seqs, in order.

    No lock is taken first: the statement's own row locks make the seqs gapless, and its
    condition is re-checked on the newest row version if it had to wait, so an event
    appended here follows every state change it was decided on, and precedes the rest.
    """
    rows = await conn.fetch(
        _APPEND_IF_UNCHANGED,
        [a.room_id for a in appends],
        [a.state_seq for a in appends],
        [a.event.type for a in appends],
        [json.dumps(a.event.data) for a in appends],
        [a.event.visibility.value for a in appends],
        [a.event.audience for a in appends],
    )
    stored: list[StoredEvent | None] = [None] * len(appends)
    for position, seq, at in rows:
        event = appends[position - 1].event
        stored[position - 1] = StoredEvent(
            seq, event.type, event.data, event.visibility.value, event.audience, at
        )
    return stored


async def append_event(
    conn: asyncpg.Connection, room_id: uuid.UUID, event: NewEvent, state_seq: int
) -> StoredEvent | None:
    """Append one event if the room's state is still `state_seq` (see `append_if_unchanged`)."""
    return (await append_if_unchanged(conn, [Append(room_id, event, state_seq)]))[0]


class GroupCommit:
    """Commits the chat messages of concurrent commands together: one statement, one commit,
    one WAL flush for all that arrived while the previous group was being written.

    A command's append waits for its group's commit, so nothing is acknowledged before it is
    durable; one group at a time (its rooms' row locks are taken by one statement, so groups
    cannot deadlock each other). Alone, an append is written at once, as before: the group
    is whatever queued during the last round trip, so the busier the server, the fewer commits
    per message, and no timer adds latency to a quiet one.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
        on_commit: Callable[[int], None] = lambda size: None,
        max_group: int = 500,
    ) -> None:
        self._connect = connect
        self._on_commit = on_commit
        self.max_group = max_group
        self._queued: list[tuple[Append, asyncio.Future[StoredEvent | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, room_id: uuid.UUID, event: NewEvent, state_seq: int) -> StoredEvent | None:
        """Append `event` if the room's state is still `state_seq`; return it as stored, or
        None (see `append_if_unchanged`). Raises what the group's statement raised."""
        future: asyncio.Future[StoredEvent | None] = asyncio.get_running_loop().create_future()
        self._queued.append((Append(room_id, event, state_seq), future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="group-commit")
        return await future

    async def _write(self) -> None:
        group: list[tuple[Append, asyncio.Future[StoredEvent | None]]] = []
        try:
            while self._queued:
                group, self._queued = self._queued[: self.max_group], self._queued[self.max_group :]
                if not await self._commit(group):
                    # One append the database refuses must not cost the others theirs.
                    for one in group:
                        await self._commit([one])
                group = []
        except BaseException:  # cancelled (shutting down): nobody is left waiting forever
            for _, future in group + self._queued:
                future.cancel()
            self._queued = []
            raise
        finally:
            self._writer = None

    async def _commit(self, group: list[tuple[Append, asyncio.Future[StoredEvent | None]]]) -> bool:
        """Append the group in one statement and answer each waiting caller with its result or
        the error; False, with nobody answered, when the database refused the data of a group
        of several (the writer then tries each alone)."""
        try:
            async with self._connect() as conn:
                stored = await append_if_unchanged(conn, [append for append, _ in group])
        except Exception as exc:
            if isinstance(exc, asyncpg.DataError) and len(group) > 1:
                return False
            for _, future in group:
                if not future.done():  # its caller may have gone
                    future.set_exception(exc)
            return True
        self._on_commit(len(group))
        for (_, future), event in zip(group, stored, strict=True):
            if not future.done():
                future.set_result(event)
        return True


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


async def read_events_of_rooms(
    conn: asyncpg.Connection, after: dict[uuid.UUID, int], limit: int = 1000
) -> dict[uuid.UUID, list[StoredEvent]]:
    """Return, for each room of `after`, its events with seq > `after[room]`, in order, at most
    `limit` per room: the reads of every room a doorbell rang for, in one statement."""
    rows = await conn.fetch(
        "SELECT w.room_id, e.seq, e.type, e.data, e.visibility, e.audience, e.created_at"
        " FROM unnest($1::uuid[], $2::bigint[]) AS w(room_id, after)"
        " CROSS JOIN LATERAL (SELECT * FROM room_events WHERE room_id = w.room_id AND seq > w.after"
        " ORDER BY seq LIMIT $3) AS e ORDER BY w.room_id, e.seq",
        list(after),
        list(after.values()),
        limit,
    )
    found: dict[uuid.UUID, list[StoredEvent]] = {}
    for room_id, *event in rows:
        found.setdefault(room_id, []).append(StoredEvent(*event))
    return found


async def last_seqs(conn: asyncpg.Connection, room_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Return each room's newest seq."""
    rows = await conn.fetch("SELECT id, last_seq FROM rooms WHERE id = ANY($1::uuid[])", room_ids)
    return {row[0]: row[1] for row in rows}
