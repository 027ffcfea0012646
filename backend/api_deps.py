"""Dependencies shared by the routes: the database, the realtime machinery, the caller."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.core.db import Database
from backend.core.problems import SpectatorRefused, Unauthorized
from backend.realtime import tickets
from backend.realtime.streams import Realtime
from backend.rooms import service
from backend.rooms.service import Actor

_bearer = HTTPBearer(auto_error=False)


# Dependencies are async: FastAPI runs plain `def` ones in a thread pool, a hop per request.
async def get_database(request: Request) -> Database:
    """Return the app's database."""
    db: Database = request.app.state.db
    return db


async def get_realtime(request: Request) -> Realtime:
    """Return the app's realtime machinery."""
    realtime: Realtime = request.app.state.realtime
    return realtime


DatabaseDep = Annotated[Database, Depends(get_database)]
RealtimeDep = Annotated[Realtime, Depends(get_realtime)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """Return the bearer token, or refuse."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized()
    return credentials.credentials


async def authenticate(db: Database, token: str, room_id: uuid.UUID) -> Actor:
    """Return the player (or spectator) a token stands for in `room_id`, in one short read."""
    async with db.driver(transaction=False) as conn:
        return await service.authenticate(conn, token, room_id)


async def current_actor(room_id: uuid.UUID, db: DatabaseDep, credentials: Credentials) -> Actor:
    """Return the caller, a present player or a spectator of the room in the path."""
    return await authenticate(db, bearer_token(credentials), room_id)


async def stream_caller(
    db: Database, room_id: uuid.UUID, token: str | None, ticket: str | None, access_token: str | None
) -> Actor:
    """Return the caller of a stream (SSE or WebSocket): the bearer token from the header, else
    a single-use stream ticket (consumed), else the token from the URL (kept for compatibility)."""
    if token:
        return await authenticate(db, token, room_id)
    if ticket:
        return await tickets.redeem(db, ticket, room_id)
    if access_token:
        return await authenticate(db, access_token, room_id)
    raise Unauthorized()


async def stream_actor(
    room_id: uuid.UUID,
    db: DatabaseDep,
    credentials: Credentials,
    ticket: Annotated[str | None, Query(description="A single-use stream ticket.")] = None,
    access_token: Annotated[str | None, Query(description="The token, for EventSource.")] = None,
) -> Actor:
    """Return the caller of a stream: the bearer token, or a `ticket`, or `access_token`
    (EventSource sends no headers)."""
    token = bearer_token(credentials) if credentials is not None else None
    return await stream_caller(db, room_id, token, ticket, access_token)


async def required_token(credentials: Credentials) -> str:
    """Return the bearer token unchecked, for a command that checks it on its own connection."""
    return bearer_token(credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]
BearerToken = Annotated[str, Depends(required_token)]
StreamActor = Annotated[Actor, Depends(stream_actor)]


async def command_actor(actor: CurrentActor, realtime: RealtimeDep) -> Actor:
    """Return the caller of a command, counted against their commands' rate limit; a
    spectator's token only reads (refused before it costs the limit anything)."""
    if actor.spectator:
        raise SpectatorRefused()
    await realtime.limits.check(realtime.limits.commands, actor.player_id)
    return actor


def client_address(request: Request) -> str:
    """Return the client's address: the connection's peer, or, when the peer is one of
    TRUSTED_PROXIES, the address that proxy forwarded (uvicorn's proxy headers handling,
    configured in backend/__main__.py)."""
    return request.client.host if request.client else ""


async def limit_room_creation(request: Request, realtime: RealtimeDep) -> None:
    """Count a room creation against the client address's rate limit."""
    await realtime.limits.check(realtime.limits.rooms, client_address(request))


async def limit_joins(request: Request, realtime: RealtimeDep) -> None:
    """Count a join against the client address's rate limit."""
    await realtime.limits.check(realtime.limits.joins, client_address(request))


# The caller of a command that changes something: counted against their rate limit.
CommandActor = Annotated[Actor, Depends(command_actor)]
