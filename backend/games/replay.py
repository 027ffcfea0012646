"""A room's log folded into the states it tells, one event at a time: the one replay, read by
the operators' step-by-step view of a game (`/admin/api/rooms/{room_id}/replay`) and by the
tests that show a game's state is the fold of its log.

It reads the log whole (every audience) and knows only the contract's event types, never a
ruleset: every game deals roles (`role.assigned`), opens phases (`phase.started`), may
eliminate players (`player.eliminated`) and ends (`game.finished`), so every game replays here.
Pure: no rows, no I/O; an event is a mapping with its `type` and its `data` as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

# The events that say who is in the room: all the fold needs of the log before a game starts
# (`game.started` deals every role, team and life afresh).
SEATING = ("player.joined", "player.left")


@dataclass(frozen=True, slots=True)
class ReplayedPlayer:
    """A present player as the log tells them: role and team once dealt, alive until eliminated."""

    id: str
    nickname: str
    seat: int
    role: str | None = None
    team: str | None = None
    alive: bool = True


@dataclass(frozen=True, slots=True)
class Replayed:
    """The room as its log tells it after some event: status, where the game stands, the players by seat."""

    status: str = "lobby"
    round: int = 0
    phase: str | None = None
    winner: str | None = None
    players: tuple[ReplayedPlayer, ...] = ()

    def player(self, player_id: str) -> ReplayedPlayer | None:
        """Return the present player `player_id`, if any."""
        return next((p for p in self.players if p.id == player_id), None)


def _with_player(state: Replayed, player_id: Any, **changes: Any) -> Replayed:
    """Return the state with one present player changed (one who has left is not replayed)."""
    wanted = str(player_id)
    return replace(
        state, players=tuple(replace(p, **changes) if p.id == wanted else p for p in state.players)
    )


def fold(state: Replayed, event: Mapping[str, Any]) -> Replayed:
    """Return the state after one more event of the log."""
    data: Mapping[str, Any] = event["data"]
    match event["type"]:
        case "player.joined":
            joined = data["player"]
            player = ReplayedPlayer(str(joined["id"]), joined["nickname"], joined["seat"])
            others = [p for p in state.players if p.id != player.id]
            return replace(state, players=tuple(sorted([*others, player], key=lambda p: p.seat)))
        case "player.left":
            gone = str(data["player_id"])
            return replace(state, players=tuple(p for p in state.players if p.id != gone))
        case "room.updated":
            # The room's own status: a room whose last player left closes with this event.
            return replace(state, status=data["room"]["status"])
        case "game.started":
            # A new game (the first, or a rematch): every role, team and life is dealt afresh.
            fresh = tuple(replace(p, role=None, team=None, alive=True) for p in state.players)
            return Replayed(status="in_progress", players=fresh)
        case "role.assigned":
            return _with_player(state, data["player_id"], role=data["role"], team=data["team"])
        case "phase.started":
            return replace(state, round=data["round"], phase=data["phase"])
        case "player.eliminated":
            return _with_player(state, data["player_id"], alive=False)
        case "game.finished":
            return replace(state, status="finished", winner=data["winner"], phase=None)
        case "room.closed":
            return replace(state, status="closed", phase=None)
    return state  # chat, presence, votes, options: they change none of this


def states(events: Iterable[Mapping[str, Any]], start: Replayed | None = None) -> Iterator[Replayed]:
    """Yield the state after each event, in order, from `start` (an empty lobby by default)."""
    state = start or Replayed()
    for event in events:
        state = fold(state, event)
        yield state


def replay(events: Iterable[Mapping[str, Any]]) -> Replayed:
    """Return the state a whole log (or its beginning) tells."""
    state = Replayed()
    for event in events:
        state = fold(state, event)
    return state
