"""All SQL about rooms and players."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from sqlalchemy import delete, func, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.domain.lobby import new_join_code
from backend.persistence.tables import PlayerRow, RoomRow, StreamLeaseRow


async def lock_room(session: AsyncSession, room_id: uuid.UUID) -> RoomRow | None:
    """Return the room with its row locked until the transaction ends."""
    result = await session.exec(
        select(RoomRow).where(col(RoomRow.id) == room_id).with_for_update(key_share=True)
    )
    return result.first()


async def get_room(session: AsyncSession, room_id: uuid.UUID) -> RoomRow | None:
    """Return the room, unlocked."""
    return await session.get(RoomRow, room_id)


async def present_players(session: AsyncSession, room_id: uuid.UUID) -> Sequence[PlayerRow]:
    """Return the players still in the room, by seat."""
    result = await session.exec(
        select(PlayerRow)
        .where(col(PlayerRow.room_id) == room_id, col(PlayerRow.left_at).is_(None))
        .order_by(col(PlayerRow.seat))
    )
    return result.all()


async def present_player(
    session: AsyncSession, room_id: uuid.UUID, player_id: uuid.UUID, *, lock: bool = False
) -> PlayerRow | None:
    """Return one player if still in the room (with `lock`, its row locked until the end)."""
    statement = select(PlayerRow).where(
        col(PlayerRow.id) == player_id,
        col(PlayerRow.room_id) == room_id,
        col(PlayerRow.left_at).is_(None),
    )
    result = await session.exec(statement.with_for_update(key_share=True) if lock else statement)
    return result.first()


async def count_present(session: AsyncSession, room_id: uuid.UUID) -> int:
    """Return how many players are in the room."""
    result = await session.exec(
        select(func.count())
        .select_from(PlayerRow)
        .where(col(PlayerRow.room_id) == room_id, col(PlayerRow.left_at).is_(None))
    )
    return int(result.one())


async def others_connected(session: AsyncSession, room_id: uuid.UUID, player_id: uuid.UUID) -> bool:
    """Return whether a present player of the room other than `player_id` is connected."""
    result = await session.exec(
        select(func.count())
        .select_from(PlayerRow)
        .where(
            col(PlayerRow.room_id) == room_id,
            col(PlayerRow.id) != player_id,
            col(PlayerRow.left_at).is_(None),
            col(PlayerRow.connected).is_(True),
        )
    )
    return int(result.one()) > 0


# A token is a present player's or a spectator's (never both: each is 32 random bytes).
_HOLDER = (
    "SELECT id, room_id, team, false FROM players WHERE token_hash = $1 AND left_at IS NULL"
    " UNION ALL SELECT id, room_id, NULL, true FROM spectators WHERE token_hash = $1"
    " LIMIT 1"
)


async def token_holder(
    conn: asyncpg.Connection, token_hash: str
) -> tuple[uuid.UUID, uuid.UUID, str | None, bool] | None:
    """Return (player or spectator, room, team, is a spectator) of the token with this hash.

    Every authenticated request asks this: one prepared statement on the driver, over players
    and spectators alike (two unique-index lookups).
    """
    row = await conn.fetchrow(_HOLDER, token_hash)
    return None if row is None else (row[0], row[1], row[2], row[3])


async def spectator_room(conn: asyncpg.Connection, token_hash: str) -> uuid.UUID | None:
    """Return the room of the spectator holding the token with this hash, if one does."""
    room_id: uuid.UUID | None = await conn.fetchval(
        "SELECT room_id FROM spectators WHERE token_hash = $1", token_hash
    )
    return room_id


@dataclass(frozen=True, slots=True)
class Speaker:
    """A present player about to chat, and their room, as one statement read them."""

    player_id: uuid.UUID
    room_id: uuid.UUID
    team: str | None
    alive: bool
    status: str
    ruleset: str
    phase: str | None
    # The room's state_seq when read: the append goes through only while it is unchanged.
    state_seq: int


_SPEAKER = (
    "SELECT p.id, p.room_id, p.team, p.alive, r.status, r.ruleset, r.phase, r.state_seq"
    " FROM players p JOIN rooms r ON r.id = p.room_id WHERE {} AND p.left_at IS NULL"
)
_SPEAKER_BY_TOKEN = _SPEAKER.format("p.token_hash = $1")
_SPEAKER_BY_ID = _SPEAKER.format("p.id = $1")


async def speaker_by_token(conn: asyncpg.Connection, token_hash: str) -> Speaker | None:
    """Return the present player holding the token with this hash, with their room."""
    row = await conn.fetchrow(_SPEAKER_BY_TOKEN, token_hash)
    return None if row is None else Speaker(*row)


async def speaker_by_id(conn: asyncpg.Connection, player_id: uuid.UUID) -> Speaker | None:
    """Return the present player `player_id`, with their room."""
    row = await conn.fetchrow(_SPEAKER_BY_ID, player_id)
    return None if row is None else Speaker(*row)


async def lock_room_row(conn: asyncpg.Connection, room_id: uuid.UUID) -> None:
    """Lock the room's row until the driver transaction ends."""
    await conn.execute("SELECT 1 FROM rooms WHERE id = $1 FOR NO KEY UPDATE", room_id)


# Quick joins of one ruleset take turns on this lock (the second key: the ruleset's hash).
QUICK_JOIN_LOCK = 0x51C7


async def take_quick_join_turn(session: AsyncSession, ruleset: str) -> None:
    """Wait for the quick joins of `ruleset` before this one; the turn lasts until the
    transaction ends (committed, so the next one sees the seat this one took)."""
    await session.exec(select(func.pg_advisory_xact_lock(QUICK_JOIN_LOCK, func.hashtext(ruleset))))


async def open_lobbies(session: AsyncSession, ruleset: str) -> list[uuid.UUID]:
    """Return the public lobbies of `ruleset` with a free seat, the fullest first, then the
    oldest (the quick join's order of preference). Unlocked: the join counts again under
    the room's lock."""
    players = (
        select(func.count())
        .where(col(PlayerRow.room_id) == col(RoomRow.id), col(PlayerRow.left_at).is_(None))
        .correlate(RoomRow)
        .scalar_subquery()
    )
    result = await session.exec(
        select(RoomRow.id)
        .where(
            col(RoomRow.status) == "lobby",
            col(RoomRow.ruleset) == ruleset,
            RoomRow.settings["private"].as_boolean().is_(False),
            players < RoomRow.settings["max_players"].as_integer(),
        )
        .order_by(players.desc(), col(RoomRow.list_key))
    )
    return list(result.all())


async def insert_room(session: AsyncSession, room: RoomRow, attempts: int = 8) -> None:
    """Insert `room`, drawing a new join code while its code is held by an unfinished room."""
    for _ in range(attempts):
        try:
            async with session.begin_nested():
                session.add(room)
                await session.flush()
            return
        except IntegrityError as exc:
            if "uq_rooms_code_unfinished" not in str(exc.orig):
                raise
            room.code = new_join_code()
    raise RuntimeError("no free join code after several attempts")


async def list_rooms(
    session: AsyncSession, *, status: str | None, code: str | None, limit: int, before: int | None
) -> Sequence[tuple[RoomRow, int]]:
    """Return up to `limit` rooms newest first, with their player counts."""
    players = (
        select(func.count())
        .where(col(PlayerRow.room_id) == col(RoomRow.id), col(PlayerRow.left_at).is_(None))
        .correlate(RoomRow)
        .scalar_subquery()
    )
    query = select(RoomRow, players).order_by(col(RoomRow.list_key).desc()).limit(limit)
    if code is not None:
        # Knowing the code is the invitation: private rooms are found by code, never listed.
        query = query.where(col(RoomRow.code) == code, col(RoomRow.status).in_(("lobby", "in_progress")))
    else:
        query = query.where(RoomRow.settings["private"].as_boolean().is_(False))
    if status is not None:
        query = query.where(col(RoomRow.status) == status)
    if before is not None:
        query = query.where(col(RoomRow.list_key) < before)
    result = await session.exec(query)
    return [(room, int(count)) for room, count in result.all()]


LEASE_TTL_SECONDS = 30


async def hold_lease(
    session: AsyncSession, worker_id: uuid.UUID, room_id: uuid.UUID, player_id: uuid.UUID
) -> None:
    """Record that this worker has a stream of the player open."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    statement = pg_insert(table).values(worker_id=worker_id, room_id=room_id, player_id=player_id)
    await session.exec(
        statement.on_conflict_do_update(
            index_elements=["worker_id", "player_id"], set_={"seen_at": func.now()}
        )
    )


_HOLD_IF_CONNECTED = """
WITH shown AS (
    SELECT id, room_id FROM players
    WHERE id = $2 AND room_id = $3 AND left_at IS NULL AND connected
    FOR SHARE
)
INSERT INTO stream_leases (worker_id, player_id, room_id)
SELECT $1, id, room_id FROM shown
ON CONFLICT (worker_id, player_id) DO UPDATE SET seen_at = now()
RETURNING 1
"""


async def hold_lease_if_connected(
    conn: asyncpg.Connection, worker_id: uuid.UUID, room_id: uuid.UUID, player_id: uuid.UUID
) -> bool:
    """Hold this worker's lease on a player the room already shows connected: one statement,
    no room lock. False when the player is not shown connected (or has left): the caller
    then records the change under the room's lock.

    The player's row is share-locked while the lease is written. A worker recording the
    player's last stream closed locks that row before it looks for leases, so it either
    sees this lease (and keeps the player connected) or has already shown the player
    disconnected, which this statement then reads (and writes nothing).
    """
    return await conn.fetchval(_HOLD_IF_CONNECTED, worker_id, player_id, room_id) is not None


async def drop_lease(session: AsyncSession, worker_id: uuid.UUID, player_id: uuid.UUID) -> None:
    """Record that this worker has no stream of the player open any more."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    await session.exec(delete(table).where(table.c.worker_id == worker_id, table.c.player_id == player_id))


async def has_fresh_lease(session: AsyncSession, player_id: uuid.UUID) -> bool:
    """Return whether any living worker holds a stream of the player."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    fresh = func.now() - text(f"interval '{LEASE_TTL_SECONDS} seconds'")
    result = await session.exec(
        select(func.count()).select_from(table).where(table.c.player_id == player_id, table.c.seen_at > fresh)
    )
    return int(result.one()) > 0


async def drop_worker_leases(session: AsyncSession, worker_id: uuid.UUID) -> None:
    """Forget every lease of a worker that is going away."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    await session.exec(delete(table).where(table.c.worker_id == worker_id))


async def renew_leases(session: AsyncSession, worker_id: uuid.UUID) -> None:
    """Mark this worker's leases as alive."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    await session.exec(update(table).where(table.c.worker_id == worker_id).values(seen_at=func.now()))


async def orphaned_presence(session: AsyncSession) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Return (room, player) of connected players whose every stream lease has lapsed (a dead worker)."""
    table = StreamLeaseRow.__table__  # type: ignore[attr-defined]
    fresh = func.now() - text(f"interval '{LEASE_TTL_SECONDS} seconds'")
    alive = select(table.c.player_id).where(table.c.player_id == PlayerRow.id, table.c.seen_at > fresh)
    result = await session.exec(
        select(PlayerRow.room_id, PlayerRow.id).where(
            col(PlayerRow.connected).is_(True), col(PlayerRow.left_at).is_(None), ~alive.exists()
        )
    )
    return [(room_id, player_id) for room_id, player_id in result.all()]
