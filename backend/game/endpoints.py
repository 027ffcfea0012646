"""HTTP routes of the game: start, advance, vote, rounds."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import JSONResponse

from backend.api_deps import CommandActor, CurrentActor, DatabaseDep, RealtimeDep
from backend.contract import api
from backend.contract.api import FieldError
from backend.core.problems import ValidationFailed
from backend.game import service

router = APIRouter(prefix="/v1/rooms")

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7E]+$"),
]


@router.post("/{room_id}/start", response_model=api.Room)
async def start_game(
    room_id: uuid.UUID, actor: CommandActor, db: DatabaseDep, realtime: RealtimeDep
) -> api.Room:
    """Deal the roles and open the first night."""
    async with db.transaction() as session:
        room, committed = await service.start_game(session, room_id, actor)
    realtime.committed(committed)
    return room


async def advance_guard(
    request: Request, body: Annotated[api.AdvanceRequest | None, Body()] = None
) -> api.AdvanceRequest | None:
    """Return the phase an advance may close, if the caller names one.

    The body is optional, but a body sent is an object: JSON `null` parses to the same None as
    no body at all, and must not close the phase unguarded.
    """
    if body is None and (await request.body()).strip():
        message = "Input should be an object"
        raise ValidationFailed("The request is not valid: body.", [FieldError(loc=["body"], message=message)])
    return body


@router.post("/{room_id}/advance", response_model=api.Room)
async def advance_phase(
    room_id: uuid.UUID,
    actor: CommandActor,
    db: DatabaseDep,
    realtime: RealtimeDep,
    body: Annotated[api.AdvanceRequest | None, Depends(advance_guard)],
) -> api.Room:
    """Close the open phase now."""
    async with db.transaction() as session:
        room, committed = await service.advance_phase(session, room_id, actor, body)
    realtime.committed(committed)
    return room


@router.post("/{room_id}/votes", status_code=201, response_model=api.VoteAccepted)
async def cast_vote(
    room_id: uuid.UUID,
    body: api.VoteRequest,
    actor: CommandActor,
    db: DatabaseDep,
    realtime: RealtimeDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Cast or change a vote."""
    async with db.transaction() as session:
        answer = await service.cast_vote(session, room_id, actor, body, idempotency_key)
    if answer.committed is not None:
        realtime.committed(answer.committed)
    return JSONResponse(answer.body, status_code=answer.status)


@router.get("/{room_id}/rounds", response_model=api.RoundList)
async def list_rounds(room_id: uuid.UUID, actor: CurrentActor, db: DatabaseDep) -> api.RoundList:
    """Return every round's votes and results the caller may see."""
    async with db.snapshot() as session:
        return await service.list_rounds(session, room_id, actor)
