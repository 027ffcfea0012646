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

    def after(self, event_type: str, dealt_team: str | None) -> Viewer:
        """Return the viewer once they have seen an event: their own `role.assigned` deals a team."""
        if event_type == "role.assigned" and dealt_team is not None and dealt_team != self.team:
            return Viewer(self.player_id, dealt_team)
        return self


def may_see_event(viewer: Viewer, visibility: str, audience: str | None) -> bool:
    """Return whether `viewer` may see an event addressed to (visibility, audience)."""
    if visibility == Audience.room:
        return True
    if visibility == Audience.team:
        return viewer.team is not None and viewer.team == audience
    if visibility == Audience.player:
        return viewer.player_id == audience
    return False


def may_see_role(
    viewer: Viewer,
    player_id: str,
    player_team: str | None,
    room_status: str,
    *,
    alive: bool = True,
    reveal_on_death: bool = True,
) -> bool:
    """Return whether `viewer` may see the role and team of `player_id`."""
    if player_id == viewer.player_id or room_status == "finished":
        return True
    if not alive and reveal_on_death:
        return True
    # Mafia members know each other; town members know nobody's role but their own.
    return viewer.team == "mafia" and player_team == "mafia"


def may_see_vote(viewer: Viewer, action: str, voter_id: str, room_status: str) -> bool:
    """Return whether `viewer` may see a vote: eliminate votes are public, night votes are not."""
    if room_status == "finished" or action == "eliminate" or voter_id == viewer.player_id:
        return True
    return action == "kill" and viewer.team == "mafia"


def may_see_night_tally(viewer: Viewer, room_status: str) -> bool:
    """Return whether `viewer` may see how the mafia voted at night."""
    return room_status == "finished" or viewer.team == "mafia"


def may_see_investigation(viewer: Viewer, detective_id: str, room_status: str) -> bool:
    """Return whether `viewer` may see what a detective learned."""
    return room_status == "finished" or detective_id == viewer.player_id
