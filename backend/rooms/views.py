"""Rows to contract models, through the viewer's eyes (backend.domain.visibility decides)."""

from __future__ import annotations

from collections.abc import Sequence

from backend.contract import api
from backend.domain.visibility import Viewer, may_see_role
from backend.persistence.tables import PlayerRow, RoomRow


def room_view(room: RoomRow, player_count: int) -> api.Room:
    """Return the room's public summary."""
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


def player_view(player: PlayerRow, room: RoomRow, viewer: Viewer | None) -> api.Player:
    """Return `player` as `viewer` may see them; `viewer` None is the public (everyone's) view."""
    visible = viewer is not None and may_see_role(viewer, str(player.id), player.team, room.status)
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


def state_view(room: RoomRow, players: Sequence[PlayerRow], me: PlayerRow) -> api.RoomState:
    """Return everything `me` may see of the room now."""
    viewer = viewer_of(me)
    seen = [player_view(p, room, viewer) for p in players]
    teammates = [
        p.id
        for p in players
        if p.id != me.id
        and me.team is not None
        and p.team == me.team
        and may_see_role(viewer, str(p.id), p.team, room.status)
    ]
    return api.RoomState(
        room=room_view(room, len(players)),
        players=seen,
        me=player_view(me, room, viewer),
        teammates=teammates,
        votes=[],
        last_seq=room.last_seq,
    )
