"""Who may see what: the one place that decides it, used by every read path."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Audience(StrEnum):
    """Who an event is for."""

    room = "room"
    team = "team"
    player = "player"


@dataclass(frozen=True)
class Viewer:
    """A player looking at the room: their id, their team (once dealt) and whether alive."""

    player_id: str
    team: str | None = None


def may_see_event(viewer: Viewer, visibility: str, audience: str | None) -> bool:
    """Return whether `viewer` may see an event addressed to (visibility, audience)."""
    if visibility == Audience.room:
        return True
    if visibility == Audience.team:
        return viewer.team is not None and viewer.team == audience
    if visibility == Audience.player:
        return viewer.player_id == audience
    return False


def may_see_role(viewer: Viewer, player_id: str, player_team: str | None, room_status: str) -> bool:
    """Return whether `viewer` may see the role and team of `player_id`."""
    if player_id == viewer.player_id or room_status == "finished":
        return True
    # Mafia members know each other; town members know nobody's role but their own.
    return viewer.team == "mafia" and player_team == "mafia"
