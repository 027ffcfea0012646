"""HTTP routes of the game: start, advance, actions (and the `/votes` alias of a `vote`), rounds,
rematch."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import MISSING, Field

from backend.api_deps import CommandActor, CurrentActor, DatabaseDep
from backend.contract import api
from backend.contract.api import FieldError
from backend.core.problems import ValidationFailed
from backend.game import service
from backend.persistence.events import NewEvent

router = APIRouter(prefix="/v1/rooms")

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7E]+$"),
]

# The generated union of every ruleset's actions, told apart by `type` here (the spec cannot
# say so where AsyncAPI reads it), so a refusal names the field rather than each member.
ActionBody: Any = Annotated[get_args(api.ActionRequest.__value__)[0], Field(discriminator="type")]


@router.post("/{room_id}/start", response_model=api.Room)
async def start_game(room_id: uuid.UUID, actor: CommandActor, db: DatabaseDep) -> api.Room:
    """Deal the roles and open the first phase."""
    async with db.transaction() as session:
        room, _ = await service.start_game(session, room_id, actor)
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
    body: Annotated[api.AdvanceRequest | None, Depends(advance_guard)],
) -> api.Room:
    """Close the open phase now."""
    async with db.transaction() as session:
        room, _ = await service.advance_phase(session, room_id, actor, body)
    return room


@router.post("/{room_id}/actions", status_code=201, response_model=api.ActionAccepted)
async def perform_action(
    room_id: uuid.UUID,
    body: Annotated[ActionBody, Body()],
    actor: CommandActor,
    db: DatabaseDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Take an action of the room's ruleset."""
    async with db.transaction() as session:
        answer = await service.perform_action(session, room_id, actor, body, idempotency_key)
    return JSONResponse(answer.body, status_code=answer.status)


def vote_action(body: api.VoteRequest) -> api.CastVoteAction:
    """Return the action a `/votes` request (or a WebSocket `vote`) stands for."""
    action = api.CastVoteAction(type="vote", target_player_id=body.target_player_id)
    if body.round is not MISSING:
        action.round = body.round
    if body.phase is not MISSING:
        action.phase = body.phase
    return action


def vote_accepted(accepted: api.ActionAccepted, cast: NewEvent) -> dict[str, Any]:
    """Answer in `/votes`' own shape: the vote as cast (its `vote.cast` event), seq, phase_closed."""
    vote = api.Vote.model_validate(
        {k: cast.data[k] for k in ("round", "phase", "action", "voter_id", "target_player_id")}
    )
    answer = api.VoteAccepted(vote=vote, seq=accepted.seq, phase_closed=accepted.phase_closed)
    data: dict[str, Any] = answer.model_dump(mode="json")
    return data


@router.post("/{room_id}/votes", status_code=201, response_model=api.VoteAccepted)
async def cast_vote(
    room_id: uuid.UUID,
    body: api.VoteRequest,
    actor: CommandActor,
    db: DatabaseDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Cast or change a vote: `performAction` with `{"type": "vote"}`, answered in its own shape."""
    async with db.transaction() as session:
        answer = await service.perform_action(
            session, room_id, actor, vote_action(body), idempotency_key, route="votes", shape=vote_accepted
        )
    return JSONResponse(answer.body, status_code=answer.status)


@router.post("/{room_id}/rematch", response_model=api.Room)
async def rematch_game(room_id: uuid.UUID, actor: CommandActor, db: DatabaseDep) -> api.Room:
    """Deal another game in the same room, once its game is finished."""
    async with db.transaction() as session:
        room, _ = await service.rematch_game(session, room_id, actor)
    return room


@router.get("/{room_id}/rounds", response_model=api.RoundList)
async def list_rounds(
    room_id: uuid.UUID,
    actor: CurrentActor,
    db: DatabaseDep,
    game: Annotated[int | None, Query(ge=1, le=1_000_000, description="Which game of the room.")] = None,
) -> api.RoundList:
    """Return every round's votes and results of one game the caller may see."""
    async with db.snapshot() as session:
        return await service.list_rounds(session, room_id, actor, game)
