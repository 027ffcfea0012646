"""What operators may do: see every room as it is (roles, hidden events and all), replay a game
from its log, close a room. Nothing here is shown to a player; the endpoints admit only the
server's `ADMIN_TOKEN`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from backend.admin import repository
from backend.contract import api
from backend.core.problems import RoomNotFound
from backend.game import lifecycle
from backend.game import service as game_service
from backend.games import replay
from backend.games.errors import GameNotFound
from backend.games.protocol import Visibility
from backend.persistence.tables import EventRow, PlayerRow, RoomRow
from backend.realtime.streams import Realtime
from backend.rooms import repository as rooms_repository
from backend.rooms.views import player_view, room_view


def _admin_room(
    room: RoomRow,
    players: Sequence[PlayerRow],
    last_event_at: datetime | None,
    streams: int,
    spectators: int,
) -> api.AdminRoom:
    assert room.created_at is not None
    return api.AdminRoom(
        id=room.id,
        code=room.code,
        name=room.name,
        ruleset=api.Ruleset(room.ruleset),
        status=api.RoomStatus(room.status),
        game=room.game_number,
        round=room.round,
        phase=api.Phase(room.phase) if room.phase else None,
        phase_ends_at=room.phase_ends_at,
        winner=api.Team(room.winner) if room.winner else None,
        host_player_id=room.host_player_id,
        players=[player_view(p, room, visible=True) for p in players],
        streams=streams,
        spectator_count=spectators,
        last_seq=room.last_seq,
        last_event_at=last_event_at,
        created_at=room.created_at,
    )


async def _admin_rooms(
    session: AsyncSession, realtime: Realtime, rows: Sequence[tuple[RoomRow, datetime | None]]
) -> list[api.AdminRoom]:
    """Return the rooms with their players (one statement for all) and their open streams
    (asked of every room at once)."""
    players = await repository.present_players(session, [room.id for room, _ in rows])
    streams = await asyncio.gather(*(realtime.open_streams([p.id for p in players[r.id]]) for r, _ in rows))
    watching = await asyncio.gather(*(realtime.watching(room.id) for room, _ in rows))
    return [
        _admin_room(room, players[room.id], at, open_streams, spectators)
        for (room, at), open_streams, spectators in zip(rows, streams, watching, strict=True)
    ]


async def list_rooms(
    session: AsyncSession,
    realtime: Realtime,
    *,
    status: api.RoomStatus | None,
    limit: int,
    cursor: str | None,
) -> api.AdminRoomPage:
    """Return one page of rooms, newest first: those not closed, or those in `status`."""
    rows = await repository.list_rooms(
        session,
        status=status.value if status else None,
        limit=limit + 1,
        before=int(cursor) if cursor else None,
    )
    page = rows[:limit]
    next_cursor = str(page[-1][0].list_key) if len(rows) > limit else None
    return api.AdminRoomPage(items=await _admin_rooms(session, realtime, page), next_cursor=next_cursor)


async def _room_row(session: AsyncSession, room_id: uuid.UUID) -> tuple[RoomRow, datetime | None]:
    row = await repository.get_room(session, room_id)
    if row is None:
        raise RoomNotFound("No room with this id.")
    return row


async def get_room(session: AsyncSession, realtime: Realtime, room_id: uuid.UUID) -> api.AdminRoom:
    """Return one room as operators see it."""
    [room] = await _admin_rooms(session, realtime, [await _room_row(session, room_id)])
    return room


async def get_detail(session: AsyncSession, realtime: Realtime, room_id: uuid.UUID) -> api.AdminRoomDetail:
    """Return the room, its settings and its game's state as the ruleset stores it, secrets and all."""
    row = await _room_row(session, room_id)
    [room] = await _admin_rooms(session, realtime, [row])
    settings = room_view(row[0], len(room.players)).settings
    return api.AdminRoomDetail(room=room, settings=settings, state=row[0].game)


def _hidden(visibility: str) -> bool:
    """Whether not every player may see an event: hidden information."""
    return visibility != Visibility.room


async def list_events(
    session: AsyncSession, room_id: uuid.UUID, after: int, limit: int
) -> api.AdminEventPage:
    """Return one page of the room's log, every event with its audience."""
    rows = await repository.events_after(session, room_id, after, limit + 1)
    if not rows and await rooms_repository.get_room(session, room_id) is None:
        raise RoomNotFound("No room with this id.")
    page = rows[:limit]
    items = []
    for e in page:
        assert e.created_at is not None
        items.append(
            api.AdminEvent(
                seq=e.seq,
                type=e.type,
                at=e.created_at,
                data=e.data,
                visibility=api.EventVisibility(e.visibility),
                audience=e.audience,
                hidden=_hidden(e.visibility),
            )
        )
    return api.AdminEventPage(items=items, next_after=page[-1].seq if len(rows) > limit else None)


def _event(row: EventRow) -> dict[str, Any]:
    return {"type": row.type, "data": row.data}


def _step(row: EventRow, state: replay.Replayed) -> api.ReplayStep:
    return api.ReplayStep(
        seq=row.seq,
        type=row.type,
        hidden=_hidden(row.visibility),
        status=api.RoomStatus(state.status),
        round=state.round,
        phase=api.Phase(state.phase) if state.phase else None,
        winner=api.Team(state.winner) if state.winner else None,
        players=[
            api.ReplayPlayer(
                id=uuid.UUID(p.id),
                nickname=p.nickname,
                role=api.Role(p.role) if p.role else None,
                team=api.Team(p.team) if p.team else None,
                alive=p.alive,
            )
            for p in state.players
        ],
    )


async def replay_game(session: AsyncSession, room_id: uuid.UUID, game: int | None) -> api.AdminReplay:
    """Return game number `game` of the room (the newest by default) as the states its log
    tells, one per event: its events run from its `game.started` to the next one's."""
    room = await rooms_repository.get_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    span = await game_service.game_span(session, room_id, game)
    if span is None:
        raise GameNotFound("This room has not played a game yet.")
    number, start, end = span
    rows = await repository.game_log(session, room_id, start, end, replay.SEATING)
    seated = replay.replay(_event(r) for r in rows if r.seq < start)
    during = [r for r in rows if r.seq >= start]
    steps = [_step(r, s) for r, s in zip(during, replay.states(map(_event, during), seated), strict=True)]
    return api.AdminReplay(
        room_id=room_id,
        game=number,
        finished=steps[-1].status != api.RoomStatus.in_progress,
        steps=steps,
    )


async def close_room(session: AsyncSession, room_id: uuid.UUID) -> bool:
    """Close the room under its row lock (`room.closed`, reason `operator`), whatever it is
    doing; return whether it closed now (a closed room is left as it is, no event)."""
    room = await rooms_repository.lock_room(session, room_id)
    if room is None:
        raise RoomNotFound("No room with this id.")
    if room.status == "closed":
        return False
    await lifecycle.close_room(session, room, lifecycle.OPERATOR)
    return True
