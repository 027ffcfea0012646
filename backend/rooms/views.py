"""Rows to contract models, through the viewer's eyes: what a viewer may see is decided by the
room's ruleset (`view`) and by each event's audience (backend.games.projection), never here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backend.contract import api
from backend.games.projection import Now, Viewer, may_see
from backend.games.protocol import View
from backend.games.registry import ruleset
from backend.persistence.tables import PlayerData, PlayerRow, RoomData, RoomRow, VoteRow


def room_view(room: RoomData, player_count: int) -> api.Room:
    """Return the room as its members see it, join code included (anyone, for a public room)."""
    assert room.created_at is not None
    settings = ruleset(room.ruleset).settings_model.model_validate({**room.settings, "ruleset": room.ruleset})
    return api.Room(
        id=room.id,
        code=room.code,
        name=room.name,
        ruleset=api.Ruleset(room.ruleset),
        status=api.RoomStatus(room.status),
        settings=settings,
        host_player_id=room.host_player_id,
        player_count=player_count,
        game=room.game_number,
        round=room.round,
        phase=api.Phase(room.phase) if room.phase else None,
        phase_ends_at=room.phase_ends_at,
        winner=api.Team(room.winner) if room.winner else None,
        created_at=room.created_at,
    )


def public_room_view(room: RoomRow, player_count: int, spectator_count: int = 0) -> api.RoomSummary:
    """Return the room as anyone may see it: a private room's join code only its members see."""
    summary = room_view(room, player_count).model_dump()
    summary["spectator_count"] = spectator_count
    if room.settings.get("private"):
        summary["code"] = None
    return api.RoomSummary.model_validate(summary)


def player_view(player: PlayerData, room: RoomData, *, visible: bool = False) -> api.Player:
    """Return `player`, their role and team shown only when `visible` (the ruleset's `view` says)."""
    return api.Player(
        id=player.id,
        nickname=player.nickname,
        seat=player.seat,
        is_host=room.host_player_id == player.id,
        alive=player.alive,
        connected=player.connected,
        team=api.Team(player.team) if visible and player.team else None,
        role=api.Role(player.role) if visible and player.role else None,
    )


def vote_view(v: VoteRow) -> api.Vote:
    """Return a stored vote as the contract has it."""
    vote = api.Vote(
        round=v.round,
        phase=api.Phase(v.phase),
        action=api.VoteAction(v.action),
        voter_id=v.voter_id,
        target_player_id=v.target_player_id,
    )
    if v.choice is not None:
        vote.choice = api.ApprovalChoice(v.choice)
    return vote


def game_view(room: RoomData, viewer_id: str) -> tuple[View, Any]:
    """Return what a viewer may see of the room's game, and its state (None in the lobby)."""
    if room.game is None:
        return View(roles=frozenset({viewer_id})), None
    rules = ruleset(room.ruleset)
    state = rules.load(room.game)
    return rules.view(state, viewer_id), state


def now_of(room: RoomData, state: Any) -> Now:
    """Return where the room stands, for history reads (see projection.may_see)."""
    if state is None:
        return Now(room.status)
    return Now(room.status, ruleset(room.ruleset).position(state).key)


def state_view(
    room: RoomRow,
    players: Sequence[PlayerRow],
    me: PlayerRow | None,
    ballots: Sequence[VoteRow] = (),
    *,
    viewer_id: str | None = None,
) -> api.RoomState:
    """Return everything `me` may see of the room now: one projection for /state and snapshots.

    `me` None is a spectator (`viewer_id`, their own id, which no seat has): the ruleset's
    `view` then shows what it shows someone who is not in the game, their votes are those
    every player may see, and they have no options.
    """
    if me is not None:
        viewer_id = str(me.id)
    assert viewer_id is not None
    view, state = game_view(room, viewer_id)
    viewer = Viewer(viewer_id, me.team if me is not None else None)
    now = now_of(room, state)
    options: list[api.Option] = []
    if me is not None and state is not None and room.status == "in_progress":
        options = ruleset(room.ruleset).options(state, viewer_id)
    return api.RoomState(
        room=room_view(room, len(players)),
        players=[player_view(p, room, visible=str(p.id) in view.roles) for p in players],
        me=player_view(me, room, visible=True) if me is not None else None,
        teammates=[p.id for p in players if str(p.id) in view.teammates],
        votes=[vote_view(v) for v in ballots if may_see(viewer, v.visibility, v.audience, now)],
        options=options,
        board=view.board,
        last_seq=room.last_seq,
    )
