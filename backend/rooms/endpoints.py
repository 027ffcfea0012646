"""HTTP routes of the lobby: generated contract models in, generated contract models out."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from backend.api_deps import (
    CommandActor,
    CurrentActor,
    DatabaseDep,
    RealtimeDep,
    limit_joins,
    limit_room_creation,
)
from backend.contract import api
from backend.rooms import service

router = APIRouter(prefix="/v1/rooms")
# The lobby's routes outside /v1/rooms.
lobby_router = APIRouter(prefix="/v1")


@lobby_router.post(
    "/quick-join",
    status_code=status.HTTP_201_CREATED,
    response_model=api.RoomSession,
    dependencies=[Depends(limit_joins)],
)
async def quick_join(body: api.QuickJoinRequest, db: DatabaseDep) -> api.RoomSession:
    """Join the fullest open public lobby of a ruleset, or create one."""
    async with db.transaction() as session:
        answer, _ = await service.quick_join(session, body)
    return answer


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=api.RoomSession,
    dependencies=[Depends(limit_room_creation)],
)
async def create_room(
    body: api.CreateRoomRequest,
    db: DatabaseDep,
    response: Response,
) -> api.RoomSession:
    """Create a room and its host."""
    async with db.transaction() as session:
        answer, _ = await service.create_room(session, body)
    response.headers["Location"] = f"/v1/rooms/{answer.room.id}"
    return answer


@router.get("", response_model=api.RoomPage)
async def list_rooms(
    db: DatabaseDep,
    room_status: Annotated[api.RoomStatus | None, Query(alias="status")] = None,
    code: Annotated[str | None, Query(pattern=r"^[A-HJ-NP-Z2-9]{6}$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,17}$")] = None,
) -> api.RoomPage:
    """List public rooms newest first, or find one by code."""
    async with db.read() as session:
        return await service.list_rooms(session, status=room_status, code=code, limit=limit, cursor=cursor)


@router.get("/{room_id}", response_model=api.RoomSummary)
async def get_room(room_id: uuid.UUID, db: DatabaseDep, realtime: RealtimeDep) -> api.RoomSummary:
    """Return a room's public summary; a private room's join code only its members see."""
    watching = await realtime.watching(room_id)
    async with db.read() as session:
        return await service.get_public_room(session, room_id, watching)


@router.patch("/{room_id}", response_model=api.Room)
async def update_room(
    room_id: uuid.UUID,
    body: api.UpdateRoomRequest,
    actor: CommandActor,
    db: DatabaseDep,
) -> api.Room:
    """Change the room's name or settings."""
    async with db.transaction() as session:
        room, _ = await service.update_room(session, room_id, actor, body)
    return room


@router.post(
    "/{room_id}/players",
    status_code=status.HTTP_201_CREATED,
    response_model=api.RoomSession,
    dependencies=[Depends(limit_joins)],
)
async def join_room(room_id: uuid.UUID, body: api.JoinRoomRequest, db: DatabaseDep) -> api.RoomSession:
    """Join a room in the lobby."""
    async with db.transaction() as session:
        answer, _ = await service.join_room(session, room_id, body)
    return answer


@router.post(
    "/{room_id}/spectators",
    status_code=status.HTTP_201_CREATED,
    response_model=api.SpectatorSession,
    dependencies=[Depends(limit_joins)],
)
async def watch_room(
    room_id: uuid.UUID, body: api.WatchRoomRequest, db: DatabaseDep, realtime: RealtimeDep
) -> api.SpectatorSession:
    """Watch a room as a spectator: a token that reads, never acts."""
    watching = await realtime.watching(room_id)
    async with db.transaction() as session:
        return await service.watch_room(session, room_id, body, watching)


@router.delete("/{room_id}/players/{player_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_player(
    room_id: uuid.UUID, player_id: uuid.UUID, actor: CommandActor, db: DatabaseDep
) -> Response:
    """Leave the room, or kick a player as the host."""
    async with db.transaction() as session:
        await service.remove_player(session, room_id, actor, player_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{room_id}/state", response_model=api.RoomState)
async def get_room_state(room_id: uuid.UUID, actor: CurrentActor, db: DatabaseDep) -> api.RoomState:
    """Return the caller's view of the room."""
    async with db.snapshot() as session:
        return await service.get_state(session, room_id, actor)
