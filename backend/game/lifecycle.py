"""Room lifecycle: idle lobbies close, abandoned games end, ended rooms are purged.

PRODUCT.md "Room lifecycle". A room is idle (`rooms.idle_since`) while none of its players
has a stream open on any worker (see rooms.service.set_presence); a lobby idle for
`LOBBY_IDLE_MINUTES` closes (`room.closed`, reason `idle`), a game idle for
`GAME_IDLE_MINUTES` ends without a winner (`room.closed`, reason `abandoned`), and a room
`finished` or `closed` for `RETENTION_DAYS` (`rooms.ended_at`) is deleted with everything
that hangs off it (players, events, votes, results, idempotency keys, leases: ON DELETE
CASCADE). A rematch takes a finished room back into play and clears `ended_at`: its
retention counts from the end of its last game, and its new game idles like any other.

Every worker's scheduler sweeps every `LIFECYCLE_SWEEP_SECONDS`: one indexed query finds
the rooms due, by the database clock; each is then locked with SKIP LOCKED and checked
again, so a room closes exactly once whichever worker gets it, and a room a command holds
now (someone just connected) waits for the next sweep. A closed room has no deadline left,
so the deadline scheduler never fires for it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.contract import events
from backend.core.config import Settings
from backend.game import repository
from backend.persistence.events import NewEvent, append_events
from backend.persistence.tables import RoomRow
from backend.rooms import repository as rooms_repository
from backend.rooms.service import Committed
from backend.rooms.views import room_view

# Rooms of each kind handled per sweep; a fuller backlog is taken by the next sweeps.
BATCH = 100

IDLE = "idle"
ABANDONED = "abandoned"
OPERATOR = "operator"
PURGE = "purge"


@dataclass(frozen=True)
class Lifetimes:
    """How long, in seconds, an idle lobby or game lives, and an ended room is kept."""

    lobby_idle: float
    game_idle: float
    retention: float

    @classmethod
    def of(cls, settings: Settings) -> Lifetimes:
        """Return the lifetimes the settings give."""
        return cls(
            lobby_idle=settings.lobby_idle_minutes * 60,
            game_idle=settings.game_idle_minutes * 60,
            retention=settings.retention_days * 86400,
        )


# One statement for the three questions, each branch a range scan of its partial index
# (ix_rooms_idle, ix_rooms_ended); nothing is locked here. now(), not clock_timestamp():
# a volatile function's value cannot bound an index scan, and this reads in autocommit,
# where now() is the statement's start.
_DUE = text(
    "(SELECT id, 'idle' AS why FROM rooms WHERE status = 'lobby'"
    " AND idle_since <= now() - make_interval(secs => :lobby_idle)"
    " ORDER BY idle_since LIMIT :batch)"
    " UNION ALL (SELECT id, 'abandoned' FROM rooms WHERE status = 'in_progress'"
    " AND idle_since <= now() - make_interval(secs => :game_idle)"
    " ORDER BY idle_since LIMIT :batch)"
    " UNION ALL (SELECT id, 'purge' FROM rooms WHERE status IN ('finished', 'closed')"
    " AND ended_at <= now() - make_interval(secs => :retention)"
    " ORDER BY ended_at LIMIT :batch)"
)

# Deletes the rooms still due that nobody holds; the rest wait for a later sweep.
_PURGE = text(
    "DELETE FROM rooms WHERE id IN (SELECT id FROM rooms WHERE id = ANY(:ids)"
    " AND status IN ('finished', 'closed')"
    " AND ended_at <= now() - make_interval(secs => :retention)"
    " FOR UPDATE SKIP LOCKED)"
)


def _params(lifetimes: Lifetimes) -> dict[str, Any]:
    return {
        "lobby_idle": lifetimes.lobby_idle,
        "game_idle": lifetimes.game_idle,
        "retention": lifetimes.retention,
    }


async def due_rooms(session: AsyncSession, lifetimes: Lifetimes) -> list[tuple[uuid.UUID, str]]:
    """Return (room, what is due: idle, abandoned or purge) for rooms whose time has come."""
    result = await (await session.connection()).execute(_DUE, {**_params(lifetimes), "batch": BATCH})
    return [(room_id, why) for room_id, why in result.all()]


async def close_idle_room(
    session: AsyncSession, room_id: uuid.UUID, reason: str, lifetimes: Lifetimes
) -> Committed | None:
    """Close the room if it is still an idle lobby (`idle`) or an abandoned game (`abandoned`)
    past its time; None when it is not any more, or another transaction holds it now."""
    status, idle = ("lobby", lifetimes.lobby_idle) if reason == IDLE else ("in_progress", lifetimes.game_idle)
    result = await session.exec(
        select(RoomRow)
        .where(
            col(RoomRow.id) == room_id,
            col(RoomRow.status) == status,
            col(RoomRow.idle_since) <= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, idle),
        )
        .with_for_update(skip_locked=True, key_share=True)
    )
    room = result.first()
    if room is None:
        return None
    return await close_room(session, room, reason)


async def close_room(session: AsyncSession, room: RoomRow, reason: str) -> Committed:
    """Close a room the caller holds locked, whatever it was doing, and tell its streams
    (`room.closed` with `reason`): no timer fires for it again, no command is taken. A finished
    room keeps the time it ended (its retention counts from there)."""
    room.status = "closed"
    room.phase, room.phase_ends_at = None, None  # no timer fires for it again
    room.host_player_id = None
    room.idle_since = None
    room.ended_at = room.ended_at or await repository.db_clock(session)
    session.add(room)
    await session.flush()
    count = await rooms_repository.count_present(session, room.id)
    data = events.RoomClosedData(reason=events.RoomClosedReason(reason), room=room_view(room, count))
    last_seq = await append_events(session, room, [NewEvent("room.closed", data.model_dump(mode="json"))])
    return Committed(room.id, last_seq)


async def purge_rooms(session: AsyncSession, room_ids: list[uuid.UUID], lifetimes: Lifetimes) -> int:
    """Delete those of the rooms still past their retention; return how many."""
    if not room_ids:
        return 0
    conn = await session.connection()
    result = await conn.execute(_PURGE, {"ids": room_ids, "retention": lifetimes.retention})
    return int(result.rowcount)
