"""Who may see which event: the one function every read path asks (live streams, replays,
snapshots, `/state`, `/rounds`). A ruleset decides each fact's audience once, when it is
written (`Ruleset.audience`); this reads that decision back for a viewer."""

from __future__ import annotations

from dataclasses import dataclass

from backend.games.protocol import Visibility


@dataclass(frozen=True, slots=True)
class Viewer:
    """A player looking at the room: their id and their team (once dealt)."""

    player_id: str
    team: str | None = None

    def after(self, event_type: str, dealt_team: str | None) -> Viewer:
        """Return the viewer once they have seen an event: their own `role.assigned` deals a team."""
        if event_type == "role.assigned" and dealt_team is not None and dealt_team != self.team:
            return Viewer(self.player_id, dealt_team)
        return self


@dataclass(frozen=True, slots=True)
class Now:
    """Where the room stands when history is read: its status and the open phase's key."""

    status: str
    phase_key: str | None = None


def may_see(viewer: Viewer, visibility: str, key: str | None, now: Now | None = None) -> bool:
    """Return whether `viewer` may see an event addressed to (visibility, key).

    `now` None asks for a stream: every event as its audience stood when it was committed, so
    a sealed event is never streamed (its reveal is the event that closes its phase). With `now`,
    history as it stands: a sealed event once its phase is no longer open, and, once the game
    is finished, every event but those for nobody.
    """
    if visibility == Visibility.room:
        return True
    if visibility == Visibility.nobody:
        return False
    if now is not None and now.status == "finished":
        return True
    if visibility == Visibility.team:
        return viewer.team is not None and viewer.team == key
    if visibility == Visibility.player:
        return viewer.player_id == key
    if visibility == Visibility.sealed:
        return now is not None and now.phase_key != key
    return False
