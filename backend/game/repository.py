"""All SQL about the game: votes, phase results, idempotency keys, overdue deadlines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import func, insert, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.persistence.tables import (
    EventRow,
    IdempotencyRow,
    PhaseResultRow,
    PlayerRecord,
    PlayerRow,
    RoomRecord,
    RoomRow,
    VoteRow,
)


async def db_clock(session: AsyncSession) -> datetime:
    """Return the database's clock now (not the transaction's start): deadlines use one clock."""
    result = await session.exec(select(func.clock_timestamp()))
    now: datetime = result.one()
    return now


async def current_ballots(
    session: AsyncSession, room_id: uuid.UUID, game: int, round_: int, phase: str, attempt: int
) -> Sequence[VoteRow]:
    """Return each voter's newest vote in one opening of a phase of game number `game`, in the
    order they were cast."""
    latest = (
        select(VoteRow)
        .where(
            col(VoteRow.room_id) == room_id,
            col(VoteRow.game) == game,
            col(VoteRow.round) == round_,
            col(VoteRow.phase) == phase,
            col(VoteRow.attempt) == attempt,
        )
        .order_by(col(VoteRow.voter_id), col(VoteRow.id).desc())
        .ext(distinct_on(col(VoteRow.voter_id)))
    )
    rows = (await session.exec(latest)).all()
    return sorted(rows, key=lambda v: v.seq)


async def reset_seats(session: AsyncSession, room_id: uuid.UUID) -> None:
    """Undeal every player of the room, present or departed: no role, no team, alive."""
    table = PlayerRow.__table__  # type: ignore[attr-defined]
    await session.exec(
        update(table)
        .where(table.c.room_id == room_id, table.c.role.is_not(None))
        .values(role=None, team=None, alive=True)
    )


async def insert_votes(session: AsyncSession, votes: list[dict[str, Any]]) -> None:
    """Record votes as cast (a change is a new row)."""
    if votes:
        await session.exec(insert(VoteRow).values(votes))


async def record_phase_result(session: AsyncSession, result: dict[str, Any]) -> None:
    """Record a closed phase's result."""
    table = PhaseResultRow.__table__  # type: ignore[attr-defined]
    await session.exec(pg_insert(table).values(result))


async def final_votes(session: AsyncSession, room_id: uuid.UUID, game: int) -> list[VoteRow]:
    """Return the final vote of every voter in every phase of game number `game`, in the order
    cast (an earlier game's round 1 is another round 1)."""
    latest = (
        select(VoteRow)
        .where(col(VoteRow.room_id) == room_id, col(VoteRow.game) == game)
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


async def game_starts(session: AsyncSession, room_id: uuid.UUID) -> list[int]:
    """Return the seq of each `game.started` of the room, oldest first: game N's events are
    those from the N-th up to the next."""
    result = await session.exec(
        select(EventRow.seq)
        .where(col(EventRow.room_id) == room_id, col(EventRow.type) == "game.started")
        .order_by(col(EventRow.seq))
    )
    return list(result.all())


async def game_events(
    session: AsyncSession,
    room_id: uuid.UUID,
    types: Sequence[str],
    after: int = 0,
    before: int | None = None,
) -> Sequence[EventRow]:
    """Return the room's events of the given types with a seq above `after` (and below
    `before`), in order (every audience: filter them)."""
    query = select(EventRow).where(
        col(EventRow.room_id) == room_id, col(EventRow.type).in_(types), col(EventRow.seq) > after
    )
    if before is not None:
        query = query.where(col(EventRow.seq) < before)
    result = await session.exec(query.order_by(col(EventRow.seq)))
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


# The command path's own statements, on the transaction's asyncpg connection (see
# backend.core.db.session_driver): prepared once per connection, no ORM statement building,
# no greenlet hop. A command reads its room (locked) and its players, then writes once.

# In RoomRecord's field order (records are built positionally).
ROOM_COLUMNS = (
    "id, list_key, code, name, ruleset, status, settings, host_player_id, round, phase, "
    "phase_ends_at, winner, game, last_seq, state_seq, created_at, idle_since, ended_at, game_number"
)
# In PlayerRecord's field order (records are built positionally).
PLAYER_COLUMNS = (
    "id, room_id, nickname, nickname_key, nickname_skeleton, seat, token_hash, alive, connected, "
    "team, role, joined_at, left_at, left_reason"
)
_ROOM_FIELDS = tuple(c.strip() for c in ROOM_COLUMNS.split(","))

# The room locked, the database clock, and the first answer under the caller's idempotency key
# (if any), in one round trip.
_LOCK_ROOM = f"""
SELECT {", ".join("r." + c for c in _ROOM_FIELDS)}, clock_timestamp() AS now,
       i.request_hash AS idem_hash, i.status_code AS idem_status, i.body AS idem_body
FROM rooms r
LEFT JOIN idempotency_keys i ON i.player_id = $2 AND i.key = $3
WHERE r.id = $1
FOR NO KEY UPDATE OF r
"""

# Everyone the game needs: the players dealt in (those who left included) and those present.
_TABLE_PLAYERS = f"""
SELECT {PLAYER_COLUMNS} FROM players
WHERE room_id = $1 AND (role IS NOT NULL OR left_at IS NULL)
ORDER BY seat
"""


@dataclass(frozen=True)
class Locked:
    """A room read under its row lock, with the clock and a stored first answer."""

    room: RoomRecord
    now: datetime
    first: IdempotencyRow | None


async def lock_room_raw(
    conn: asyncpg.Connection, room_id: uuid.UUID, player_id: uuid.UUID, key: str | None
) -> Locked | None:
    """Return the room locked until the transaction ends, the database clock, and the caller's
    first answer under `key`."""
    record = await conn.fetchrow(_LOCK_ROOM, room_id, player_id, key)
    if record is None:
        return None
    first = None
    if key is not None and record["idem_hash"] is not None:
        first = IdempotencyRow(
            player_id=player_id,
            key=key,
            request_hash=record["idem_hash"],
            status_code=record["idem_status"],
            body=record["idem_body"],
        )
    return Locked(RoomRecord(*(record[name] for name in _ROOM_FIELDS)), record["now"], first)


async def table_players(conn: asyncpg.Connection, room_id: uuid.UUID) -> list[PlayerRecord]:
    """Return the players dealt into the room's game and those present, by seat."""
    return [PlayerRecord(*r) for r in await conn.fetch(_TABLE_PLAYERS, room_id)]


async def clock(conn: asyncpg.Connection) -> datetime:
    """Return the database's clock now."""
    now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return now


# A command's whole write in one statement: the room's state and seqs, its events, the votes
# and results its facts record (of the room's game number, $40), the seats that changed, and
# its first answer under an idempotency key. Each part takes arrays (unnest), empty when there
# is nothing to write.
_WRITE = """
WITH room AS (
  UPDATE rooms SET game = $2::text::jsonb, round = $3, phase = $4, phase_ends_at = $5,
    status = $6, winner = $7, ended_at = $8, last_seq = $9, state_seq = $9
  WHERE id = $1
), new_events AS (
  INSERT INTO room_events (room_id, seq, type, data, visibility, audience)
  SELECT $1, e.seq, e.type, e.data::jsonb, e.visibility, e.audience
  FROM unnest($10::bigint[], $11::text[], $12::text[], $13::text[], $14::text[])
    AS e(seq, type, data, visibility, audience)
), new_votes AS (
  INSERT INTO votes (room_id, game, round, phase, attempt, action, voter_id, target_player_id,
                     choice, visibility, audience, seq)
  SELECT $1, $40::int, v.round, v.phase, v.attempt, v.action, v.voter_id, v.target, v.choice,
         v.visibility, v.audience, v.seq
  FROM unnest($15::int[], $16::text[], $17::int[], $18::text[], $19::uuid[], $20::uuid[],
              $21::text[], $22::text[], $23::text[], $24::bigint[])
    AS v(round, phase, attempt, action, voter_id, target, choice, visibility, audience, seq)
), new_results AS (
  INSERT INTO phase_results (room_id, game, round, phase, attempt, tally, eliminated_player_id,
                             details)
  SELECT $1, $40::int, p.round, p.phase, p.attempt, p.tally::jsonb, p.eliminated, p.details::jsonb
  FROM unnest($25::int[], $26::text[], $27::int[], $28::text[], $29::uuid[], $30::text[])
    AS p(round, phase, attempt, tally, eliminated, details)
), seats AS (
  UPDATE players SET role = s.role, team = s.team, alive = s.alive
  FROM unnest($31::uuid[], $32::text[], $33::text[], $34::bool[]) AS s(id, role, team, alive)
  WHERE players.id = s.id
), answer AS (
  INSERT INTO idempotency_keys (player_id, key, request_hash, status_code, body)
  SELECT $35, $36, $37, $38, $39::text::jsonb WHERE $35::uuid IS NOT NULL
)
SELECT 1
"""


async def write_command(conn: asyncpg.Connection, args: Sequence[Any]) -> None:
    """Run the command's one write (`_WRITE`) with its 40 arguments."""
    await conn.execute(_WRITE, *args)
