"""The operators' routes: the API under `/admin/api` and the page at `/admin`.

Without `ADMIN_TOKEN` they answer 404 `not_found`, exactly as a path the app does not have
(the routes stay, so the app still implements the spec). With it, the API takes only
`Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time; that token is no player's
(players' tokens are looked up by their hash), so it opens no player endpoint, and no player's
or spectator's token opens these.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.admin import service
from backend.api_deps import Credentials, DatabaseDep, RealtimeDep
from backend.contract import api
from backend.core.config import PROJECT_ROOT
from backend.core.problems import Unauthorized

# Built from clients/web/src/admin.ts by `make web`, beside the game's page.
ADMIN_PAGE = PROJECT_ROOT / "backend" / "static" / "admin.html"


async def admin_token(request: Request) -> str:
    """Return the server's admin token; without one, `/admin` does not exist."""
    token: str = request.app.state.settings.admin_token.get_secret_value()
    if not token:
        raise StarletteHTTPException(404)  # answered as any unknown path
    return token


async def require_admin(token: Annotated[str, Depends(admin_token)], credentials: Credentials) -> None:
    """Admit the admin token only (constant-time comparison)."""
    given = credentials.credentials if credentials is not None else ""
    # Headers arrive decoded as Latin-1: their bytes back, against the setting's UTF-8 bytes.
    if not secrets.compare_digest(given.encode("latin-1"), token.encode()):
        raise Unauthorized("The admin token is required.")


router = APIRouter(prefix="/admin/api", dependencies=[Depends(require_admin)])
page_router = APIRouter()


@router.get("/rooms", response_model=api.AdminRoomPage)
async def admin_list_rooms(
    db: DatabaseDep,
    realtime: RealtimeDep,
    room_status: Annotated[api.RoomStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,17}$")] = None,
) -> api.AdminRoomPage:
    """List the rooms that are not closed (or those in `status`), newest first."""
    async with db.read() as session:
        return await service.list_rooms(session, realtime, status=room_status, limit=limit, cursor=cursor)


@router.get("/rooms/{room_id}", response_model=api.AdminRoomDetail)
async def admin_get_room(room_id: uuid.UUID, db: DatabaseDep, realtime: RealtimeDep) -> api.AdminRoomDetail:
    """Return a room in full: players with roles, settings, the game's stored state."""
    async with db.read() as session:
        return await service.get_detail(session, realtime, room_id)


@router.get("/rooms/{room_id}/events", response_model=api.AdminEventPage)
async def admin_list_events(
    room_id: uuid.UUID,
    db: DatabaseDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> api.AdminEventPage:
    """Return the room's log after `after`, every event with its audience."""
    async with db.read() as session:
        return await service.list_events(session, room_id, after, limit)


@router.get("/rooms/{room_id}/replay", response_model=api.AdminReplay)
async def admin_replay_game(
    room_id: uuid.UUID,
    db: DatabaseDep,
    game: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> api.AdminReplay:
    """Return one game of the room replayed from its log, a state per event."""
    async with db.read() as session:
        return await service.replay_game(session, room_id, game)


@router.post("/rooms/{room_id}/close", response_model=api.AdminRoom)
async def admin_close_room(room_id: uuid.UUID, db: DatabaseDep, realtime: RealtimeDep) -> api.AdminRoom:
    """Close the room now (`room.closed`, reason `operator`); a closed room stays as it is."""
    # The transaction rings the room's doorbell once committed: open streams get room.closed.
    async with db.transaction() as session:
        await service.close_room(session, room_id)
    async with db.read() as session:
        return await service.get_room(session, realtime, room_id)


# Without ADMIN_TOKEN, a method the routes above do not take is a 404 as well, not a 405 that
# would tell that they are there (included by the app only then, after them).
absent_router = APIRouter(include_in_schema=False)
EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@absent_router.api_route("/admin", methods=EVERY_METHOD)
@absent_router.api_route("/admin/{rest:path}", methods=EVERY_METHOD)
async def no_admin() -> None:
    raise StarletteHTTPException(404)


# The operators' page: not part of the API, so not in the spec (as the game's page at `/`).
@page_router.get("/admin", include_in_schema=False, dependencies=[Depends(admin_token)])
async def admin_page() -> FileResponse:
    return FileResponse(ADMIN_PAGE, headers={"Cache-Control": "no-cache"})
