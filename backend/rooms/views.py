"""Rows to contract models, through the viewer's eyes (backend.domain.visibility decides)."""

from __future__ import annotations

from collections.abc import Sequence

from backend.contract import api
from backend.domain.visibility import Viewer, may_see_role, may_see_vote
from backend.persistence.tables import PlayerRow, RoomRow, VoteRow


def room_view(room: RoomRow, player_count: int) -> api.Room:
    """Return the room as its members see it, join code included (anyone, for a public room)."""
    assert room.created_at is not None
    return api.Room(
        id=room.id,
        code=room.code,
        name=room.name,
        ruleset=room.ruleset,
        status=api.RoomStatus(room.status),
        settings=api.RoomSettings.model_validate(room.settings),
        host_player_id=room.host_player_id,
        player_count=player_count,
        round=room.round,
        phase=api.Phase(room.phase) if room.phase else None,
        phase_ends_at=room.phase_ends_at,
        winner=api.Team(room.winner) if room.winner else None,
        created_at=room.created_at,
    )


def public_room_view(room: RoomRow, player_count: int) -> api.RoomSummary:
    """Return the room as anyone may see it: a private room's join code only its members see."""
    summary = room_view(room, player_count).model_dump()
    if room.settings.get("private"):
        summary["code"] = None
    return api.RoomSummary.model_validate(summary)


def player_view(
    player: PlayerRow, room: RoomRow, viewer: Viewer | None, *, reveal: bool = False
) -> api.Player:
    """Return `player` as `viewer` may see them; `viewer` None is the public (everyone's) view.

    `reveal` shows the role to everyone: the end of the game, or a death with reveal_on_death.
    """
    visible = reveal or may_see_role(
        viewer or Viewer(player_id=""),
        str(player.id),
        player.team,
        room.status,
        alive=player.alive,
        reveal_on_death=bool(room.settings.get("reveal_on_death", True)),
    )
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


def viewer_of(player: PlayerRow) -> Viewer:
    """Return the viewer a player is."""
    return Viewer(player_id=str(player.id), team=player.team)


def vote_view(v: VoteRow) -> api.Vote:
    """Return a stored vote as the contract has it."""
    return api.Vote(
        round=v.round,
        phase=api.Phase(v.phase),
        action=api.VoteAction(v.action),
        voter_id=v.voter_id,
        target_player_id=v.target_player_id,
    )


def visible_votes(viewer: Viewer, votes: Sequence[VoteRow], room_status: str) -> list[api.Vote]:
    """Return the votes `viewer` may see."""
    return [vote_view(v) for v in votes if may_see_vote(viewer, v.action, str(v.voter_id), room_status)]


def state_view(
    room: RoomRow, players: Sequence[PlayerRow], me: PlayerRow, ballots: Sequence[VoteRow] = ()
) -> api.RoomState:
    """Return everything `me` may see of the room now."""
    viewer = viewer_of(me)
    seen = [player_view(p, room, viewer) for p in players]
    teammates = [
        p.id
        for p in players
        if p.id != me.id and me.team is not None and p.team == me.team and viewer.team == "mafia"
    ]
    return api.RoomState(
        room=room_view(room, len(players)),
        players=seen,
        me=player_view(me, room, viewer),
        teammates=teammates,
        votes=visible_votes(viewer, ballots, room.status),
        last_seq=room.last_seq,
    )
